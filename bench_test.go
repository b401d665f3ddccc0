package main

// make bench: the figures users compare hacron with (admission overhead,
// failover times, load, herd), printed as a markdown table with the machine
// it ran on. Not a test: nothing here asserts a time, and make test skips
// it.

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	benchOn = flag.Bool("hacron.bench", false, "print the benchmark table (make bench)")
	benchN  = flag.Int("hacron.benchn", 500, "runs per admission-overhead row")
	benchF  = flag.Int("hacron.benchf", 20, "trials per failover row")
	benchL  = flag.Int("hacron.benchl", 1000, "concurrent runs in the load row")
)

// percentiles returns p50, p99 and max of ds.
func percentiles(ds []time.Duration) (p50, p99, top time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.5), at(0.99), s[len(s)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// timeRuns runs argv n times, one after the other, and returns each
// wall-clock time.
func timeRuns(t *testing.T, n int, env []string, argv ...string) []time.Duration {
	var out []time.Duration
	for i := range n {
		args := slices.Clone(argv)
		for j, a := range args {
			args[j] = strings.ReplaceAll(a, "{i}", strconv.Itoa(i))
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = env
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		out = append(out, time.Since(t0))
	}
	return out
}

func TestBenchReport(t *testing.T) {
	if !*benchOn {
		t.Skip("make bench runs this (-hacron.bench)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "hacron")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ens := startZK(t, 1)
	var rows [][]string
	row := func(cells ...string) { rows = append(rows, cells) }

	// 1. Admission overhead.
	env := hacronEnv(t, ens.ConnectString(), clusterName(t))
	envT := func(T string) []string {
		e := slices.Clone(env)
		for i, kv := range e {
			if strings.HasPrefix(kv, "HACRON_SESSION_TIMEOUT=") {
				e[i] = "HACRON_SESSION_TIMEOUT=" + T
			}
		}
		return e
	}
	env = envT("10s")
	a := startBinAgent(t, bin, env, "node-a", filepath.Join(dir, "a.sock"))
	waitBinState(t, a.sock, "active")
	b := startBinAgent(t, bin, env, "node-b", filepath.Join(dir, "b.sock"))
	waitBinState(t, b.sock, "passive")
	if n := *benchN; n > 0 {
		base := timeRuns(t, n, env, "/bin/true")
		b50, b99, _ := percentiles(base)
		row("`true` alone", ms(b50), ms(b99), "")
		for _, c := range []struct {
			name string
			env  []string
			argv []string
		}{
			{"agent mode, active: `hacron run -- true`", env, []string{bin, "run", "--socket", a.sock, "--", "/bin/true"}},
			{"agent mode, skipped (passive node)", env, []string{bin, "run", "--socket", b.sock, "--", "/bin/true"}},
			{"direct mode, runs (a new slot each)", env, []string{bin, "run", "--direct", "--cluster", "bench-direct", "--slot", "s{i}", "--", "/bin/true"}},
			{"direct mode, skipped (slot taken)", env, []string{bin, "run", "--direct", "--cluster", "bench-direct", "--slot", "s0", "--", "/bin/true"}},
		} {
			ds := timeRuns(t, n, c.env, c.argv...)
			p50, p99, _ := percentiles(ds)
			row(c.name, ms(p50), ms(p99), "+"+ms(p50-b50)+" over `true` (p50)")
		}
	}
	t.Logf("admission overhead done")

	// 2. Failover: from the event to the standby answering active,
	// polled over its socket every millisecond.
	if *benchF > 0 {
		T := "2s"
		fenv := envT(T)
		for _, kind := range []string{"clean stop (SIGTERM)", "crash (SIGKILL)", "partition (blackhole)"} {
			var ds []time.Duration
			cluster := clusterName(t)
			fe := slices.Clone(fenv)
			fe = append(fe, "HACRON_CLUSTER="+cluster)
			nodes := []*binAgent{}
			for _, name := range []string{"f-a", "f-b"} {
				px := newFaultProxy(t, ens.Addrs()[0])
				e := append(slices.Clone(fe), "HACRON_ZK="+px.Addr())
				ag := startBinAgent(t, bin, e, name, filepath.Join(dir, cluster+name+".sock"))
				ag.proxy = px
				nodes = append(nodes, ag)
				waitBinState(t, ag.sock, map[bool]string{true: "active", false: "passive"}[name == "f-a"])
			}
			for range *benchF {
				victim, standby := nodes[0], nodes[1]
				if binState(victim.sock) != "active" {
					victim, standby = standby, victim
				}
				t0 := time.Now()
				switch {
				case strings.HasPrefix(kind, "clean"):
					victim.cmd.Process.Signal(syscall.SIGTERM)
				case strings.HasPrefix(kind, "crash"):
					victim.cmd.Process.Signal(syscall.SIGKILL)
				default:
					victim.proxy.SetMode(proxyBlackhole)
				}
				for binState(standby.sock) != "active" {
					if time.Since(t0) > 30*time.Second {
						t.Fatalf("%s: no failover after 30s", kind)
					}
					time.Sleep(time.Millisecond)
				}
				ds = append(ds, time.Since(t0))
				victim.proxy.SetMode(proxyPass)
				victim.proxy.Reset()
				victim.stop()
				victim.restart(t, bin)
				waitBinState(t, victim.sock, "passive")
			}
			p50, _, top := percentiles(ds)
			bound := "100 ms"
			if !strings.HasPrefix(kind, "clean") {
				bound = "T + 1 s = 3 s"
			}
			row(fmt.Sprintf("failover, %s, T = %s, %d trials", kind, T, len(ds)), ms(p50), "max "+ms(top), "bound "+bound)
			for _, ag := range nodes {
				ag.stop()
			}
		}
	}
	t.Logf("failover done")

	// 3. Load: concurrent `hacron run -- sleep 2` on one agent.
	L := *benchL
	lenv := append(slices.Clone(env), "HACRON_CLUSTER="+clusterName(t))
	la := startBinAgent(t, bin, lenv, "load", filepath.Join(dir, "load.sock"))
	waitBinState(t, la.sock, "active")
	// Starts are paced (at most 32 wrappers starting at once, a slot
	// freed when its job has started): a thousand Go processes starting at
	// the same instant on two cores starve ZooKeeper, on the same host here,
	// past the lease, and hacron then rightly ends the jobs (exit 123).
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, running, peak := 0, 0, 0
	failures := map[string]int{}
	starting := make(chan struct{}, 32)
	var lastStart time.Time
	t0 := time.Now()
	for i := range L {
		wg.Add(1)
		starting <- struct{}{}
		go func() {
			defer wg.Done()
			cmd := exec.Command(bin, "run", "--socket", la.sock, "--name", "load"+strconv.Itoa(i%20), "--", "sh", "-c", "echo started; exec sleep 2")
			cmd.Env = lenv
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				<-starting
				return
			}
			first := make([]byte, 8)
			n, _ := out.Read(first)
			<-starting
			mu.Lock()
			if n > 0 {
				running++
				peak = max(peak, running)
				lastStart = time.Now()
			}
			mu.Unlock()
			_, _ = io.Copy(io.Discard, out) // drained so that Wait returns; Wait tells how it went
			err := cmd.Wait()
			mu.Lock()
			defer mu.Unlock()
			if n > 0 {
				running--
			}
			if err == nil {
				ok++
			} else {
				failures[strings.TrimSpace(stderr.String())+" ("+err.Error()+")"]++
			}
		}()
	}
	wg.Wait()
	admitRate := float64(L) / max(lastStart.Sub(t0).Seconds(), 0.001)
	rss := vmHWM(la.cmd.Process.Pid)
	for f, n := range failures {
		t.Logf("load: %d runs failed: %s", n, f)
	}
	row(fmt.Sprintf("load: %d `hacron run -- sleep 2` on one agent", L), fmt.Sprintf("%d/%d completed", ok, L),
		fmt.Sprintf("%.0f admissions/s", admitRate), fmt.Sprintf("agent peak RSS %s; up to %d jobs at once", rss, peak))
	la.stop()

	// 4. Herd: 50 candidates, watch notifications per leader change.
	parent := testParent(t)
	var cands []*testCandidate
	for i := range 50 {
		c := startCandidate(t, ens.ConnectString(), parent, fmt.Sprintf("h%02d", i), 3*time.Second)
		cands = append(cands, c)
		waitFor(t, 20*time.Second, "joined", func() bool { return c.el.Status().Node != "" })
	}
	sum := func() (n int64) {
		for _, c := range cands {
			n += c.el.wakeups.Load()
		}
		return n
	}
	changes := 5
	before := sum()
	for i := range changes {
		leader := waitActive(t, 20*time.Second, cands[i:]...)
		leader.stop()
		waitActive(t, 20*time.Second, cands[i+1:]...)
	}
	time.Sleep(500 * time.Millisecond)
	row("herd: 50 candidates, 5 leader changes", fmt.Sprintf("%.1f watch notifications per change", float64(sum()-before)/float64(changes)), "", "target 1")

	var out strings.Builder
	fmt.Fprintf(&out, "machine: %s, %d cores, %s, %s, ZooKeeper 3.8.0 (Debian) on loopback\n\n", cpuModel(), runtime.NumCPU(), kernel(), runtime.Version())
	fmt.Fprintf(&out, "| measure | p50 / result | p99 / max | note |\n|---|---|---|---|\n")
	for _, r := range rows {
		for len(r) < 4 {
			r = append(r, "")
		}
		fmt.Fprintf(&out, "| %s |\n", strings.Join(r, " | "))
	}
	fmt.Println(out.String())
	t.Log("\n" + out.String())
}

type binAgent struct {
	cmd   *exec.Cmd
	env   []string
	node  string
	sock  string
	proxy *faultProxy
	done  chan struct{}
}

func startBinAgent(t *testing.T, bin string, env []string, node, sock string) *binAgent {
	a := &binAgent{env: env, node: node, sock: sock}
	a.restart(t, bin)
	t.Cleanup(a.stop)
	return a
}

func (a *binAgent) restart(t *testing.T, bin string) {
	a.cmd = exec.Command(bin, "agent", "--node", a.node, "--socket", a.sock)
	a.cmd.Env = a.env
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	a.done = done
	go func() {
		_ = a.cmd.Wait() // done is all the bench needs: it stopped the agent itself
		close(done)
	}()
}

func (a *binAgent) stop() {
	if a.cmd == nil {
		return
	}
	select {
	case <-a.done:
		return
	default:
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}

func binState(sock string) string {
	info, err := askState(&globals{Socket: sock})
	if err != nil {
		return "unknown"
	}
	return info.State
}

func waitBinState(t *testing.T, sock, want string) {
	waitFor(t, 30*time.Second, sock+" "+want, func() bool { return binState(sock) == want })
}

// vmHWM is a process's peak resident set size.
func vmHWM(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return fmt.Sprintf("%.1f MB", float64(kb)/1024)
		}
	}
	return "?"
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

func kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "linux"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return "Linux " + string(b)
}
