package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kong"
)

// freePort returns a loopback port nobody listens on right now.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestIntegration_SyslogRunLines(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := hacronEnv(t, zkS.ConnectString(), clusterName(t))
	a := startAgent(t, env, "node-a")
	a.waitState("active", 20*time.Second)

	// A syslog daemon of our own: a unixgram socket hacron logs to.
	sock := filepath.Join(t.TempDir(), "log")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	runEnv := append(env, "HACRON_TEST_SYSLOG="+sock)
	r := startProc(t, "run with syslog", runEnv, "run", "--socket", a.socket, "--syslog", "--syslog-facility", "LOG_LOCAL3", "--name", "nightly", "--", "true")
	if code := r.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if r.outText() != "" || r.errText() != "" {
		t.Errorf("with --syslog, hacron run printed %q %q", r.outText(), r.errText())
	}
	var msgs []string
	buf := make([]byte, 64<<10)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(msgs) < 2 {
		n, err := pc.Read(buf)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(msgs), err)
		}
		msgs = append(msgs, strings.TrimRight(string(buf[:n]), "\n"))
	}
	t.Logf("syslog: %q", msgs)
	// <PRI> = facility LOCAL3 (19) * 8 + severity info (6) = 158.
	start := regexp.MustCompile(`^<158>.*hacron\[\d+\]: msg=run cluster=\S+ state=active status=start job=nightly slot=\S+ token=[1-9]\d* cmd=true$`)
	end := regexp.MustCompile(`^<158>.*hacron\[\d+\]: msg=run cluster=\S+ state=active status=ok dur=\d+\.\d{3} job=nightly slot=\S+ token=[1-9]\d* exit_code=0 result=ok cmd=true$`)
	if !start.MatchString(msgs[0]) {
		t.Errorf("start line %q does not match %v", msgs[0], start)
	}
	if !end.MatchString(msgs[1]) {
		t.Errorf("end line %q does not match %v", msgs[1], end)
	}
}

