package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// writeAuthFile writes a digest credential the way an operator would.
func writeAuthFile(t *testing.T, cred string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "zk-auth")
	if err := os.WriteFile(p, []byte(cred+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mkdirs creates p and its missing parents with acl, as another client
// would have.
func mkdirs(t *testing.T, c *zk.Conn, p string, acl []zk.ACL) {
	t.Helper()
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		if _, err := c.Create(p[:i], nil, 0, acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			t.Fatalf("create %s: %v", p[:i], err)
		}
	}
}

// tree lists p and every node below it.
func tree(t *testing.T, c *zk.Conn, p string) []string {
	t.Helper()
	kids, _, err := c.Children(p)
	if err != nil {
		t.Fatalf("children of %s: %v", p, err)
	}
	out := []string{p}
	for _, k := range kids {
		out = append(out, tree(t, c, p+"/"+k)...)
	}
	return out
}

// wipe deletes p and everything below it.
func wipe(t *testing.T, c *zk.Conn, p string) {
	t.Helper()
	kids, _, err := c.Children(p)
	if errors.Is(err, zk.ErrNoNode) {
		return
	}
	for _, k := range kids {
		wipe(t, c, p+"/"+k)
	}
	if err := c.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		t.Fatalf("delete %s: %v", p, err)
	}
}

// changes lists what client c managed, or failed for another reason than
// the ACL, when it tried to change node: its data, its ACL, a child (unless
// children are allowed), and the node itself (whose delete the parent's ACL
// decides; unless deletable).
func changes(c *zk.Conn, node string, childrenAllowed, deletable bool) []string {
	var got []string
	try := func(what string, err error) {
		if !errors.Is(err, zk.ErrNoAuth) {
			got = append(got, fmt.Sprintf("%s %s: %v", what, node, err))
		}
	}
	_, err := c.Set(node, []byte("forged"), -1)
	try("set", err)
	_, err = c.SetACL(node, zk.WorldACL(zk.PermAll), -1)
	try("setAcl", err)
	if !childrenAllowed {
		_, err = c.Create(node+"/intruder", nil, 0, zk.WorldACL(zk.PermAll))
		try("create a child of", err)
	}
	if !deletable {
		try("delete", c.Delete(node, -1))
	}
	return got
}

// agentActive waits for an agent to be active, and fails at once when it
// exits instead.
func agentActive(t *testing.T, a *agentProc) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for a.state() != "active" {
		select {
		case <-a.done:
			t.Fatalf("%s exited %d: %s", a.name, a.code, a.errText())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(end) {
			t.Fatalf("%s: not active after 20s", a.name)
		}
	}
}

