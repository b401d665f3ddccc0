package main

// The life cycle around the lease in ordinary operations: ZooKeeper
// rolling restarts and connection resets end no job, the election never
// wedges behind a node of its own session, and no run loses its outcome.

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// withSessionTimeout replaces the session timeout in a test environment.
func withSessionTimeout(env []string, d time.Duration) []string {
	out := slices.Clone(env)
	for i, kv := range out {
		if strings.HasPrefix(kv, "HACRON_SESSION_TIMEOUT=") {
			out[i] = "HACRON_SESSION_TIMEOUT=" + d.String()
		}
	}
	return out
}

// agentToken is the fencing token the agent reports (0 when not active).
func agentToken(t testing.TB, a *agentProc) int64 {
	t.Helper()
	info, err := askState(&globals{Socket: a.socket})
	if err != nil {
		t.Fatalf("%s: %v", a.node, err)
	}
	return info.Token
}

// longJob runs for d and leaves its pid (its process group) in dir/pid.
func longJob(dir string, d time.Duration) []string {
	return []string{"--name", "long", "--", "sh", "-c", "echo $$ > " + dir + "/pid; sleep " + strings.TrimSuffix(d.String(), "s"), "long"}
}

func TestIntegration_RollingRestartEndsNoJob(t *testing.T) {
	t.Parallel()
	// T = 30 s (lease 15 s): when the restarted server is the ZooKeeper
	// leader, the ensemble elects another one before any write succeeds,
	// and on a loaded 2-core machine that can take seconds. A lease that
	// ran out meanwhile would end the job, as it must: this test is about
	// hacron, not about how fast ZooKeeper elects.
	ens := startZK(t, 3, withMaxSessionTimeout(30*time.Second))
	env := withSessionTimeout(hacronEnv(t, ens.ConnectString(), clusterName(t)), 30*time.Second)
	a, b := startPair(t, env)
	token := agentToken(t, a)
	dir := t.TempDir()
	r := a.run(longJob(dir, 40*time.Second)...)
	pgid := readPGID(t, dir+"/pid")

	for i := range 3 {
		if err := ens.Stop(i); err != nil {
			t.Fatal(err)
		}
		if err := ens.Restart(i); err != nil {
			t.Fatal(err)
		}
		if err := ens.WaitQuorum(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("server %d restarted; agent %s; job group %d members %v", i+1, a.state(), pgid, groupMembers(pgid))
		if len(groupMembers(pgid)) == 0 {
			t.Fatalf("the job died during the restart of server %d (wrapper exit %d)", i+1, r.wait(5*time.Second))
		}
	}
	a.waitState("active", 15*time.Second)
	if got := agentToken(t, a); got != token {
		t.Errorf("token %d after the rolling restart, want %d (no failover)", got, token)
	}
	if s := b.state(); s != "passive" {
		t.Errorf("node-b is %s", s)
	}
	r.signal(syscall.SIGINT) // forwarded: the job ends as the user asked
	if code := r.wait(15 * time.Second); code != 128+int(syscall.SIGINT) {
		t.Errorf("wrapper exit %d, want %d (the job's own end)", code, 128+int(syscall.SIGINT))
	}
}

func TestIntegration_ResetEndsNoJob(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	t.Run("agent", func(t *testing.T) {
		t.Parallel()
		a, b, pa := leaseLossSetup(t)
		token := agentToken(t, a)
		dir := t.TempDir()
		r := a.run("--name", "resets", "--", "sh", "-c", "echo $$ > "+dir+"/pid; sleep 6")
		readPGID(t, dir+"/pid")
		for range 3 {
			time.Sleep(time.Second)
			pa.Reset()
		}
		if code := r.wait(20 * time.Second); code != 0 {
			t.Errorf("wrapper exit %d after connection resets, want the job's 0", code)
		}
		if got := agentToken(t, a); got != token {
			t.Errorf("token %d after resets, want %d", got, token)
		}
		if s := b.state(); s != "passive" {
			t.Errorf("node-b is %s", s)
		}
	})
	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		pa := newFaultProxy(t, zkS.Addrs()[0])
		env := append(hacronEnv(t, pa.Addr(), clusterName(t)), "HACRON_DIRECT=1")
		dir := t.TempDir()
		r := startProc(t, "direct run", env, "run", "--name", "resets", "--", "sh", "-c", "echo $$ > "+dir+"/pid; sleep 6")
		readPGID(t, dir+"/pid")
		for range 3 {
			time.Sleep(time.Second)
			pa.Reset()
		}
		if code := r.wait(20 * time.Second); code != 0 {
			t.Errorf("direct run exit %d after connection resets, want the job's 0", code)
		}
	})
}

