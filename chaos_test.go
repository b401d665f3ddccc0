package main

// The fault-injection suite (make chaos; a short run in make test): a
// 3-server ZooKeeper ensemble, three agents each behind its own fault
// proxies, a simulated cron on every node invoking `hacron run --slot` for
// every tick and several jobs, a probe job that checks mutual exclusion on
// its own, a nemesis, and a checker over the probes' ledger.

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hacron/internal/contain"
	"hacron/internal/lease"
	"hacron/internal/wire"
)

var (
	chaosDuration = flag.Duration("hacron.chaos", 90*time.Second, "how long the fault-injection suite runs")
	chaosSeed     = flag.Int64("hacron.seed", 0, "the nemesis's seed (0: a new one, printed for replay)")
	chaosTick     = flag.Duration("hacron.tick", time.Second, "the simulated cron's tick")
)

const (
	chaosJobs    = 2
	chaosTimeout = 3 * time.Second // the agents' session timeout T
)

// probeMain is the job the simulated cron runs (the test binary under the
// name hacron-probe). Independently of hacron, it registers itself in a
// directory all nodes share and reports a violation if a probe of another
// node is alive at the same time; it logs start and end (CLOCK_MONOTONIC)
// with node, job, slot and fencing token to an append-only ledger.
func probeMain() {
	ledger, reg := os.Args[1], os.Args[2]
	node, job, slot, token := os.Getenv("HACRON_NODE"), os.Getenv("HACRON_JOB"), os.Getenv("HACRON_SLOT"), os.Getenv("HACRON_FENCING_TOKEN")
	pid := os.Getpid()
	f, err := os.OpenFile(ledger, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		os.Exit(2)
	}
	logLine := func(kind string) {
		fmt.Fprintf(f, "%s %d %s %s %s %s %d\n", kind, wire.MonoNow(), node, job, slot, token, pid)
	}
	// Registered atomically: a reader never sees a half-written entry.
	self := filepath.Join(reg, strconv.Itoa(pid))
	tmp := filepath.Join(reg, ".tmp-"+strconv.Itoa(pid))
	os.WriteFile(tmp, []byte(node), 0o644)
	os.Rename(tmp, self)
	entries, _ := os.ReadDir(reg)
	for _, e := range entries {
		other, err := strconv.Atoi(e.Name())
		if err != nil || other == pid {
			continue
		}
		b, err := os.ReadFile(filepath.Join(reg, e.Name()))
		if err != nil || string(b) == node {
			continue
		}
		// Alive, and still a probe (not a reused pid)?
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", other))
		if err == nil && strings.Contains(string(cmd), "hacron-probe") {
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", other)); err == nil && !strings.Contains(string(st), ") Z ") {
				fmt.Fprintf(f, "violation %d %s %s %s %s %d other=%s/%d\n", wire.MonoNow(), node, job, slot, token, pid, b, other)
			}
		}
	}
	logLine("start")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	select {
	case <-time.After(time.Duration(50+rand.Intn(350)) * time.Millisecond):
		logLine("end")
		os.Remove(self)
		os.Exit(0)
	case <-sigs:
		logLine("killed")
		os.Remove(self)
		os.Exit(143)
	}
}

type chaosNode struct {
	name    string
	sock    string
	env     []string
	proxies proxyGroup
	mu      sync.Mutex
	agent   *proc
	paused  bool
	runs    map[*proc]bool // wrappers still running
}

func (n *chaosNode) current() *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.agent
}

type faultEvent struct {
	kind    string
	node    string
	at      time.Time // when the fault began
	healed  time.Time // when it was undone (zero: instantaneous)
	bound   time.Duration
	pauseOf time.Duration // for pauses
}

