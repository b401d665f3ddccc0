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

func TestIntegration_FiveCandidatesOneActive(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	var cands []*testCandidate
	for i := range 5 {
		cands = append(cands, startCandidate(t, zkS.ConnectString(), parent, fmt.Sprintf("node-%d", i), testTimeout))
	}
	leader := waitActive(t, 20*time.Second, cands...)
	// For two session timeouts, sample often: never two, always the same one.
	end := time.Now().Add(2 * testTimeout)
	for time.Now().Before(end) {
		n := 0
		for _, c := range cands {
			if c.active() {
				n++
				if c != leader {
					t.Fatalf("%s became active while %s leads", c.id, leader.id)
				}
			}
		}
		if n > 1 {
			t.Fatalf("%d active at once", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range others(cands, leader) {
		if st := c.el.Status(); st.State != statePassive || st.Leader != leader.id {
			t.Errorf("%s: state %v, leader %q; want passive behind %s", c.id, st.State, st.Leader, leader.id)
		}
	}
	if st := leader.el.Status(); st.Token == 0 || st.Leader != leader.id {
		t.Errorf("leader status %+v: want a token and itself as leader", st)
	}
	assertNoOverlap(t, cands...)
}

func TestIntegration_NoHerd(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	var cands []*testCandidate
	for i := range 5 {
		c := startCandidate(t, zkS.ConnectString(), parent, fmt.Sprintf("node-%d", i), testTimeout)
		cands = append(cands, c)
		// Join in order, so the queue is node-0 ... node-4.
		waitFor(t, 10*time.Second, c.id+" joined", func() bool { return c.el.Status().Node != "" })
	}
	waitActive(t, 20*time.Second, cands...)
	wakeups := func() int64 {
		var n int64
		for _, c := range cands {
			n += c.el.wakeups.Load()
		}
		return n
	}
	settle := func() { time.Sleep(500 * time.Millisecond) }

	// A candidate in the middle leaves: only the one behind it wakes up.
	settle()
	before := wakeups()
	cands[2].stop()
	waitFor(t, 10*time.Second, "node-3 to wake", func() bool { return cands[3].el.wakeups.Load() == 1 })
	settle()
	if got := wakeups() - before; got != 1 {
		t.Errorf("a middle departure woke %d candidates, want 1", got)
	}

	// The leader leaves: only the next one wakes, and it takes over.
	before = wakeups()
	cands[0].stop()
	waitFor(t, 10*time.Second, "node-1 active", cands[1].active)
	settle()
	if got := wakeups() - before; got != 1 {
		t.Errorf("the leader's departure woke %d candidates, want 1", got)
	}
	for _, i := range []int{1, 3, 4} {
		t.Logf("%s woke %d times", cands[i].id, cands[i].el.wakeups.Load())
	}
	assertNoOverlap(t, cands...)
}

func TestIntegration_CleanStopFailover(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	a := startCandidate(t, zkS.ConnectString(), parent, "node-a", testTimeout)
	waitActive(t, 20*time.Second, a)
	b := startCandidate(t, zkS.ConnectString(), parent, "node-b", testTimeout)
	waitFor(t, 10*time.Second, "node-b joined", func() bool { return b.el.Status().Node != "" })
	time.Sleep(200 * time.Millisecond)

	t0 := time.Now()
	a.cancel() // the clean stop: release the node
	waitFor(t, 5*time.Second, "node-b active", b.active)
	took := activeSince(b, t0).Sub(t0)
	t.Logf("clean-stop failover: node-b active %v after node-a's stop", took)
	if took > 100*time.Millisecond {
		t.Errorf("clean-stop failover took %v, want within 100ms", took)
	}
	<-a.done
	for _, iv := range a.intervals() {
		if iv.reportedAt.IsZero() || iv.reportedAt.After(activeSince(b, t0)) {
			t.Errorf("node-a reported the end of its leadership at %v, after node-b became active", iv.reportedAt)
		}
	}
	assertNoOverlap(t, a, b)
}