// TestIntegration_ClustersShareOneEnsemble: on one fresh ZooKeeper, three
// clusters (A with credentials a, B with credentials b, C without any) start
// in each of the six orders, at the root and below a chroot they share; each
// elects, admits and runs a job whatever came first, and none can change or
// delete what another made (C's own nodes are open to all, by its choice).
// The nodes above the clusters' are shared ground: nobody changes or
// deletes them. Between orders at the root the test wipes /hacron as
// ZooKeeper's super user, so every order starts on an empty tree.
func TestIntegration_ClustersShareOneEnsemble(t *testing.T) {
	t.Parallel()
	superID := zk.DigestACL(zk.PermAll, "super", "super-pw")[0].ID
	zkS := startZK(t, 1, withJVMFlags("-Dzookeeper.DigestAuthenticationProvider.superDigest="+superID))
	super := rawConnT(t, zkS.ConnectString(), "super:super-pw")
	type cluster struct {
		name, cred, authFile string
		client               *zk.Conn
	}
	clusters := map[byte]*cluster{
		'A': {name: "a", cred: "a:pw-a"},
		'B': {name: "b", cred: "b:pw-b"},
		'C': {name: "c"},
	}
	for _, c := range clusters {
		c.client = rawConnT(t, zkS.ConnectString(), c.cred)
		if c.cred != "" {
			c.authFile = writeAuthFile(t, c.cred)
		}
	}
	// phase starts the clusters in order below chroot (agents, or direct
	// runs, which make the cluster's nodes as an agent does), then tries
	// every client against every node.
	phase := func(t *testing.T, order, chroot string, direct bool) {
		connect := zkS.ConnectString() + chroot
		var agents []*agentProc
		for i := range order {
			c := clusters[order[i]]
			env := hacronEnv(t, connect, c.name)
			if c.authFile != "" {
				env = append(env, "HACRON_ZK_AUTH_FILE="+c.authFile)
			}
			var run *proc
			if direct {
				run = startProc(t, "direct run of "+c.name, env, "run", "--direct", "--node", "n1", "--name", "job", "--", "true")
			} else {
				a := startAgent(t, env, "n1")
				agentActive(t, a)
				agents = append(agents, a)
				run = a.run("--name", "job", "--", "true")
			}
			if code := run.wait(20 * time.Second); code != 0 {
				t.Fatalf("cluster %s, started as number %d: the job's run exited %d: %s", c.name, i+1, code, run.errText())
			}
		}

		// The shared ground: exactly world:anyone cr; anyone adds
		// children, nobody changes or deletes anything (the top
		// node's delete is up to /, which is not hacron's).
		var shared []string
		for p := chroot + "/hacron"; p != ""; p = p[:strings.LastIndexByte(p, '/')] {
			shared = append(shared, p)
		}
		for i, node := range shared {
			acl, _, err := super.GetACL(node)
			if err != nil || !slices.Equal(acl, sharedACL) {
				t.Errorf("ACL of %s: %s (%v), want %s", node, aclString(acl), err, aclString(sharedACL))
			}
			for _, c := range clusters {
				for _, e := range changes(c.client, node, true, i == len(shared)-1) {
					t.Errorf("cluster %s's client: %s", c.name, e)
				}
			}
		}
		// Each cluster's nodes: its own ACL; A's and B's refuse the
		// other clusters' clients.
		for _, owner := range clusters {
			root := chroot + "/hacron/" + owner.name
			want := zk.WorldACL(zk.PermAll)
			if owner.cred != "" {
				user, pw, _ := strings.Cut(owner.cred, ":")
				want = zk.DigestACL(zk.PermAll, user, pw)
			}
			nodes := tree(t, super, root)
			if len(nodes) < 5 {
				t.Errorf("cluster %s has only %v", owner.name, nodes)
			}
			for _, node := range nodes {
				if acl, _, err := super.GetACL(node); err != nil || !slices.Equal(acl, want) {
					t.Errorf("ACL of %s: %s (%v), want %s", node, aclString(acl), err, aclString(want))
				}
			}
			// Even C's node: deleting it is up to the shared
			// ground.
			for _, c := range clusters {
				if err := c.client.Delete(root, -1); !errors.Is(err, zk.ErrNoAuth) {
					t.Errorf("cluster %s's client deleting %s: %v, want NoAuth", c.name, root, err)
				}
			}
			if owner.cred == "" {
				continue
			}
			for _, intruder := range clusters {
				if intruder == owner {
					continue
				}
				for _, node := range nodes {
					for _, e := range changes(intruder.client, node, false, false) {
						t.Errorf("cluster %s's client: %s", intruder.name, e)
					}
				}
			}
		}
		for _, a := range agents {
			a.signal(syscall.SIGTERM)
		}
		for _, a := range agents {
			if code := a.wait(20 * time.Second); code != 0 {
				t.Errorf("%s: exit %d after SIGTERM", a.name, code)
			}
		}
	}
	orders := []string{"ABC", "ACB", "BAC", "BCA", "CAB", "CBA"}
	start := time.Now()
	t.Run("orders", func(t *testing.T) {
		// At the root with agents, one order after the other, each on a
		// tree wiped by the super user; meanwhile, direct runs below a
		// chroot of each order's own, which hacron creates.
		t.Run("root", func(t *testing.T) {
			t.Parallel()
			for _, order := range orders {
				t.Run(order, func(t *testing.T) {
					wipe(t, super, "/hacron")
					phase(t, order, "", false)
				})
			}
		})
		for _, order := range orders {
			t.Run("chroot-"+order, func(t *testing.T) {
				t.Parallel()
				phase(t, order, "/teams-"+order+"/shared", true)
			})
		}
	})
	t.Logf("6 orders x 2 places in %v", time.Since(start).Round(time.Millisecond))

	// hacron check of a cluster with credentials on shared ground: the ACL
	// of every node on the way, no warning about them.
	c := clusters['A']
	env := append(hacronEnv(t, zkS.ConnectString()+"/teams-ABC/shared", c.name), "HACRON_ZK_AUTH_FILE="+c.authFile)
	chk := startProc(t, "check", env, "check", "--direct")
	if code := chk.wait(20 * time.Second); code != 0 {
		t.Errorf("check: exit %d: %s %s", code, chk.outText(), chk.errText())
	}
	for _, want := range []string{
		`(?m)^ok +ACL /teams-ABC: world:anyone cr$`,
		`(?m)^ok +ACL /teams-ABC/shared/hacron: world:anyone cr$`,
		`(?m)^ok +ACL /teams-ABC/shared/hacron/a: digest:a cdrwa \(the cluster's node\)$`,
	} {
		if !regexp.MustCompile(want).MatchString(chk.outText()) {
			t.Errorf("check output lacks %s:\n%s", want, chk.outText())
		}
	}
	if regexp.MustCompile(`(?m)^warning .*(can be changed|delete its children)`).MatchString(chk.outText()) {
		t.Errorf("check warns about ACLs hacron made:\n%s", chk.outText())
	}
}

