package main

// The fault-injection suite (make chaos; a short run in make test): a
// 3-server ZooKeeper ensemble, three agents each behind its own fault
// proxies, a simulated cron on every node invoking `hacron run --slot` for
// every tick and a mix of jobs, a probe job that checks mutual exclusion on
// its own, a monitor that asks every agent for its state ten times a
// second, a nemesis, and a checker over the probes' ledger, the wrappers'
// exit codes, the monitor's samples and the run records left in ZooKeeper.

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"golang.org/x/sys/unix"

	"hacron/internal/lease"
	"hacron/internal/wire"
)

var (
	chaosDuration = flag.Duration("hacron.chaos", 90*time.Second, "how long the fault-injection suite runs")
	chaosSeed     = flag.Int64("hacron.seed", 0, "the nemesis's seed (0: a new one, printed for replay)")
	chaosTick     = flag.Duration("hacron.tick", time.Second, "the simulated cron's tick")
	chaosDaemon   = flag.Bool("hacron.daemon", true, "include the job that daemonizes (where a run can be contained by a cgroup)")
	// The faults that start ZooKeeper JVMs again (a rolling restart, the
	// leader killed) need minutes of a starved machine to heal when every
	// other test runs beside them: make chaos deals them, the short run in
	// make test leaves them to lifecycle_test.go's rolling restart.
	chaosZKRestarts = flag.Bool("hacron.zkrestarts", false, "include the faults that restart ZooKeeper servers (a rolling restart, killing the leader); make chaos does")
)

const (
	chaosTimeout = 3 * time.Second // the agents' session timeout T
	// chaosSkipExit is every wrapper's --skip-exit: a skipped run is told
	// apart from a job that exited 0.
	chaosSkipExit = 99
	// chaosPoll is how often the monitor asks each agent for its state.
	chaosPoll = 100 * time.Millisecond
	// chaosSettle bounds the wait, after the last run, for run records to
	// be completed and the election to settle.
	chaosSettle = chaosTimeout + 5*time.Second
	// chaosCronJob is the job of the agents' own crontab (hacron agent
	// --crontab): fired by the active agent, no wrapper.
	chaosCronJob = "cronjob"
	// chaosCatchUp is its catch-up window; chaosSteady how long a node
	// must stay active within it for the catch-up to be owed.
	chaosCatchUp = time.Minute
	chaosSteady  = 5 * time.Second
)

// chaosJob is one crontab line of the simulated cron.
type chaosJob struct {
	name          string
	every, offset int      // invoked at the ticks i with i%every == offset
	opts          []string // extra `hacron run` options
	minMS, maxMS  int      // how long the probe runs
	// daemon: the job double-forks the probe into a session of its own
	// (setsid) and exits at once, as a daemonizing script does.
	daemon bool
}

// chaosJobs is the mix: short runs, runs longer than a tick (they are
// running when faults hit), a --no-overlap job that often outlives a tick
// (legitimate skips beside the wedges the checker looks for), and a job
// whose daemonized child must be ended with its run.
func chaosJobs(t *testing.T) []chaosJob {
	jobs := []chaosJob{
		{name: "short", every: 1, minMS: 50, maxMS: 400},
		{name: "long", every: 2, minMS: 1500, maxMS: 4000},
		{name: "nooverlap", every: 1, opts: []string{"--no-overlap"}, minMS: 200, maxMS: 1800},
	}
	daemon := chaosJob{name: "daemon", every: 2, offset: 1, minMS: 1000, maxMS: 4000, daemon: true}
	switch why := chaosContainment(); {
	case !*chaosDaemon:
		t.Logf("chaos: the daemonizing job is left out (-hacron.daemon=false)")
	case why != "":
		// Only a cgroup can end a process that left its process group:
		// elsewhere hacron cannot contain it, and says so.
		t.Logf("chaos: the daemonizing job is left out: %s", why)
	default:
		jobs = append(jobs, daemon)
	}
	return jobs
}

// chaosContainment says why a run cannot be contained by a cgroup here
// ("" when it can: root and a writable cgroup v2 hierarchy or v1 freezer).
func chaosContainment() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if _, err := exec.LookPath("setsid"); err != nil {
		return "no setsid command"
	}
	for _, p := range []string{"/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/unified/cgroup.procs", "/sys/fs/cgroup/freezer"} {
		if unix.Access(p, unix.W_OK) == nil {
			return ""
		}
	}
	return "no writable cgroup hierarchy"
}

// probeMain is the job the simulated cron runs (the test binary under the
// name hacron-probe LEDGER REGISTRY MIN_MS MAX_MS KEY). Independently of
// hacron, it registers itself in a directory all nodes share and reports a
// violation if a probe of another node is alive at the same time; it logs
// start and end (CLOCK_MONOTONIC) with node, job, slot, fencing token and
// the run's key (node/job/slot as the cron named it) to an append-only
// ledger.
func probeMain() {
	ledger, reg, key := os.Args[1], os.Args[2], os.Args[5]
	minMS, _ := strconv.Atoi(os.Args[3])
	maxMS, _ := strconv.Atoi(os.Args[4])
	node, job, slot, token := os.Getenv("HACRON_NODE"), os.Getenv("HACRON_JOB"), os.Getenv("HACRON_SLOT"), os.Getenv("HACRON_FENCING_TOKEN")
	pid := os.Getpid()
	f, err := os.OpenFile(ledger, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		os.Exit(2)
	}
	logLine := func(kind, extra string) {
		fmt.Fprintf(f, "%s %d %s %s %s %s %d %s%s\n", kind, wire.MonoNow(), node, job, slot, token, pid, key, extra)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	// Registered atomically: a reader never sees a half-written entry.
	self := filepath.Join(reg, strconv.Itoa(pid))
	tmp := filepath.Join(reg, ".tmp-"+strconv.Itoa(pid))
	// Unregistered, a probe could not see a violation: it fails instead.
	if os.WriteFile(tmp, []byte(node), 0o644) != nil || os.Rename(tmp, self) != nil {
		os.Exit(2)
	}
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
		if probeAlive(other) {
			logLine("violation", fmt.Sprintf(" other=%s/%d", b, other))
		}
	}
	logLine("start", "")
	select {
	case <-time.After(time.Duration(minMS+rand.Intn(max(maxMS-minMS, 1))) * time.Millisecond):
		logLine("end", "")
		_ = os.Remove(self) // an entry left is of a probe no longer alive
		os.Exit(0)
	case <-sigs:
		logLine("killed", "")
		_ = os.Remove(self) // an entry left is of a probe no longer alive
		os.Exit(143)
	}
}

// probeAlive says whether pid is a live probe (not a zombie, not a reused
// pid).
func probeAlive(pid int) bool {
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmd), "hacron-probe") {
		return false
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(st), ") Z ")
}

type chaosNode struct {
	name    string
	sock    string
	crontab string // the agent's --crontab: the job the agents fire themselves
	env     []string
	proxies proxyGroup
	mu      sync.Mutex
	agent   *proc
	runs    map[*chaosRun]bool // wrappers still running
}

func (n *chaosNode) current() *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.agent
}

// chaosRun is one `hacron run` the simulated cron started.
type chaosRun struct {
	node, job, slot, key string
	log                  string // the wrapper's stdout and stderr
	cmd                  *exec.Cmd
	start, end           int64 // CLOCK_MONOTONIC ns
	code                 int   // exit code; 128+N for signal N
	done                 chan struct{}
}

// faultEvent is one fault of the nemesis.
type faultEvent struct {
	kind    string // what, for the counts per kind
	detail  string // and how, for the table of faults
	node    string // the node it hit, or "zk" for the whole ensemble
	at      time.Time
	healed  time.Time // when it was undone (zero: instantaneous)
	bound   time.Duration
	pauseOf time.Duration // for pauses
	// leaseEnding: the fault may end the lease of its node (of every node
	// for "zk"): the agent killed or paused past the lease, its links
	// blackholed past the lease, ZooKeeper without a quorum. A reset, a
	// rolling restart, a killed ZooKeeper leader or a deleted election
	// node are not: the first three must be ridden out, and the last ends
	// the term, which the token shows.
	leaseEnding bool
	// noQuorum: ZooKeeper had no leader once the fault was undone (a
	// server that did not come back on a loaded machine); no node can be
	// active then, and no leader is not hacron's to answer for.
	noQuorum bool
}

// end is when the fault was over.
func (f faultEvent) end() time.Time {
	if f.healed.IsZero() {
		return f.at
	}
	return f.healed
}

// hits says whether f concerns node.
func (f faultEvent) hits(node string) bool { return f.node == node || f.node == "zk" }

// deleteElectionNode is the kind of the operator's fault.
const deleteElectionNode = "delete the leader's election node"

// Fault kinds, drawn from a shuffled deck so that every kind comes up once
// in each round.
const (
	faultKillAgent = iota
	faultShortStop
	faultLongStop
	faultBlackhole
	faultReset
	faultKillZKLeader
	faultNoQuorum
	faultKillRun
	faultRollingRestart
	faultDeleteElectionNode
	numFaultKinds
)

