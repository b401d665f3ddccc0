package main

// A run is over when all of its processes are gone: leftovers of a job's
// group, processes that left it (in the run's cgroup), runs of an agent
// that died, and a wrapper that never hangs on a hung agent. These tests
// run the real binary; those that need cgroups run as root where a
// hierarchy is writable and are skipped with the reason elsewhere.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"hacron/internal/contain"
	"hacron/internal/contain/containtest"
)

// forcedContainment is the hierarchy of kind, for HACRON_TEST_CONTAINMENT
// (a test asks for a kind only after probing it).
func forcedContainment(kind contain.Kind) *contain.Hierarchy {
	if kind == contain.PGroup {
		return &contain.Hierarchy{Kind: contain.PGroup, Reason: "process group only (forced by a test)"}
	}
	h, err := contain.Probe(kind)
	if err != nil {
		panic(fmt.Sprintf("HACRON_TEST_CONTAINMENT=%s: %v", kind, err))
	}
	return h
}

// cgroupKinds are the cgroup kinds this machine offers, each with its
// hierarchy as the test process (the agents' parent, in the same cgroup)
// sees it; none (the test skipped, with the reason) where there is none.
func cgroupKinds(t *testing.T) map[contain.Kind]*contain.Hierarchy {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("cgroups need root")
	}
	out := map[contain.Kind]*contain.Hierarchy{}
	var why []string
	for _, k := range []contain.Kind{contain.Cgroup2, contain.Cgroup1} {
		h, err := contain.Probe(k)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		out[k] = h
	}
	if len(out) == 0 {
		t.Skipf("no writable cgroup hierarchy: %s", strings.Join(why, "; "))
	}
	for _, w := range why {
		t.Logf("not tested: %s", w)
	}
	return out
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// procField reads field i (0: state, 1: ppid, 2: pgrp, 3: session) of
// /proc/pid/stat.
func procField(pid, i int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	n, _ := strconv.Atoi(f[i])
	return n
}

// runCgroups lists the run cgroups left in scope.
func runCgroups(h *contain.Hierarchy, scope string) []string {
	ents, _ := os.ReadDir(filepath.Join(h.Base(), "hacron", scope))
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// Item 1 in agent mode: when the job's main process exits, what it left in
// its group is ended before hacron run exits.
func TestIntegration_LeftoversEndedAgent(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	a := startAgent(t, hacronEnv(t, zkS.ConnectString(), cluster), "node-a")
	a.waitState("active", 20*time.Second)
	dir := t.TempDir()
	job := a.run("--name", "leftover", "--", "sh", "-c", "sleep 30 & echo $! > "+dir+"/bg; exit 0")
	code := job.wait(20 * time.Second)
	bg := readPGID(t, dir+"/bg")
	if code != 0 {
		t.Errorf("exit %d, want the job's 0", code)
	}
	if alive(bg) {
		t.Errorf("the background sleep %d outlived hacron run", bg)
	}
	if !strings.Contains(job.errText(), "left processes behind") || !strings.Contains(job.errText(), "processes=1") {
		t.Errorf("hacron run did not say it ended one process: %q", job.errText())
	}
	runs := runsOf(t, zkS.ConnectString(), cluster, "leftover")
	want := string(contain.PGroup)
	if os.Geteuid() == 0 {
		want = string(detectContainment().Kind)
	}
	if len(runs) != 1 || runs[0].Containment != want || runs[0].Result != resultOK {
		t.Errorf("records %+v, want one ok run with containment %s", runs, want)
	}
}

// Item 1 in direct mode: the leftovers end before the job lock is
// released, so another node's run of the same job never overlaps them.
// Both runs write a ledger, their main process and a background loop
// alike; every line of the first run must come before the second's.
func TestIntegration_LeftoversEndedDirect(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := append(hacronEnv(t, zkS.ConnectString(), clusterName(t)), "HACRON_DIRECT=1")
	dir := t.TempDir()
	ledger := dir + "/ledger"
	script := `echo "$HACRON_NODE main" >> ` + ledger + `
sh -c 'while :; do echo "$HACRON_NODE bg" >> ` + ledger + `; sleep 0.02; done' &
echo $! > ` + dir + `/bg-$HACRON_NODE
sleep 1`
	ra := startProc(t, "run on node-a", env, "run", "--node", "node-a", "--name", "ledger", "--slot", "s1", "--", "sh", "-c", script)
	waitFor(t, 20*time.Second, "node-a's run to start", func() bool {
		b, _ := os.ReadFile(ledger)
		return strings.Contains(string(b), "node-a bg")
	})
	// node-b's run waits for the job's lock, which node-a holds.
	rb := startProc(t, "run on node-b", env, "run", "--node", "node-b", "--name", "ledger", "--slot", "s2", "--wait", "30s", "--", "sh", "-c", script)
	if code := ra.wait(20 * time.Second); code != 0 {
		t.Fatalf("node-a: exit %d", code)
	}
	bgA := readPGID(t, dir+"/bg-node-a")
	if alive(bgA) {
		t.Errorf("node-a's background loop %d outlived its hacron run", bgA)
	}
	if code := rb.wait(30 * time.Second); code != 0 {
		t.Fatalf("node-b: exit %d", code)
	}
	if bgB := readPGID(t, dir+"/bg-node-b"); alive(bgB) {
		t.Errorf("node-b's background loop %d outlived its hacron run", bgB)
	}
	b, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	firstB := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "node-b") })
	lastA := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "node-a") {
			lastA = i
		}
	}
	t.Logf("ledger: %d lines; node-a's last at %d, node-b's first at %d", len(lines), lastA, firstB)
	if firstB < 0 || lastA < 0 || lastA > firstB {
		t.Errorf("the runs of node-a and node-b overlap in the ledger:\n%s", b)
	}
	for _, r := range []*proc{ra, rb} {
		if !strings.Contains(r.errText(), "left processes behind") {
			t.Errorf("%s did not say it ended the background loop: %q", r.name, r.errText())
		}
	}
}