func TestIntegration_Chaos(t *testing.T) {
	seed := *chaosSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("chaos: seed %d (replay: make chaos SEED=%d), duration %v, tick %v", seed, seed, *chaosDuration, *chaosTick)
	rng := rand.New(rand.NewSource(seed))
	ens := startZK(t, 3)
	dir := t.TempDir()
	ledger, reg := filepath.Join(dir, "ledger"), filepath.Join(dir, "registry")
	if err := os.Mkdir(reg, 0o755); err != nil {
		t.Fatal(err)
	}
	cluster := clusterName(t)
	var nodes []*chaosNode
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		ps, connect := proxyEnsemble(t, ens)
		env := hacronEnv(t, connect, cluster)
		for i, kv := range env {
			if strings.HasPrefix(kv, "HACRON_SESSION_TIMEOUT=") {
				env[i] = "HACRON_SESSION_TIMEOUT=" + chaosTimeout.String()
			}
		}
		n := &chaosNode{name: name, sock: filepath.Join(dir, name+".sock"), env: env, proxies: proxyGroup(ps), runs: map[*proc]bool{}}
		nodes = append(nodes, n)
		n.startAgent(t)
	}
	waitFor(t, 30*time.Second, "an active node", func() bool { return activeNode(nodes) != nil })

	// The simulated cron: every tick, on every node, every job.
	start := time.Now()
	stop := make(chan struct{})
	var cronWG sync.WaitGroup
	probe, err := exeLookPath("hacron-probe")
	if err != nil {
		t.Fatal(err)
	}
	// A job that daemonizes (double fork + setsid) leaves its process
	// group: only a cgroup ends it with its run, so it joins the mix where
	// the agents have one.
	daemonJob := os.Geteuid() == 0 && detectContainment().Kind != contain.PGroup
	t.Logf("chaos: daemonizing job in the mix: %v (root with a writable cgroup hierarchy)", daemonJob)
	for _, n := range nodes {
		cronWG.Add(1)
		go func() {
			defer cronWG.Done()
			tick := time.NewTicker(*chaosTick)
			defer tick.Stop()
			var wg sync.WaitGroup
			defer wg.Wait()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				slot := fmt.Sprintf("t%d", int(time.Since(start) / *chaosTick))
				for j := range chaosJobs {
					r := startProc(t, "run", n.env, "run", "--socket", n.sock, "--name", fmt.Sprintf("job%d", j), "--slot", slot,
						"--kill-grace", "500ms", "--", probe, ledger, reg)
					n.mu.Lock()
					n.runs[r] = true
					n.mu.Unlock()
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-r.done
						n.mu.Lock()
						delete(n.runs, r)
						n.mu.Unlock()
					}()
				}
				if daemonJob {
					// The probe, daemonized, outlives the job's main
					// process; the run ends it (SIGTERM) or it ends first.
					r := startProc(t, "run", n.env, "run", "--socket", n.sock, "--name", "daemon", "--slot", slot,
						"--kill-grace", "500ms", "--", "sh", "-c", `(setsid "$0" "$1" "$2" &); sleep 0.2`, probe, ledger, reg)
					n.mu.Lock()
					n.runs[r] = true
					n.mu.Unlock()
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-r.done
						n.mu.Lock()
						delete(n.runs, r)
						n.mu.Unlock()
					}()
				}
			}
		}()
	}

	// The nemesis.
	var faults []faultEvent
	end := start.Add(*chaosDuration)
	time.Sleep(2 * time.Second)
	for time.Now().Add(chaosTimeout + 8*time.Second).Before(end) {
		f := nemesis(t, rng, ens, nodes)
		if f.kind != "" {
			faults = append(faults, f)
			t.Logf("nemesis: %s on %s at +%v", f.kind, f.node, f.at.Sub(start).Round(time.Millisecond))
		}
		time.Sleep(time.Duration(2000+rng.Intn(2000)) * time.Millisecond)
	}
	time.Sleep(time.Until(end))
	close(stop)
	cronWG.Wait()

	// Everyone resumed and running again, then the ledger is checked.
	for _, n := range nodes {
		n.current().cmd.Process.Signal(syscall.SIGCONT)
	}
	report := checkLedger(t, ledger, start, faults, int(time.Since(start) / *chaosTick))
	t.Log("\n" + report)
	fmt.Println(report)
}

// exeLookPath finds a command testscript put on PATH.
func exeLookPath(name string) (string, error) {
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not on PATH", name)
}

func (n *chaosNode) startAgent(t *testing.T) {
	p := startProc(t, "agent "+n.name, n.env, "agent", "--node", n.name, "--socket", n.sock)
	n.mu.Lock()
	n.agent, n.paused = p, false
	n.mu.Unlock()
}

func (n *chaosNode) state() string {
	info, err := askState(&globals{Socket: n.sock})
	if err != nil {
		return "unknown"
	}
	return info.State
}

func activeNode(nodes []*chaosNode) *chaosNode {
	for _, n := range nodes {
		if n.state() == "active" {
			return n
		}
	}
	return nil
}

