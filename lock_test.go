package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// testTimeout is the session timeout the election tests ask for: short, so
// failovers are quick, yet long enough for a loaded 2-core machine (go-zk
// declares a link dead after 2/3 of it without a byte).
const testTimeout = 3 * time.Second

// testCandidate runs one election in the test process and records every
// transition with the time it happened (one monotonic clock for all).
type testCandidate struct {
	t      testing.TB
	id     string
	zc     *zkClient
	el     *election
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	hist []standing
}

func startCandidate(t testing.TB, connect, parent, id string, timeout time.Duration, setup ...func(*election)) *testCandidate {
	t.Helper()
	log := testLogger(t, id+": ")
	zc, err := dialZK(context.Background(), zkConfig{Connect: connect, SessionTimeout: timeout, ConnectTimeout: 20 * time.Second}, log)
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	el := newElection(zc, electionConfig{Parent: parent, ID: id, Version: "test"}, log)
	for _, f := range setup {
		f(el)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &testCandidate{t: t, id: id, zc: zc, el: el, cancel: cancel, done: make(chan struct{})}
	feed := el.subscribe()
	go func() {
		for {
			select {
			case <-feed.C():
				c.record(feed.next())
			case <-c.done:
				c.record(feed.next())
				return
			}
		}
	}()
	go func() {
		defer close(c.done)
		if err := el.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *testCandidate) record(sts []standing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range sts {
		if n := len(c.hist); n > 0 && c.hist[n-1].State == s.State {
			c.hist[n-1] = s
		} else {
			c.hist = append(c.hist, s)
		}
	}
}

// stop is a clean stop: release, then close the session.
func (c *testCandidate) stop() {
	c.cancel()
	<-c.done
	c.zc.Close()
}

func (c *testCandidate) history() []standing {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.hist)
}

func (c *testCandidate) active() bool { return c.el.Status().active(time.Now()) }

// activeInterval is one stretch of leadership as jobs see it: from the
// moment the candidate reported active to the end of the lease it held
// (a disconnect suspends admissions, not jobs), cut short by a loss.
type activeInterval struct {
	id         string
	from, to   time.Time
	token      int64
	reportedAt time.Time // when it first reported leaving active (zero: still active)
}

func (c *testCandidate) intervals() []activeInterval {
	h := c.history()
	var out []activeInterval
	for i := 0; i < len(h); i++ {
		s := h[i]
		if s.State != stateActive {
			continue
		}
		iv := activeInterval{id: c.id, from: s.Since, to: s.Deadline, token: s.Token}
		for i+1 < len(h) {
			n := h[i+1]
			if iv.reportedAt.IsZero() && n.State != stateActive {
				iv.reportedAt = n.Since
			}
			if (n.State != stateActive && n.State != stateSuspended) || n.Token != iv.token {
				if n.Since.Before(iv.to) {
					iv.to = n.Since
				}
				break
			}
			if n.Deadline.After(iv.to) {
				iv.to = n.Deadline
			}
			i++
		}
		out = append(out, iv)
	}
	return out
}

// assertNoOverlap checks the promise over whole histories: no two
// candidates' leadership intervals intersect.
func assertNoOverlap(t testing.TB, cands ...*testCandidate) {
	t.Helper()
	var all []activeInterval
	for _, c := range cands {
		all = append(all, c.intervals()...)
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			a, b := all[i], all[j]
			if a.id != b.id && a.from.Before(b.to) && b.from.Before(a.to) {
				t.Errorf("two active at once: %s [%v, %v] and %s [%v, %v]",
					a.id, a.from.Format("15:04:05.000"), a.to.Format("15:04:05.000"),
					b.id, b.from.Format("15:04:05.000"), b.to.Format("15:04:05.000"))
			}
		}
	}
}

// waitActive waits until exactly one of cands is active and returns it.
func waitActive(t testing.TB, d time.Duration, cands ...*testCandidate) *testCandidate {
	t.Helper()
	var leader *testCandidate
	waitFor(t, d, "one active candidate", func() bool {
		leader = nil
		n := 0
		for _, c := range cands {
			if c.active() {
				leader = c
				n++
			}
		}
		if n > 1 {
			t.Fatalf("%d candidates active at once", n)
		}
		return n == 1
	})
	return leader
}