// strayJob starts a job whose child leaves its process group and session
// (setsid) and writes its pid; the job's own group is in dir/pgid.
func strayJob(dir string) []string {
	return []string{"sh", "-c", "echo $$ > " + dir + "/pgid; setsid sh -c 'echo $$ > " + dir + "/stray; exec sleep 60' & sleep 60"}
}

// readStray waits for the job and its stray, and checks that the stray did
// leave the job's group.
func readStray(t *testing.T, dir string) (pgid, stray int) {
	t.Helper()
	pgid = readPGID(t, dir+"/pgid")
	stray = readPGID(t, dir+"/stray")
	waitFor(t, 10*time.Second, "the stray to exec sleep", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(stray) + "/comm")
		return strings.TrimSpace(string(b)) == "sleep"
	})
	if g := procField(stray, 2); g == pgid || g <= 0 {
		t.Fatalf("the stray %d is in process group %d (the job's %d): setsid did not take it out", stray, g, pgid)
	}
	return pgid, stray
}

// Item 2: a process that left the job's group (setsid) is ended with the
// run on every path that ends a job, before the standby is active; no
// cgroup of the run is left behind.
func TestIntegration_CgroupEndsStrays(t *testing.T) {
	t.Parallel()
	kinds := cgroupKinds(t)
	zkS := sharedZK(t)
	for kind, h := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			envOf := func(connect, cluster string) []string {
				return append(hacronEnv(t, connect, cluster), "HACRON_TEST_CONTAINMENT="+string(kind))
			}
			// pair starts node-a (behind a proxy) and node-b, node-a active.
			pair := func(t *testing.T) (a, b *agentProc, pa *faultProxy, cluster string) {
				pa = newFaultProxy(t, zkS.Addrs()[0])
				cluster = clusterName(t)
				a = startAgent(t, envOf(pa.Addr(), cluster), "node-a")
				a.waitState("active", 20*time.Second)
				b = startAgent(t, envOf(zkS.ConnectString(), cluster), "node-b")
				b.waitState("passive", 20*time.Second)
				return a, b, pa, cluster
			}
			noCgroupLeft := func(t *testing.T, a *agentProc, cluster string) {
				scope := agentScope(cluster, a.socket)
				waitFor(t, 10*time.Second, "the run's cgroup removed", func() bool { return len(runCgroups(h, scope)) == 0 })
				if st, _ := contain.ListStates(runStateDir(a.socket)); len(st) != 0 {
					t.Errorf("run-state files left: %+v", st)
				}
			}
			// strayGoneFirst checks that the stray and the job's group are
			// gone before the standby answers active.
			strayGoneFirst := func(t *testing.T, what string, t0 time.Time, pgid, stray int, b *agentProc) {
				strayGone := when(30*time.Second, func() bool { return !alive(stray) })
				goneAt, bActive := goneThenActive(t, pgid, b)
				strayAt := at(t, strayGone, "the stray gone")
				t.Logf("%s at 0: group gone +%v, stray gone +%v, node-b active +%v", what, goneAt.Sub(t0), strayAt.Sub(t0), bActive.Sub(t0))
				if !strayAt.Before(bActive) {
					t.Errorf("the stray was gone at +%v, not before node-b was active at +%v", strayAt.Sub(t0), bActive.Sub(t0))
				}
			}

			t.Run("lease loss", func(t *testing.T) {
				t.Parallel()
				a, b, pa, cluster := pair(t)
				dir := t.TempDir()
				job := a.run(append([]string{"--name", "stray"}, strayJob(dir)...)...)
				pgid, stray := readStray(t, dir)
				if got := runCgroups(h, agentScope(cluster, a.socket)); len(got) != 1 {
					t.Errorf("run cgroups %v, want one", got)
				}
				t0 := time.Now()
				pa.SetMode(proxyBlackhole)
				strayGoneFirst(t, "blackhole", t0, pgid, stray, b)
				if code := job.wait(20 * time.Second); code != exitLost {
					t.Errorf("exit %d, want %d", code, exitLost)
				}
				noCgroupLeft(t, a, cluster)
				pa.SetMode(proxyPass)
				waitFor(t, 20*time.Second, "the record complete", func() bool {
					runs := runsOf(t, zkS.ConnectString(), cluster, "stray")
					return len(runs) == 1 && runs[0].End != ""
				})
				if runs := runsOf(t, zkS.ConnectString(), cluster, "stray"); runs[0].Containment != string(kind) || runs[0].Result != resultLost {
					t.Errorf("record %+v, want result lost, containment %s", runs[0], kind)
				}
			})
			t.Run("timeout", func(t *testing.T) {
				t.Parallel()
				cluster := clusterName(t)
				a := startAgent(t, envOf(zkS.ConnectString(), cluster), "node-a")
				a.waitState("active", 20*time.Second)
				dir := t.TempDir()
				job := a.run(append([]string{"--name", "stray", "--timeout", "1s"}, strayJob(dir)...)...)
				_, stray := readStray(t, dir)
				code := job.wait(20 * time.Second)
				if alive(stray) {
					t.Errorf("the stray %d outlived hacron run", stray)
				}
				if code != exitTimeout {
					t.Errorf("exit %d, want %d", code, exitTimeout)
				}
				noCgroupLeft(t, a, cluster)
			})
			t.Run("agent stop", func(t *testing.T) {
				t.Parallel()
				a, b, _, cluster := pair(t)
				dir := t.TempDir()
				job := a.run(append([]string{"--name", "stray"}, strayJob(dir)...)...)
				pgid, stray := readStray(t, dir)
				t0 := time.Now()
				a.signal(syscall.SIGTERM)
				strayGoneFirst(t, "SIGTERM to node-a", t0, pgid, stray, b)
				if code := job.wait(20 * time.Second); code != exitLost {
					t.Errorf("exit %d, want %d", code, exitLost)
				}
				a.wait(20 * time.Second)
				noCgroupLeft(t, a, cluster)
			})
			t.Run("wrapper killed", func(t *testing.T) {
				t.Parallel()
				a, b, pa, cluster := pair(t)
				dir := t.TempDir()
				job := a.run(append([]string{"--name", "stray"}, strayJob(dir)...)...)
				pgid, stray := readStray(t, dir)
				job.signal(syscall.SIGKILL)
				job.wait(10 * time.Second)
				t0 := time.Now()
				pa.SetMode(proxyBlackhole)
				strayGoneFirst(t, "blackhole after the wrapper's SIGKILL", t0, pgid, stray, b)
				noCgroupLeft(t, a, cluster)
			})
		})
	}
}

