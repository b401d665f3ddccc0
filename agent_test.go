package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests run the real binary (the test binary under the name hacron,
// see TestMain) as separate processes: agents that can be SIGSTOPped and
// SIGKILLed, wrappers that can be signalled.

const agentTestTimeout = "3s"

// hacronEnv is the environment of every hacron process of a test.
func hacronEnv(t testing.TB, connect, cluster string) []string {
	conf := filepath.Join(t.TempDir(), "empty.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(),
		"HACRON_CONFIG="+conf,
		"HACRON_ZK="+connect,
		"HACRON_CLUSTER="+cluster,
		"HACRON_SESSION_TIMEOUT="+agentTestTimeout,
	)
}

type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stdout *os.File // files, not pipes: Wait must not wait for the job's
	stderr *os.File // orphans to close them
	done   chan struct{}
	code   int
	endAt  time.Time
}

func startProc(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, done: make(chan struct{})}
	dir := t.TempDir()
	var err error
	if p.stdout, err = os.Create(dir + "/stdout"); err != nil {
		t.Fatal(err)
	}
	if p.stderr, err = os.Create(dir + "/stderr"); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command("hacron", args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		err := p.cmd.Wait()
		p.endAt = time.Now()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = 128 + int(ws.Signal())
			}
		default:
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Signal(syscall.SIGCONT)
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				p.cmd.Process.Kill()
				<-p.done
			}
		}
		if ownRace(p.errText()) {
			t.Errorf("%s: data race:\n%s", name, p.errText())
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", name, p.outText(), name, p.errText())
		}
	})
	return p
}

// ownRace says whether a race report names hacron's own code in its racing
// accesses. go-zk v1.0.4 races with itself on its last zxid when it
// re-sends watches after a reconnect (sendSetWatches against recvLoop):
// that one is upstream's, and a test of resets would trip it at random.
func ownRace(stderr string) bool {
	for _, report := range strings.Split(stderr, "WARNING: DATA RACE")[1:] {
		accesses, _, _ := strings.Cut(report, "\n  Goroutine ")
		if i := strings.Index(accesses, "Goroutine "); i >= 0 {
			accesses = accesses[:i]
		}
		if !strings.Contains(accesses, "github.com/go-zookeeper/zk.") || strings.Contains(accesses, "hacron.") {
			return true
		}
	}
	return false
}

func (p *proc) outText() string {
	b, _ := os.ReadFile(p.stdout.Name())
	return string(b)
}

func (p *proc) errText() string {
	b, _ := os.ReadFile(p.stderr.Name())
	return string(b)
}

// when polls cond every 2 ms from now on and delivers the first time it
// held (or nothing within d): a timestamp on the test's one clock.
func when(d time.Duration, cond func() bool) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			if cond() {
				ch <- time.Now()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		close(ch)
	}()
	return ch
}

func at(t testing.TB, ch <-chan time.Time, what string) time.Time {
	t.Helper()
	v, ok := <-ch
	if !ok {
		t.Fatalf("never saw: %s", what)
	}
	return v
}

// wait waits for the process to end and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		p.t.Fatalf("%s still running after %v", p.name, d)
		return -1
	}
}