func others(all []*testCandidate, not *testCandidate) []*testCandidate {
	var out []*testCandidate
	for _, c := range all {
		if c != not {
			out = append(out, c)
		}
	}
	return out
}

// activeSince returns when c first became active after t0 (zero if not).
// The history is recorded from the status feed by another goroutine: give
// it a moment to catch up with what Status already says.
func activeSince(c *testCandidate, t0 time.Time) time.Time {
	end := time.Now().Add(2 * time.Second)
	for {
		for _, iv := range c.intervals() {
			if !iv.from.Before(t0) {
				return iv.from
			}
		}
		if time.Now().After(end) {
			return time.Time{}
		}
		time.Sleep(time.Millisecond)
	}
}

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

func TestIntegration_BlackholedLeaderLosesLeaseFirst(t *testing.T) {
	t.Parallel()
	// Its own server with a short tick: the server rounds session expiry up
	// to the next tick, and with tickTime=500 that alone would take half of
	// the 1 s the bound leaves on a loaded machine.
	zkS := startZK(t, 1, withTickTime(200*time.Millisecond))
	parent := testParent(t)
	pa := newFaultProxy(t, zkS.Addrs()[0])
	a := startCandidate(t, pa.Addr(), parent, "node-a", testTimeout)
	waitActive(t, 20*time.Second, a)
	b := startCandidate(t, zkS.ConnectString(), parent, "node-b", testTimeout)
	c := startCandidate(t, zkS.ConnectString(), parent, "node-c", testTimeout)
	waitFor(t, 10*time.Second, "all joined", func() bool { return b.el.Status().Node != "" && c.el.Status().Node != "" })
	T := a.el.Status().Timeout
	time.Sleep(T) // a few renewals

	tB := time.Now()
	pa.SetMode(proxyBlackhole)
	next := waitActive(t, T+10*time.Second, b, c)
	nextAt := activeSince(next, tB)
	ivs := a.intervals()
	last := ivs[len(ivs)-1]
	t.Logf("blackhole at 0; node-a lease end +%v, node-a reported not active +%v, %s active +%v (T=%v)",
		last.to.Sub(tB), last.reportedAt.Sub(tB), next.id, nextAt.Sub(tB), T)
	t.Logf("lease-to-successor margin %v, report-to-successor margin %v", nextAt.Sub(last.to), nextAt.Sub(last.reportedAt))
	if !last.to.Before(nextAt) {
		t.Errorf("node-a's lease ended at +%v, not before %s became active at +%v", last.to.Sub(tB), next.id, nextAt.Sub(tB))
	}
	if last.reportedAt.IsZero() || !last.reportedAt.Before(nextAt) {
		t.Errorf("node-a reported leaving active at +%v, not before %s became active at +%v", last.reportedAt.Sub(tB), next.id, nextAt.Sub(tB))
	}
	if took := nextAt.Sub(tB); took > T+time.Second {
		t.Errorf("failover took %v, want within T+1s = %v", took, T+time.Second)
	}
	assertNoOverlap(t, a, b, c)
}

func TestIntegration_ShortResetKeepsLeadership(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	pa := newFaultProxy(t, zkS.Addrs()[0])
	a := startCandidate(t, pa.Addr(), parent, "node-a", testTimeout)
	waitActive(t, 20*time.Second, a)
	b := startCandidate(t, zkS.ConnectString(), parent, "node-b", testTimeout)
	waitFor(t, 10*time.Second, "node-b joined", func() bool { return b.el.Status().Node != "" })
	before := a.el.Status()

	for range 3 {
		pa.Reset()
		time.Sleep(testTimeout / 3)
	}
	waitFor(t, testTimeout, "node-a active again", a.active)
	after := a.el.Status()
	if after.Token != before.Token || after.SessionID != before.SessionID || after.Node != before.Node {
		t.Errorf("after resets: token %d session %x node %s; before: token %d session %x node %s",
			after.Token, after.SessionID, after.Node, before.Token, before.SessionID, before.Node)
	}
	for _, s := range a.history() {
		if s.State == stateLost {
			t.Errorf("node-a reported lost (%s) after short resets", s.Reason)
		}
	}
	if len(b.intervals()) != 0 {
		t.Errorf("node-b became active during node-a's short resets")
	}
	assertNoOverlap(t, a, b)
}