// nemesis does one fault at random and undoes it; it returns what it did.
func nemesis(t *testing.T, rng *rand.Rand, ens *zkEnsemble, nodes []*chaosNode) faultEvent {
	target := activeNode(nodes)
	if target == nil {
		target = nodes[rng.Intn(len(nodes))]
	}
	bound := chaosTimeout + time.Second
	f := faultEvent{node: target.name, at: time.Now(), bound: bound}
	switch rng.Intn(8) {
	case 0:
		f.kind = "SIGKILL agent"
		target.current().signal(syscall.SIGKILL)
		target.current().wait(10 * time.Second)
		time.Sleep(chaosTimeout + time.Second)
		target.startAgent(t)
		f.healed = time.Now()
	case 1:
		// Shorter than the lease margin: nothing may happen.
		d := 300 * time.Millisecond
		f.kind, f.pauseOf, f.bound = "SIGSTOP agent "+d.String(), d, 0
		target.current().signal(syscall.SIGSTOP)
		time.Sleep(d)
		target.current().signal(syscall.SIGCONT)
		f.healed = time.Now()
	case 2:
		d := chaosTimeout + time.Second
		f.kind, f.pauseOf = "SIGSTOP agent "+d.String(), d
		target.current().signal(syscall.SIGSTOP)
		time.Sleep(d)
		target.current().signal(syscall.SIGCONT)
		f.healed = time.Now()
	case 3:
		f.kind = "blackhole ZooKeeper link"
		target.proxies.SetMode(proxyBlackhole)
		time.Sleep(chaosTimeout + 2*time.Second)
		target.proxies.SetMode(proxyPass)
		target.proxies.Reset()
		f.healed = time.Now()
	case 4:
		f.kind, f.bound = "reset ZooKeeper connections", 0
		target.proxies.Reset()
	case 5:
		f.kind, f.node = "kill ZooKeeper leader", "zk"
		if l, err := ens.Leader(10 * time.Second); err == nil {
			ens.Kill(l)
			time.Sleep(3 * time.Second)
			if err := ens.Restart(l); err != nil {
				t.Logf("restart zk%d: %v", l+1, err)
			}
		}
		f.healed = time.Now()
		f.bound = 10 * time.Second // ZooKeeper's own election, then reconnects
	case 6:
		f.kind, f.node = "no ZooKeeper quorum", "zk"
		l, _ := ens.Leader(10 * time.Second)
		var killed []int
		for i := range ens.Servers {
			if i != l && len(killed) < 2 {
				ens.Kill(i)
				killed = append(killed, i)
			}
		}
		time.Sleep(3 * time.Second)
		for _, i := range killed {
			if err := ens.Restart(i); err != nil {
				t.Logf("restart zk%d: %v", i+1, err)
			}
		}
		f.healed = time.Now()
		f.bound = 10 * time.Second // measured from the quorum's return
	case 7:
		f.kind, f.bound = "SIGKILL a running hacron run", 0
		target.mu.Lock()
		var victims []*proc
		for r := range target.runs {
			victims = append(victims, r)
		}
		target.mu.Unlock()
		if len(victims) == 0 {
			return faultEvent{}
		}
		victims[rng.Intn(len(victims))].cmd.Process.Signal(syscall.SIGKILL)
	}
	return f
}

type ledgerRun struct {
	node, job, slot string
	token           int64
	pid             int
	start, end      int64 // CLOCK_MONOTONIC ns; end 0: unknown (SIGKILLed)
}