func TestIntegration_Chaos(t *testing.T) {
	seed := *chaosSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("chaos: seed %d (replay: make chaos SEED=%d), duration %v, tick %v, ZooKeeper restarts %v", seed, seed, *chaosDuration, *chaosTick, *chaosZKRestarts)
	rng := rand.New(rand.NewSource(seed))
	jobs := chaosJobs(t)
	// Generous limits for a follower's sync: under make test the JVMs share
	// two cores with every other test, and ZooKeeper's own defaults (5 s
	// and 2.5 s at this tick) then let an ensemble fall apart for minutes.
	ens := startZK(t, 3, withExtraConfig("initLimit=30", "syncLimit=15"))
	// The operator's and the checker's own client, straight to the
	// servers: the proxies' faults are the agents' alone.
	zkc := rawConn(t, ens.ConnectString())
	dir := t.TempDir()
	ledger, reg, logs := filepath.Join(dir, "ledger"), filepath.Join(dir, "registry"), filepath.Join(dir, "runs")
	for _, d := range []string{reg, logs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cluster := clusterName(t)
	root := "/hacron/" + cluster
	probe, err := exeLookPath("hacron-probe")
	if err != nil {
		t.Fatal(err)
	}
	// The crontab every agent reads: a probe every second, fired by the
	// active agent itself, caught up after a failover.
	tab := filepath.Join(dir, "crontab")
	if err := os.WriteFile(tab, []byte(fmt.Sprintf("# hacron: name=%s catch-up=%v\n@every 1s %s %s %s 200 1500 \"$HACRON_NODE/%s/$HACRON_SLOT\"\n",
		chaosCronJob, chaosCatchUp, probe, ledger, reg, chaosCronJob)), 0o644); err != nil {
		t.Fatal(err)
	}
	var nodes []*chaosNode
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		ps, connect := proxyEnsemble(t, ens)
		env := hacronEnv(t, connect, cluster)
		for i, kv := range env {
			if strings.HasPrefix(kv, "HACRON_SESSION_TIMEOUT=") {
				env[i] = "HACRON_SESSION_TIMEOUT=" + chaosTimeout.String()
			}
		}
		// Every record is kept: the checker looks for each admitted run's.
		env = append(env, "HACRON_HISTORY=1000000")
		n := &chaosNode{name: name, sock: filepath.Join(dir, name+".sock"), crontab: tab, env: env, proxies: proxyGroup(ps), runs: map[*chaosRun]bool{}}
		nodes = append(nodes, n)
		n.startAgent(t)
	}
	waitFor(t, 30*time.Second, "an active node", func() bool { return activeNode(nodes) != nil })

	mon := &chaosMonitor{stop: make(chan struct{})}
	for _, n := range nodes {
		mon.wg.Go(func() { mon.watch(n) })
	}
	beat := "/chaos-heartbeat-" + cluster
	if _, err := zkc.Create(beat, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("create %s: %v", beat, err)
	}
	mon.wg.Go(func() { mon.heartbeat(zkc, beat) })
	t.Cleanup(mon.halt)

	// The simulated cron: every tick, on every node, every job due.
	start := time.Now()
	stop := make(chan struct{})
	var stopOnce sync.Once
	var cronWG sync.WaitGroup
	var runsMu sync.Mutex
	var runs []*chaosRun
	t.Cleanup(func() {
		stopOnce.Do(func() { close(stop) })
		cronWG.Wait()
	})
	for _, n := range nodes {
		cronWG.Go(func() {
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
				i := int(time.Since(start) / *chaosTick)
				slot := fmt.Sprintf("t%d", i)
				for _, job := range jobs {
					if i%job.every != job.offset {
						continue
					}
					r := startChaosRun(t, n, job, slot, filepath.Join(logs, fmt.Sprintf("%s-%s-%s", n.name, job.name, slot)), probe, ledger, reg)
					if r == nil {
						continue
					}
					runsMu.Lock()
					runs = append(runs, r)
					runsMu.Unlock()
					n.mu.Lock()
					n.runs[r] = true
					n.mu.Unlock()
					wg.Go(func() {
						<-r.done
						n.mu.Lock()
						delete(n.runs, r)
						n.mu.Unlock()
					})
				}
			}
		})
	}

	// The nemesis: the whole deck in a random order, again and again. Each
	// fault starts once some node is active again (or the bound for that
	// has passed), so that every fault's recovery is judged on its own.
	var faults []faultEvent
	end := start.Add(*chaosDuration)
	time.Sleep(2 * time.Second)
	var deck []int
	for time.Now().Add(chaosTimeout + 15*time.Second).Before(end) {
		if len(deck) == 0 {
			deck = rng.Perm(numFaultKinds)
		}
		kind := deck[0]
		deck = deck[1:]
		if !*chaosZKRestarts && (kind == faultKillZKLeader || kind == faultRollingRestart) {
			continue
		}
		f := nemesis(t, rng, kind, ens, nodes, zkc, root)
		if _, err := ens.Leader(5 * time.Second); err != nil {
			f.noQuorum = true
			t.Logf("nemesis: no ZooKeeper quorum after the fault: %v", firstLine(err))
		}
		if f.kind != "" {
			faults = append(faults, f)
			t.Logf("nemesis: %s on %s at +%v", f.detail, f.node, f.at.Sub(start).Round(time.Millisecond))
		}
		recovered := time.Now().Add(chaosTimeout + 2*time.Second)
		for activeNode(nodes) == nil && time.Now().Before(recovered) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Duration(2000+rng.Intn(2000)) * time.Millisecond)
	}
	time.Sleep(time.Until(end))
	stopOnce.Do(func() { close(stop) })
	cronWG.Wait()
	cronEnd := wire.MonoNow()
	cronStop := time.Now()

	// Everyone resumed; then the settle: records completed, one election
	// node per agent, every probe gone.
	for _, n := range nodes {
		n.current().cmd.Process.Signal(syscall.SIGCONT)
	}
	// The agents' crontab stops too: an empty table, reloaded at once
	// (the agents would see the change within 2 s anyway).
	if err := os.WriteFile(tab+".new", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tab+".new", tab); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		n.current().cmd.Process.Signal(syscall.SIGHUP)
	}
	var recs chaosRecords
	var election string
	settled, limit := time.Now().Add(chaosSettle), time.Now().Add(time.Minute)
	for {
		recs = readChaosRecords(zkc, root)
		election = strayElectionNodes(zkc, root, nodes)
		done := recs.err == nil && len(recs.open()) == 0 && election == "" && !probesAlive(reg)
		// A whole settle once ZooKeeper takes writes again, and the
		// records must be read, however slow ZooKeeper is.
		if stall := mon.lastStall(); stall != 0 {
			settled = maxTime(settled, wire.FromMono(stall).Add(chaosSettle))
		}
		if done || (time.Now().After(settled) && recs.err == nil) || time.Now().After(limit) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	mon.halt()

	c := &chaosCheck{
		start: start, cronStop: cronStop, jobs: jobs, ticks: int(time.Duration(cronEnd-wire.MonoDeadline(start)) / *chaosTick),
		runs: runs, samples: mon.samples, stalls: mon.stalls, faults: faults, records: recs, election: election, monitorEnd: wire.MonoNow(),
	}
	c.readLedger(t, ledger)
	report := c.check(t)
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

// startChaosRun starts one `hacron run` of job for slot on n. Its output
// goes to logPath, not to the test's log: a failed run would print
// thousands of them.
func startChaosRun(t *testing.T, n *chaosNode, job chaosJob, slot, logPath, probe, ledger, reg string) *chaosRun {
	key := n.name + "/" + job.name + "/" + slot
	args := []string{"run", "--socket", n.sock, "--name", job.name, "--slot", slot, "--kill-grace", "500ms",
		"--skip-exit", strconv.Itoa(chaosSkipExit), "--log-level", "info"}
	args = append(args, job.opts...)
	probeArgs := []string{probe, ledger, reg, strconv.Itoa(job.minMS), strconv.Itoa(job.maxMS), key}
	if job.daemon {
		// Double fork (the subshell and its background child) and a new
		// session: the probe leaves the job's process group, and the job
		// exits 0 at once.
		args = append(args, "--", "sh", "-c", fmt.Sprintf(`(setsid sh -c 'exec %s' &); exit 0`, strings.Join(probeArgs, " ")))
	} else {
		args = append(args, "--")
		args = append(args, probeArgs...)
	}
	out, err := os.Create(logPath)
	if err != nil {
		t.Errorf("chaos: %v", err)
		return nil
	}
	r := &chaosRun{node: n.name, job: job.name, slot: slot, key: key, log: logPath, done: make(chan struct{})}
	r.cmd = exec.Command("hacron", args...)
	r.cmd.Env = n.env
	r.cmd.Stdout, r.cmd.Stderr = out, out
	r.start = wire.MonoNow()
	if err := r.cmd.Start(); err != nil {
		_ = out.Close() // nothing was written
		t.Errorf("chaos: starting hacron run: %v", err)
		return nil
	}
	go func() {
		err := r.cmd.Wait()
		r.end = wire.MonoNow()
		_ = out.Close() // hacron run wrote through its own descriptor
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			r.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				r.code = 128 + int(ws.Signal())
			}
		default:
			r.code = -1
		}
		close(r.done)
	}()
	return r
}

func (r *chaosRun) output() string {
	b, _ := os.ReadFile(r.log)
	return string(b)
}

func (n *chaosNode) startAgent(t *testing.T) {
	p := startProc(t, "agent "+n.name, n.env, "agent", "--node", n.name, "--socket", n.sock, "--crontab", n.crontab)
	n.mu.Lock()
	n.agent = p
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

// probesAlive says whether any probe is still running (daemonized ones
// may outlive their runs).
func probesAlive(reg string) bool {
	entries, _ := os.ReadDir(reg)
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && probeAlive(pid) {
			return true
		}
	}
	return false
}

// chaosSample is one answer of an agent to `hacron state`.
type chaosSample struct {
	node       string
	sent, recv int64 // CLOCK_MONOTONIC ns around the question
	active     bool
	token      int64
	leaseEnd   int64 // a lower bound of the lease's end (CLOCK_MONOTONIC), when active
}

