package main

// hacron agent --crontab against real agents and real ZooKeeper servers:
// every slot once in the cluster across an agent's SIGKILL and a quorum
// loss; jitter, output, on-failure, mail, and reloads.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"hacron/internal/crontab"
)

// startCronAgent starts an agent that fires the crontab at tab.
func startCronAgent(t testing.TB, env []string, node, tab string) *agentProc {
	t.Helper()
	sock := filepath.Join(t.TempDir(), node+".sock")
	p := startProc(t, "agent "+node, env, "agent", "--node", node, "--socket", sock, "--log-level", "debug",
		"--crontab", tab, "--history", "1000")
	return &agentProc{proc: p, node: node, socket: sock, env: env}
}

func writeTab(t testing.TB, path, text string) {
	t.Helper()
	// Written aside and renamed, as editors and config management do: the
	// agent never reads half a file.
	if err := os.WriteFile(path+".new", []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// fileLines is a file's lines; none when it does not exist yet.
func fileLines(t testing.TB, path string) []string {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// activeOf waits until one of the agents answers active and returns it.
func activeOf(t testing.TB, d time.Duration, agents ...*agentProc) *agentProc {
	t.Helper()
	var found *agentProc
	waitFor(t, d, "an active agent", func() bool {
		for _, a := range agents {
			if a.state() == "active" {
				found = a
				return true
			}
		}
		return false
	})
	return found
}

// TestIntegration_CrontabEverySlotOnce: three agents share a crontab with a
// job every second and a catch-up window. Across a SIGKILL of the active
// agent and a 10 s quorum loss (two of three ZooKeeper servers frozen),
// every slot from the first run on has exactly one record; each slot that
// was run ran exactly once, on one node; a slot recorded missed never ran;
// and after each outage the newest slot nobody ran was run late (the
// catch-up).
func TestIntegration_CrontabEverySlotOnce(t *testing.T) {
	t.Parallel()
	ens := startZK(t, 3)
	cluster := clusterName(t)
	dir := t.TempDir()
	tab := filepath.Join(dir, "tab")
	ran := filepath.Join(dir, "ran")
	writeTab(t, tab, fmt.Sprintf("# hacron: name=every catch-up=1m\n@every 1s echo \"$HACRON_SLOT $HACRON_NODE\" >> %s\n", ran))
	env := hacronEnv(t, ens.ConnectString(), cluster)
	a := startCronAgent(t, env, "node-a", tab)
	a.waitState("active", 30*time.Second)
	b := startCronAgent(t, env, "node-b", tab)
	c := startCronAgent(t, env, "node-c", tab)
	b.waitState("passive", 30*time.Second)
	c.waitState("passive", 30*time.Second)
	time.Sleep(4 * time.Second)

	// The active agent dies; the next one catches up. node-a comes back
	// (its agent completes what it left open) as a standby.
	a.signal(syscall.SIGKILL)
	a.wait(10 * time.Second)
	next := activeOf(t, 30*time.Second, b, c)
	killed := a
	a = startCronAgent(t, env, "node-a", tab)
	time.Sleep(4 * time.Second)

	// No quorum for 10 s: two of the three servers frozen.
	killedAt := time.Now()
	for _, i := range []int{0, 1} {
		if err := ens.Pause(i); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Second)
	for _, i := range []int{0, 1} {
		if err := ens.Resume(i); err != nil {
			t.Fatal(err)
		}
	}
	activeOf(t, 60*time.Second, a, b, c)
	time.Sleep(5 * time.Second)
	for _, p := range []*agentProc{a, b, c} {
		p.signal(syscall.SIGTERM)
	}
	for _, p := range []*agentProc{a, b, c} {
		p.wait(30 * time.Second)
	}
	t.Logf("active after the SIGKILL: %s; quorum lost at %s", next.node, killedAt.Format(time.RFC3339Nano))

	runs := runsOf(t, ens.ConnectString(), cluster, "every")
	bySlot := map[string]runRecord{}
	for _, r := range runs {
		if _, dup := bySlot[r.Slot]; dup {
			t.Errorf("slot %s has two records", r.Slot)
		}
		bySlot[r.Slot] = r
	}
	executions := map[string][]string{} // slot -> nodes it ran on
	for _, l := range fileLines(t, ran) {
		slot, node, _ := strings.Cut(l, " ")
		executions[slot] = append(executions[slot], node)
	}
	var slots []string
	for s, r := range bySlot {
		if r.Result != resultMissed {
			slots = append(slots, s)
		}
	}
	slices.Sort(slots)
	if len(slots) < 10 {
		t.Fatalf("only %d slots run: %v", len(slots), slots)
	}
	first, _ := time.Parse(time.RFC3339, slots[0])
	last, _ := time.Parse(time.RFC3339, slots[len(slots)-1])
	missed := 0
	for s := first; !s.After(last); s = s.Add(time.Second) {
		key := crontab.SlotKey(s)
		r, ok := bySlot[key]
		n := len(executions[key])
		switch {
		case !ok:
			t.Errorf("slot %s: no record (nobody ran it, and nobody recorded it missed)", key)
		case r.Result == resultMissed:
			missed++
			if n != 0 {
				t.Errorf("slot %s recorded missed but ran on %v", key, executions[key])
			}
		case r.End == "":
			t.Errorf("slot %s (on %s): its record has no end", key, r.Node)
		case r.Result != resultOK:
			// The killed agent's last run (unknown), or a run its lease
			// or the final stop ended (lost): it may have got as far as
			// its echo, once at most.
			if n > 1 {
				t.Errorf("slot %s (%s on %s) ran %d times: %v", key, r.Result, r.Node, n, executions[key])
			}
		case n != 1:
			t.Errorf("slot %s (%s on %s) ran %d times: %v", key, r.Result, r.Node, n, executions[key])
		}
	}
	for slot, nodes := range executions {
		if r, ok := bySlot[slot]; !ok || r.Result == resultMissed {
			t.Errorf("slot %s ran on %v without a record of its run", slot, nodes)
		}
	}
	caughtUp := 0
	for _, p := range []*agentProc{killed, a, b, c} {
		caughtUp += strings.Count(p.errText(), "catch-up: running a slot nobody ran")
	}
	t.Logf("%d slots from %s to %s: %d missed, %d catch-up runs", int(last.Sub(first)/time.Second)+1, slots[0], slots[len(slots)-1], missed, caughtUp)
	if missed == 0 || caughtUp < 2 {
		t.Errorf("two outages made %d missed slots and %d catch-up runs; want missed slots and a catch-up run after each outage", missed, caughtUp)
	}
}

// TestIntegration_CrontabJobFeatures: jitter (the same delay on whichever
// node fires), output to the log and the record, on-failure, MAILTO, and
// reloads: a bad line is reported with its file and line while the other
// lines keep firing; a change is picked up on SIGHUP and without one.
func TestIntegration_CrontabJobFeatures(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	dir := t.TempDir()
	tab := filepath.Join(dir, "tab")
	sendmail := filepath.Join(dir, "sendmail")
	// Each mail whole, or not yet: written aside, then renamed.
	if err := os.WriteFile(sendmail, []byte("#!/bin/sh\ncat > "+dir+"/.mail.$$ && mv "+dir+"/.mail.$$ "+dir+"/mail.$$\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf(`MAILTO=ops@example.com
# hacron: name=out jitter=1500ms
@every 2s printf 'line1\nline2 \%%s\n' "$HACRON_SLOT"
MAILTO=""
# hacron: name=fail on-failure='echo $HACRON_JOB $HACRON_RESULT $HACRON_EXIT_CODE >> %s/hook'
@every 3s exit 3
`, dir)
	writeTab(t, tab, base)
	env := append(hacronEnv(t, zkS.ConnectString(), cluster), "HACRON_TEST_SENDMAIL="+sendmail)
	a := startCronAgent(t, env, "node-a", tab)
	a.waitState("active", 30*time.Second)
	b := startCronAgent(t, env, "node-b", tab)
	b.waitState("passive", 30*time.Second)
	waitFor(t, 20*time.Second, "runs of out on node-a", func() bool { return len(runsOf(t, zkS.ConnectString(), cluster, "out")) >= 2 })
	a.signal(syscall.SIGKILL)
	b.waitState("active", 30*time.Second)
	waitFor(t, 20*time.Second, "runs of out on node-b", func() bool {
		return slices.ContainsFunc(runsOf(t, zkS.ConnectString(), cluster, "out"), func(r runRecord) bool { return r.Node == "node-b" && r.End != "" })
	})

	// Jitter: every run started at its slot plus the job's delay for that
	// slot, on either node.
	nodes := map[string]bool{}
	for _, r := range runsOf(t, zkS.ConnectString(), cluster, "out") {
		slot, _ := time.Parse(time.RFC3339, r.Slot)
		start, _ := time.Parse(time.RFC3339Nano, r.Start)
		want := slot.Add(crontab.Jitter("out", slot, 1500*time.Millisecond))
		if d := start.Sub(want); d < 0 || d > 2*time.Second {
			t.Errorf("out %s on %s started %v after its jittered time %s", r.Slot, r.Node, d, want.Format(time.RFC3339Nano))
		}
		if r.End != "" && r.Result == resultOK {
			nodes[r.Node] = true
			if wantTail := "line1\nline2 " + r.Slot + "\n"; r.OutputTail != wantTail {
				t.Errorf("out %s: output_tail %q, want %q", r.Slot, r.OutputTail, wantTail)
			}
		}
	}
	if !nodes["node-a"] || !nodes["node-b"] {
		t.Errorf("out completed on %v, want both nodes", nodes)
	}
	if !strings.Contains(b.errText(), `job=out`) || !strings.Contains(b.errText(), `line="line2 `) {
		t.Errorf("the job's output is not in the agent's log")
	}

	// on-failure, on the node that ran the job.
	waitFor(t, 20*time.Second, "the on-failure command", func() bool { return slices.Contains(fileLines(t, dir+"/hook"), "fail failed 3") })

	// MAILTO: out's output mailed; fail (MAILTO="") mails nothing.
	var mails []string
	waitFor(t, 20*time.Second, "a mail", func() bool {
		mails, _ = filepath.Glob(dir + "/mail.*")
		return len(mails) > 0
	})
	for _, m := range mails {
		text, _ := os.ReadFile(m)
		if !strings.Contains(string(text), "To: ops@example.com\n") || !strings.Contains(string(text), "\n\nline1\nline2 ") {
			t.Errorf("mail %s:\n%s", m, text)
		}
	}

	// A reload with a bad line: reported with file and line; the good
	// lines, old and new, keep firing.
	writeTab(t, tab, base+"61 * * * * true\n# hacron: name=added\n@every 1s true\n")
	b.signal(syscall.SIGHUP)
	waitFor(t, 20*time.Second, "the added job", func() bool { return len(runsOf(t, zkS.ConnectString(), cluster, "added")) > 0 })
	if !strings.Contains(b.errText(), tab+`:7: bad schedule \"61 * * * *\"`) {
		t.Errorf("the bad line is not reported with its file and line:\n%s", b.errText())
	}
	before := len(runsOf(t, zkS.ConnectString(), cluster, "out"))
	waitFor(t, 20*time.Second, "out still firing", func() bool { return len(runsOf(t, zkS.ConnectString(), cluster, "out")) > before })

	// A change without SIGHUP is picked up too.
	writeTab(t, tab, base+"# hacron: name=added2\n@every 1s true\n")
	waitFor(t, 20*time.Second, "the job added without SIGHUP", func() bool { return len(runsOf(t, zkS.ConnectString(), cluster, "added2")) > 0 })
}
