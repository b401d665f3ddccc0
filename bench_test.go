package main

// make bench: the figures users compare hacron with (admission overhead,
// failover times, load, herd), printed as a markdown table with the machine
// it ran on. Not a test: nothing here asserts a time, and make test skips
// it.

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"hacron/internal/crontab"
)

var (
	benchOn = flag.Bool("hacron.bench", false, "print the benchmark table (make bench)")
	benchN  = flag.Int("hacron.benchn", 200, "runs per start-up row")
	benchF  = flag.Int("hacron.benchf", 20, "trials per failover row")
	benchL  = flag.Int("hacron.benchl", 1000, "concurrent runs in the load row")
	benchC  = flag.Duration("hacron.benchc", 70*time.Second, "how long the 1,000-job crontab row runs (0: no crontab rows)")
	// A hacron built from an earlier commit: its rows are measured in the
	// same rounds, so that before and after compare on one machine state.
	benchRef = flag.String("hacron.benchref", "", "reference hacron binary measured beside this one")
)

// percentiles returns p50, p99 and max of ds.
func percentiles(ds []time.Duration) (p50, p99, top time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.5), at(0.99), s[len(s)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

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

	// 1. Start-up and admission cost, interleaved.
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
	var startup []startupRow
	var startupLoad string
	if *benchN > 0 {
		startupLoad = "load average " + loadAvg()
		startup = benchStartup(t, dir, bin, env, a.sock, b.sock)
		startupLoad += " before, " + loadAvg() + " after"
	}
	t.Logf("start-up cost done")

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

	// 3. Load: concurrent `hacron run -- sleep 2` on one agent, and the
	// agent's memory idle and under that load.
	for i, lb := range []struct{ name, bin string }{{"", bin}, {" (reference)", *benchRef}} {
		if lb.bin == "" {
			continue
		}
		r := benchLoad(t, lb.bin, env, filepath.Join(dir, fmt.Sprintf("load%d.sock", i)))
		row(fmt.Sprintf("load%s: %d `hacron run -- sleep 2` on one agent", lb.name, *benchL), fmt.Sprintf("%d/%d completed", r.ok, *benchL),
			fmt.Sprintf("%.0f admissions/s", r.admitRate), fmt.Sprintf("agent RSS %s idle, peak %s (target at most 26 MB); up to %d jobs at once", r.idleRSS, r.peakRSS, r.peak))
	}

	// 4. The agent's own schedule: firing latency, and 1,000 jobs.
	if *benchC > 0 {
		r := benchCrontab(t, bin, env, dir)
		row(fmt.Sprintf("crontab: firing latency (firing time to the job's first command, `exec date`), %d jobs `@every 1s`, %d firings", benchCronJobs, r.firings),
			ms(r.p50), ms(r.p99)+" (max "+ms(r.top)+")", "target p99 under 50 ms")
		row("crontab: of which the agent's (firing time to the go-ahead, `hacron_firing_delay_seconds`)", r.goAhead50, r.goAhead99,
			"bucket bounds; the rest is the job's first process exec'ing /bin/sh -c and its command")
		row(fmt.Sprintf("crontab: 1,000 jobs `* * * * *` spread by jitter over the minute, %v", *benchC), fmt.Sprintf("%d runs", r.bulkRuns),
			fmt.Sprintf("agent CPU %.1f s per minute", r.cpuPerMin), fmt.Sprintf("agent RSS %s idle with the 1,000 jobs loaded, peak %s (target under 40 MB)", r.idleRSS, r.peakRSS))
	}

	// 5. Herd: 50 candidates, watch notifications per leader change.
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
	if len(startup) > 0 {
		writeStartup(&out, startup, startupLoad)
	}
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
	args  []string // beyond --node and --socket
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
	a.cmd = exec.Command(bin, append([]string{"agent", "--node", a.node, "--socket", a.sock}, a.args...)...)
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

// procStatus is a memory figure of /proc/<pid>/status (VmRSS, VmHWM) in MB.
func procStatus(pid int, field string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return fmt.Sprintf("%.1f MB", float64(kb)/1024)
		}
	}
	return "?"
}

