package main

// The agent as a daemon: ZooKeeper down at start, SIGHUP, drain, rejoin,
// and logging that never stops a job.

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestIntegration_AgentStartsWithoutZooKeeper(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	pa := newFaultProxy(t, zkS.Addrs()[0])
	pa.SetMode(proxyBlackhole)
	cluster := clusterName(t)
	state := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(state, []byte("active\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := hacronEnv(t, pa.Addr(), cluster)
	sock := filepath.Join(t.TempDir(), "a.sock")
	a := &agentProc{proc: startProc(t, "agent node-a", env, "agent", "--node", "node-a", "--socket", sock, "--state-file", state, "--log-level", "debug"), node: "node-a", socket: sock, env: env}
	// A stale "active" from an unclean end is replaced at once.
	waitFor(t, 10*time.Second, "passive in the state file", func() bool {
		b, _ := os.ReadFile(state)
		return string(b) == "passive\n"
	})
	waitFor(t, 10*time.Second, "the agent answering", func() bool {
		_, err := askState(&globals{Socket: sock})
		return err == nil
	})
	// It stays up, unknown (exit 2), and skips runs.
	time.Sleep(2 * time.Second)
	st := startProc(t, "state", env, "state", "--socket", sock)
	if code := st.wait(10 * time.Second); code != stateUnknownExit {
		t.Errorf("hacron state exit %d, want 2 (unknown)", code)
	}
	dir := t.TempDir()
	r := a.run("--skip-exit", "99", "--", "touch", dir+"/ran")
	if code := r.wait(15 * time.Second); code != 99 {
		t.Errorf("run without a session exit %d, want the skip code 99", code)
	}
	select {
	case <-a.done:
		t.Fatalf("the agent exited (%d) without ZooKeeper", a.code)
	default:
	}
	// ZooKeeper appears: active.
	pa.SetMode(proxyPass)
	pa.Reset()
	a.waitState("active", 20*time.Second)
	waitFor(t, 5*time.Second, "active in the state file", func() bool {
		b, _ := os.ReadFile(state)
		return string(b) == "active\n"
	})
	if !strings.Contains(a.errText(), "no ZooKeeper session") {
		t.Errorf("the agent's log does not say why runs were skipped:\n%s", a.errText())
	}
	if _, err := os.Stat(dir + "/ran"); err == nil {
		t.Errorf("a run ran without a session")
	}
}

func TestIntegration_SIGHUPKeepsJobAndLeadership(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	env := hacronEnv(t, zkS.ConnectString(), cluster)
	conf := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "HACRON_CONFIG="); ok {
			conf = v
		}
	}
	if err := os.WriteFile(conf, []byte("log_level = info\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "a.sock")
	a := &agentProc{proc: startProc(t, "agent node-a", env, "agent", "--node", "node-a", "--socket", sock), node: "node-a", socket: sock, env: env}
	a.waitState("active", 20*time.Second)
	token := agentToken(t, a)
	dir := t.TempDir()
	r := a.run("--name", "hup", "--", "sh", "-c", "echo $$ > "+dir+"/pid; sleep 4; exit 7")
	readPGID(t, dir+"/pid")
	waitFor(t, 10*time.Second, "the run's start line", func() bool { return strings.Contains(a.errText(), "job=hup") })
	if err := os.WriteFile(conf, []byte("log_level = warn\nzk_world_read = yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the reload's warning", func() bool { return strings.Contains(a.errText(), "keys=zk_world_read") })
	if code := r.wait(20 * time.Second); code != 7 {
		t.Errorf("job exit %d after SIGHUP, want its own 7", code)
	}
	if got := agentToken(t, a); got != token {
		t.Errorf("token %d after SIGHUP, want %d", got, token)
	}
	// The new level is in effect: a run's info lines are no longer logged.
	r2 := a.run("--name", "after-hup", "--", "true")
	if code := r2.wait(15 * time.Second); code != 0 {
		t.Errorf("run after the reload exited %d", code)
	}
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(a.errText(), "job=after-hup") {
		t.Errorf("info lines still logged after log_level = warn was reloaded")
	}
	select {
	case <-a.done:
		t.Fatalf("the agent exited on SIGHUP")
	default:
	}
}

func TestIntegration_ResignDrainAndRejoin(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := hacronEnv(t, zkS.ConnectString(), clusterName(t))
	a, b := startPair(t, env)
	dir := t.TempDir()
	r := a.run("--name", "drained", "--", "sh", "-c", "echo $$ > "+dir+"/pid; sleep 3; exit 5")
	readPGID(t, dir+"/pid")
	resign := startProc(t, "resign", a.env, "resign", "--socket", a.socket, "--drain", "20s", "--hold", "1h")
	time.Sleep(500 * time.Millisecond)
	during := a.run("--skip-exit", "99", "--", "touch", dir+"/during")
	if code := during.wait(10 * time.Second); code != 99 {
		t.Errorf("a run during the drain exited %d, want the skip code 99", code)
	}
	if code := r.wait(20 * time.Second); code != 5 {
		t.Errorf("the drained job exited %d, want its own 5", code)
	}
	jobEnd := r.endAt
	if code := resign.wait(30 * time.Second); code != 0 {
		t.Fatalf("resign exit %d: %s", code, resign.errText())
	}
	activeAt := b.waitState("active", 10*time.Second)
	if activeAt.Before(jobEnd) {
		t.Errorf("node-b active at %v, before the drained job ended at %v", activeAt, jobEnd)
	}
	// A second resign during the hold says so and replaces the hold.
	again := startProc(t, "resign again", a.env, "resign", "--socket", a.socket, "--hold", "2h")
	if code := again.wait(10 * time.Second); code != 0 || !strings.Contains(again.outText(), "already out of the election") {
		t.Errorf("resign during a hold: exit %d, %q %q", code, again.outText(), again.errText())
	}
	// rejoin ends the hold: node-a queues behind node-b, and takes over
	// when node-b resigns at once (--hold 0 rejoins it right away).
	rj := startProc(t, "rejoin", a.env, "rejoin", "--socket", a.socket)
	if code := rj.wait(10 * time.Second); code != 0 {
		t.Fatalf("rejoin exit %d: %s", code, rj.errText())
	}
	rj2 := startProc(t, "rejoin again", a.env, "rejoin", "--socket", a.socket)
	if code := rj2.wait(10 * time.Second); code != exitUsage || !strings.Contains(rj2.errText(), "not out of the election") {
		t.Errorf("rejoin without a hold: exit %d %q", code, rj2.errText())
	}
	waitFor(t, 10*time.Second, "node-a back in the election", func() bool { return a.state() == "passive" })
	time.Sleep(500 * time.Millisecond)
	rb := startProc(t, "resign node-b", b.env, "resign", "--socket", b.socket, "--hold", "0")
	if code := rb.wait(30 * time.Second); code != 0 {
		t.Fatalf("resign --hold 0 exit %d: %s", code, rb.errText())
	}
	a.waitState("active", 10*time.Second)
	b.waitState("passive", 10*time.Second)
}

func TestIntegration_RunWithoutSyslogRuns(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := append(hacronEnv(t, zkS.ConnectString(), clusterName(t)), "HACRON_TEST_SYSLOG="+filepath.Join(t.TempDir(), "no-such-log"))
	a := startAgent(t, env, "node-a")
	a.waitState("active", 20*time.Second)
	dir := t.TempDir()
	r := a.run("--syslog", "--", "touch", dir+"/ran")
	if code := r.wait(15 * time.Second); code != 0 {
		t.Fatalf("run --syslog without a syslog daemon exited %d: %s", code, r.errText())
	}
	if _, err := os.Stat(dir + "/ran"); err != nil {
		t.Errorf("the job did not run")
	}
	if n := strings.Count(r.errText(), "hacron: warning: syslog unavailable"); n != 1 {
		t.Errorf("want exactly one warning line, got:\n%s", r.errText())
	}
}
