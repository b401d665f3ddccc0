package main

// The run's first step on the agent socket: a skip is decided before any
// process of the job exists; the group is made only when the agent asks
// for it; and a wrapper still talks to an agent older than that step.

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hacron/internal/wire"
)

// TestIntegration_StartSkipsBeforeGroup speaks the protocol to real agents:
// the passive one skips "start" at once; the active one asks for the
// group, checks it, admits, and records the run; a "start" carrying a pgid
// or followed by anything but the group is refused and runs nothing.
func TestIntegration_StartSkipsBeforeGroup(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	a, b := startPair(t, hacronEnv(t, zkS.ConnectString(), cluster))
	start := `{"v":1,"op":"start","job":"step","slot":"s1","claim":true,"argv":["true"]}` + "\n"

	send := func(c net.Conn, line string) {
		t.Helper()
		if _, err := c.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	talk := func(sock string) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(15 * time.Second))
		return c, bufio.NewReader(c)
	}
	answer := func(r *bufio.Reader) wire.Reply {
		t.Helper()
		var rep wire.Reply
		if err := wire.Read(r, &rep); err != nil {
			t.Fatalf("reading the agent's answer: %v", err)
		}
		return rep
	}

	c, r := talk(b.socket)
	send(c, start)
	if rep := answer(r); rep.Skip != skipPassive || rep.Group {
		t.Errorf("passive agent answered %+v to start, want a skip without the group", rep)
	}

	c, r = talk(a.socket)
	send(c, start)
	if rep := answer(r); !rep.Group || rep.Skip != "" || rep.Admitted {
		t.Fatalf("active agent answered %+v to start, want the group asked for", rep)
	}
	job := exec.Command("sleep", "30")
	job.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = job.Process.Kill(); _ = job.Wait() })
	send(c, `{"v":1,"op":"group","pgid":`+strconv.Itoa(job.Process.Pid)+`}`+"\n")
	rep := answer(r)
	if !rep.Admitted || rep.Slot != "s1" || rep.DeadlineMono == 0 {
		t.Fatalf("after the group: %+v, want admitted for slot s1 with a deadline", rep)
	}
	_ = job.Process.Kill()
	_ = job.Wait() // killed: the error says so
	send(c, `{"v":1,"op":"exit","exit_code":0,"result":"ok"}`+"\n")
	for {
		if rep := answer(r); rep.OK {
			break
		}
	}
	waitFor(t, 10*time.Second, "the run's record completed", func() bool {
		runs := runsOf(t, zkS.ConnectString(), cluster, "step")
		return len(runs) == 1 && runs[0].Result == resultOK && runs[0].Node == "node-a"
	})

	for _, tc := range []struct{ name, payload, want string }{
		{"start with a pgid", `{"v":1,"op":"start","job":"step2","slot":"s","argv":["true"],"pgid":42}` + "\n", "pgid before the group"},
		{"start, then exit", `{"v":1,"op":"start","job":"step3","slot":"s","argv":["true"]}` + "\n" + `{"v":1,"op":"exit"}` + "\n", `\"exit\" where the group was expected`},
	} {
		c, r := talk(a.socket)
		send(c, tc.payload)
		var got []string
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				got = append(got, line)
			}
			if err != nil {
				break
			}
		}
		if all := strings.Join(got, ""); !strings.Contains(all, tc.want) {
			t.Errorf("%s: the agent answered %q, want %q", tc.name, all, tc.want)
		}
	}
	for _, j := range []string{"step2", "step3"} {
		if runs := runsOf(t, zkS.ConnectString(), cluster, j); len(runs) != 0 {
			t.Errorf("a refused start made run records for %s: %+v", j, runs)
		}
	}
}

// oldAgent is an agent socket as agents before "start" spoke it, watching
// what the real wrapper does: it refuses "start" as an unknown request,
// and skips every "run" after checking that its process group is the
// caller's child.
type oldAgent struct {
	mu   sync.Mutex
	seen []string // per request: its op, "+children" when the caller had child processes then
	pgid int
}

func (o *oldAgent) serve(t *testing.T, ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		func() {
			defer c.Close()
			_, pid, err := wire.PeerCred(c)
			if err != nil {
				t.Error(err)
				return
			}
			var req map[string]any
			line, _ := bufio.NewReader(c).ReadBytes('\n')
			if err := json.Unmarshal(line, &req); err != nil {
				t.Errorf("old agent: %v: %q", err, line)
				return
			}
			op, _ := req["op"].(string)
			if children(pid) {
				op += "+children"
			}
			o.mu.Lock()
			o.seen = append(o.seen, op)
			if p, ok := req["pgid"].(float64); ok {
				o.pgid = int(p)
			}
			o.mu.Unlock()
			if req["op"] == "start" {
				wire.Write(c, wire.Reply{V: wire.Version, Error: `unknown request "start"`, Code: exitUsage})
				return
			}
			wire.Write(c, wire.Reply{V: wire.Version, Skip: skipPassive})
		}()
	}
}

// children says whether process pid has child processes now.
func children(pid int) bool {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, f := range tasks {
		if b, _ := os.ReadFile(f); strings.TrimSpace(string(b)) != "" {
			return true
		}
	}
	return false
}

// TestStartFallsBackForOldAgents: the real wrapper asks "start" with no
// process of the job made yet; an agent that does not know "start" gets
// the request it knows, with the group made first.
func TestStartFallsBackForOldAgents(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "old.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o := &oldAgent{}
	go o.serve(t, ln)
	conf := filepath.Join(t.TempDir(), "empty.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("hacron", "run", "--socket", sock, "--", "true")
	cmd.Env = append(os.Environ(), "HACRON_CONFIG="+conf)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Fatalf("hacron run against an old agent: %v: %q, want a quiet skip", err, out)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if strings.Join(o.seen, " ") != "start run+children" || o.pgid <= 1 {
		t.Errorf("the old agent saw %q with pgid %d, want start (no child yet), then run with the job's group", o.seen, o.pgid)
	}
}