// errorLines returns the "hacron: error:" and "hacron: hint:" lines of a
// process's stderr (an agent may log other lines before them).
func errorLines(p *proc) (errs, hints []string) {
	for _, l := range strings.Split(p.errText(), "\n") {
		if e, ok := strings.CutPrefix(l, "hacron: error: "); ok {
			errs = append(errs, e)
		}
		if h, ok := strings.CutPrefix(l, "hacron: hint: "); ok {
			hints = append(hints, h)
		}
	}
	return errs, hints
}

// TestIntegration_ClusterNodeNotOurs: a cluster node that is not the
// cluster's (squatted by another principal, with or without world read;
// made by hand open to all), a /hacron an old release made with its
// credentials, and a node read with other credentials. Refusals are one
// error line that names the node and its ACL, with a hint; an agent and a
// direct run exit 125 without running anything, hacron check exits 1.
// Every case lives below a chroot of the test's own.
func TestIntegration_ClusterNodeNotOurs(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	base := fmt.Sprintf("/not-ours-%d-%d", os.Getpid(), pathSeq.Add(1))
	mallory := rawConnT(t, zkS.ConnectString(), "mallory:pw-m")
	malloryACL := zk.DigestACL(zk.PermAll, "mallory", "pw-m")
	authA := writeAuthFile(t, "a:pw-a")
	envOf := func(chroot, cluster, authFile string) []string {
		env := hacronEnv(t, zkS.ConnectString()+chroot, cluster)
		if authFile != "" {
			env = append(env, "HACRON_ZK_AUTH_FILE="+authFile)
		}
		return env
	}
	// refusedAt starts what must be refused and returns its error line.
	refusedAt := func(name string, env []string, wantCode int, args ...string) (string, *proc) {
		t.Helper()
		p := startProc(t, name, env, args...)
		if code := p.wait(20 * time.Second); code != wantCode {
			t.Fatalf("%s: exit %d, want %d: %s %s", name, code, wantCode, p.outText(), p.errText())
		}
		errs, hints := errorLines(p)
		if len(errs) != 1 || len(hints) == 0 {
			t.Fatalf("%s: want one error line and a hint, got %q %q", name, errs, hints)
		}
		t.Logf("%s: %s\n\thint: %s", name, errs[0], strings.Join(hints, "\n\thint: "))
		return errs[0], p
	}
	wantMatch := func(what, got, re string) {
		t.Helper()
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("%s: %q does not match %q", what, got, re)
		}
	}
	ran := filepath.Join(t.TempDir(), "ran")

	// Squatted by mallory, who hides even the ACL: cluster a, with
	// credentials, cannot name the owner, and says so.
	chroot := base + "/1"
	mkdirs(t, mallory, chroot+"/hacron", sharedACL)
	if _, err := mallory.Create(chroot+"/hacron/a", nil, 0, malloryACL); err != nil {
		t.Fatal(err)
	}
	env := envOf(chroot, "a", authA)
	want := `^cluster node ` + chroot + `/hacron/a is not this cluster's: its ACL gives digest:a nothing, not even reading the ACL$`
	line, _ := refusedAt("agent", env, exitUsage, "agent", "--node", "n1", "--socket", filepath.Join(t.TempDir(), "s"))
	wantMatch("agent", line, want)
	line, _ = refusedAt("direct run", env, exitUsage, "run", "--direct", "--", "touch", ran)
	wantMatch("direct run", line, want)
	chk := startProc(t, "check", env, "check")
	if code := chk.wait(20 * time.Second); code != exitCheckFailed {
		t.Errorf("check: exit %d, want 1: %s", code, chk.outText())
	}
	wantMatch("check", chk.outText(), `(?m)^PROBLEM +cluster node `+chroot+`/hacron/a is not this cluster's: .*\n^hint +`)

	// Squatted with world read: cluster b, without credentials, names the
	// owner.
	chroot = base + "/2"
	mkdirs(t, mallory, chroot+"/hacron", sharedACL)
	if _, err := mallory.Create(chroot+"/hacron/b", nil, 0, append(malloryACL, zk.WorldACL(zk.PermRead)...)); err != nil {
		t.Fatal(err)
	}
	env = envOf(chroot, "b", "")
	want = `^cluster node ` + chroot + `/hacron/b is not this cluster's: its ACL is digest:mallory cdrwa, world:anyone r; world:anyone \(no --zk-auth-file\) gets r, hacron needs cdrw$`
	line, p := refusedAt("agent", env, exitUsage, "agent", "--node", "n1", "--socket", filepath.Join(t.TempDir(), "s"))
	wantMatch("agent", line, want)
	if _, hints := errorLines(p); !strings.Contains(hints[0], "--zk-auth-file") {
		t.Errorf("hint %q does not mention --zk-auth-file", hints[0])
	}
	chk = startProc(t, "check", env, "check")
	if code := chk.wait(20 * time.Second); code != exitCheckFailed {
		t.Errorf("check: exit %d, want 1: %s", code, chk.outText())
	}
	wantMatch("check", chk.outText(), `(?m)^PROBLEM +cluster node `+chroot+`/hacron/b is not this cluster's: its ACL is digest:mallory cdrwa, world:anyone r;`)
	wantMatch("check", chk.outText(), `(?m)^ok +ACL `+chroot+`/hacron: world:anyone cr$`)
	// The right user with a wrong password, on a node that lets the world
	// read its ACL: the hint says which.
	if _, err := mallory.Create(chroot+"/hacron/w", nil, 0, append(zk.DigestACL(zk.PermAll, "a", "pw-a"), zk.WorldACL(zk.PermRead)...)); err != nil {
		t.Fatal(err)
	}
	wrong := writeAuthFile(t, "a:wrong")
	line, p = refusedAt("direct run", envOf(chroot, "w", wrong), exitUsage, "run", "--direct", "--", "touch", ran)
	wantMatch("direct run", line, `^cluster node `+chroot+`/hacron/w is not this cluster's: its ACL is digest:a cdrwa, world:anyone r; digest:a gets r, hacron needs cdrw$`)
	if _, hints := errorLines(p); hints[0] != "the ACL names user a with another password: check the password in "+wrong {
		t.Errorf("hint %q", hints[0])
	}

	// A /hacron made with one cluster's credentials (as releases before
	// shared ground did): another cluster cannot add its node.
	chroot = base + "/3"
	mkdirs(t, mallory, chroot, sharedACL)
	if _, err := mallory.Create(chroot+"/hacron", nil, 0, append(malloryACL, zk.WorldACL(zk.PermRead)...)); err != nil {
		t.Fatal(err)
	}
	env = envOf(chroot, "c", "")
	line, p = refusedAt("direct run", env, exitUsage, "run", "--direct", "--", "touch", ran)
	wantMatch("direct run", line, `^create `+chroot+`/hacron/c: zk: not authenticated: the ACL of `+chroot+`/hacron \(digest:mallory cdrwa, world:anyone r\) refuses this client$`)
	if _, hints := errorLines(p); !strings.Contains(strings.Join(hints, " "), "setAcl "+chroot+"/hacron world:anyone:cr") {
		t.Errorf("hints %q do not say how to open the shared ground", hints)
	}
	chk = startProc(t, "check", env, "check", "--direct")
	if code := chk.wait(20 * time.Second); code != exitCheckFailed {
		t.Errorf("check: exit %d, want 1: %s", code, chk.outText())
	}
	wantMatch("check", chk.outText(), `(?m)^PROBLEM +`+chroot+`/hacron/c cannot be created: the ACL of `+chroot+`/hacron \(digest:mallory cdrwa, world:anyone r\) does not let world:anyone \(no --zk-auth-file\) create children$`)
	if _, err := os.Stat(ran); err == nil {
		t.Errorf("a refused run ran its job")
	}

	// Made by hand, open to all as well as to a: the cluster works, and
	// check warns. Read with mallory's credentials, its nodes refuse her
	// by name.
	chroot = base + "/4"
	mkdirs(t, mallory, chroot+"/hacron", sharedACL)
	user, pw, _ := strings.Cut("a:pw-a", ":")
	if _, err := mallory.Create(chroot+"/hacron/a", nil, 0, append(zk.DigestACL(zk.PermAll, user, pw), zk.WorldACL(zk.PermAll)...)); err != nil {
		t.Fatal(err)
	}
	env = envOf(chroot, "a", authA)
	a := startAgent(t, env, "n1")
	agentActive(t, a)
	if code := a.run("--name", "job", "--", "true").wait(20 * time.Second); code != 0 {
		t.Errorf("a run on the hand-made node: exit %d", code)
	}
	chk = startProc(t, "check", env, "check")
	if code := chk.wait(20 * time.Second); code != 0 {
		t.Errorf("check: exit %d, want 0: %s", code, chk.outText())
	}
	wantMatch("check", chk.outText(), `(?m)^warning +`+chroot+`/hacron/a can be changed by world:anyone cdrwa as well as by this cluster$`)
	if strings.Contains(chk.outText(), chroot+"/hacron/a/") {
		t.Errorf("check warns about nodes hacron made:\n%s", chk.outText())
	}
	line, _ = refusedAt("status", envOf(chroot, "a", writeAuthFile(t, "mallory:pw-m")), exitUsage, "status")
	wantMatch("status", line, `^read `+chroot+`/hacron/a/mode: zk: not authenticated: the ACL of `+chroot+`/hacron/a/mode refuses this client$`)

	// A chroot an administrator made for one team: a closed node above, the
	// team's own below. hacron creates nothing above it (the closed node
	// refuses even a create of what exists) and works below it.
	chroot = base + "/5/ops"
	mkdirs(t, mallory, base+"/5", malloryACL)
	if _, err := mallory.Create(chroot, nil, 0, zk.DigestACL(zk.PermAll, "a", "pw-a")); err != nil {
		t.Fatal(err)
	}
	env = envOf(chroot, "a", authA)
	r := startProc(t, "direct run in the team's chroot", env, "run", "--direct", "--", "touch", ran)
	if code := r.wait(20 * time.Second); code != 0 {
		t.Fatalf("direct run in the team's chroot: exit %d: %s", code, r.errText())
	}
	chk = startProc(t, "check", env, "check", "--direct")
	if code := chk.wait(20 * time.Second); code != 0 {
		t.Errorf("check: exit %d, want 0: %s", code, chk.outText())
	}
	wantMatch("check", chk.outText(), `(?m)^ok +ACL `+base+`/5: hidden from digest:a$`)
	wantMatch("check", chk.outText(), `(?m)^ok +ACL `+chroot+`: digest:a cdrwa$`)
}