// chaosMonitor asks every agent for its state every chaosPoll.
type chaosMonitor struct {
	mu      sync.Mutex
	samples []chaosSample
	stalls  [][2]int64 // CLOCK_MONOTONIC intervals in which ZooKeeper took no write
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// zkStall is how long a write may take before ZooKeeper counts as taking
// none: no node can prove a lease (T/2) through it.
const zkStall = time.Second

// heartbeat writes to ZooKeeper straight (not through any proxy) every
// chaosPoll and notes when it took no write within zkStall: on a loaded
// machine the ensemble itself stalls, and no node can be active then.
func (m *chaosMonitor) heartbeat(zkc *zk.Conn, path string) {
	for {
		sent := wire.MonoNow()
		_, err := zkc.Set(path, nil, -1)
		if done := wire.MonoNow(); err != nil || time.Duration(done-sent) > zkStall {
			m.mu.Lock()
			m.stalls = append(m.stalls, [2]int64{sent, done})
			m.mu.Unlock()
		}
		select {
		case <-m.stop:
			return
		case <-time.After(chaosPoll):
		}
	}
}

func (m *chaosMonitor) watch(n *chaosNode) {
	for {
		sent := wire.MonoNow()
		info, err := askState(&globals{Socket: n.sock})
		s := chaosSample{node: n.name, sent: sent, recv: wire.MonoNow()}
		if err == nil && info.State == "active" {
			// The agent computed the remaining time after we asked: the
			// lease ends no earlier than sent + remaining.
			s.active, s.token, s.leaseEnd = true, info.Token, sent+info.LeaseRemainingMS*int64(time.Millisecond)
		}
		m.mu.Lock()
		m.samples = append(m.samples, s)
		m.mu.Unlock()
		select {
		case <-m.stop:
			return
		case <-time.After(chaosPoll):
		}
	}
}

// lastStall is when ZooKeeper last took writes again after a stall (0:
// never stalled).
func (m *chaosMonitor) lastStall() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.stalls) == 0 {
		return 0
	}
	return m.stalls[len(m.stalls)-1][1]
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (m *chaosMonitor) halt() {
	m.once.Do(func() { close(m.stop) })
	m.wg.Wait()
}

// nemesis does one fault of the given kind and undoes it; it returns what
// it did (kind "" when there was nothing to do).
func nemesis(t *testing.T, rng *rand.Rand, kind int, ens *zkEnsemble, nodes []*chaosNode, zkc *zk.Conn, root string) faultEvent {
	target := activeNode(nodes)
	if target == nil {
		target = nodes[rng.Intn(len(nodes))]
	}
	bound := chaosTimeout + time.Second
	f := faultEvent{node: target.name, at: time.Now(), bound: bound}
	switch kind {
	case faultKillAgent:
		f.kind, f.leaseEnding = "SIGKILL agent", true
		target.current().signal(syscall.SIGKILL)
		target.current().wait(10 * time.Second)
		time.Sleep(chaosTimeout + time.Second)
		target.startAgent(t)
		f.healed = time.Now()
	case faultShortStop:
		// Shorter than the lease margin: nothing may happen.
		d := 300 * time.Millisecond
		f.kind, f.pauseOf, f.bound = "SIGSTOP agent "+d.String(), d, 0
		target.current().signal(syscall.SIGSTOP)
		time.Sleep(d)
		target.current().signal(syscall.SIGCONT)
		f.healed = time.Now()
	case faultLongStop:
		d := chaosTimeout + time.Second
		f.kind, f.pauseOf, f.leaseEnding = "SIGSTOP agent "+d.String(), d, true
		target.current().signal(syscall.SIGSTOP)
		time.Sleep(d)
		target.current().signal(syscall.SIGCONT)
		f.healed = time.Now()
	case faultBlackhole:
		f.kind, f.leaseEnding = "blackhole ZooKeeper links", true
		target.proxies.SetMode(proxyBlackhole)
		time.Sleep(chaosTimeout + 2*time.Second)
		target.proxies.SetMode(proxyPass)
		target.proxies.Reset()
		f.healed = time.Now()
	case faultReset:
		// Every link reset, then down for less than a third of the lease:
		// a blip the lease must ride out.
		d := time.Duration(rng.Intn(400)) * time.Millisecond
		f.kind, f.bound = "reset ZooKeeper connections", 0
		f.detail = fmt.Sprintf("%s, down %v", f.kind, d.Round(10*time.Millisecond))
		target.proxies.Reset()
		if d > 0 {
			target.proxies.SetMode(proxyBlackhole)
			time.Sleep(d)
			target.proxies.SetMode(proxyPass)
			target.proxies.Reset()
			f.healed = time.Now()
		}
	case faultKillZKLeader:
		f.kind, f.node = "kill ZooKeeper leader", "zk"
		if l, err := ens.Leader(10 * time.Second); err == nil {
			if err := ens.Kill(l); err != nil {
				t.Errorf("chaos: %v", err)
			}
			time.Sleep(3 * time.Second)
			restartZK(t, ens, l)
		}
		f.healed = time.Now()
		f.bound = 10 * time.Second // ZooKeeper's own election, then reconnects
	case faultNoQuorum:
		f.kind, f.node, f.leaseEnding = "no ZooKeeper quorum", "zk", true
		// Two servers hung (SIGSTOP) for 3 s: the leader loses its quorum
		// as it would to two crashed servers, and the ensemble comes back
		// without two JVMs to start on a busy machine (the rolling restart
		// and the leader's kill restart servers).
		l, _ := ens.Leader(10 * time.Second)
		var paused []int
		for i := range ens.Servers {
			if i != l && len(paused) < 2 {
				if err := ens.Pause(i); err != nil {
					t.Errorf("chaos: %v", err)
				}
				paused = append(paused, i)
			}
		}
		time.Sleep(3 * time.Second)
		for _, i := range paused {
			if err := ens.Resume(i); err != nil {
				t.Errorf("chaos: %v", err)
			}
		}
		f.healed = time.Now()
		f.bound = 10 * time.Second // measured from the quorum's return
	case faultKillRun:
		f.kind, f.bound = "SIGKILL a running hacron run", 0
		target.mu.Lock()
		var victims []*chaosRun
		for r := range target.runs {
			victims = append(victims, r)
		}
		target.mu.Unlock()
		if len(victims) == 0 {
			return faultEvent{}
		}
		slices.SortFunc(victims, func(a, b *chaosRun) int { return strings.Compare(a.key, b.key) })
		victims[rng.Intn(len(victims))].cmd.Process.Signal(syscall.SIGKILL)
	case faultRollingRestart:
		// Routine maintenance: each server stopped (SIGTERM) and started
		// again in turn, the leader last, each rejoining before the next.
		f.kind, f.node = "ZooKeeper rolling restart", "zk"
		l, err := ens.Leader(10 * time.Second)
		if err != nil {
			t.Logf("rolling restart: %v", err)
			return faultEvent{}
		}
		var order []int
		for i := range ens.Servers {
			if i != l {
				order = append(order, i)
			}
		}
		for _, i := range append(order, l) {
			if err := ens.Stop(i); err != nil {
				t.Errorf("chaos: %v", err)
			}
			if !restartZK(t, ens, i) {
				// As an operator would: not the next server while
				// one is down.
				t.Logf("rolling restart: stopped at zk%d", i+1)
				break
			}
			if err := ens.WaitQuorum(30 * time.Second); err != nil {
				t.Logf("rolling restart: %v", firstLine(err))
			}
		}
		f.healed = time.Now()
		f.bound = 10 * time.Second
	case faultDeleteElectionNode:
		// An operator's `zkCli.sh delete` of the leader's election node.
		f.kind = deleteElectionNode
		path, node, err := leaderElectionNode(zkc, root+"/election")
		if err == nil {
			f.at = time.Now()
			err = zkc.Delete(path, -1)
		}
		if err != nil {
			t.Logf("delete the leader's election node: %v", err)
			return faultEvent{}
		}
		f.node = node
	}
	if f.detail == "" {
		f.detail = f.kind
	}
	return f
}