// mustElectionNodes lists the hacron candidates under parent.
func mustElectionNodes(t testing.TB, conn *zk.Conn, parent string) []string {
	t.Helper()
	nodes, err := electionNodes(conn, parent)
	if err != nil {
		t.Fatal(err)
	}
	return nodes
}

// A gone-notice about an earlier term's node must not end a later term.
func TestIntegration_StaleGoneNoticeIgnored(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	a := startCandidate(t, zkS.ConnectString(), parent, "node-a", testTimeout)
	waitActive(t, 20*time.Second, a)
	first := a.el.Status().Node
	conn := rawConn(t, zkS.ConnectString())
	if err := conn.Delete(first, -1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, testTimeout+time.Second, "a new term", func() bool {
		st := a.el.Status()
		return st.active(time.Now()) && st.Node != first
	})
	second := a.el.Status()
	// What an admission of the first term would have left behind.
	a.el.goneCh <- first
	time.Sleep(time.Second)
	if st := a.el.Status(); !st.active(time.Now()) || st.Node != second.Node || st.Token != second.Token {
		t.Errorf("a stale notice ended the term: %s, node %s (was %s)", st.why(), st.Node, second.Node)
	}
	if nodes := mustElectionNodes(t, conn, parent); len(nodes) != 1 {
		t.Errorf("%d election nodes for one candidate: %v", len(nodes), nodes)
	}
}

// A create that go-zk sends on the next session (it was queued while the
// link was down and the session expired meanwhile) must not leave a node of
// our own live session in front of us.
func TestIntegration_CreateOnNextSessionNoWedge(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	pa := newFaultProxy(t, zkS.Addrs()[0])
	var creates atomic.Int32
	var healed atomic.Int64
	a := startCandidate(t, pa.Addr(), parent, "node-a", testTimeout, func(el *election) {
		el.beforeCreate = func() {
			if creates.Add(1) > 1 {
				return
			}
			// The create waits in go-zk's queue while the link is dead,
			// until the server has expired the session.
			pa.SetMode(proxyBlackhole)
			go func() {
				time.Sleep(testTimeout + 2*time.Second)
				pa.SetMode(proxyPass)
				pa.Reset()
				healed.Store(time.Now().UnixNano())
			}()
		}
	})
	waitFor(t, 3*testTimeout+10*time.Second, "node-a active after the heal", a.active)
	took := time.Since(time.Unix(0, healed.Load()))
	t.Logf("creates: %d; active %v after the heal", creates.Load(), took)
	if took > testTimeout+time.Second {
		t.Errorf("active %v after the heal, want within T+1s", took)
	}
	conn := rawConn(t, zkS.ConnectString())
	time.Sleep(time.Second)
	if nodes := mustElectionNodes(t, conn, parent); len(nodes) != 1 {
		t.Errorf("%d election nodes for one live candidate: %v", len(nodes), nodes)
	}
	// And a second candidate can still take over.
	b := startCandidate(t, zkS.ConnectString(), parent, "node-b", testTimeout)
	waitFor(t, 10*time.Second, "node-b joined", func() bool { return b.el.Status().Node != "" })
	a.stop()
	waitFor(t, 10*time.Second, "node-b active", b.active)
	assertNoOverlap(t, a, b)
}

