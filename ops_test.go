package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
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
// systemd-analyze where the machine has it.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	unit, err := os.ReadFile("dist/hacron-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "Restart=always", "WatchdogSec="} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	// verify wants ExecStart's binary to exist: point it at this test
	// binary's hacron.
	bin, err := exec.LookPath("hacron")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "hacron-agent.service")
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/hacron", bin)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	t.Logf("systemd-analyze verify: %s", out)
	if err != nil {
		t.Errorf("systemd-analyze verify: %v", err)
	}
}

// TestMakeInstall installs into a scratch root: the binary, the unit
// pointing at it, the example config, the rcron symlink.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root := t.TempDir()
	out, err := exec.Command("make", "install", "DESTDIR="+root, "PREFIX=/opt/hacron", "RCRON=1").CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"/opt/hacron/bin/hacron", "/etc/systemd/system/hacron-agent.service", "/etc/hacron/hacron.conf"} {
		if _, err := os.Stat(root + f); err != nil {
			t.Errorf("make install did not install %s: %v", f, err)
		}
	}
	if l, err := os.Readlink(root + "/opt/hacron/bin/rcron"); err != nil || l != "hacron" {
		t.Errorf("rcron symlink: %q %v", l, err)
	}
	unit, _ := os.ReadFile(root + "/etc/systemd/system/hacron-agent.service")
	if !strings.Contains(string(unit), "ExecStart=/opt/hacron/bin/hacron agent") {
		t.Errorf("the installed unit does not start /opt/hacron/bin/hacron:\n%s", unit)
	}
}