// restartZK starts server i again. A JVM that does not serve within the
// harness's bound (a loaded machine) is started anew: the next fault needs
// the whole ensemble.
func restartZK(t *testing.T, ens *zkEnsemble, i int) bool {
	// Long: under make test the JVM starts beside every other test; and
	// once: a second JVM would only start the wait over.
	if err := ens.RestartWithin(i, 2*time.Minute); err != nil {
		t.Logf("restart zk%d: %v", i+1, firstLine(err))
		return false
	}
	return true
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// electionNodes returns the candidates' node names under parent, lowest
// sequence number first.
func electionNodes(zkc *zk.Conn, parent string) ([]string, error) {
	children, _, err := zkc.Children(parent)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range parseCandidates(children, nil) {
		names = append(names, c.name)
	}
	return names, nil
}

// leaderElectionNode returns the lowest candidate's path and the node id
// its data names.
func leaderElectionNode(zkc *zk.Conn, parent string) (path, node string, err error) {
	names, err := electionNodes(zkc, parent)
	if err != nil {
		return "", "", err
	}
	if len(names) == 0 {
		return "", "", errors.New("no candidate in the election")
	}
	path = parent + "/" + names[0]
	data, _, err := zkc.Get(path)
	if err != nil {
		return "", "", err
	}
	var m struct {
		Node string `json:"node"`
	}
	if json.Unmarshal(data, &m) != nil || m.Node == "" {
		m.Node = "?"
	}
	return path, m.Node, nil
}

// strayElectionNodes checks that the election holds exactly one node per
// live agent, each owned by that agent's session; "" when it does.
func strayElectionNodes(zkc *zk.Conn, root string, nodes []*chaosNode) string {
	sessions := map[int64]string{}
	for _, n := range nodes {
		info, err := askState(&globals{Socket: n.sock})
		if err != nil {
			return fmt.Sprintf("%s did not answer: %v", n.name, err)
		}
		id, err := strconv.ParseInt(strings.TrimPrefix(info.SessionID, "0x"), 16, 64)
		if err != nil || id == 0 {
			return fmt.Sprintf("%s has no session (%q)", n.name, info.SessionID)
		}
		sessions[id] = n.name
	}
	names, err := electionNodes(zkc, root+"/election")
	if err != nil {
		return err.Error()
	}
	var problems []string
	owned := map[string]int{}
	for _, name := range names {
		ok, st, err := zkc.Exists(root + "/election/" + name)
		if err != nil || !ok {
			continue
		}
		owner, live := sessions[st.EphemeralOwner]
		if !live {
			problems = append(problems, fmt.Sprintf("%s of session 0x%x, no live agent's", name, st.EphemeralOwner))
			continue
		}
		owned[owner]++
	}
	for _, n := range nodes {
		if owned[n.name] != 1 {
			problems = append(problems, fmt.Sprintf("%s has %d", n.name, owned[n.name]))
		}
	}
	return strings.Join(problems, "; ")
}

// chaosRecord is a run record as documented: the fields the checker needs.
type chaosRecord struct {
	path   string
	base   string // the job's name without a user's prefix
	Job    string `json:"job"`
	Node   string `json:"node"`
	Slot   string `json:"slot"`
	End    string `json:"end"`
	Result string `json:"result"`
}

type chaosRecords struct {
	byRun map[string]chaosRecord // "job/slot", the job without a user's prefix
	all   []chaosRecord
	err   error
}

// open returns the records without an end.
func (rs chaosRecords) open() []chaosRecord {
	var out []chaosRecord
	for _, r := range rs.all {
		if r.End == "" {
			out = append(out, r)
		}
	}
	return out
}

// readChaosRecords reads every run record of the cluster.
func readChaosRecords(zkc *zk.Conn, root string) chaosRecords {
	rs := chaosRecords{byRun: map[string]chaosRecord{}}
	jobs, _, err := zkc.Children(root + "/jobs")
	if errors.Is(err, zk.ErrNoNode) {
		return rs
	}
	if err != nil {
		rs.err = err
		return rs
	}
	for _, job := range jobs {
		runs, _, err := zkc.Children(root + "/jobs/" + job + "/runs")
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			rs.err = err
			return rs
		}
		for _, name := range runs {
			path := root + "/jobs/" + job + "/runs/" + name
			data, _, err := zkc.Get(path)
			if errors.Is(err, zk.ErrNoNode) {
				continue
			}
			if err != nil {
				rs.err = err
				return rs
			}
			r := chaosRecord{path: path}
			if json.Unmarshal(data, &r) != nil {
				continue
			}
			r.base = r.Job[strings.LastIndexByte(r.Job, '.')+1:] // a non-root user's prefix
			rs.byRun[r.base+"/"+r.Slot] = r
			rs.all = append(rs.all, r)
		}
	}
	return rs
}

type ledgerRun struct {
	node, job, slot, key string
	token                int64
	pid                  int
	start, end           int64 // CLOCK_MONOTONIC ns; end 0: unknown (SIGKILLed)
	killed               bool  // ended by SIGTERM
}

// chaosCheck holds everything a chaos run left, and judges it.
type chaosCheck struct {
	start      time.Time
	cronStop   time.Time // when the simulated cron and the agents' crontab were stopped
	jobs       []chaosJob
	ticks      int
	runs       []*chaosRun
	samples    []chaosSample
	stalls     [][2]int64 // chaosMonitor.stalls
	faults     []faultEvent
	records    chaosRecords
	election   string // strayElectionNodes at the end
	monitorEnd int64

	probes     map[string]*ledgerRun // by key
	all        []*ledgerRun          // by start
	violations []probeViolation
}

// probeViolation is a probe that saw another node's probe alive.
type probeViolation struct {
	line      string
	at        int64 // CLOCK_MONOTONIC
	otherNode string
	otherPID  int
}

func (c *chaosCheck) readLedger(t *testing.T, path string) {
	c.probes = map[string]*ledgerRun{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return // no probe ever started: the report says so
	}
	if err != nil {
		t.Fatalf("ledger: %v", err)
	}
	defer func() { _ = f.Close() }() // only read
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 {
			continue
		}
		mono, _ := strconv.ParseInt(fl[1], 10, 64)
		token, _ := strconv.ParseInt(fl[5], 10, 64)
		pid, _ := strconv.Atoi(fl[6])
		key := fl[7]
		switch fl[0] {
		case "violation":
			v := probeViolation{line: sc.Text(), at: mono}
			if len(fl) > 8 {
				other := strings.TrimPrefix(fl[8], "other=")
				if i := strings.LastIndexByte(other, '/'); i > 0 {
					v.otherNode = other[:i]
					v.otherPID, _ = strconv.Atoi(other[i+1:])
				}
			}
			c.violations = append(c.violations, v)
		case "start":
			c.probes[key] = &ledgerRun{node: fl[2], job: fl[3], slot: fl[4], key: key, token: token, pid: pid, start: mono}
		case "end", "killed":
			if r := c.probes[key]; r != nil {
				r.end, r.killed = mono, fl[0] == "killed"
			}
		}
	}
	for _, r := range c.probes {
		c.all = append(c.all, r)
	}
	sort.Slice(c.all, func(i, j int) bool { return c.all[i].start < c.all[j].start })
}

// faultAt is the fault in progress at mono time x, or else the last one
// that began before it: what an event is attributed to.
func (c *chaosCheck) faultAt(x int64) string {
	kind, latest := "(no fault yet)", int64(0)
	for _, f := range c.faults {
		if at := wire.MonoDeadline(f.at); at <= x && at > latest {
			kind, latest = f.kind, at
		}
	}
	return kind
}

// chaosEvent is something the checker found, with the fault it is
// attributed to (faultAt).
type chaosEvent struct{ what, fault string }

func (e chaosEvent) String() string { return e.what + " during " + e.fault }

// A spurious kill is a run that hacron ended with 123 (leadership lost)
// although its node's lease did not end and its term went on: the node
// was seen active with the run's fencing token after the kill (so no new
// session and no new election node: no step-down, no expiry, no deleted
// node), the leases the monitor saw of that token cover, without a gap,
// the time from the job's start to the kill (each answer proves the lease
// from when it was received to its end: a lease only grows within a
// term), and no fault that may end a lease (leaseEnding) hit the node
// between the run's start and the kill. Contract: no job is
// ended by anything but its own exit, --timeout, a forwarded signal or
// the end of its node's lease. A 123 with the token kept whose lease the
// monitor could not prove valid (the lease may have lapsed: no quorum
// write for T/2, a loaded machine, a slow ZooKeeper election) is counted
// apart and does not fail the run.
type killVerdicts struct {
	spurious, lapsed             []chaosEvent
	byFault, byNewToken, noToken []string
}

var (
	startToken  = regexp.MustCompile(`status=start\b.*\btoken=([0-9]+)`)
	terminating = regexp.MustCompile(`msg="([^"]*terminating[^"]*)"`)
)

func (c *chaosCheck) kills() killVerdicts {
	var v killVerdicts
	for _, r := range c.runs {
		if r.code != exitLost {
			continue
		}
		var token int64
		ranFrom, killAt := r.start, r.end
		if p := c.probes[r.key]; p != nil {
			token, ranFrom = p.token, p.start
			if p.killed {
				killAt = p.end
			}
		} else if m := startToken.FindStringSubmatch(r.output()); m != nil {
			token, _ = strconv.ParseInt(m[1], 10, 64)
		}
		c.judgeKill(&v, r.node, fmt.Sprintf("%s %s/%s", r.node, r.job, r.slot), token, r.start, ranFrom, killAt, r.output())
	}
	// The agents' own crontab runs have no wrapper: a probe that was
	// terminated is the run's end.
	for _, p := range c.all {
		if p.job == chaosCronJob && p.killed {
			c.judgeKill(&v, p.node, fmt.Sprintf("%s %s/%s", p.node, p.job, p.slot), p.token, p.start, p.start, p.end, "")
		}
	}
	return v
}

// judgeKill sorts one run that hacron ended before its job did: by a
// lease-ending fault, by a new token, with the lease not proven valid, or
// spurious (the lease valid throughout, the token kept).
func (c *chaosCheck) judgeKill(v *killVerdicts, node, desc string, token, start, ranFrom, killAt int64, output string) {
	if token == 0 {
		v.noToken = append(v.noToken, desc)
		return
	}
	for _, f := range c.faults {
		// A lease may end up to the fault's end; its jobs get their
		// grace after that, and a term may end a moment later still.
		if f.leaseEnding && f.hits(node) && wire.MonoDeadline(f.at) <= killAt && wire.MonoDeadline(f.end())+int64(chaosTimeout) >= start {
			v.byFault = append(v.byFault, desc+" ("+f.kind+")")
			return
		}
	}
	kept := false
	var valid [][2]int64
	for _, s := range c.samples {
		if s.node != node || !s.active || s.token != token {
			continue
		}
		kept = kept || s.sent >= killAt
		valid = append(valid, [2]int64{s.recv, s.leaseEnd})
	}
	switch {
	case !kept:
		v.byNewToken = append(v.byNewToken, desc)
	case covers(valid, ranFrom, killAt):
		// How the wrapper decided, as it logged it: a clue, not a
		// criterion.
		how := ""
		if m := terminating.FindStringSubmatch(output); m != nil {
			how = " (" + m[1] + ")"
		}
		v.spurious = append(v.spurious, chaosEvent{fmt.Sprintf("%s killed at +%v%s", desc, c.since(killAt), how), c.faultAt(killAt)})
	default:
		v.lapsed = append(v.lapsed, chaosEvent{fmt.Sprintf("%s killed at +%v", desc, c.since(killAt)), c.faultAt(killAt)})
	}
}

