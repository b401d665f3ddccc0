package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConnectString(t *testing.T) {
	for _, tc := range []struct {
		in      string
		servers string
		chroot  string
		err     string
	}{
		{in: "127.0.0.1:2181", servers: "127.0.0.1:2181"},
		{in: "zk1,zk2:2182,zk3", servers: "zk1:2181,zk2:2182,zk3:2181"},
		{in: "zk1:2181,zk2:2181/ops/hacron", servers: "zk1:2181,zk2:2181", chroot: "/ops/hacron"},
		{in: "zk1/", servers: "zk1:2181"},
		{in: "[::1]:2181", servers: "[::1]:2181"},
		{in: "", err: "empty host"},
		{in: "zk1,,zk2", err: "empty host"},
		{in: "zk1:99999", err: "bad port"},
		{in: "zk1:http", err: "bad port"},
		{in: "zk1/a//b", err: "chroot"},
		{in: "zk1/a/", err: "chroot"},
		{in: "zk1/a/../b", err: "chroot"},
	} {
		servers, chroot, err := parseConnectString(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(servers, ",") != tc.servers || chroot != tc.chroot {
			t.Errorf("%q: %v %q %v; want %s %q", tc.in, servers, chroot, err, tc.servers, tc.chroot)
		}
	}
}

func TestAuthFileRefusedWhenReadable(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "auth")
	if err := os.WriteFile(f, []byte("hacron:secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readAuthFile(f); err == nil || !strings.Contains(err.Error(), "readable by group or others") {
		t.Errorf("a 0644 auth file: %v, want refused", err)
	}
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	if u, p, err := readAuthFile(f); err != nil || u != "hacron" || p != "secret" {
		t.Errorf("a 0600 auth file: %q %q %v", u, p, err)
	}
	if err := os.WriteFile(f, []byte("no-colon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readAuthFile(f); err == nil {
		t.Errorf("an auth file without user:password was accepted")
	}
}

func TestIntegration_DialUnreachableNamesServers(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: a proxy to nowhere would accept; a closed
	// listener's port refuses.
	p := newFaultProxy(t, "127.0.0.1:1")
	addr := p.Addr()
	start := time.Now()
	_, err := dialZK(context.Background(), zkConfig{Connect: addr + ",127.0.0.1:9", SessionTimeout: 2 * time.Second, ConnectTimeout: 2 * time.Second}, discardLogger)
	if err == nil {
		t.Fatal("dial succeeded without a server")
	}
	t.Logf("after %v: %v", time.Since(start), err)
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "127.0.0.1:9") || !strings.Contains(err.Error(), "within 2s") {
		t.Errorf("error %q does not name the servers tried and the time waited", err)
	}
}

func TestIntegration_Chroot(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	a := startCandidate(t, zkS.ConnectString()+"/chrooted", parent, "node-a", testTimeout)
	waitActive(t, 20*time.Second, a)
	conn := rawConn(t, zkS.ConnectString())
	children, _, err := conn.Children("/chrooted" + parent)
	if err != nil || len(children) != 1 {
		t.Fatalf("children of /chrooted%s: %v %v", parent, children, err)
	}
	if ok, _, _ := conn.Exists(parent); ok {
		t.Errorf("%s exists outside the chroot", parent)
	}
}
