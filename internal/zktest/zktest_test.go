package zktest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// harnessZKLogger routes go-zk's log lines to the test until the test ends;
// go-zk's goroutines may still log after Conn.Close returns, and t.Logf
// panics once the test has completed.
type harnessZKLogger struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *harnessZKLogger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("go-zk: "+format, args...)
	}
}

func harnessConnect(t testing.TB, servers []string, sessionTimeout time.Duration) *zk.Conn {
	t.Helper()
	l := &harnessZKLogger{t: t}
	conn, _, err := zk.Connect(servers, sessionTimeout, zk.WithLogger(l))
	if err != nil {
		t.Fatalf("zk.Connect(%v): %v", servers, err)
	}
	t.Cleanup(func() {
		conn.Close()
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	harnessWaitSession(t, conn, 10*time.Second)
	return conn
}

func harnessWaitSession(t testing.TB, conn *zk.Conn, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for conn.State() != zk.StateHasSession {
		if time.Now().After(deadline) {
			t.Fatalf("no ZooKeeper session after %v (state %v)", timeout, conn.State())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func harnessAsync(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func TestIntegration_HarnessStandalone(t *testing.T) {
	t.Parallel()
	e := Start(t, 1)
	p := NewProxy(t, e.Servers[0].Addr())
	// The session must outlive the partitions below: go-zk drops a connection
	// after 2/3 of the session timeout without a byte from the server.
	conn := harnessConnect(t, []string{p.Addr()}, 6*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	if _, err := conn.Create("/harness", []byte("v1"), 0, acl); err != nil {
		t.Fatalf("create /harness: %v", err)
	}
	session := conn.SessionID()
	if n := p.Conns(); n != 1 {
		t.Fatalf("proxy has %d connections, want 1", n)
	}

	p.SetMode(Blackhole)
	get := harnessAsync(func() error { _, _, err := conn.Get("/harness"); return err })
	select {
	case err := <-get:
		t.Fatalf("Get completed through a %v proxy: %v", p.Mode(), err)
	case <-time.After(time.Second):
	}

	p.SetMode(DropReplies)
	create := harnessAsync(func() error { _, err := conn.Create("/harness/lost-reply", nil, 0, acl); return err })
	select {
	case err := <-create:
		t.Fatalf("Create completed through a %v proxy: %v", p.Mode(), err)
	case <-time.After(time.Second):
	}

	p.SetMode(Pass)
	p.Reset()
	for name, ch := range map[string]<-chan error{"Get": get, "Create": create} {
		select {
		case err := <-ch:
			t.Logf("%s after Reset: %v", name, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still pending 5s after Reset", name)
		}
	}

	harnessWaitSession(t, conn, 10*time.Second)
	if got := conn.SessionID(); got != session {
		t.Errorf("session changed across Reset: %#x -> %#x", session, got)
	}
	data, _, err := conn.Get("/harness")
	if err != nil || !bytes.Equal(data, []byte("v1")) {
		t.Fatalf("Get /harness after reconnect = %q, %v; want v1", data, err)
	}
	// The dropped reply's request did reach the server.
	if ok, _, err := conn.Exists("/harness/lost-reply"); err != nil || !ok {
		t.Fatalf("Exists /harness/lost-reply = %v, %v; want true", ok, err)
	}
	if n := p.Conns(); n != 1 {
		t.Fatalf("proxy has %d connections after reconnect, want 1", n)
	}
}

func TestIntegration_HarnessEnsemble(t *testing.T) {
	t.Parallel()
	e := Start(t, 3)
	leader, err := e.Leader(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn := harnessConnect(t, e.Addrs(), 6*time.Second)
	if _, err := conn.Create("/harness", []byte("v1"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("create /harness: %v", err)
	}

	start := time.Now()
	if err := e.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitQuorum(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	newLeader, err := e.Leader(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if newLeader == leader {
		t.Fatalf("killed leader zk%d still leads", e.Servers[leader].ID)
	}
	t.Logf("zk%d took over from killed leader zk%d after %v",
		e.Servers[newLeader].ID, e.Servers[leader].ID, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := e.Restart(leader); err != nil {
		t.Fatal(err)
	}
	t.Logf("zk%d restarted in %v", e.Servers[leader].ID, time.Since(start).Round(time.Millisecond))
	if mode, err := SrvrMode(e.Servers[leader].Addr()); mode != "follower" {
		t.Fatalf("restarted zk%d: mode %q, %v; want follower", e.Servers[leader].ID, mode, err)
	}
	c := harnessConnect(t, []string{e.Servers[leader].Addr()}, 6*time.Second)
	if data, _, err := c.Get("/harness"); err != nil || !bytes.Equal(data, []byte("v1")) {
		t.Fatalf("Get /harness from restarted zk%d = %q, %v; want v1", e.Servers[leader].ID, data, err)
	}

	if err := e.Stop(leader); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitQuorum(10 * time.Second); err != nil {
		t.Fatalf("quorum lost after stopping a follower: %v", err)
	}
}

// TestHarnessFaultProxy checks the proxy's modes against a plain TCP server,
// where the test sees both ends of every proxied connection.
func TestHarnessFaultProxy(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	p := NewProxy(t, ln.Addr().String())
	dial := func() (client, server net.Conn) {
		t.Helper()
		client, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		select {
		case server = <-accepted:
			t.Cleanup(func() { server.Close() })
		case <-time.After(5 * time.Second):
			t.Fatal("proxy did not connect upstream")
		}
		return client, server
	}
	send := func(from net.Conn, msg string) {
		t.Helper()
		if _, err := from.Write([]byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
	}
	// expect reads msg from c, or with msg "" expects c to stay silent and open.
	expect := func(c net.Conn, msg string) {
		t.Helper()
		wait := 5 * time.Second
		if msg == "" {
			wait = 300 * time.Millisecond
		}
		c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 64)
		n, err := io.ReadAtLeast(c, buf, max(len(msg), 1))
		if msg == "" {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read %q, %v; want silence", buf[:n], err)
			}
			return
		}
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, msg)
		}
	}

	client, server := dial()
	send(client, "ping")
	expect(server, "ping")
	send(server, "pong")
	expect(client, "pong")

	p.SetMode(DropReplies)
	send(client, "request")
	expect(server, "request")
	send(server, "reply")
	expect(client, "")

	p.SetMode(Blackhole)
	send(client, "lost")
	expect(server, "")
	// The server's close must not reach the client across the partition...
	server.Close()
	expect(client, "")
	if n := p.Conns(); n != 1 {
		t.Fatalf("Conns() = %d during blackhole, want 1", n)
	}
	// ...until it heals.
	p.SetMode(Pass)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 64)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after healing = %d, %v; want EOF", n, err)
	}

	client, server = dial()
	send(client, "hello")
	expect(server, "hello")
	p.Reset()
	for name, c := range map[string]net.Conn{"client": client, "server": server} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 64)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s read after Reset: %v; want ECONNRESET", name, err)
		}
	}
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns() = %d after Reset, want 0", n)
	}
}
