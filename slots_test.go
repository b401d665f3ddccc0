package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Slot claims across failovers, with agents and wrappers as real processes.

// statusOf reads a cluster's status document from ZooKeeper.
func statusOf(t testing.TB, connect, cluster string) statusDoc {
	t.Helper()
	zc, err := dialZK(context.Background(), zkConfig{Connect: connect, SessionTimeout: 10 * time.Second}, discardLogger)
	if err != nil {
		t.Fatal(err)
	}
	defer zc.Close()
	doc, err := readStatus(zc, cluster, statusQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// runsOf reads a job's run records from ZooKeeper, newest first.
func runsOf(t testing.TB, connect, cluster, job string) []runRecord {
	t.Helper()
	doc := statusOf(t, connect, cluster)
	for _, j := range doc.Jobs {
		if j.Job == job {
			return j.Runs
		}
	}
	return nil
}

func lines(t testing.TB, path string) []string {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestIntegration_WaitSkipsSlotAlreadyRun(t *testing.T) {
	t.Parallel()
	a, b, pa := leaseLossSetup(t)
	dir := t.TempDir()
	job := "sh -c echo $HACRON_NODE >> " + dir + "/ran"
	if code := a.run("--name", "nightly", "--slot", "S", "--", "sh", "-c", "echo $HACRON_NODE >> "+dir+"/ran").wait(10 * time.Second); code != 0 {
		t.Fatalf("node-a: exit %d", code)
	}
	// node-a crashes (its link is cut) right after running S; node-b's
	// cron fires for S late, with --wait.
	pa.SetMode(proxyBlackhole)
	t0 := time.Now()
	rb := b.run("--name", "nightly", "--slot", "S", "--wait", "30s", "--", "sh", "-c", "echo $HACRON_NODE >> "+dir+"/ran")
	code := rb.wait(40 * time.Second)
	t.Logf("node-b waited %v for slot S (already run by node-a), exit %d", rb.endAt.Sub(t0), code)
	if code != 0 || rb.outText() != "" || rb.errText() != "" {
		t.Errorf("node-b: exit %d, stdout %q, stderr %q; want a silent skip", code, rb.outText(), rb.errText())
	}
	if got := lines(t, dir+"/ran"); len(got) != 1 || got[0] != "node-a" {
		t.Errorf("slot S ran on %v, want once on node-a (%s)", got, job)
	}
	if d := rb.endAt.Sub(t0); d > 10*time.Second {
		t.Errorf("node-b waited %v although the slot's record was there", d)
	}
}

func TestIntegration_WaitRunsSlotAfterFailover(t *testing.T) {
	t.Parallel()
	a, b, pa := leaseLossSetup(t)
	dir := t.TempDir()
	cmd := []string{"--name", "nightly", "--slot", "S", "--wait", "30s", "--", "sh", "-c", "echo $HACRON_NODE >> " + dir + "/ran"}

	// node-a's link is cut just before S; both crontabs fire for S.
	tB := time.Now()
	pa.SetMode(proxyBlackhole)
	time.Sleep(200 * time.Millisecond)
	ra := a.run(cmd...)
	rb := b.run(cmd...)
	if code := rb.wait(40 * time.Second); code != 0 {
		t.Fatalf("node-b: exit %d: %s", code, rb.errText())
	}
	bRan := rb.endAt
	// node-a comes back; its waiting run sees S taken and skips.
	pa.SetMode(proxyPass)
	pa.Reset()
	codeA := ra.wait(40 * time.Second)
	t.Logf("blackhole at 0: node-b ran S and finished +%v; node-a's run ended +%v (exit %d)", bRan.Sub(tB), ra.endAt.Sub(tB), codeA)
	if got := lines(t, dir+"/ran"); len(got) != 1 || got[0] != "node-b" {
		t.Errorf("slot S ran on %v, want exactly once, on node-b", got)
	}
	if codeA != 0 && codeA != exitUsage {
		t.Errorf("node-a: exit %d, want a skip (0) or hacron's own failure (125) while cut off", codeA)
	}
}

func TestIntegration_SlotOnceAcrossFailover(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := hacronEnv(t, zkS.ConnectString(), clusterName(t))
	var agents []*agentProc
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		ag := startAgent(t, env, n)
		agents = append(agents, ag)
		if n == "node-a" {
			ag.waitState("active", 20*time.Second)
		} else {
			ag.waitState("passive", 20*time.Second)
		}
	}
	dir := t.TempDir()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 20 {
		if i == 7 {
			agents[0].signal(syscall.SIGKILL) // the active node crashes mid-way
		}
		ag := agents[i%3]
		r := ag.run("--name", "once", "--slot", "S", "--wait", "20s", "--", "sh", "-c", "echo $HACRON_NODE >> "+dir+"/ran; sleep 0.2")
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := r.wait(60 * time.Second)
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	got := lines(t, dir+"/ran")
	t.Logf("20 invocations of slot S over 3 nodes with a crash: exit codes %v, ran on %v", codes, got)
	if len(got) != 1 {
		t.Errorf("slot S ran %d times (%v), want exactly once", len(got), got)
	}
}

func TestIntegration_AgentNoOverlap(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := hacronEnv(t, zkS.ConnectString(), clusterName(t))
	a, b := startPair(t, env)
	dir := t.TempDir()
	run := func(ag *agentProc, slot, marker string, secs float64) *proc {
		return ag.run("--name", "sync", "--slot", slot, "--no-overlap", "--", "sh", "-c",
			fmt.Sprintf("touch %s/%s; sleep %g", dir, marker, secs))
	}
	long := run(a, "S1", "s1", 3)
	waitFor(t, 10*time.Second, "the long run", func() bool { _, err := os.Stat(dir + "/s1"); return err == nil })
	for _, ag := range []*agentProc{a, b} {
		if code := run(ag, "S2", "s2-"+ag.node, 0).wait(10 * time.Second); code != 0 {
			t.Errorf("%s: exit %d, want a skip", ag.node, code)
		}
		if _, err := os.Stat(dir + "/s2-" + ag.node); err == nil {
			t.Errorf("slot S2 ran on %s while S1 was still running", ag.node)
		}
	}
	if code := long.wait(20 * time.Second); code != 0 {
		t.Fatalf("the long run: exit %d", code)
	}
	if code := run(a, "S3", "s3", 0).wait(10 * time.Second); code != 0 {
		t.Fatalf("S3: exit %d", code)
	}
	if _, err := os.Stat(dir + "/s3"); err != nil {
		t.Errorf("slot S3 did not run after S1 ended")
	}
}

func TestIntegration_KilledWrapperRunRecorded(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	a := startAgent(t, hacronEnv(t, zkS.ConnectString(), cluster), "node-a")
	a.waitState("active", 20*time.Second)
	dir := t.TempDir()
	job := a.run("--name", "victim", "--", "sh", "-c", "echo $$ > "+dir+"/pgid; sleep 1")
	pgid := readPGID(t, dir+"/pgid")
	job.signal(syscall.SIGKILL)
	job.wait(10 * time.Second)
	var rec runRecord
	waitFor(t, 20*time.Second, "the run's end in its record", func() bool {
		runs := runsOf(t, zkS.ConnectString(), cluster, "victim")
		if len(runs) == 1 && runs[0].End != "" {
			rec = runs[0]
			return true
		}
		return false
	})
	t.Logf("record of the run whose wrapper was SIGKILLed: %+v", rec)
	if rec.Result != resultKilled || rec.ExitCode != nil {
		t.Errorf("result %q exit code %v; want %q without an exit code (nobody saw it)", rec.Result, rec.ExitCode, resultKilled)
	}
	if m := groupMembers(pgid); len(m) != 0 {
		t.Errorf("group still has %v", m)
	}
}

func TestIntegration_DirectKilledWrapperEndsJob(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := hacronEnv(t, zkS.ConnectString(), clusterName(t))
	dir := t.TempDir()
	run := func(node string) *proc {
		return startProc(t, "direct run on "+node, env, "run", "--direct", "--node", node, "--name", "orphan", "--slot", "slot-"+node, "--wait", "20s",
			"--", "sh", "-c", "echo $$ > "+dir+"/pgid-"+node+"; sleep 1000 & sleep 1000")
	}
	job := run("node-a")
	pgid := readPGID(t, dir+"/pgid-node-a")
	t0 := time.Now()
	job.signal(syscall.SIGKILL)
	goneAt := at(t, when(20*time.Second, func() bool { return len(groupMembers(pgid)) == 0 }), "the job's group gone")
	// node-b, waiting for the job's lock, gets it once node-a's session has
	// expired, and must not find node-a's job still running.
	jb := run("node-b")
	pgidB := readPGID(t, dir+"/pgid-node-b")
	bAt := time.Now()
	t.Logf("wrapper SIGKILLed at 0: its job's group gone +%v; node-b's run started by +%v", goneAt.Sub(t0), bAt.Sub(t0))
	if !goneAt.Before(bAt) {
		t.Errorf("node-a's orphaned job was still running when node-b's started")
	}
	jb.signal(syscall.SIGTERM)
	jb.wait(20 * time.Second)
	if m := groupMembers(pgidB); len(m) != 0 {
		t.Errorf("node-b's job survived SIGTERM to its wrapper: %v", m)
	}
}

// TestIntegration_SignalDuringWait: SIGTERM to a run waiting for the
// failover ends the wait at once; nothing runs.
func TestIntegration_SignalDuringWait(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := hacronEnv(t, zkS.ConnectString(), clusterName(t))
	_, b := startPair(t, env)
	dir := t.TempDir()
	r := b.run("--wait", "30s", "--slot", "W", "--", "touch", dir+"/ran")
	// The wrapper has started its job's first process once it asks the
	// agent (its signal handling is in place long before).
	pid := r.cmd.Process.Pid
	waitFor(t, 20*time.Second, "the wrapper's job process", func() bool {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		for _, f := range tasks {
			if b, err := os.ReadFile(f); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				return true
			}
		}
		return false
	})
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	r.signal(syscall.SIGTERM)
	code := r.wait(10 * time.Second)
	t.Logf("SIGTERM during --wait: exit %d after %v: %s", code, r.endAt.Sub(t0), r.errText())
	if code != exitUsage || !strings.Contains(r.errText(), "did not run") {
		t.Errorf("exit %d %q, want 125 saying the job did not run", code, r.errText())
	}
	if _, err := os.Stat(dir + "/ran"); err == nil {
		t.Errorf("the job ran")
	}
}
