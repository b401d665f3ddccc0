package main

import (
	"errors"
	"flag"
	"fmt"
	"log/syslog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"hacron/internal/contain"
	"hacron/internal/zktest"
)

var update = flag.Bool("update", false, "rewrite the golden files: testdata/script, dist/man, dist/completion")

// TestMain makes this test binary double as hacron: testscript puts a copy
// named "hacron" on PATH, and the agent tests start it as real processes.
func TestMain(m *testing.M) {
	testscript.Main(cleanup{m}, map[string]func(){"hacron": hacronMain, "rcron": hacronMain, "hacron-probe": probeMain})
}

// hacronMain is main with the test seams, set only here: HACRON_TEST_NOW
// starts a run "late" without sleeping; HACRON_TEST_SYSLOG sends syslog to
// a socket the test listens on; HACRON_TEST_CONTAINMENT forces a kind of
// containment (cgroup1, cgroup2, pgroup); HACRON_TEST_RESIGN_LIMIT
// shortens resign's wait for the agent's answer; HACRON_TEST_SENDMAIL
// names the mailer scheduled runs' output goes to.
func hacronMain() {
	if v := os.Getenv("HACRON_TEST_SENDMAIL"); v != "" {
		sendmailPath = v
	}
	if v := os.Getenv("HACRON_TEST_CONTAINMENT"); v != "" {
		detectContainment = func() *contain.Hierarchy { return forcedContainment(contain.Kind(v)) }
	}
	if v := os.Getenv("HACRON_TEST_RESIGN_LIMIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			panic(err)
		}
		resignAnswerLimit = d
	}
	if v := os.Getenv("HACRON_TEST_NOW"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			panic(err)
		}
		slotClock = func() time.Time { return t }
	}
	if path := os.Getenv("HACRON_TEST_SYSLOG"); path != "" {
		dialSyslog = func(p syslog.Priority) (*syslog.Writer, error) {
			return syslog.Dial("unixgram", path, p, "hacron")
		}
	}
	main()
}

type cleanup struct{ m *testing.M }

func (c cleanup) Run() int {
	code := c.m.Run()
	removeTestScopes()
	zktest.CloseShared()
	return code
}

var scriptSeq atomic.Int64

// TestIntegration_Scripts runs testdata/script/*.txtar against the real
// binary and a real ZooKeeper. Every script gets its own cluster, socket
// and an empty config file (a host's /etc/hacron must not leak in). Under
// -short no ZooKeeper is started: the scripts that need one begin with
// `[short] skip`, and the others (help, config) still run.
func TestIntegration_Scripts(t *testing.T) {
	zkConnect := "127.0.0.1:1" // nothing listens there
	if !testing.Short() {
		zkConnect = sharedZK(t).ConnectString()
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		UpdateScripts:       *update,
		Setup: func(env *testscript.Env) error {
			conf := env.WorkDir + "/empty.conf"
			if err := os.WriteFile(conf, nil, 0o644); err != nil {
				return err
			}
			env.Setenv("HACRON_CONFIG", conf)
			env.Setenv("HACRON_ZK", zkConnect)
			env.Setenv("HACRON_CLUSTER", fmt.Sprintf("script-%d-%d", os.Getpid(), scriptSeq.Add(1)))
			env.Setenv("HACRON_SESSION_TIMEOUT", "3s")
			env.Setenv("HACRON_SOCKET", env.WorkDir+"/agent.sock")
			env.Setenv("HACRON_NODE", "node-a")
			bin, err := exeLookPath("hacron")
			if err != nil {
				return err
			}
			env.Setenv("HACRON_BIN", bin)
			// A detached agent escapes testscript's background tracking:
			// stop it even when the script failed half-way.
			env.Defer(func() {
				if b, err := os.ReadFile(env.WorkDir + "/agent.pid"); err == nil {
					if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":  cmdExitcode,
			"waitstate": cmdWaitState,
		},
	})
}

// exitcode N prog args...: run prog and require exit code N exactly
// (testscript itself only knows zero and non-zero). stdout and stderr are
// kept for the next commands.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N prog [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: bad code %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exitcode: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// waitstate SOCKET STATE: poll `hacron state` on SOCKET until it prints
// STATE (active, passive), for up to 30 s.
func cmdWaitState(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitstate SOCKET active|passive")
	}
	end := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(end) {
		_ = ts.Exec("hacron", "state", "--socket", args[0]) // exit 1 or 2 until then: stdout tells
		last = strings.TrimSpace(ts.ReadFile("stdout"))
		if last == args[1] {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("waitstate: %s still says %q after 30s, want %q", args[0], last, args[1])
}