// An operator deleting the leader's node by hand (zkCli.sh delete): a new
// active node within T+1s, and one node per live candidate.
func TestIntegration_OperatorDeletesLeaderNode(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	a := startCandidate(t, zkS.ConnectString(), parent, "node-a", testTimeout)
	waitActive(t, 20*time.Second, a)
	b := startCandidate(t, zkS.ConnectString(), parent, "node-b", testTimeout)
	waitFor(t, 10*time.Second, "node-b joined", func() bool { return b.el.Status().Node != "" })
	conn := rawConn(t, zkS.ConnectString())
	t0 := time.Now()
	if err := conn.Delete(a.el.Status().Node, -1); err != nil {
		t.Fatal(err)
	}
	next := waitActive(t, testTimeout+time.Second, a, b)
	t.Logf("%s active %v after the delete", next.id, time.Since(t0))
	waitFor(t, 5*time.Second, "both candidates in the election", func() bool {
		return a.el.Status().Node != "" && b.el.Status().Node != ""
	})
	time.Sleep(500 * time.Millisecond)
	if nodes := mustElectionNodes(t, conn, parent); len(nodes) != 2 {
		t.Errorf("%d election nodes for two live candidates: %v", len(nodes), nodes)
	}
	assertNoOverlap(t, a, b)
}

// recordOf reads the one record of job (a plain agent-mode run's).
func recordOf(t testing.TB, connect, cluster, job string) (runRecord, bool) {
	runs := runsOf(t, connect, cluster, job)
	if len(runs) == 0 {
		return runRecord{}, false
	}
	return runs[0], true
}

// A run whose end falls inside a short outage gets its end once ZooKeeper
// is back, and a --no-overlap run afterwards is not wedged by its marker.
func TestIntegration_EndDuringOutageRecorded(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	pa := newFaultProxy(t, zkS.Addrs()[0])
	cluster := clusterName(t)
	env := withSessionTimeout(hacronEnv(t, pa.Addr(), cluster), 10*time.Second)
	a := startAgent(t, env, "node-a")
	a.waitState("active", 20*time.Second)
	dir := t.TempDir()
	r := a.run("--name", "outage", "--no-overlap", "--", "sh", "-c", "echo $$ > "+dir+"/pid; sleep 2; exit 3")
	readPGID(t, dir+"/pid")
	time.Sleep(time.Second)
	// The link dies: requests in flight fail, reconnects go nowhere.
	pa.SetMode(proxyBlackhole)
	pa.Reset()
	if code := r.wait(10 * time.Second); code != 3 {
		t.Errorf("wrapper exit %d, want the job's 3 (the outage is shorter than the lease)", code)
	}
	time.Sleep(1500 * time.Millisecond)
	pa.SetMode(proxyPass)
	var rec runRecord
	waitFor(t, 20*time.Second, "the record completed", func() bool {
		var ok bool
		rec, ok = recordOf(t, zkS.ConnectString(), cluster, "outage")
		return ok && rec.End != ""
	})
	if rec.ExitCode == nil || *rec.ExitCode != 3 || rec.Result != resultFailed {
		t.Errorf("record %+v, want exit 3, result failed", rec)
	}
	a.waitState("active", 15*time.Second)
	r2 := a.run("--name", "outage", "--no-overlap", "--skip-exit", "99", "--", "touch", dir+"/second")
	if code := r2.wait(15 * time.Second); code != 0 {
		t.Errorf("the next --no-overlap run exited %d, want 0 (ran)", code)
	}
	if _, err := os.Stat(dir + "/second"); err != nil {
		t.Errorf("the next --no-overlap run did not run: %v", err)
	}
}