// The wrapper never hangs on the agent: an agent that accepts and never
// answers makes run, state and resign give up within their bounds, and
// nothing runs.
func TestIntegration_HungAgent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := dir + "/hung.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read what comes, answer nothing, keep the connection.
			go func() { _, _ = io.Copy(io.Discard, c) }() // until the client hangs up
		}
	}()
	env := append(hacronEnv(t, "127.0.0.1:9", clusterName(t)), "HACRON_SOCKET="+sock, "HACRON_TEST_RESIGN_LIMIT=2s")
	for _, tc := range []struct {
		name  string
		args  []string
		bound time.Duration
		code  int
	}{
		{"run", []string{"run", "--", "touch", dir + "/ran"}, agentAnswerLimit, exitUsage},
		{"run --wait", []string{"run", "--wait", "2s", "--", "touch", dir + "/ran"}, 2*time.Second + agentAnswerLimit, exitUsage},
		// hacron state's unknown is 2, as for any agent it cannot reach.
		{"state", []string{"state"}, stateAnswerLimit, stateUnknownExit},
		{"resign", []string{"resign"}, 2 * time.Second, exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			t0 := time.Now()
			p := startProc(t, tc.name, env, tc.args...)
			code := p.wait(tc.bound + 20*time.Second)
			took := p.endAt.Sub(t0)
			t.Logf("%s: exit %d after %v (bound %v): %s", tc.name, code, took.Round(time.Millisecond), tc.bound, strings.TrimSpace(p.errText()))
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			// The bound holds on a loaded machine with room for the
			// process's own start and exit.
			if took < tc.bound || took > tc.bound+10*time.Second {
				t.Errorf("gave up after %v, want just after %v", took, tc.bound)
			}
			if !strings.Contains(p.errText(), "hacron: error: the agent did not answer within "+tc.bound.String()) {
				t.Errorf("stderr %q, want the agent did not answer within %v", p.errText(), tc.bound)
			}
			if _, err := os.Stat(dir + "/ran"); err == nil {
				t.Errorf("the job ran")
			}
		})
	}
}