func TestIntegration_LostCreateReplyLeavesNoOrphan(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	a := startCandidate(t, zkS.ConnectString(), parent, "node-a", testTimeout)
	waitActive(t, 20*time.Second, a)

	pb := newFaultProxy(t, zkS.Addrs()[0])
	var creates atomic.Int32
	b := startCandidate(t, pb.Addr(), parent, "node-b", testTimeout, func(el *election) {
		el.beforeCreate = func() {
			if creates.Add(1) > 1 {
				return
			}
			// The create reaches the server, its reply does not; then
			// the connection breaks and go-zk reconnects.
			pb.SetMode(proxyDropReplies)
			go func() {
				time.Sleep(300 * time.Millisecond)
				pb.SetMode(proxyPass)
				pb.Reset()
			}()
		}
	})
	waitFor(t, 20*time.Second, "node-b joined", func() bool { return b.el.Status().Node != "" })
	time.Sleep(500 * time.Millisecond)

	conn := rawConn(t, zkS.ConnectString())
	children, _, err := conn.Children(parent)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("creates attempted by node-b: %d; children: %v", creates.Load(), children)
	if len(children) != 2 {
		t.Errorf("parent has %d nodes for 2 live candidates: %v", len(children), children)
	}
	if !slices.Contains(children, b.el.Status().Node[len(parent)+1:]) {
		t.Errorf("node-b's node %s is not among %v", b.el.Status().Node, children)
	}
	// The election still works: node-b takes over from node-a.
	a.stop()
	waitFor(t, 10*time.Second, "node-b active", b.active)
	assertNoOverlap(t, a, b)
}

func TestIntegration_SessionExpiryRejoinsWithGreaterToken(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	pa := newFaultProxy(t, zkS.Addrs()[0])
	a := startCandidate(t, pa.Addr(), parent, "node-a", testTimeout)
	waitActive(t, 20*time.Second, a)
	first := a.el.Status()
	syncs := a.el.syncs.Load()
	b := startCandidate(t, zkS.ConnectString(), parent, "node-b", testTimeout)
	waitFor(t, 10*time.Second, "node-b joined", func() bool { return b.el.Status().Node != "" })

	pa.SetMode(proxyBlackhole)
	waitFor(t, first.Timeout+10*time.Second, "node-b active", b.active)
	time.Sleep(first.Timeout) // well past expiry
	pa.SetMode(proxyPass)
	pa.Reset()
	waitFor(t, 30*time.Second, "node-a rejoined with a new session", func() bool {
		st := a.el.Status()
		return st.Node != "" && st.SessionID != first.SessionID && st.State == statePassive
	})
	if got := a.el.syncs.Load(); got <= syncs {
		t.Errorf("node-a issued no Sync after its new session (%d before, %d after)", syncs, got)
	}
	b.stop()
	waitFor(t, 10*time.Second, "node-a active again", a.active)
	second := a.el.Status()
	t.Logf("token before expiry %d, after %d; session %x -> %x", first.Token, second.Token, first.SessionID, second.SessionID)
	if second.Token <= first.Token {
		t.Errorf("token after expiry %d is not greater than before (%d)", second.Token, first.Token)
	}
	if !slices.ContainsFunc(a.history(), func(s standing) bool { return s.State == stateLost }) {
		t.Errorf("node-a never reported its leadership lost")
	}
	assertNoOverlap(t, a, b)
}