// An agent SIGKILLed during a run, then restarted: the run's record is
// completed as unknown once its job is gone.
func TestIntegration_KilledAgentRecordCompleted(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	env := hacronEnv(t, zkS.ConnectString(), cluster)
	a := startAgent(t, env, "node-a")
	a.waitState("active", 20*time.Second)
	dir := t.TempDir()
	r := a.run("--name", "orphan", "--", "sh", "-c", "echo $$ > "+dir+"/pid; sleep 30")
	pgid := readPGID(t, dir+"/pid")
	a.signal(syscall.SIGKILL)
	a.wait(5 * time.Second)
	// The wrapper ends its job at the lease's last deadline.
	if code := r.wait(15 * time.Second); code != exitLost {
		t.Errorf("wrapper exit %d, want %d", code, exitLost)
	}
	if m := groupMembers(pgid); len(m) != 0 {
		t.Errorf("the job's group still has %v", m)
	}
	startProc(t, "agent node-a again", env, "agent", "--node", "node-a", "--socket", a.socket, "--log-level", "debug")
	var rec runRecord
	waitFor(t, 20*time.Second, "the record completed as unknown", func() bool {
		var ok bool
		rec, ok = recordOf(t, zkS.ConnectString(), cluster, "orphan")
		return ok && rec.End != ""
	})
	if rec.Result != resultUnknown || rec.ExitCode != nil {
		b, _ := json.Marshal(rec)
		t.Errorf("record %s, want result unknown and no exit code", b)
	}
}

// A direct-mode run whose wrapper was SIGKILLed leaves a record that the
// next run of the job completes as unknown.
func TestIntegration_DirectKilledRecordCompletedByNextRun(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	env := append(hacronEnv(t, zkS.ConnectString(), cluster), "HACRON_DIRECT=1")
	dir := t.TempDir()
	r := startProc(t, "direct run", env, "run", "--name", "dk", "--slot", "s1", "--", "sh", "-c", "echo $$ > "+dir+"/pid; sleep 30")
	readPGID(t, dir+"/pid")
	r.signal(syscall.SIGKILL)
	r.wait(5 * time.Second)
	r2 := startProc(t, "next direct run", env, "run", "--name", "dk", "--slot", "s2", "--wait", "20s", "--", "true")
	if code := r2.wait(30 * time.Second); code != 0 {
		t.Fatalf("next run exit %d", code)
	}
	runs := runsOf(t, zkS.ConnectString(), cluster, "dk")
	var first *runRecord
	for i := range runs {
		if runs[i].Slot == "s1" {
			first = &runs[i]
		}
	}
	if first == nil || first.End == "" || first.Result != resultUnknown {
		t.Errorf("the killed run's record: %+v, want completed as unknown", first)
	}
}

// An admission whose reply is lost (the write applied, the answer never
// came) does not run, and its record is taken back once ZooKeeper answers:
// no record of a run that never ran stays without an end.
func TestIntegration_UnknownAdmissionTakenBack(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	pa := newFaultProxy(t, zkS.Addrs()[0])
	root := "/hacron/" + clusterName(t)
	c := startCandidate(t, pa.Addr(), root+"/election", "node-a", testTimeout)
	waitActive(t, 20*time.Second, c)
	adm := newAdmitter(c.el, c.zc, root, "node-a", testLogger(t, "admitter: "))
	if err := adm.ensureJob("j", ""); err != nil {
		t.Fatal(err)
	}
	pa.SetMode(proxyDropReplies)
	go func() {
		// Long enough for the client to give the write up, short of the
		// session's expiry.
		time.Sleep(testTimeout)
		pa.SetMode(proxyPass)
		pa.Reset()
	}()
	tk, skip, err := adm.admit(context.Background(), runRequest{job: "j", slot: "s1", claim: true, uid: 0, pgid: 1})
	if err == nil || tk != nil {
		t.Fatalf("admission with its reply lost: ticket %v, skip %q, err %v; want an error", tk, skip, err)
	}
	t.Logf("admission: %v", err)
	conn := rawConn(t, zkS.ConnectString())
	waitFor(t, 3*testTimeout, "the record taken back", func() bool {
		ok, _, err := conn.Exists(root + "/jobs/j/runs/s1")
		return err == nil && !ok
	})
}