// covers says whether the intervals, sorted by start, cover [from, to]
// without a gap.
func covers(intervals [][2]int64, from, to int64) bool {
	reached := from
	for _, iv := range intervals {
		if iv[0] > reached {
			break
		}
		reached = max(reached, iv[1])
	}
	return reached >= to
}

func (c *chaosCheck) since(mono int64) time.Duration {
	return time.Duration(mono - wire.MonoDeadline(c.start)).Round(10 * time.Millisecond)
}

// A lost outcome is a run whose record is left without an end once the
// run is over (read after the settle that follows the last run: every
// agent is up, every fault healed), or a run whose probe started but that
// has no record at all. Contract: nothing of a run is lost; records are
// completed, with result unknown if need be, and status shows no phantom
// running rows: a record made by an admission whose answer never reached
// the wrapper (exit 125, nothing ran) counts too, and says so.
func (c *chaosCheck) lostOutcomes() []string {
	var lost []string
	if c.records.err != nil {
		return []string{"reading the run records: " + c.records.err.Error()}
	}
	byKey := map[string]*chaosRun{}
	for _, r := range c.runs {
		byKey[r.key] = r
	}
	for _, rec := range c.records.open() {
		what := fmt.Sprintf("%s (node %s): no end", rec.path, rec.Node)
		// An admission whose answer was lost: the job never ran, yet the
		// record (and a --no-overlap marker) were made; status shows it
		// running for ever.
		if r := byKey[rec.Node+"/"+rec.base+"/"+rec.Slot]; r != nil && r.code == exitUsage && c.probes[r.key] == nil {
			what += ", the job never ran (hacron run exited 125)"
		}
		lost = append(lost, what)
	}
	for _, p := range c.all {
		if p.job == chaosCronJob {
			if rec, ok := c.records.byRun[p.job+"/"+p.slot]; !ok || rec.Node != p.node || rec.Result == resultMissed {
				lost = append(lost, fmt.Sprintf("%s ran (token %d) but has no record of its run", p.key, p.token))
			}
			continue
		}
		r := byKey[p.key]
		if r == nil {
			continue
		}
		if rec, ok := c.records.byRun[r.job+"/"+r.slot]; !ok || rec.Node != r.node {
			lost = append(lost, fmt.Sprintf("%s ran (token %d) but has no record", p.key, p.token))
		}
	}
	slices.Sort(lost)
	return lost
}

// A wedge is a --no-overlap run skipped as "still running elsewhere"
// although no run of that job was running anywhere: every other run of the
// job that may have held the running marker (any wrapper that was not
// skipped) had ended, with its probe, more than a second before the
// skipped wrapper started, and no fault on its node or on ZooKeeper could
// still be delaying the marker's removal (T + 1 s after such a fault, 1 s
// after ZooKeeper took writes again).
// Contract: no job stays skipped by a marker of a finished run.
func (c *chaosCheck) wedges() (wedged []chaosEvent, skipped int) {
	second := int64(time.Second)
	for _, job := range c.jobs {
		if !slices.Contains(job.opts, "--no-overlap") {
			continue
		}
		var held []*chaosRun // runs that may have held the marker
		var skips []*chaosRun
		for _, r := range c.runs {
			switch {
			case r.job != job.name:
			case r.code != chaosSkipExit:
				held = append(held, r)
			case strings.Contains(r.output(), skipRunning):
				skips = append(skips, r)
			}
		}
		skipped += len(skips)
		holdUntil := map[*chaosRun]int64{}
		for _, r := range held {
			h := r.end
			if p := c.probes[r.key]; p != nil {
				if p.end != 0 {
					h = max(h, p.end)
				} else {
					h = max(h, p.start+int64(job.maxMS)*int64(time.Millisecond))
				}
			}
			h += second
			for _, f := range c.faults {
				if f.hits(r.node) && wire.MonoDeadline(f.at) <= h && wire.MonoDeadline(f.end()) >= r.start {
					h = max(h, wire.MonoDeadline(f.end())+int64(chaosTimeout)+second)
				}
			}
			// A ZooKeeper that takes no write delays the marker's
			// removal as much (stalls are in time order).
			for _, st := range c.stalls {
				if st[0] <= h && st[1] >= r.end {
					h = max(h, st[1]+second)
				}
			}
			holdUntil[r] = h
		}
		for _, s := range skips {
			excused := false
			for _, r := range held {
				if r.start <= s.end && holdUntil[r] >= s.start {
					excused = true
					break
				}
			}
			if !excused {
				wedged = append(wedged, chaosEvent{fmt.Sprintf("%s %s/%s skipped at +%v", s.node, s.job, s.slot, c.since(s.start)), c.faultAt(s.start)})
			}
		}
	}
	return wedged, skipped
}

// noLeader is, for each fault, how long after it healed (or happened,
// when instantaneous) the monitor first saw some node active, how much of
// that ZooKeeper itself took no write (stalled), and whether the rest
// broke the bound: no active node for longer than T + 1 s after a fault
// healed, to the monitor's resolution (two polls). Contract: the cluster
// never wedges. A ZooKeeper starved on a loaded machine is not hacron's
// to answer for.
func (c *chaosCheck) noLeader(f faultEvent) (gap, stalled time.Duration, late bool) {
	if f.noQuorum {
		return 0, 0, false
	}
	from := wire.MonoDeadline(f.end())
	first := c.monitorEnd
	// A node may have become active right after its previous answer was
	// asked for: a starved agent answers late.
	prev := map[string]int64{}
	for _, s := range c.samples {
		if s.active && s.recv >= from {
			first = min(first, max(prev[s.node], from))
		}
		prev[s.node] = s.sent
	}
	gap = time.Duration(first - from)
	stalled = overlap(c.stalls, from, first)
	return gap, stalled, gap-stalled > chaosTimeout+time.Second+2*chaosPoll
}

// overlap is how much of [from, to] the intervals cover.
func overlap(intervals [][2]int64, from, to int64) time.Duration {
	var clipped [][2]int64
	for _, iv := range intervals {
		if a, b := max(iv[0], from), min(iv[1], to); a < b {
			clipped = append(clipped, [2]int64{a, b})
		}
	}
	slices.SortFunc(clipped, func(x, y [2]int64) int { return cmp.Compare(x[0], y[0]) })
	var total, end int64
	for _, iv := range clipped {
		if iv[1] <= end {
			continue
		}
		total += iv[1] - max(iv[0], end)
		end = iv[1]
	}
	return time.Duration(total)
}

// deletedUnder says whether an operator deleted the election node of a's
// node while a ran, and x falls before a's lease could have ended after
// that (T/2, the kill grace, the margin): until the old leader hears of
// the deletion, its jobs run beside the new leader's. hacron cannot
// prevent that; it bounds it.
func (c *chaosCheck) deletedUnder(a *ledgerRun, x int64) bool {
	window := int64(lease.Length(chaosTimeout) + 500*time.Millisecond + lease.KillMargin(chaosTimeout))
	for _, f := range c.faults {
		at := wire.MonoDeadline(f.at)
		if f.kind == deleteElectionNode && f.node == a.node && a.start < at && x <= at+window {
			return true
		}
	}
	return false
}

// probeByPID is the probe of node with pid that had started by x.
func (c *chaosCheck) probeByPID(node string, pid int, x int64) *ledgerRun {
	var found *ledgerRun
	for _, r := range c.all {
		if r.node == node && r.pid == pid && r.start <= x {
			found = r
		}
	}
	return found
}

// outlived lists probes still alive when their `hacron run` had exited:
// a run is over when all of its processes are gone (the daemonized probe
// left the job's process group; only a cgroup holds it). A SIGKILLed
// wrapper is not judged: its job goes on under the agent. When the agent
// that holds the run's cgroup was SIGKILLed during the run, the wrapper
// can end only its process group: what left it is ended by the restarted
// agent before that agent joins the election, so such a probe must be
// gone within T + 2 s of the restart instead.
func (c *chaosCheck) outlived() []string {
	var out []string
	for _, r := range c.runs {
		p := c.probes[r.key]
		if p == nil || p.end == 0 || r.code == 128+int(syscall.SIGKILL) {
			continue
		}
		limit := r.end
		for _, fe := range c.faults {
			if fe.kind == "SIGKILL agent" && fe.node == r.node && !fe.healed.IsZero() &&
				wire.MonoDeadline(fe.at) >= r.start && wire.MonoDeadline(fe.at) <= r.end {
				limit = max(limit, wire.MonoDeadline(fe.healed.Add(chaosTimeout+2*time.Second)))
			}
		}
		if p.end > limit {
			out = append(out, fmt.Sprintf("%s by %v", r.key, time.Duration(p.end-r.end).Round(time.Millisecond)))
		}
	}
	// A crontab run is over when its record says so: the agent writes the
	// end once every process of the run is gone.
	for _, p := range c.all {
		rec, ok := c.records.byRun[p.job+"/"+p.slot]
		if p.job != chaosCronJob || p.end == 0 || !ok || rec.Node != p.node || rec.Result == resultUnknown {
			continue
		}
		end, err := time.Parse(time.RFC3339Nano, rec.End)
		if err != nil {
			continue
		}
		// Wall time to the probes' clock, with room for the conversion.
		if limit := wire.MonoDeadline(end) + int64(50*time.Millisecond); p.end > limit {
			out = append(out, fmt.Sprintf("%s by %v after its record's end", p.key, time.Duration(p.end-limit).Round(time.Millisecond)))
		}
	}
	slices.Sort(out)
	return out
}