// ownElectionNode says whether the election of cluster has a node of the
// agent process pid.
func ownElectionNode(conn *zk.Conn, cluster string, pid int) bool {
	parent := "/hacron/" + cluster + "/election"
	kids, _, err := conn.Children(parent)
	if err != nil {
		return false
	}
	for _, k := range kids {
		if m, _, err := readMember(conn, parent+"/"+k); err == nil && m.PID == pid {
			return true
		}
	}
	return false
}

// Item 6: the wrapper SIGKILLed, then the agent SIGKILLed and restarted at
// once: the restarted agent ends the orphaned job (its setsid'ed stray
// too, where cgroups are in use) before it joins the election, and
// completes its record as unknown.
func TestIntegration_RestartedAgentEndsOrphans(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	env := hacronEnv(t, zkS.ConnectString(), cluster)
	sock := filepath.Join(t.TempDir(), "node-a.sock")
	agentArgs := []string{"agent", "--node", "node-a", "--socket", sock, "--log-level", "debug"}
	a := &agentProc{proc: startProc(t, "agent node-a", env, agentArgs...), node: "node-a", socket: sock, env: env}
	a.waitState("active", 20*time.Second)
	dir := t.TempDir()
	cgroups := os.Geteuid() == 0 && detectContainment().Kind != contain.PGroup
	argv := []string{"sh", "-c", "echo $$ > " + dir + "/pgid; sleep 1000 & sleep 1000"}
	if cgroups {
		argv = strayJob(dir)
	}
	job := a.run(append([]string{"--name", "long"}, argv...)...)
	pgid, stray := readPGID(t, dir+"/pgid"), 0
	if cgroups {
		_, stray = readStray(t, dir)
	}
	states := func() []contain.RunState { s, _ := contain.ListStates(runStateDir(sock)); return s }
	if len(states()) != 1 {
		t.Fatalf("run-state files %+v, want one", states())
	}
	job.signal(syscall.SIGKILL)
	job.wait(10 * time.Second)
	a.signal(syscall.SIGKILL)
	a.wait(10 * time.Second)
	if len(groupMembers(pgid)) == 0 {
		t.Fatal("the job died with its wrapper and agent; nothing left to test")
	}

	conn := rawConn(t, zkS.ConnectString())
	t0 := time.Now()
	a2 := &agentProc{proc: startProc(t, "agent node-a again", env, agentArgs...), node: "node-a", socket: sock, env: env}
	pid := a2.cmd.Process.Pid
	gone := when(30*time.Second, func() bool { return len(groupMembers(pgid)) == 0 && (stray == 0 || !alive(stray)) })
	joinedAt := at(t, when(30*time.Second, func() bool { return ownElectionNode(conn, cluster, pid) }), "the restarted agent's election node")
	goneAt := at(t, gone, "the orphaned job gone")
	t.Logf("restart at 0: orphaned job gone +%v, election node +%v", goneAt.Sub(t0), joinedAt.Sub(t0))
	if !goneAt.Before(joinedAt) {
		t.Errorf("the orphaned job was gone at +%v, not before the restarted agent joined the election at +%v", goneAt.Sub(t0), joinedAt.Sub(t0))
	}
	waitFor(t, 20*time.Second, "the orphan's record completed as unknown", func() bool {
		runs := runsOf(t, zkS.ConnectString(), cluster, "long")
		return len(runs) == 1 && runs[0].Result == resultUnknown
	})
	waitFor(t, 10*time.Second, "the run-state file removed", func() bool { return len(states()) == 0 })
	if cgroups {
		h := detectContainment()
		if got := runCgroups(h, agentScope(cluster, sock)); len(got) != 0 {
			t.Errorf("run cgroups left: %v", got)
		}
	}
	a2.waitState("active", 30*time.Second)
}

