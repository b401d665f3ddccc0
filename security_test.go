package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// testUser creates (once) an unprivileged user for the tests; they need
// root for it and are skipped without.
func testUser(t *testing.T) *user.User {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to create a test user")
	}
	const name = "hacron-t1"
	if u, err := user.Lookup(name); err == nil {
		return u
	}
	if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput(); err != nil {
		t.Skipf("useradd: %v: %s", err, out)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// sharedDir is a directory the test user can reach, with a copy of the
// hacron binary it may execute.
func sharedDir(t *testing.T) (dir, bin string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "hacron-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := exeLookPath("hacron")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "hacron")
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

func TestIntegration_NonRootUser(t *testing.T) {
	t.Parallel()
	u := testUser(t)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	grp, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	zkS := sharedZK(t)
	cluster := clusterName(t)
	dir, bin := sharedDir(t)
	env := hacronEnv(t, zkS.ConnectString(), cluster)
	env = append(env, "HACRON_CONFIG="+filepath.Join(dir, "empty.conf"))
	sock := filepath.Join(dir, "agent.sock")
	p := startProc(t, "agent", env, "agent", "--node", "node-a", "--socket", sock, "--socket-group", grp.Name)
	a := &agentProc{proc: p, node: "node-a", socket: sock, env: env}
	a.waitState("active", 20*time.Second)

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || int(st.Uid) != 0 || int(st.Gid) != gid {
		t.Errorf("socket mode %v owner %d:%d, want 0660 root:%d", fi.Mode().Perm(), st.Uid, st.Gid, gid)
	}

	asUser := func(args ...string) (int, string) {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return code, string(out)
	}

	code, out := asUser("resign", "--socket", sock, "--hold", "5s")
	t.Logf("resign as %s: exit %d: %s", u.Username, code, out)
	if code != exitUsage || !strings.Contains(out, "permission denied") {
		t.Errorf("resign by %s: exit %d %q, want 125 and permission denied", u.Username, code, out)
	}
	if a.state() != "active" {
		t.Errorf("the agent stepped down for %s", u.Username)
	}

	code, out = asUser("run", "--socket", sock, "--name", "backup", "--slot", "S", "--", "sh", "-c", "echo $HACRON_JOB")
	if code != 0 || strings.TrimSpace(out) != u.Username+":backup" {
		t.Errorf("run as %s: exit %d, HACRON_JOB %q; want %s:backup", u.Username, code, out, u.Username)
	}
	// root's job of the same name and slot is another job: not blocked.
	if code := a.run("--name", "backup", "--slot", "S", "--", "true").wait(10 * time.Second); code != 0 {
		t.Errorf("root's run: exit %d", code)
	}
	userRuns := runsOf(t, zkS.ConnectString(), cluster, u.Username+":backup")
	rootRuns := runsOf(t, zkS.ConnectString(), cluster, "backup")
	if len(userRuns) != 1 || userRuns[0].UID != uid || userRuns[0].User != u.Username {
		t.Errorf("the user's records: %+v", userRuns)
	}
	if len(rootRuns) != 1 || rootRuns[0].UID != 0 || rootRuns[0].User != "root" {
		t.Errorf("root's records: %+v", rootRuns)
	}
	// status --job takes the user's own name as hacron run gives it, and
	// USER:JOB for anyone's.
	code, out = asUser("status", "--job", "backup", "--json")
	if code != 0 || !strings.Contains(out, `"job": "`+u.Username+`:backup"`) || strings.Contains(out, `"job": "backup"`) {
		t.Errorf("status --job backup as %s: exit %d: %s", u.Username, code, out)
	}
	sp := startProc(t, "status as root", env, "status", "--job", u.Username+":backup", "--json")
	if code := sp.wait(20 * time.Second); code != 0 || !strings.Contains(sp.outText(), `"user": "`+u.Username+`"`) {
		t.Errorf("status --job %s:backup as root: exit %d: %s", u.Username, code, sp.outText())
	}

	// A socket of another group: the hint names socket_group and the
	// caller's groups instead of asking whether the agent runs.
	if err := os.Chown(sock, 0, 0); err != nil {
		t.Fatal(err)
	}
	code, out = asUser("state", "--socket", sock)
	t.Logf("state as %s on root's socket: exit %d: %s", u.Username, code, out)
	for _, want := range []string{
		"hacron: error: agent unreachable at " + sock + ": connect: permission denied\n",
		"hacron: hint: the socket is for group root (socket_group in hacron.conf); " + u.Username + " is in: " + grp.Name + "\n",
		"hacron: hint: add " + u.Username + " to group root and log in again, or set socket_group",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("state as %s: %q lacks %q", u.Username, out, want)
		}
	}
	if code != 2 || strings.Contains(out, "is `hacron agent` running") {
		t.Errorf("state as %s: exit %d %q, want 2 and the socket_group hint only", u.Username, code, out)
	}
}

// TestIntegration_DigestAuth: with --zk-auth-file, hacron's nodes are
// writable by that identity only: a client without credentials, or with a
// wrong password, gets NoAuth on the election node, a run record and a
// running marker, and hacron keeps working.
func TestIntegration_DigestAuth(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	authFile := filepath.Join(t.TempDir(), "zk-auth")
	if err := os.WriteFile(authFile, []byte("hacron:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cluster := clusterName(t)
	env := append(hacronEnv(t, zkS.ConnectString(), cluster), "HACRON_ZK_AUTH_FILE="+authFile)
	a := startAgent(t, env, "node-a")
	a.waitState("active", 20*time.Second)
	dir := t.TempDir()
	long := a.run("--name", "guarded", "--no-overlap", "--", "sh", "-c", "touch "+dir+"/started; sleep 3")
	waitFor(t, 10*time.Second, "the guarded job", func() bool { _, err := os.Stat(dir + "/started"); return err == nil })

	root := "/hacron/" + cluster
	intruders := map[string]*zk.Conn{
		"no credentials": rawConnT(t, zkS.ConnectString(), ""),
		"wrong password": rawConnT(t, zkS.ConnectString(), "hacron:wrong"),
	}
	for who, c := range intruders {
		if _, _, err := c.Children(root + "/election"); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s: listing the election: %v, want NoAuth (no world read by default)", who, err)
		}
	}
	owner := rawConnT(t, zkS.ConnectString(), "hacron:s3cret")
	kids, _, err := owner.Children(root + "/election")
	if err != nil || len(kids) != 1 {
		t.Fatalf("election as hacron: %v %v", kids, err)
	}
	runs, _, err := owner.Children(root + "/jobs/guarded/runs")
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs as hacron: %v %v", runs, err)
	}
	targets := []string{root + "/election/" + kids[0], root + "/jobs/guarded/runs/" + runs[0], root + "/jobs/guarded/running"}
	for who, c := range intruders {
		for _, p := range targets {
			if err := c.Delete(p, -1); !errors.Is(err, zk.ErrNoAuth) {
				t.Errorf("%s deleting %s: %v, want NoAuth", who, p, err)
			}
			if _, err := c.Set(p, []byte("forged"), -1); !errors.Is(err, zk.ErrNoAuth) {
				t.Errorf("%s changing %s: %v, want NoAuth", who, p, err)
			}
		}
		if _, err := c.Create(root+"/jobs/guarded/runs/tomorrow", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s claiming a slot: %v, want NoAuth", who, err)
		}
	}
	if code := long.wait(20 * time.Second); code != 0 {
		t.Errorf("the guarded job: exit %d", code)
	}
	if a.state() != "active" {
		t.Errorf("the agent is %s after the intrusions", a.state())
	}
	if code := a.run("--name", "after", "--", "true").wait(10 * time.Second); code != 0 {
		t.Errorf("a run after the intrusions: exit %d", code)
	}

	// --zk-world-read: monitoring may read, still not write.
	cluster2 := clusterName(t)
	env2 := append(hacronEnv(t, zkS.ConnectString(), cluster2), "HACRON_ZK_AUTH_FILE="+authFile, "HACRON_ZK_WORLD_READ=1")
	b := startAgent(t, env2, "node-b")
	b.waitState("active", 20*time.Second)
	c := intruders["no credentials"]
	kids2, _, err := c.Children("/hacron/" + cluster2 + "/election")
	if err != nil || len(kids2) != 1 {
		t.Fatalf("reading with world read: %v %v", kids2, err)
	}
	if err := c.Delete("/hacron/"+cluster2+"/election/"+kids2[0], -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("deleting with world read: %v, want NoAuth", err)
	}
}

// rawConnT is a plain client with optional digest credentials.
func rawConnT(t *testing.T, connect, auth string) *zk.Conn {
	t.Helper()
	c := rawConn(t, connect)
	if auth != "" {
		if err := c.AddAuth("digest", []byte(auth)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestIntegration_SocketProtocolAbuse talks to a real agent the way a
// broken or hostile client would: EOF before, inside and after a request,
// an over-long line, another version, a process group that is not the
// caller's. The agent answers with an error or nothing, keeps serving, and
// runs nothing.
func TestIntegration_SocketProtocolAbuse(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	a := startAgent(t, hacronEnv(t, zkS.ConnectString(), cluster), "node-a")
	a.waitState("active", 20*time.Second)
	send := func(payload string, closeWrite bool) string {
		c, err := net.Dial("unix", a.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// The agent may hang up half-way through the abuse: what it
		// answered, read below, is what the test looks at.
		if payload != "" {
			_, _ = c.Write([]byte(payload))
		}
		if closeWrite {
			_ = c.(*net.UnixConn).CloseWrite()
		}
		b, _ := io.ReadAll(c)
		return string(b)
	}
	// A process group of somebody else's: its leader's parent is not us.
	out, err := exec.Command("sh", "-c", "setsid sleep 30 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	otherPID, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	sleeper, _ := os.FindProcess(otherPID)
	defer sleeper.Kill()
	waitFor(t, 5*time.Second, "the other group", func() bool { return len(groupMembers(otherPID)) == 1 })
	for _, tc := range []struct {
		name, payload string
		want          string
	}{
		{"EOF before a request", "", `"error":"bad request: EOF"`},
		{"EOF inside a request", `{"v":1,"op":"st`, `"error":"bad request: unexpected EOF"`},
		{"over-long line", `{"v":1,"op":"state","job":"` + strings.Repeat("x", 70000) + `"}` + "\n", `message too long`},
		{"another version", `{"v":2,"op":"state"}` + "\n", `protocol version 2`},
		{"unknown field", `{"v":1,"op":"state","sudo":true}` + "\n", `unknown field`},
		{"unknown op", `{"v":1,"op":"reboot"}` + "\n", `unknown request`},
		{"someone else's process group", fmt.Sprintf(`{"v":1,"op":"run","job":"x","slot":"s","argv":["true"],"pgid":%d}`+"\n", otherPID), `is not a process group of the caller`},
		{"pid 1", `{"v":1,"op":"run","job":"x","slot":"s","argv":["true"],"pgid":1}` + "\n", `bad process group`},
	} {
		got := send(tc.payload, true)
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s: the agent answered %q, want %q", tc.name, got, tc.want)
		}
	}
	if err := sleeper.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the agent signalled another process's group: %v", err)
	}
	if a.state() != "active" {
		t.Errorf("the agent is %s after the abuse", a.state())
	}
	if runs := runsOf(t, zkS.ConnectString(), cluster, "x"); len(runs) != 0 {
		t.Errorf("abuse created run records: %+v", runs)
	}
}

// TestIntegration_HostileRunRecords: a record that names a future slot
// (written by a skewed or hostile client) makes that slot skip, never run
// twice; garbage records do not break status or pruning.
func TestIntegration_HostileRunRecords(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	a := startAgent(t, hacronEnv(t, zkS.ConnectString(), cluster), "node-a")
	a.waitState("active", 20*time.Second)
	conn := rawConn(t, zkS.ConnectString())
	runs := "/hacron/" + cluster + "/jobs/nightly/runs"
	zc := &zkClient{acl: zk.WorldACL(zk.PermAll)}
	if err := zc.ensurePath(conn, runs); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"2999-01-01T00:00:00Z": []byte(`{"job":"nightly","node":"mallory","slot":"2999-01-01T00:00:00Z","start":"2999-01-01T00:00:00.000Z"}`),
		"garbage":              []byte("{not json"),
		"huge":                 make([]byte, 500_000),
	} {
		if _, err := conn.Create(runs+"/"+name, data, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	r := a.run("--name", "nightly", "--slot", "2999-01-01T00:00:00Z", "--", "touch", dir+"/ran")
	if code := r.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d, want a skip", code)
	}
	if _, err := os.Stat(dir + "/ran"); err == nil {
		t.Errorf("the job ran for a slot already recorded")
	}
	for i := range 3 {
		if code := a.run("--name", "nightly", "--history", "2", "--slot", fmt.Sprintf("ok-%d", i), "--", "true").wait(10 * time.Second); code != 0 {
			t.Errorf("run %d: exit %d", i, code)
		}
	}
	st := startProc(t, "status", a.env, "status", "--json")
	if code := st.wait(10 * time.Second); code != 0 || !strings.Contains(st.outText(), `"node": "mallory"`) {
		t.Errorf("status with hostile records: exit %d: %s %s", code, st.outText(), st.errText())
	}
}