// checkLedger checks the probes' ledger: no probe saw another node's probe
// alive, no two runs of different nodes overlap, no slot ran twice, tokens
// never decrease; and reports availability after each fault.
func checkLedger(t *testing.T, path string, start time.Time, faults []faultEvent, ticks int) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("ledger: %v", err)
	}
	defer f.Close()
	runs := map[int]*ledgerRun{}
	var violations []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 7 {
			continue
		}
		mono, _ := strconv.ParseInt(fl[1], 10, 64)
		token, _ := strconv.ParseInt(fl[5], 10, 64)
		pid, _ := strconv.Atoi(fl[6])
		switch fl[0] {
		case "violation":
			violations = append(violations, sc.Text())
		case "start":
			runs[pid] = &ledgerRun{node: fl[2], job: fl[3], slot: fl[4], token: token, pid: pid, start: mono}
		case "end", "killed":
			if r := runs[pid]; r != nil {
				r.end = mono
			}
		}
	}
	var all []*ledgerRun
	for _, r := range runs {
		all = append(all, r)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start < all[j].start })

	// Overlaps between nodes (runs with a known end), unless a pause of the
	// earlier run's node longer than the lease margin explains them.
	margin := chaosTimeout - lease.Length(chaosTimeout) - 500*time.Millisecond - lease.KillMargin(chaosTimeout)
	var overlaps, explained []string
	for i, a := range all {
		for _, b := range all[i+1:] {
			if a.end == 0 || b.start >= a.end || a.node == b.node {
				continue
			}
			o := fmt.Sprintf("%s %s/%s and %s %s/%s", a.node, a.job, a.slot, b.node, b.job, b.slot)
			pause := time.Duration(0)
			for _, fe := range faults {
				p0, p1 := wire.MonoDeadline(fe.at), wire.MonoDeadline(fe.healed)
				if fe.node == a.node && fe.pauseOf > margin && p0 < a.end && p1 > a.start {
					pause = fe.pauseOf
				}
			}
			if pause > 0 {
				explained = append(explained, fmt.Sprintf("%s (pause %v)", o, pause))
			} else {
				overlaps = append(overlaps, o)
			}
		}
	}
	// Slots run twice.
	slots := map[string][]string{}
	for _, r := range all {
		k := r.job + "/" + r.slot
		slots[k] = append(slots[k], r.node)
	}
	var twice []string
	for k, ns := range slots {
		if len(ns) > 1 {
			twice = append(twice, fmt.Sprintf("%s on %v", k, ns))
		}
	}
	slices.Sort(twice)
	// Fencing tokens in start order.
	var decreasing []string
	for i := 1; i < len(all); i++ {
		if all[i].token < all[i-1].token {
			decreasing = append(decreasing, fmt.Sprintf("%d after %d (%s %s)", all[i].token, all[i-1].token, all[i].node, all[i].slot))
		}
	}
	// Availability: slots that ran, and the first run after each fault.
	var b strings.Builder
	fmt.Fprintf(&b, "| check | result |\n|---|---|\n")
	fmt.Fprintf(&b, "| runs | %d over %d ticks x %d jobs (%.0f%% of slots ran) |\n", len(all), ticks, chaosJobs, 100*float64(len(slots))/float64(max(ticks*chaosJobs, 1)))
	fmt.Fprintf(&b, "| probes that saw another node's probe alive | %d |\n", len(violations))
	fmt.Fprintf(&b, "| overlapping runs of two nodes | %d (explained by a pause longer than the margin %v: %d) |\n", len(overlaps), margin, len(explained))
	fmt.Fprintf(&b, "| slots run twice | %d |\n", len(twice))
	fmt.Fprintf(&b, "| fencing token decreases | %d |\n", len(decreasing))
	fmt.Fprintf(&b, "\n| fault | node | at | healed | next run after | bound |\n|---|---|---|---|---|---|\n")
	for _, fe := range faults {
		from := fe.at
		if !fe.healed.IsZero() && fe.node == "zk" {
			from = fe.healed
		}
		fromMono := wire.MonoDeadline(from)
		next := "-"
		late := ""
		for _, r := range all {
			if r.start >= fromMono {
				gap := time.Duration(r.start - fromMono)
				next = gap.Round(10 * time.Millisecond).String()
				if fe.bound > 0 && gap > fe.bound+*chaosTick {
					late = " (late)"
				}
				break
			}
		}
		healed := "-"
		if !fe.healed.IsZero() {
			healed = "+" + fe.healed.Sub(start).Round(100*time.Millisecond).String()
		}
		bound := "-"
		if fe.bound > 0 {
			bound = (fe.bound + *chaosTick).String()
		}
		fmt.Fprintf(&b, "| %s | %s | +%v | %s | %s%s | %s |\n", fe.kind, fe.node, fe.at.Sub(start).Round(100*time.Millisecond), healed, next, late, bound)
	}
	for _, v := range violations {
		t.Errorf("probe violation: %s", v)
	}
	for _, o := range overlaps {
		t.Errorf("overlapping runs: %s", o)
	}
	for _, s := range twice {
		t.Errorf("slot run twice: %s", s)
	}
	for _, d := range decreasing {
		t.Errorf("fencing token decreased: %s", d)
	}
	for _, e := range explained {
		t.Logf("overlap explained by a pause: %s", e)
	}
	return b.String()
}