// Item 3: a tracked group that ended and whose number went to another
// process group is not signalled. The wrapper is SIGKILLed, the agent
// stopped; the job ends and a new process group gets its number (the pid
// forced); the agent, resumed past its lease, must leave that group alone.
func TestIntegration_RecycledPidNotSignalled(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reusing a pid on purpose needs root")
	}
	t.Parallel()
	zkS := sharedZK(t)
	a := startAgent(t, hacronEnv(t, zkS.ConnectString(), clusterName(t)), "node-a")
	a.waitState("active", 20*time.Second)
	dir := t.TempDir()
	job := a.run("--name", "reuse", "--", "sh", "-c", "echo $$ > "+dir+"/pid; exec sleep 1000")
	pgid := readPGID(t, dir+"/pid")
	waitFor(t, 10*time.Second, "the job to exec sleep", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pgid) + "/comm")
		return strings.TrimSpace(string(b)) == "sleep"
	})
	job.signal(syscall.SIGKILL)
	job.wait(10 * time.Second)
	waitFor(t, 5*time.Second, "the agent to see the wrapper gone", func() bool {
		return strings.Contains(a.errText(), "the wrapper of a running job is gone")
	})
	a.signal(syscall.SIGSTOP)
	stoppedAt := time.Now()
	syscall.Kill(-pgid, syscall.SIGKILL)
	// The job's leader, orphaned, is reaped by init: then its number is free.
	waitFor(t, 30*time.Second, "the job's pid to be free", func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(pgid))
		return errors.Is(err, os.ErrNotExist)
	})
	impostor, err := containtest.StartAt(pgid, 200, func() *exec.Cmd {
		cmd := exec.Command("/bin/sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	})
	if err != nil {
		a.signal(syscall.SIGCONT)
		t.Skipf("cannot reuse pid %d: %v", pgid, err)
	}
	exited := make(chan struct{})
	go func() { _ = impostor.Wait(); close(exited) }() // killed, by the cleanup or wrongly
	t.Cleanup(func() { impostor.Process.Kill(); <-exited })
	// Past the lease: resumed, the agent finds the run's lease over.
	time.Sleep(time.Until(stoppedAt.Add(4 * time.Second)))
	a.signal(syscall.SIGCONT)
	a.waitState("active", 30*time.Second)
	select {
	case <-exited:
		t.Fatalf("the process group %d that got the job's number was signalled", pgid)
	case <-time.After(time.Second):
	}
	if strings.Contains(a.errText(), "terminating a job whose wrapper is gone") {
		t.Errorf("the agent tried to terminate a run that was over:\n%s", a.errText())
	}
}

// removeTestScopes removes the cgroup scopes this test binary's clusters
// left empty (agents that were SIGKILLed, direct runs: their scopes stay
// for the next run, which in a test never comes). Cluster names carry the
// test binary's pid.
func removeTestScopes() {
	if os.Geteuid() != 0 {
		return
	}
	mark := fmt.Sprintf("-%d-", os.Getpid())
	for _, k := range []contain.Kind{contain.Cgroup2, contain.Cgroup1} {
		h, err := contain.Probe(k)
		if err != nil {
			continue
		}
		for _, mode := range []string{"agent", "direct"} {
			ents, _ := os.ReadDir(filepath.Join(h.Base(), "hacron", mode))
			for _, e := range ents {
				if e.IsDir() && strings.Contains(e.Name(), mark) {
					if err := h.RemoveScope(mode + "/" + e.Name()); err != nil {
						fmt.Fprintf(os.Stderr, "test cgroup scope left: %v\n", err)
					}
				}
			}
		}
	}
}