// loadAvg is the machine's 1-minute load average: the start-up rows mean
// little on a machine busy with other work.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
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

// startupRow is one command of the start-up table and its times: wall
// clock, and CPU (user and system, the process and the children it waited
// for), which a machine shared with other work disturbs less.
type startupRow struct {
	name, note string
	argv       []string
	ds, cpu    []time.Duration
}

// floorPrograms are built by the bench as baselines: what any Go program
// costs to start, and what a Go program costs that does no more than a
// skipped run must (connect to the agent's socket, one line each way).
var floorPrograms = map[string]string{
	"empty": "package main\n\nfunc main() {}\n",
	"sockclient": `package main

import (
	"bufio"
	"net"
	"os"
)

func main() {
	c, err := net.Dial("unix", os.Args[1])
	if err != nil {
		os.Exit(1)
	}
	c.Write([]byte("{\"v\":1,\"op\":\"state\"}\n"))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		os.Exit(1)
	}
}
`,
}

func buildFloor(t *testing.T, dir, name string) string {
	src := filepath.Join(dir, "floor-"+name)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, text := range map[string]string{"go.mod": "module floor\n\ngo 1.26\n", "main.go": floorPrograms[name]} {
		if err := os.WriteFile(filepath.Join(src, f), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return bin
}

// benchStartup times the commands a crontab line costs, in rounds: every
// round runs each command once, starting at a different one, so that the
// machine's ups and downs fall on all rows alike. The ratios compare rows
// of the same rounds.
func benchStartup(t *testing.T, dir, bin string, env []string, activeSock, passiveSock string) []startupRow {
	empty, sockClient := buildFloor(t, dir, "empty"), buildFloor(t, dir, "sockclient")
	rows := []startupRow{
		{name: "`/bin/true`", argv: []string{"/bin/true"}},
		{name: "`sh -c true` (rcron's active path runs the job through sh)", argv: []string{"/bin/sh", "-c", "true"}},
		{name: "empty Go program", argv: []string{empty}},
		{name: "Go program: connect to the agent, one line each way", argv: []string{sockClient, passiveSock}},
	}
	hacronRows := func(label, bin, direct string) {
		// The targets are this build's; a reference row gets none.
		target := func(s string) string {
			if label != "" {
				return ""
			}
			return s
		}
		rows = append(rows,
			startupRow{name: "`hacron --version`" + label, argv: []string{bin, "--version"}},
			startupRow{name: "`hacron run -- true`, skipped (passive agent)" + label, note: target("target at most 3x `/bin/true`"),
				argv: []string{bin, "run", "--socket", passiveSock, "--", "/bin/true"}},
			startupRow{name: "`hacron run -- true`, admitted (active agent)" + label, note: target("target at most 2x `sh -c true`"),
				argv: []string{bin, "run", "--socket", activeSock, "--", "/bin/true"}},
			startupRow{name: "direct mode, runs (a new slot each)" + label, note: target("target at most 0.7x the reference"),
				argv: []string{bin, "run", "--direct", "--cluster", direct, "--slot", "s{i}", "--", "/bin/true"}},
			startupRow{name: "direct mode, skipped (slot taken)" + label,
				argv: []string{bin, "run", "--direct", "--cluster", direct, "--slot", "s-1", "--", "/bin/true"}},
		)
	}
	hacronRows("", bin, "bench-direct")
	if *benchRef != "" {
		hacronRows(" (reference)", *benchRef, "bench-direct-ref")
	}
	run := func(r *startupRow, i int) (wall, cpu time.Duration) {
		args := slices.Clone(r.argv)
		for j, a := range args {
			args[j] = strings.ReplaceAll(a, "{i}", strconv.Itoa(i))
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = env
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		wall = time.Since(t0)
		return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	// One round unmeasured: the page cache holds every binary, and the
	// direct rows' slot s-1 is taken.
	for i := range rows {
		run(&rows[i], -1)
	}
	for n := range *benchN {
		for k := range rows {
			r := &rows[(n+k)%len(rows)]
			wall, cpu := run(r, n)
			r.ds, r.cpu = append(r.ds, wall), append(r.cpu, cpu)
		}
	}
	return rows
}

// writeStartup prints the start-up table: wall-clock p50 and p90, CPU
// p50, and each row's wall-clock p50 as a multiple of the baselines' (the
// first three rows).
func writeStartup(w io.Writer, rows []startupRow, load string) {
	p50 := func(r startupRow) time.Duration { p, _, _ := percentiles(r.ds); return p }
	p90 := func(r startupRow) time.Duration {
		s := slices.Clone(r.ds)
		slices.Sort(s)
		return s[len(s)*9/10]
	}
	cpu50 := func(r startupRow) time.Duration { p, _, _ := percentiles(r.cpu); return p }
	byName := map[string]time.Duration{}
	for _, r := range rows {
		byName[r.name] = p50(r)
	}
	x := func(d, base time.Duration) string { return fmt.Sprintf("%.2fx", float64(d)/float64(base)) }
	fmt.Fprintf(w, "Start-up: %d rounds, each command once per round; %s\n\n", len(rows[0].ds), load)
	fmt.Fprintf(w, "| command | p50 | p90 | CPU p50 | x `/bin/true` | x `sh -c true` | x empty Go | note |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		d := p50(r)
		note := r.note
		if ref, ok := byName[r.name+" (reference)"]; ok {
			note = strings.TrimLeft(note+"; "+x(d, ref)+" the reference", "; ")
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name, ms(d), ms(p90(r)), ms(cpu50(r)),
			x(d, p50(rows[0])), x(d, p50(rows[1])), x(d, p50(rows[2])), note)
	}
	fmt.Fprintln(w)
}

// loadResult is the load row of one agent binary.
type loadResult struct {
	ok, peak         int
	admitRate        float64
	idleRSS, peakRSS string
}

// benchLoad starts an agent of bin in a cluster of its own and runs
// -hacron.benchl concurrent `hacron run -- sleep 2` against it.
func benchLoad(t *testing.T, bin string, env []string, sock string) loadResult {
	L := *benchL
	lenv := append(slices.Clone(env), "HACRON_CLUSTER="+clusterName(t))
	la := startBinAgent(t, bin, lenv, "load", sock)
	waitBinState(t, la.sock, "active")
	defer la.stop()
	// Idle: active, its session and lease settled, nothing run yet.
	time.Sleep(2 * time.Second)
	idle := procStatus(la.cmd.Process.Pid, "VmRSS")
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
			_, _ = io.Copy(io.Discard, out) // to the job's end; Wait says how it went
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
	for f, n := range failures {
		t.Logf("load: %d runs failed: %s", n, f)
	}
	return loadResult{ok: ok, peak: peak, admitRate: float64(L) / max(lastStart.Sub(t0).Seconds(), 0.001),
		idleRSS: idle, peakRSS: procStatus(la.cmd.Process.Pid, "VmHWM")}
}

// benchCronJobs is how many `@every 1s` jobs the firing-latency row runs.
const benchCronJobs = 10

type crontabResult struct {
	goAhead50, goAhead99 string // the agent's own share, from its histogram
	firings              int
	p50, p99, top        time.Duration
	bulkRuns             int
	cpuPerMin            float64
	idleRSS, peakRSS     string
}

// benchCrontab measures the agent's schedule: how late a job's first
// command runs after its firing time (its slot plus its jitter), and what
// 1,000 jobs cost the agent.
func benchCrontab(t *testing.T, bin string, env []string, dir string) crontabResult {
	var r crontabResult
	// Latency: each job's first command is date, appending the slot and
	// the time it ran.
	tab := filepath.Join(dir, "latency.tab")
	var text strings.Builder
	for i := range benchCronJobs {
		fmt.Fprintf(&text, "# hacron: name=lat%d jitter=%dms\n@every 1s exec date +\"$HACRON_JOB $HACRON_SLOT \\%%s\\%%N\" >> %s/latency\n", i, 37*i, dir)
	}
	if err := os.WriteFile(tab, []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cluster := clusterName(t)
	e := append(slices.Clone(env), "HACRON_CLUSTER="+cluster)
	metricsAddr := freeLoopback(t)
	a := &binAgent{env: e, node: "cron-a", sock: filepath.Join(dir, "cron-a.sock"), args: []string{"--crontab", tab, "--metrics-listen", metricsAddr}}
	a.restart(t, bin)
	waitBinState(t, a.sock, "active")
	time.Sleep(20 * time.Second)
	r.goAhead50, r.goAhead99 = histogramQuantiles(t, "http://"+metricsAddr+"/metrics", "hacron_firing_delay_seconds")
	a.stop()
	b, _ := os.ReadFile(filepath.Join(dir, "latency"))
	var ds []time.Duration
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 || len(f[2]) < 10 {
			continue
		}
		slot, err1 := time.Parse(time.RFC3339, f[1])
		sec, err2 := strconv.ParseInt(f[2][:10], 10, 64)
		nsec, err3 := strconv.ParseInt(f[2][10:], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		at := slot.Add(crontab.Jitter(f[0], slot, time.Duration(37*mustAtoi(strings.TrimPrefix(f[0], "lat")))*time.Millisecond))
		ds = append(ds, time.Unix(sec, nsec).Sub(at))
	}
	if len(ds) == 0 {
		t.Fatalf("no firings measured: %q", b)
	}
	r.firings = len(ds)
	r.p50, r.p99, r.top = percentiles(ds)

	// 1,000 jobs, each every minute, spread over it by jitter.
	bulk := filepath.Join(dir, "bulk.tab")
	text.Reset()
	for i := range 1000 {
		fmt.Fprintf(&text, "# hacron: name=bulk%d jitter=59s\n* * * * * true\n", i)
	}
	if err := os.WriteFile(bulk, []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cluster = clusterName(t)
	e = append(slices.Clone(env), "HACRON_CLUSTER="+cluster)
	a = &binAgent{env: e, node: "bulk-a", sock: filepath.Join(dir, "bulk-a.sock"), args: []string{"--crontab", bulk}}
	a.restart(t, bin)
	waitBinState(t, a.sock, "active")
	pid := a.cmd.Process.Pid
	r.idleRSS = procStatus(pid, "VmRSS")
	cpu0 := procCPU(pid)
	time.Sleep(*benchC)
	cpu := procCPU(pid) - cpu0
	r.peakRSS = procStatus(pid, "VmHWM")
	a.stop()
	r.cpuPerMin = cpu.Seconds() / benchC.Minutes()
	for _, j := range statusOf(t, ens0(env), cluster).Jobs {
		r.bulkRuns += len(j.Runs)
	}
	return r
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// ens0 is the ZooKeeper connect string of a hacron environment.
func ens0(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "HACRON_ZK="); ok {
			return v
		}
	}
	return ""
}

// procCPU is a process's user and system CPU time so far.
func procCPU(pid int) time.Duration {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// freeLoopback is a loopback address with a port nobody listens on now.
func freeLoopback(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// histogramQuantiles reads a histogram from a Prometheus text page and
// returns the upper bounds of the buckets that hold its median and its
// 99th percentile.
func histogramQuantiles(t *testing.T, url, name string) (p50, p99 string) {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	type bucket struct {
		le string
		n  float64
	}
	var buckets []bucket
	var count float64
	for _, l := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(l, name+`_bucket{le="`); ok {
			le, n, _ := strings.Cut(rest, `"} `)
			v, _ := strconv.ParseFloat(n, 64)
			buckets = append(buckets, bucket{le, v})
		}
		if v, ok := strings.CutPrefix(l, name+"_count "); ok {
			count, _ = strconv.ParseFloat(v, 64)
		}
	}
	at := func(q float64) string {
		for _, b := range buckets {
			if b.n >= q*count {
				if s, err := strconv.ParseFloat(b.le, 64); err == nil {
					return fmt.Sprintf("at most %s", ms(time.Duration(s*float64(time.Second))))
				}
				return b.le
			}
		}
		return "-"
	}
	return at(0.5), at(0.99)
}