func TestIntegration_EnsembleLeaderKilled(t *testing.T) {
	t.Parallel()
	ens := startZK(t, 3)
	parent := testParent(t)
	// The longest timeout the servers grant (20 ticks): the lease (T/2)
	// must outlast ZooKeeper's own leader election.
	const T = 10 * time.Second
	a := startCandidate(t, ens.ConnectString(), parent, "node-a", T)
	waitActive(t, 30*time.Second, a)
	b := startCandidate(t, ens.ConnectString(), parent, "node-b", T)
	waitFor(t, 10*time.Second, "node-b joined", func() bool { return b.el.Status().Node != "" })
	before := a.el.Status()

	zl, err := ens.Leader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := ens.Kill(zl); err != nil {
		t.Fatal(err)
	}
	if err := ens.WaitQuorum(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "node-a active after the ZooKeeper failover", a.active)
	t.Logf("ZooKeeper leader %d killed; node-a active again after %v", zl, time.Since(t0))
	after := a.el.Status()
	if after.Token != before.Token || after.SessionID != before.SessionID {
		t.Errorf("node-a lost its leadership: token %d -> %d, session %x -> %x", before.Token, after.Token, before.SessionID, after.SessionID)
	}
	for _, s := range a.history() {
		if s.State == stateLost {
			t.Errorf("node-a reported lost (%s) during the ZooKeeper failover", s.Reason)
		}
	}
	if len(b.intervals()) != 0 {
		t.Errorf("node-b became active during the ZooKeeper failover")
	}

	// No quorum: nobody may be active once the lease is over.
	for i := range ens.Servers {
		if i != zl {
			if err := ens.Kill(i); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	tq := time.Now()
	time.Sleep(T/2 + 500*time.Millisecond)
	end := time.Now().Add(T)
	for time.Now().Before(end) {
		if a.active() || b.active() {
			t.Fatalf("a candidate is active %v after quorum was lost", time.Since(tq))
		}
		time.Sleep(10 * time.Millisecond)
	}
	assertNoOverlap(t, a, b)
}

func TestIntegration_GrantedTimeoutUsed(t *testing.T) {
	t.Parallel()
	ens := startZK(t, 1, withMaxSessionTimeout(2*time.Second))
	parent := testParent(t)
	a := startCandidate(t, ens.ConnectString(), parent, "node-a", 8*time.Second)
	waitActive(t, 20*time.Second, a)
	st := a.el.Status()
	if st.Timeout != 2*time.Second {
		t.Fatalf("granted timeout %v, want the server's maximum 2s", st.Timeout)
	}
	// The lease is at most T/2 = 1s ahead of now, never 4s (half the
	// requested value).
	for range 20 {
		st := a.el.Status()
		if left := time.Until(st.Deadline); left > time.Second {
			t.Fatalf("lease ends %v from now; with a granted T of 2s it must be at most 1s", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIntegration_HostileChildren(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	parent := testParent(t)
	conn := rawConn(t, zkS.ConnectString())
	zc := &zkClient{acl: zk.WorldACL(zk.PermAll)}
	if err := zc.ensurePath(conn, parent); err != nil {
		t.Fatal(err)
	}
	acl := zk.WorldACL(zk.PermAll)
	huge := make([]byte, 900_000)
	for i := range huge {
		huge[i] = byte(i)
	}
	// A persistent impostor with a candidate's name, lowest in the queue,
	// with huge binary data; a garbage name; a truncated name; an
	// ephemeral-looking name with letters for digits.
	impostor, err := conn.Create(parent+"/_c_"+strings.Repeat("ab", 16)+"-n_", huge, zk.FlagSequence, acl)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"garbage", "_c_1234-n_0000000001", "_c_" + strings.Repeat("0", 32) + "-n_00000000zz", "lock-0000000000"} {
		if _, err := conn.Create(parent+"/"+n, []byte("{not json"), 0, acl); err != nil {
			t.Fatal(err)
		}
	}
	a := startCandidate(t, zkS.ConnectString(), parent, "node-a", testTimeout)
	b := startCandidate(t, zkS.ConnectString(), parent, "node-b", testTimeout)
	leader := waitActive(t, 20*time.Second, a, b)
	t.Logf("%s active despite %s and garbage children", leader.id, impostor)
	leader.stop()
	waitActive(t, 10*time.Second, others([]*testCandidate{a, b}, leader)...)
	assertNoOverlap(t, a, b)
}