func (p *proc) signal(sig syscall.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

type agentProc struct {
	*proc
	node   string
	socket string
	env    []string
}

func startAgent(t testing.TB, env []string, node string) *agentProc {
	t.Helper()
	sock := filepath.Join(t.TempDir(), node+".sock")
	p := startProc(t, "agent "+node, env, "agent", "--node", node, "--socket", sock, "--log-level", "debug")
	return &agentProc{proc: p, node: node, socket: sock, env: env}
}

// startPair starts node-a, waits until it is active, then node-b, passive.
func startPair(t testing.TB, env []string) (a, b *agentProc) {
	t.Helper()
	a = startAgent(t, env, "node-a")
	a.waitState("active", 30*time.Second)
	b = startAgent(t, env, "node-b")
	b.waitState("passive", 30*time.Second)
	return a, b
}

func (a *agentProc) state() string {
	info, err := askState(&globals{Socket: a.socket})
	if err != nil {
		return "unknown"
	}
	return info.State
}

func (a *agentProc) waitState(want string, d time.Duration) time.Time {
	a.t.Helper()
	end := time.Now().Add(d)
	for {
		if a.state() == want {
			return time.Now()
		}
		if time.Now().After(end) {
			a.t.Fatalf("%s: not %s after %v", a.node, want, d)
		}
		time.Sleep(time.Millisecond)
	}
}

// run starts `hacron run` against this agent.
func (a *agentProc) run(args ...string) *proc {
	a.t.Helper()
	return startProc(a.t, "run on "+a.node, a.env, append([]string{"run", "--socket", a.socket}, args...)...)
}

// groupMembers lists the live (not zombie) processes of a process group.
func groupMembers(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// readPGID waits for a job to write its shell's pid (its process group).
func readPGID(t testing.TB, path string) int {
	t.Helper()
	var pgid int
	waitFor(t, 10*time.Second, "the job's pid file", func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pgid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pgid
}

func clusterName(_ testing.TB) string {
	return fmt.Sprintf("agent-%d-%d", os.Getpid(), pathSeq.Add(1))
}

func TestIntegration_TwoAgents(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := hacronEnv(t, zkS.ConnectString(), clusterName(t))
	a, b := startPair(t, env)
	if a.state() != "active" {
		t.Fatalf("node-a is %s after node-b joined", a.state())
	}

	dir := t.TempDir()
	if code := a.run("touch", dir+"/ran-a").wait(10 * time.Second); code != 0 {
		t.Fatalf("run on the active node: exit %d", code)
	}
	rb := b.run("touch", dir+"/ran-b")
	if code := rb.wait(10 * time.Second); code != 0 {
		t.Fatalf("run on the passive node: exit %d", code)
	}
	if _, err := os.Stat(dir + "/ran-a"); err != nil {
		t.Errorf("the job did not run on the active node: %v", err)
	}
	if _, err := os.Stat(dir + "/ran-b"); err == nil {
		t.Errorf("the job ran on the passive node")
	}
	if rb.outText() != "" || rb.errText() != "" {
		t.Errorf("a skipped run printed stdout %q stderr %q", rb.outText(), rb.errText())
	}

	// Clean stop of the active agent: the standby answers active within
	// 100 ms (polled over its socket every millisecond).
	t0 := time.Now()
	a.signal(syscall.SIGTERM)
	t1 := b.waitState("active", 10*time.Second)
	t.Logf("clean stop: node-b active %v after SIGTERM to node-a", t1.Sub(t0))
	if d := t1.Sub(t0); d > 100*time.Millisecond {
		t.Errorf("clean-stop failover took %v, want within 100ms", d)
	}
	if code := a.wait(10 * time.Second); code != 0 {
		t.Errorf("node-a exited %d after SIGTERM, want 0", code)
	}

	// Manual failover: node-b resigns for 5 s, node-a (back) takes over.
	a2 := startAgent(t, env, "node-a")
	a2.waitState("passive", 20*time.Second)
	t2 := time.Now()
	res := startProc(t, "resign", env, "resign", "--socket", b.socket, "--hold", "5s")
	if code := res.wait(20 * time.Second); code != 0 {
		t.Fatalf("resign: exit %d: %s", code, res.errText())
	}
	t3 := a2.waitState("active", 10*time.Second)
	t.Logf("resign: node-a active %v after the resign request", t3.Sub(t2))
	if s := b.state(); s != "passive" {
		t.Errorf("node-b is %s after resigning", s)
	}
	// node-b stays out of the election during its hold.
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		if b.state() == "active" {
			t.Fatalf("node-b active during its hold")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leaseLossSetup starts node-a behind a fault proxy and node-b directly,
// with node-a active.
func leaseLossSetup(t *testing.T) (a, b *agentProc, pa *faultProxy) {
	zkS := sharedZK(t)
	pa = newFaultProxy(t, zkS.Addrs()[0])
	cluster := clusterName(t)
	a = startAgent(t, hacronEnv(t, pa.Addr(), cluster), "node-a")
	a.waitState("active", 20*time.Second)
	b = startAgent(t, hacronEnv(t, zkS.ConnectString(), cluster), "node-b")
	b.waitState("passive", 20*time.Second)
	return a, b, pa
}

// goneThenActive watches, from now on and on one clock, for the job's
// process group to be empty and for the standby to answer active.
func goneThenActive(t *testing.T, pgid int, standby *agentProc) (goneAt, activeAt time.Time) {
	t.Helper()
	gone := when(30*time.Second, func() bool { return len(groupMembers(pgid)) == 0 })
	activeAt = at(t, when(30*time.Second, func() bool { return standby.state() == "active" }), standby.node+" active")
	goneAt = at(t, gone, "the job's process group gone")
	return goneAt, activeAt
}

func TestIntegration_LeaseLossTerminatesJob(t *testing.T) {
	t.Parallel()
	a, b, pa := leaseLossSetup(t)
	dir := t.TempDir()
	job := a.run("sh", "-c", "echo $$ > "+dir+"/pgid; sleep 1000 & sleep 1000")
	pgid := readPGID(t, dir+"/pgid")

	tB := time.Now()
	pa.SetMode(proxyBlackhole)
	goneAt, bActive := goneThenActive(t, pgid, b)
	code := job.wait(20 * time.Second)
	t.Logf("blackhole at 0: job's group gone +%v, wrapper exit +%v (code %d), node-b active +%v",
		goneAt.Sub(tB), job.endAt.Sub(tB), code, bActive.Sub(tB))
	if code != exitLost {
		t.Errorf("job exit %d, want %d (leadership lost)", code, exitLost)
	}
	if !goneAt.Before(bActive) {
		t.Errorf("the job's group was gone at +%v, not before node-b became active at +%v", goneAt.Sub(tB), bActive.Sub(tB))
	}
	if !strings.Contains(job.errText(), "terminating the job") {
		t.Errorf("the wrapper said nothing about ending the job: %q", job.errText())
	}
}

func TestIntegration_OrphanedJobTerminatedByAgent(t *testing.T) {
	t.Parallel()
	a, b, pa := leaseLossSetup(t)
	dir := t.TempDir()
	job := a.run("sh", "-c", "echo $$ > "+dir+"/pgid; sleep 1000 & sleep 1000")
	pgid := readPGID(t, dir+"/pgid")
	job.signal(syscall.SIGKILL)
	job.wait(10 * time.Second)
	if len(groupMembers(pgid)) == 0 {
		t.Fatalf("the job died with its wrapper; nothing left to test")
	}

	tB := time.Now()
	pa.SetMode(proxyBlackhole)
	goneAt, bActive := goneThenActive(t, pgid, b)
	t.Logf("blackhole at 0: orphaned group gone +%v, node-b active +%v", goneAt.Sub(tB), bActive.Sub(tB))
	if !goneAt.Before(bActive) {
		t.Errorf("the orphaned group was gone at +%v, not before node-b became active at +%v", goneAt.Sub(tB), bActive.Sub(tB))
	}
}

func TestIntegration_StoppedAgentWrapperEnforcesLease(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := hacronEnv(t, zkS.ConnectString(), clusterName(t))
	a, b := startPair(t, env)
	dir := t.TempDir()
	job := a.run("sh", "-c", "echo $$ > "+dir+"/pgid; sleep 1000 & sleep 1000")
	pgid := readPGID(t, dir+"/pgid")

	tS := time.Now()
	a.signal(syscall.SIGSTOP)
	goneAt, bActive := goneThenActive(t, pgid, b)
	code := job.wait(20 * time.Second)
	t.Logf("SIGSTOP at 0: job's group gone +%v, wrapper exit +%v (code %d), node-b active +%v",
		goneAt.Sub(tS), job.endAt.Sub(tS), code, bActive.Sub(tS))
	if code != exitLost {
		t.Errorf("job exit %d, want %d", code, exitLost)
	}
	if !goneAt.Before(bActive) {
		t.Errorf("the job's group was gone at +%v, not before node-b became active at +%v", goneAt.Sub(tS), bActive.Sub(tS))
	}
	// Resumed long after its session expired: node-a must not be active
	// again while node-b is.
	a.signal(syscall.SIGCONT)
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		if a.state() == "active" && b.state() == "active" {
			t.Fatalf("both nodes active after node-a resumed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.waitState("passive", 20*time.Second)
}

func TestIntegration_TimeoutKillsWholeGroup(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	a := startAgent(t, hacronEnv(t, zkS.ConnectString(), clusterName(t)), "node-a")
	a.waitState("active", 20*time.Second)
	dir := t.TempDir()
	// The grandchild ignores SIGTERM: only the SIGKILL after the grace
	// ends it.
	job := a.run("--timeout", "500ms", "--kill-grace", "300ms", "sh", "-c",
		"echo $$ > "+dir+"/pgid; sh -c 'trap \"\" TERM; sleep 1000' & sleep 1000")
	pgid := readPGID(t, dir+"/pgid")
	if code := job.wait(20 * time.Second); code != exitTimeout {
		t.Errorf("exit %d, want %d", code, exitTimeout)
	}
	if m := groupMembers(pgid); len(m) != 0 {
		t.Errorf("processes of the job's group survived the timeout: %v", m)
	}
}

func TestIntegration_SignalsForwarded(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	a := startAgent(t, hacronEnv(t, zkS.ConnectString(), clusterName(t)), "node-a")
	a.waitState("active", 20*time.Second)
	dir := t.TempDir()

	for _, tc := range []struct {
		sig  syscall.Signal
		job  string
		want int
	}{
		{syscall.SIGUSR1, `trap "exit 42" USR1`, 42},
		{syscall.SIGHUP, `trap "exit 43" HUP`, 43},
		{syscall.SIGTERM, `:`, 128 + int(syscall.SIGTERM)},
		{syscall.SIGINT, `trap "exit 44" INT`, 44},
	} {
		ready := fmt.Sprintf("%s/ready-%d", dir, tc.sig)
		job := a.run("sh", "-c", tc.job+"; touch "+ready+"; while :; do sleep 0.05; done")
		waitFor(t, 10*time.Second, "the job to start", func() bool { _, err := os.Stat(ready); return err == nil })
		job.signal(tc.sig)
		if code := job.wait(10 * time.Second); code != tc.want {
			t.Errorf("%v to hacron run: exit %d, want %d", tc.sig, code, tc.want)
		}
	}
}
