package main

// The helpers every test uses: the ZooKeeper harness (internal/zktest)
// under short names, logs routed to the test, polling, paths of a test's
// own, a raw ZooKeeper connection.

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"hacron/internal/zktest"
)

type (
	zkEnsemble = zktest.Ensemble
	faultProxy = zktest.Proxy
	proxyGroup = zktest.ProxyGroup
)

const (
	proxyPass        = zktest.Pass
	proxyBlackhole   = zktest.Blackhole
	proxyDropReplies = zktest.DropReplies
)

var (
	startZK               = zktest.Start
	sharedZK              = zktest.Shared
	newFaultProxy         = zktest.NewProxy
	proxyEnsemble         = zktest.ProxyEnsemble
	withTickTime          = zktest.WithTickTime
	withMaxSessionTimeout = zktest.WithMaxSessionTimeout
	withExtraConfig       = zktest.WithExtraConfig
	withJVMFlags          = zktest.WithJVMFlags
	withClassPath         = zktest.WithClassPath
)

// testLogger sends hacron's logs to t.Log, so they show when a test fails.
// Lines written after the test ended (go-zk goroutines wind down on their
// own) are dropped: testing panics on them.
func testLogger(t testing.TB, prefix string) *slog.Logger {
	w := &tWriter{t: t, prefix: prefix}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	done   bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// discardLogger is for helpers whose chatter would drown the test's own.
var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var pathSeq atomic.Int64

// testParent is an election parent of the test's own.
func testParent(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/hacron/%s-%d/election", name, pathSeq.Add(1))
}

// rawConn is a plain go-zk connection for looking at what the election left.
func rawConn(t testing.TB, connect string) *zk.Conn {
	t.Helper()
	servers, _, err := parseConnectString(connect)
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := zk.Connect(servers, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(slogPrintf{discardLogger}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	waitFor(t, 20*time.Second, "raw ZooKeeper session", func() bool { return conn.State() == zk.StateHasSession })
	return conn
}

type slogPrintf struct{ l *slog.Logger }

func (s slogPrintf) Printf(f string, a ...any) { s.l.Debug(fmt.Sprintf(f, a...)) }