// unrecordedSlots lists the slots of the agents' crontab job, from the
// first one with a record to the last, that have no record: every slot is
// either run or, after the catch-up, recorded as missed. A slot after
// which no node was steadily active within the catch-up window (ZooKeeper
// without a quorum, or starved, for longer) is past catching up: counted
// apart, not failed.
func (c *chaosCheck) unrecordedSlots() (unrecorded []string, missed, pastWindow int) {
	var first, last time.Time
	for _, r := range c.records.all {
		if r.base != chaosCronJob {
			continue
		}
		if r.Result == resultMissed {
			missed++
		}
		at, err := time.Parse(time.RFC3339, r.Slot)
		if err != nil {
			continue
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
		last = maxTime(last, at)
	}
	// A slot whose firing failed just before the stop had no catch-up
	// pass left to record it (one comes within a few seconds).
	if !c.cronStop.IsZero() && last.After(c.cronStop.Add(-6*time.Second)) {
		last = c.cronStop.Add(-6 * time.Second)
	}
	for at := first; !first.IsZero() && !at.After(last); at = at.Add(time.Second) {
		if _, ok := c.records.byRun[chaosCronJob+"/"+at.UTC().Format(time.RFC3339)]; ok {
			continue
		}
		if !c.activeWithin(at, at.Add(chaosCatchUp-5*time.Second)) {
			pastWindow++
			continue
		}
		unrecorded = append(unrecorded, at.UTC().Format(time.RFC3339))
	}
	return unrecorded, missed, pastWindow
}

// activeWithin says whether the monitor saw some node active without a
// break for at least chaosSteady between from and to: long enough for a
// catch-up to read and write (a node that is active for a moment at a
// time, on a starved machine, cannot be asked to).
func (c *chaosCheck) activeWithin(from, to time.Time) bool {
	f, l := wire.MonoDeadline(from), wire.MonoDeadline(to)
	since := map[string]int64{} // per node, the start of its current active stretch
	for _, s := range c.samples {
		if s.sent < f || s.sent > l {
			continue
		}
		if !s.active {
			delete(since, s.node)
			continue
		}
		if st, ok := since[s.node]; !ok {
			since[s.node] = s.sent
		} else if s.sent-st >= int64(chaosSteady) {
			return true
		}
	}
	return false
}

// check runs every check, fails the test on any violation, and returns
// the report.
func (c *chaosCheck) check(t *testing.T) string {
	// Overlaps between nodes (runs with a known end), unless a pause of the
	// earlier run's node longer than the lease margin explains them.
	margin := chaosTimeout - lease.Length(chaosTimeout) - 500*time.Millisecond - lease.KillMargin(chaosTimeout)
	var overlaps, explained []string
	for i, a := range c.all {
		for _, b := range c.all[i+1:] {
			if a.end == 0 || b.start >= a.end || a.node == b.node {
				continue
			}
			o := fmt.Sprintf("%s %s/%s and %s %s/%s", a.node, a.job, a.slot, b.node, b.job, b.slot)
			pause := time.Duration(0)
			for _, fe := range c.faults {
				p0, p1 := wire.MonoDeadline(fe.at), wire.MonoDeadline(fe.healed)
				if fe.node == a.node && fe.pauseOf > margin && p0 < a.end && p1 > a.start {
					pause = fe.pauseOf
				}
			}
			switch {
			case pause > 0:
				explained = append(explained, fmt.Sprintf("%s (pause %v)", o, pause))
			case c.deletedUnder(a, b.start):
				explained = append(explained, o+" (its election node deleted by hand)")
			default:
				overlaps = append(overlaps, o)
			}
		}
	}
	var violations []string
	for _, v := range c.violations {
		if a := c.probeByPID(v.otherNode, v.otherPID, v.at); a != nil && c.deletedUnder(a, v.at) {
			explained = append(explained, v.line+" (its election node deleted by hand)")
		} else {
			violations = append(violations, v.line)
		}
	}
	outlived := c.outlived()
	// Slots run twice.
	slots := map[string][]string{}
	for _, r := range c.all {
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
	for i := 1; i < len(c.all); i++ {
		if c.all[i].token < c.all[i-1].token {
			decreasing = append(decreasing, fmt.Sprintf("%d after %d (%s %s)", c.all[i].token, c.all[i-1].token, c.all[i].node, c.all[i].slot))
		}
	}
	kills := c.kills()
	lost := c.lostOutcomes()
	unrecorded, missedSlots, pastWindow := c.unrecordedSlots()
	wedged, skippedRunning := c.wedges()
	var races []string
	codes := map[int]int{}
	for _, r := range c.runs {
		codes[r.code]++
		if strings.Contains(r.output(), "DATA RACE") {
			races = append(races, r.key+":\n"+r.output())
		}
	}

	// Per fault and per kind.
	type kindStats struct {
		count, noLeader, spurious, wedges, noNextRun int
		longestActive, longestRun                    time.Duration
	}
	var kinds []string
	perKind := map[string]*kindStats{}
	var leaderless []string
	var b strings.Builder
	var faultRows strings.Builder
	fmt.Fprintf(&faultRows, "\n| fault | node | at | healed | an active node after | next run after | bound |\n|---|---|---|---|---|---|---|\n")
	for _, fe := range c.faults {
		ks := perKind[fe.kind]
		if ks == nil {
			ks = &kindStats{}
			perKind[fe.kind] = ks
			kinds = append(kinds, fe.kind)
		}
		ks.count++
		gap, stalled, late := c.noLeader(fe)
		ks.longestActive = max(ks.longestActive, gap)
		activeAfter := gap.Round(10 * time.Millisecond).String()
		if stalled > 0 {
			activeAfter += fmt.Sprintf(" (ZooKeeper stalled %v of it)", stalled.Round(10*time.Millisecond))
		}
		if fe.noQuorum {
			activeAfter = "- (ZooKeeper had no quorum)"
		}
		if late {
			ks.noLeader++
			activeAfter += " (no leader)"
			leaderless = append(leaderless, fmt.Sprintf("%s on %s at +%v: no active node for %v after it healed (ZooKeeper stalled %v of it)",
				fe.detail, fe.node, fe.at.Sub(c.start).Round(100*time.Millisecond), gap.Round(10*time.Millisecond), stalled.Round(10*time.Millisecond)))
		}
		from := fe.at
		if !fe.healed.IsZero() && fe.node == "zk" {
			from = fe.healed
		}
		fromMono := wire.MonoDeadline(from)
		next := "-"
		lateRun := ""
		for _, r := range c.all {
			if r.start >= fromMono {
				gap := time.Duration(r.start - fromMono)
				ks.longestRun = max(ks.longestRun, gap)
				next = gap.Round(10 * time.Millisecond).String()
				if fe.bound > 0 && gap > fe.bound+*chaosTick {
					lateRun = " (late)"
				}
				break
			}
		}
		if next == "-" {
			ks.noNextRun++
		}
		healed := "-"
		if !fe.healed.IsZero() {
			healed = "+" + fe.healed.Sub(c.start).Round(100*time.Millisecond).String()
		}
		bound := "-"
		if fe.bound > 0 {
			bound = (fe.bound + *chaosTick).String()
		}
		fmt.Fprintf(&faultRows, "| %s | %s | +%v | %s | %s | %s%s | %s |\n", fe.detail, fe.node, fe.at.Sub(c.start).Round(100*time.Millisecond), healed, activeAfter, next, lateRun, bound)
	}
	for _, e := range kills.spurious {
		if ks := perKind[e.fault]; ks != nil {
			ks.spurious++
		}
	}
	for _, e := range wedged {
		if ks := perKind[e.fault]; ks != nil {
			ks.wedges++
		}
	}

	expected := 0
	for _, j := range c.jobs {
		expected += (c.ticks + j.every - 1 - j.offset) / j.every
	}
	var names []string
	for _, j := range c.jobs {
		names = append(names, j.name)
	}
	var codeList []string
	for _, code := range slices.Sorted(maps.Keys(codes)) {
		name := strconv.Itoa(code)
		if code == chaosSkipExit {
			name = "skipped"
		}
		codeList = append(codeList, fmt.Sprintf("%s: %d", name, codes[code]))
	}
	fmt.Fprintf(&b, "| check | result |\n|---|---|\n")
	wrapped := 0
	for k := range slots {
		if !strings.HasPrefix(k, chaosCronJob+"/") {
			wrapped++
		}
	}
	fmt.Fprintf(&b, "| runs | %d over %d ticks, jobs %s (%.0f%% of their slots ran) and the agents' crontab job (%d runs) |\n",
		len(c.all), c.ticks, strings.Join(names, ", "), 100*float64(wrapped)/float64(max(expected, 1)), len(slots)-wrapped)
	fmt.Fprintf(&b, "| `hacron run` exit codes | %s |\n", strings.Join(codeList, ", "))
	fmt.Fprintf(&b, "| probes that saw another node's probe alive | %d |\n", len(violations))
	fmt.Fprintf(&b, "| overlapping runs of two nodes | %d |\n", len(overlaps))
	fmt.Fprintf(&b, "| overlaps explained (a pause longer than the margin %v, an election node deleted by hand) | %d |\n", margin, len(explained))
	fmt.Fprintf(&b, "| probes that outlived their run | %d |\n", len(outlived))
	fmt.Fprintf(&b, "| slots run twice | %d |\n", len(twice))
	fmt.Fprintf(&b, "| fencing token decreases | %d |\n", len(decreasing))
	fmt.Fprintf(&b, "| spurious kills (123, lease valid, token kept, no lease-ending fault) | %d |\n", len(kills.spurious))
	fmt.Fprintf(&b, "| lost outcomes (records without an end after the settle, runs without a record) | %d |\n", len(lost))
	fmt.Fprintf(&b, "| wedges (--no-overlap skipped, no run of it anywhere) | %d of %d skips as still running |\n", len(wedged), skippedRunning)
	fmt.Fprintf(&b, "| no leader (no active node > T + 1 s after a fault healed) | %d |\n", len(leaderless))
	fmt.Fprintf(&b, "| crontab slots without a record (neither run nor recorded missed by the catch-up) | %d (%d recorded missed; %d past the catch-up window: no node steadily active within %v after them) |\n",
		len(unrecorded), missedSlots, pastWindow, chaosCatchUp-5*time.Second)
	stray := "0"
	if c.election != "" {
		stray = "1 (" + c.election + ")"
	}
	fmt.Fprintf(&b, "| election not one node per live agent at the end | %s |\n", stray)
	fmt.Fprintf(&b, "| exits 123 explained | %d by a lease-ending fault, %d by a new token; not failing: %d with the lease not proven valid (it may have lapsed), %d without a token seen |\n",
		len(kills.byFault), len(kills.byNewToken), len(kills.lapsed), len(kills.noToken))
	fmt.Fprintf(&b, "\n| fault (count) | spurious kills | wedges | no leader | longest to an active node | longest to the next run |\n|---|---|---|---|---|---|\n")
	for _, k := range kinds {
		ks := perKind[k]
		longestRun := ks.longestRun.Round(10 * time.Millisecond).String()
		if ks.noNextRun > 0 {
			longestRun += fmt.Sprintf(" (%d with no run after it)", ks.noNextRun)
		}
		fmt.Fprintf(&b, "| %s (%d) | %d | %d | %d | %v | %s |\n", k, ks.count, ks.spurious, ks.wedges, ks.noLeader,
			ks.longestActive.Round(10*time.Millisecond), longestRun)
	}
	b.WriteString(faultRows.String())

	for _, v := range violations {
		t.Errorf("probe violation: %s", v)
	}
	for _, o := range outlived {
		t.Errorf("probe outlived its run: %s", o)
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
	for _, s := range kills.spurious {
		t.Errorf("spurious kill: %s", s)
	}
	for _, l := range lost {
		t.Errorf("lost outcome: %s", l)
	}
	for _, w := range wedged {
		t.Errorf("wedge: %s", w)
	}
	for _, l := range leaderless {
		t.Errorf("no leader: %s", l)
	}
	for _, u := range unrecorded {
		t.Errorf("crontab slot without a record: %s", u)
	}
	if c.election != "" {
		t.Errorf("election at the end: %s", c.election)
	}
	for _, r := range races {
		t.Errorf("data race in a wrapper %s", r)
	}
	for _, e := range explained {
		t.Logf("overlap explained: %s", e)
	}
	for _, l := range kills.lapsed {
		t.Logf("exit 123 with the token kept, the lease not proven valid: %s", l)
	}
	return b.String()
}

// TestChaosVerdicts pins the checker's rules on made-up histories: what
// fails a chaos run and, as much, what must not.
func TestChaosVerdicts(t *testing.T) {
	t.Parallel()
	t0 := time.Now().Add(-time.Minute)
	m0 := wire.MonoDeadline(t0)
	at := func(d time.Duration) int64 { return m0 + int64(d) }
	dir := t.TempDir()
	run := func(node, job, slot string, code int, from, to time.Duration, log string) *chaosRun {
		r := &chaosRun{node: node, job: job, slot: slot, key: node + "/" + job + "/" + slot, code: code, start: at(from), end: at(to),
			log: filepath.Join(dir, node+"-"+job+"-"+slot)}
		if err := os.WriteFile(r.log, []byte(log), 0o644); err != nil {
			t.Fatal(err)
		}
		return r
	}
	probe := func(r *chaosRun, token int64, from, to time.Duration, killed bool) *ledgerRun {
		return &ledgerRun{node: r.node, job: r.job, slot: r.slot, key: r.key, token: token, start: at(from), end: at(to), killed: killed}
	}
	active := func(node string, token int64, sent, remaining time.Duration) chaosSample {
		return chaosSample{node: node, sent: at(sent), recv: at(sent + 5*time.Millisecond), active: true, token: token, leaseEnd: at(sent + remaining)}
	}
	fault := func(kind, node string, from, healed time.Duration, leaseEnding bool) faultEvent {
		f := faultEvent{kind: kind, node: node, at: t0.Add(from), leaseEnding: leaseEnding}
		if healed > 0 {
			f.healed = t0.Add(healed)
		}
		return f
	}
	killed := func(c *chaosCheck) killVerdicts {
		c.probes = map[string]*ledgerRun{}
		r := c.runs[0]
		c.probes[r.key] = probe(r, 7, 10*time.Second+20*time.Millisecond, 12*time.Second, true)
		return c.kills()
	}
	// A run started at +10 s and killed with 123 at +12 s; the monitor saw
	// token 7 with leases to +11.6 s (asked at +9.9 s) and to +12.9 s (at
	// +11.5 s), and token 7 again at +12.3 s.
	lease := []chaosSample{active("node-a", 7, 9900*time.Millisecond, 1700*time.Millisecond), active("node-a", 7, 11500*time.Millisecond, 1400*time.Millisecond),
		active("node-a", 7, 12300*time.Millisecond, time.Second)}
	base := func() *chaosCheck {
		return &chaosCheck{start: t0, runs: []*chaosRun{run("node-a", "long", "t10", exitLost, 10*time.Second, 12100*time.Millisecond, "")}, samples: lease}
	}

	if v := killed(base()); len(v.spurious) != 1 {
		t.Errorf("123 with a valid lease and the token kept: %+v, want a spurious kill", v)
	}
	c := base()
	c.faults = []faultEvent{fault("reset ZooKeeper connections", "node-a", 11900*time.Millisecond, 0, false), fault(deleteElectionNode, "node-b", 5*time.Second, 0, false)}
	if v := killed(c); len(v.spurious) != 1 || v.spurious[0].fault != "reset ZooKeeper connections" {
		t.Errorf("123 right after a reset: %+v, want a spurious kill during the reset", v)
	}
	c = base()
	c.faults = []faultEvent{fault("blackhole ZooKeeper links", "node-a", 11*time.Second, 16*time.Second, true)}
	if v := killed(c); len(v.spurious) != 0 || len(v.byFault) != 1 {
		t.Errorf("123 inside a blackhole of the node: %+v, want explained by the fault", v)
	}
	c = base()
	c.faults = []faultEvent{fault("no ZooKeeper quorum", "zk", 11*time.Second, 16*time.Second, true)}
	if v := killed(c); len(v.spurious) != 0 || len(v.byFault) != 1 {
		t.Errorf("123 without a quorum: %+v, want explained by the fault", v)
	}
	c = base()
	c.faults = []faultEvent{fault("blackhole ZooKeeper links", "node-b", 11*time.Second, 16*time.Second, true)}
	if v := killed(c); len(v.spurious) != 1 {
		t.Errorf("123 while another node is blackholed: %+v, want a spurious kill", v)
	}
	c = base()
	c.samples = []chaosSample{lease[0], lease[1], active("node-a", 9, 12300*time.Millisecond, time.Second)}
	if v := killed(c); len(v.spurious) != 0 || len(v.byNewToken) != 1 {
		t.Errorf("123 and a new token afterwards: %+v, want explained by the new token", v)
	}
	c = base()
	c.samples = []chaosSample{active("node-a", 7, 9900*time.Millisecond, 800*time.Millisecond), lease[1], lease[2]}
	if v := killed(c); len(v.spurious) != 0 || len(v.lapsed) != 1 {
		t.Errorf("123 after a lease that ran out and was renewed: %+v, want counted apart (the lease may have lapsed)", v)
	}
	c = base()
	c.samples = []chaosSample{lease[0], active("node-a", 7, 11400*time.Millisecond, 500*time.Millisecond), lease[2]}
	if v := killed(c); len(v.spurious) != 0 || len(v.lapsed) != 1 {
		t.Errorf("123 after the last lease seen ran out: %+v, want counted apart (the lease may have lapsed)", v)
	}

	// --no-overlap: a run on node-a ends at +12 s; skips on node-b.
	skipLog := `level=INFO msg=run status=ignore reason="` + skipRunning + `"`
	wedge := func(skipAt time.Duration, stalls [][2]int64, faults ...faultEvent) []chaosEvent {
		held := run("node-a", "nooverlap", "t10", 0, 10*time.Second, 12*time.Second, "")
		skip := run("node-b", "nooverlap", "t13", chaosSkipExit, skipAt, skipAt+50*time.Millisecond, skipLog)
		passive := run("node-c", "nooverlap", "t13", chaosSkipExit, skipAt, skipAt+50*time.Millisecond, `reason=passive`)
		c := &chaosCheck{start: t0, jobs: []chaosJob{{name: "nooverlap", every: 1, opts: []string{"--no-overlap"}, maxMS: 1800}},
			runs: []*chaosRun{held, skip, passive}, faults: faults, stalls: stalls}
		c.probes = map[string]*ledgerRun{held.key: probe(held, 7, 10*time.Second, 11900*time.Millisecond, false)}
		w, _ := c.wedges()
		return w
	}
	if w := wedge(12500*time.Millisecond, nil); len(w) != 0 {
		t.Errorf("skipped half a second after the run ended: %v, want no wedge", w)
	}
	if w := wedge(15*time.Second, nil); len(w) != 1 {
		t.Errorf("skipped 3 s after the only run ended: %v, want a wedge", w)
	}
	if w := wedge(15*time.Second, nil, fault("blackhole ZooKeeper links", "node-a", 11500*time.Millisecond, 13*time.Second, true)); len(w) != 0 {
		t.Errorf("skipped while the marker's owner was still cut off: %v, want no wedge", w)
	}
	if w := wedge(25*time.Second, nil, fault("blackhole ZooKeeper links", "node-a", 11500*time.Millisecond, 13*time.Second, true)); len(w) != 1 {
		t.Errorf("skipped long after the fault healed: %v, want a wedge", w)
	}
	if w := wedge(15*time.Second, [][2]int64{{at(12 * time.Second), at(14500 * time.Millisecond)}}); len(w) != 0 {
		t.Errorf("skipped while ZooKeeper took no write: %v, want no wedge", w)
	}

	// No leader: a fault healed at +20 s.
	f := fault("SIGKILL agent", "node-a", 15*time.Second, 20*time.Second, true)
	c = &chaosCheck{start: t0, monitorEnd: at(40 * time.Second), samples: []chaosSample{active("node-b", 8, 19*time.Second, time.Second), active("node-b", 8, 22*time.Second, time.Second)}}
	if _, _, late := c.noLeader(f); late {
		t.Errorf("active 2 s after the fault healed: reported as no leader")
	}
	c.samples = []chaosSample{active("node-b", 8, 19*time.Second, time.Second)}
	for d := 20 * time.Second; d < 25*time.Second; d += chaosPoll {
		c.samples = append(c.samples, chaosSample{node: "node-b", sent: at(d), recv: at(d + 5*time.Millisecond)})
	}
	c.samples = append(c.samples, active("node-b", 8, 25*time.Second, time.Second))
	if gap, _, late := c.noLeader(f); !late || gap.Round(time.Millisecond) != 5*time.Second-chaosPoll {
		t.Errorf("active 5 s after the fault healed: gap %v, late %v; want 4.9s (the poll before), late", gap, late)
	}
	// ZooKeeper took no write from +19 s to +21.5 s, and +22 s to +23 s.
	c.stalls = [][2]int64{{at(19 * time.Second), at(21500 * time.Millisecond)}, {at(22 * time.Second), at(23 * time.Second)}, {at(22500 * time.Millisecond), at(22600 * time.Millisecond)}}
	if _, stalled, late := c.noLeader(f); late || stalled.Round(time.Millisecond) != 2500*time.Millisecond {
		t.Errorf("active 5 s after the fault healed, 2.5 s of it without ZooKeeper: stalled %v, late %v; want 2.5s, not late", stalled, late)
	}

	// A daemonized probe alive after its wrapper exited; a SIGKILLed
	// wrapper's probe goes on under the agent.
	d := run("node-a", "daemon", "t1", 0, time.Second, 1100*time.Millisecond, "")
	k := run("node-a", "long", "t1", 128+int(syscall.SIGKILL), time.Second, 1500*time.Millisecond, "")
	c = &chaosCheck{start: t0, runs: []*chaosRun{d, k}, probes: map[string]*ledgerRun{
		d.key: probe(d, 7, 1050*time.Millisecond, 4*time.Second, false),
		k.key: probe(k, 7, 1050*time.Millisecond, 4*time.Second, false),
	}}
	if o := c.outlived(); len(o) != 1 || !strings.HasPrefix(o[0], d.key) {
		t.Errorf("outlived: %v, want only %s", o, d.key)
	}

	// The old leader's run beside the new leader's, after an operator
	// deleted its election node: bounded by its lease, not prevented.
	c = &chaosCheck{start: t0, faults: []faultEvent{fault(deleteElectionNode, "node-a", 10*time.Second, 0, false)}}
	old := &ledgerRun{node: "node-a", start: at(9 * time.Second)}
	if !c.deletedUnder(old, at(10200*time.Millisecond)) || c.deletedUnder(old, at(13*time.Second)) {
		t.Errorf("deletedUnder: want an overlap explained 200 ms after the delete, not 3 s after")
	}

	// Lost outcomes.
	ran := run("node-a", "short", "t1", 0, time.Second, 2*time.Second, "")
	unknown := run("node-a", "short", "t2", exitUsage, 2*time.Second, 3*time.Second, "")
	norecord := run("node-b", "short", "t3", 0, 3*time.Second, 4*time.Second, "")
	c = &chaosCheck{start: t0, runs: []*chaosRun{ran, unknown, norecord}}
	c.probes = map[string]*ledgerRun{ran.key: probe(ran, 7, time.Second, 2*time.Second, false), norecord.key: probe(norecord, 8, 3*time.Second, 4*time.Second, false)}
	c.all = []*ledgerRun{c.probes[ran.key], c.probes[norecord.key]}
	recs := []chaosRecord{
		{path: "/r/t1", base: "short", Job: "short", Node: "node-a", Slot: "t1", End: "x"},
		{path: "/r/t2", base: "short", Job: "short", Node: "node-a", Slot: "t2"},
	}
	c.records = chaosRecords{byRun: map[string]chaosRecord{"short/t1": recs[0], "short/t2": recs[1]}, all: recs}
	lost := c.lostOutcomes()
	want := []string{"/r/t2 (node node-a): no end, the job never ran (hacron run exited 125)", "node-b/short/t3 ran (token 8) but has no record"}
	if !slices.Equal(lost, want) {
		t.Errorf("lost outcomes:\n got %q\nwant %q", lost, want)
	}

	// The agents' crontab job: a slot between two recorded ones without a
	// record, a probe whose slot is recorded missed, a probe alive after
	// its record's end, and a probe terminated while the lease was valid.
	cron := func(node, slot string, from, to time.Duration, killed bool) *ledgerRun {
		return &ledgerRun{node: node, job: chaosCronJob, slot: slot, key: node + "/" + chaosCronJob + "/" + slot, token: 7, start: at(from), end: at(to), killed: killed}
	}
	end := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }
	sec := t0.Truncate(time.Second)
	key := func(n int) string { return sec.Add(time.Duration(n) * time.Second).UTC().Format(time.RFC3339) }
	crecs := []chaosRecord{
		{base: chaosCronJob, Node: "node-a", Slot: key(0), End: end(1100 * time.Millisecond), Result: resultOK},
		{base: chaosCronJob, Node: "node-a", Slot: key(2), End: end(3 * time.Second), Result: resultOK},
		{base: chaosCronJob, Node: "node-b", Slot: key(3), End: end(4 * time.Second), Result: resultMissed},
		{base: chaosCronJob, Node: "node-a", Slot: key(4), End: end(12500 * time.Millisecond), Result: resultLost},
		// A slot after which no node was active within the window.
		{base: chaosCronJob, Node: "node-a", Slot: key(200), End: end(201 * time.Second), Result: resultOK},
	}
	// node-a active from +9.9 s to +16 s: long enough to owe a catch-up.
	steady := append(slices.Clone(lease), active("node-a", 7, 14*time.Second, time.Second), active("node-a", 7, 16*time.Second, time.Second))
	c = &chaosCheck{start: t0, samples: steady, records: chaosRecords{byRun: map[string]chaosRecord{}, all: crecs}}
	for _, r := range crecs {
		c.records.byRun[r.base+"/"+r.Slot] = r
	}
	c.all = []*ledgerRun{
		cron("node-a", key(0), time.Second, 1050*time.Millisecond, false),
		cron("node-a", key(2), 2*time.Second, 3500*time.Millisecond, false),
		cron("node-b", key(3), 3*time.Second, 3200*time.Millisecond, false),
		cron("node-a", key(4), 10*time.Second+20*time.Millisecond, 12*time.Second, true),
	}
	c.probes = map[string]*ledgerRun{}
	for _, p := range c.all {
		c.probes[p.key] = p
	}
	// Slots 5-199 have no record: those before +55 s had the lease
	// samples' active node within the window; the rest none.
	if u, missed, past := c.unrecordedSlots(); len(u) == 0 || u[0] != key(1) || missed != 1 || past == 0 || len(u)+past != 196 {
		t.Errorf("crontab slots without a record: %d, first %v (%d missed, %d past the window), want slot 1 and slots 5-199 split by the window", len(u), u[:min(1, len(u))], missed, past)
	}
	if lost := c.lostOutcomes(); len(lost) != 1 || !strings.HasPrefix(lost[0], "node-b/"+chaosCronJob+"/"+key(3)+" ran") {
		t.Errorf("crontab lost outcomes: %q, want the run of the slot recorded missed", lost)
	}
	if o := c.outlived(); len(o) != 1 || !strings.HasPrefix(o[0], "node-a/"+chaosCronJob+"/"+key(2)+" by ") {
		t.Errorf("crontab outlived: %q, want the probe alive after its record's end", o)
	}
	if v := c.kills(); len(v.spurious) != 1 || !strings.Contains(v.spurious[0].what, chaosCronJob) {
		t.Errorf("crontab kills: %+v, want the terminated probe with a valid lease as spurious", v)
	}
}