func TestIntegration_MetricsScraped(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	env := hacronEnv(t, zkS.ConnectString(), clusterName(t))
	addr := freePort(t)
	sock := filepath.Join(t.TempDir(), "m.sock")
	p := startProc(t, "agent with metrics", env, "agent", "--node", "node-m", "--socket", sock, "--metrics-listen", addr)
	a := &agentProc{proc: p, node: "node-m", socket: sock, env: env}
	a.waitState("active", 20*time.Second)
	for _, code := range []string{"0", "3"} {
		a.run("--name", "job"+code, "--", "sh", "-c", "exit "+code).wait(10 * time.Second)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`(?m)^hacron_active 1$`,
		`(?m)^hacron_zk_session_state 3$`,
		`(?m)^hacron_lease_remaining_seconds 0\.\d+|^hacron_lease_remaining_seconds 1\.\d+`,
		`(?m)^hacron_state_transitions_total\{reason="renewed",to="active"\} 1$`,
		`(?m)^hacron_runs_total\{job="job0",result="ok"\} 1$`,
		`(?m)^hacron_runs_total\{job="job3",result="failed"\} 1$`,
		`(?m)^hacron_run_duration_seconds_count\{job="job0"\} 1$`,
		`(?m)^hacron_admission_seconds_count 2$`,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(10 * time.Second); code != 0 {
		t.Errorf("agent exit %d", code)
	}
}

// TestSystemdUnitVerifies checks dist/hacron-agent.service with
// systemd-analyze where the machine has it, and the lines the daemon's
// behaviour rests on.
func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile("dist/hacron-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify", "Restart=always", "WatchdogSec=",
		// Settings live in hacron.conf: a flag here would beat it.
		"\nExecStart=/usr/local/bin/hacron agent\n",
		"\nEnvironmentFile=-/etc/default/hacron\n",
		"\nExecReload=/bin/kill -HUP $MAINPID\n",
		"\nExecStopPost=-/usr/local/lib/hacron/state-passive\n",
		"\nRuntimeDirectory=hacron\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	// verify wants the programs to exist: point ExecStart at this test
	// binary's hacron, ExecStopPost at the script in dist/.
	bin, err := exec.LookPath("hacron")
	if err != nil {
		t.Fatal(err)
	}
	helper, err := filepath.Abs("dist/hacron-state-passive")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "hacron-agent.service")
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/hacron", bin)
	text = strings.ReplaceAll(text, "/usr/local/lib/hacron/state-passive", helper)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	t.Logf("systemd-analyze verify: %s", out)
	if err != nil {
		t.Errorf("systemd-analyze verify: %v", err)
	}
	// An unknown key or a bad value is only a warning to verify: any
	// complaint about this unit fails the test.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "hacron-agent.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}

// TestStatePassiveScript runs the unit's ExecStopPost helper against
// configs of every shape and checks that it writes "passive" to exactly
// the state file hacron's own parser reads from the config, and nothing
// else.
func TestStatePassiveScript(t *testing.T) {
	helper, err := filepath.Abs("dist/hacron-state-passive")
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []string{
		"state_file = D/a\n",
		"cluster = x\nstate_file=D/b # the state\n",
		"  state_file\t\"D/c d\"   # quoted, with a space\n",
		"state_file 'D/e#f'\n",
		"state_file = D/old\nstate_file = D/new\n",
		"# state_file = D/no\n;state_file = D/no\nnode = n\n",
		"state_file = D/g#h\r\n",
		"",
	} {
		dir := t.TempDir()
		conf := filepath.Join(dir, "hacron.conf")
		if err := os.WriteFile(conf, []byte(strings.ReplaceAll(tc, "D/", dir+"/")), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(conf, true)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		want := cfg.values["state-file"].value
		if want != "" {
			if err := os.WriteFile(want, []byte("active\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(helper)
		cmd.Env = append(os.Environ(), "HACRON_CONFIG="+conf)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("case %d %q: %v: %s", i, tc, err, out)
			continue
		}
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		wantNames := []string{"hacron.conf"}
		if want != "" {
			wantNames = append(wantNames, filepath.Base(want))
			if b, err := os.ReadFile(want); err != nil || string(b) != "passive\n" {
				t.Errorf("case %d %q: %s holds %q %v, want passive", i, tc, want, b, err)
			}
		}
		slices.Sort(wantNames)
		if !slices.Equal(names, wantNames) {
			t.Errorf("case %d %q: the directory holds %v, want %v", i, tc, names, wantNames)
		}
	}
	// A state file whose directory is gone: a failure, and no debris.
	conf := filepath.Join(t.TempDir(), "hacron.conf")
	if err := os.WriteFile(conf, []byte("state_file = /nonexistent/hacron/state\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helper)
	cmd.Env = append(os.Environ(), "HACRON_CONFIG="+conf)
	if err := cmd.Run(); err == nil {
		t.Errorf("writing into a missing directory succeeded")
	}
}

// TestMakeInstall installs into a scratch root: the binary, the stop
// helper, the unit pointing at both, the example config, the rcron
// symlink; a second install keeps an edited unit and config, FORCE=1
// replaces them.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root := t.TempDir()
	install := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("make", append([]string{"install", "DESTDIR=" + root, "PREFIX=/opt/hacron"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("make install %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	install("RCRON=1")
	for _, f := range []string{"/opt/hacron/bin/hacron", "/opt/hacron/lib/hacron/state-passive", "/etc/systemd/system/hacron-agent.service", "/etc/hacron/hacron.conf"} {
		if _, err := os.Stat(root + f); err != nil {
			t.Errorf("make install did not install %s: %v", f, err)
		}
	}
	if l, err := os.Readlink(root + "/opt/hacron/bin/rcron"); err != nil || l != "hacron" {
		t.Errorf("rcron symlink: %q %v", l, err)
	}
	unitPath := root + "/etc/systemd/system/hacron-agent.service"
	confPath := root + "/etc/hacron/hacron.conf"
	unit, _ := os.ReadFile(unitPath)
	for _, want := range []string{"\nExecStart=/opt/hacron/bin/hacron agent\n", "\nExecStopPost=-/opt/hacron/lib/hacron/state-passive\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the installed unit lacks %q:\n%s", want, unit)
		}
	}
	if strings.Contains(string(unit), "/usr/local/") {
		t.Errorf("the installed unit still names /usr/local:\n%s", unit)
	}

	edited := []byte("# edited by the admin\n")
	for _, p := range []string{unitPath, confPath} {
		if err := os.WriteFile(p, edited, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := install()
	for _, p := range []string{unitPath, confPath} {
		if b, _ := os.ReadFile(p); string(b) != string(edited) {
			t.Errorf("make install replaced the edited %s", p)
		}
		if !strings.Contains(out, "kept "+p+" (FORCE=1 replaces it)") {
			t.Errorf("make install did not say it kept %s:\n%s", p, out)
		}
	}
	install("FORCE=1")
	for p, src := range map[string]string{confPath: "dist/hacron.conf"} {
		want, _ := os.ReadFile(src)
		if b, _ := os.ReadFile(p); string(b) != string(want) {
			t.Errorf("FORCE=1 did not replace %s", p)
		}
	}
	if b, _ := os.ReadFile(unitPath); !strings.Contains(string(b), "ExecStart=/opt/hacron/bin/hacron agent") {
		t.Errorf("FORCE=1 did not replace the unit:\n%s", b)
	}
}

// TestExampleConfigRunsAnywhere: the shipped hacron.conf parses, asks for
// no syslog (a host without /dev/log must run jobs) and names the state
// file the unit's stop helper resets.
func TestExampleConfigRunsAnywhere(t *testing.T) {
	cfg, err := loadConfig("dist/hacron.conf", true)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := cfg.values["syslog"]; ok {
		t.Errorf("the example config sets syslog = %s (line %d)", v.value, v.line)
	}
	if cfg.values["state-file"].value == "" {
		t.Errorf("the example config names no state_file")
	}
	unsetenv(t, "HACRON_CLUSTER")
	unsetenv(t, "HACRON_ZK")
	var c cli
	parser, err := kong.New(&c, kong.Vars{"version": "test", "default_config": defaultConfigPath, "rcron_config": rcronDefaultConfig},
		kong.Resolvers(cfg.resolver()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"agent"}); err != nil {
		t.Errorf("hacron agent with the example config: %v", err)
	}
}