// TestACLOurs: which entries count as this cluster's, including the digest
// entries ZooKeeper shows with the hash hidden to a client without a.
func TestACLOurs(t *testing.T) {
	c, err := newZKClient(zkConfig{Connect: "127.0.0.1", SessionTimeout: time.Second, AuthFile: writeAuthFile(t, "a:pw-a")}, discardLogger)
	if err != nil {
		t.Fatal(err)
	}
	own := zk.DigestACL(zk.PermAll, "a", "pw-a")[0]
	for _, tc := range []struct {
		e          zk.ACL
		ours, mine bool
	}{
		{own, true, true},
		{zk.DigestACL(zk.PermAll, "a", "other")[0], false, false},
		{zk.ACL{Perms: zk.PermAll, Scheme: "digest", ID: "a:x"}, false, false}, // a would have shown the hash
		{zk.ACL{Perms: zk.PermRead | zk.PermCreate, Scheme: "digest", ID: "a:x"}, true, true},
		{zk.ACL{Perms: zk.PermRead, Scheme: "digest", ID: "b:x"}, false, false},
		{zk.WorldACL(zk.PermAll)[0], false, true},
		{zk.ACL{Perms: zk.PermAll, Scheme: "ip", ID: "127.0.0.1"}, false, false},
	} {
		if got := c.ours(tc.e); got != tc.ours {
			t.Errorf("ours(%s:%s %s) = %v", tc.e.Scheme, tc.e.ID, permString(tc.e.Perms), got)
		}
		if got := c.mine(tc.e); got != tc.mine {
			t.Errorf("mine(%s:%s %s) = %v", tc.e.Scheme, tc.e.ID, permString(tc.e.Perms), got)
		}
	}
	if got := aclString(append(zk.DigestACL(zk.PermAll, "a", "pw-a"), sharedACL...)); got != "digest:a cdrwa, world:anyone cr" {
		t.Errorf("aclString: %q", got)
	}
	anon, err := newZKClient(zkConfig{Connect: "127.0.0.1", SessionTimeout: time.Second}, discardLogger)
	if err != nil {
		t.Fatal(err)
	}
	if anon.ours(own) || anon.mine(own) || !anon.mine(zk.WorldACL(zk.PermRead)[0]) {
		t.Errorf("a client without credentials: ours/mine wrong")
	}
}
