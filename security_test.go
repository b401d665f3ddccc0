package main

import (
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, err := exeLookPath("hacron")
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "hacron")
	in, _ := os.Open(src)
	defer in.Close()
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(out, in)
	out.Close()
	os.WriteFile(filepath.Join(dir, "empty.conf"), nil, 0o644)
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
		if ee, ok := err.(*exec.ExitError); ok {
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
	if code != 0 || strings.TrimSpace(out) != u.Username+".backup" {
		t.Errorf("run as %s: exit %d, HACRON_JOB %q; want %s.backup", u.Username, code, out, u.Username)
	}
	// root's job of the same name and slot is another job: not blocked.
	if code := a.run("--name", "backup", "--slot", "S", "--", "true").wait(10 * time.Second); code != 0 {
		t.Errorf("root's run: exit %d", code)
	}
	userRuns := runsOf(t, zkS.ConnectString(), cluster, u.Username+".backup")
	rootRuns := runsOf(t, zkS.ConnectString(), cluster, "backup")
	if len(userRuns) != 1 || userRuns[0].UID != uid || userRuns[0].User != u.Username {
		t.Errorf("the user's records: %+v", userRuns)
	}
	if len(rootRuns) != 1 || rootRuns[0].UID != 0 || rootRuns[0].User != "root" {
		t.Errorf("root's records: %+v", rootRuns)
	}
}
