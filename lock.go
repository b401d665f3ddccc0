package main

// The election and the lease: ../shared/design/zookeeper.md, rules 1-8 and
// 11. An ephemeral znode is a lease, not a lock: the client never learns the
// moment the server expires its session. So leadership here is two things at
// once: holding the lowest election node of our own session, and a local
// lease that only a quorum write can extend. Jobs live under the lease.
//
// go-zk's Lock is not used: it never reports loss, leaves orphans after an
// error, and does not check that a node belongs to the current session.

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// leaseFraction is f: a renewal write sent at s proves the session alive
// until s+T at the earliest, and the lease ends at s+f*T. The rest of T is
// for killing jobs (the kill grace k must satisfy f*T + k < T) and for the
// two clocks running at slightly different rates.
const leaseFraction = 0.5

// renewDivisor: the lease is renewed every T/5, so two renewals in a row
// can be lost before the lease (T/2) lapses.
const renewDivisor = 5

// maxInflightRenewals bounds renewals waiting on a dead link; more would
// only queue behind them in go-zk.
const maxInflightRenewals = 2

// maxMemberData bounds how much of a foreign node's data is parsed.
const maxMemberData = 4096

type roleState int

const (
	statePassive   roleState = iota // a candidate, not the lowest (or not joined yet)
	stateActive                     // the lowest node, owned by our session, lease valid
	stateSuspended                  // we hold the lowest node but cannot prove it now
	stateLost                       // leadership ended without our consent; rejoining
	stateStopped                    // released for good
)

func (s roleState) String() string {
	switch s {
	case statePassive:
		return "passive"
	case stateActive:
		return "active"
	case stateSuspended:
		return "suspended"
	case stateLost:
		return "lost"
	case stateStopped:
		return "stopped"
	}
	return "unknown"
}

// status is one snapshot of the candidate.
type status struct {
	State     roleState
	Reason    string
	Since     time.Time     // when State last changed
	Node      string        // our election znode, absolute path; "" when not joined
	Token     int64         // czxid of Node while it is the lowest: the fencing token
	Deadline  time.Time     // end of the lease; zero without one
	SessionID int64         // the session Node belongs to
	Timeout   time.Duration // the session timeout the server granted
	Leader    string        // node id of the lowest candidate, as far as we know
	Ahead     int           // candidates queued ahead of us (0 when leading or not joined)
}

// active is hacron's definition: the lowest node of our session and a lease
// valid now. A process resumed after a pause past its lease is not active
// until it has renewed.
func (s status) active(now time.Time) bool {
	return s.State == stateActive && now.Before(s.Deadline)
}

// memberInfo is the data of an election node.
type memberInfo struct {
	Node    string `json:"node"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	Since   string `json:"since"`
}

// jsonTime formats times the way every hacron JSON document does: RFC 3339,
// UTC, milliseconds.
func jsonTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

type electionConfig struct {
	Parent  string // chroot-relative parent of the candidates' nodes
	ID      string // this node's id, written into the node's data
	Version string // hacron version, written into the node's data
}

// election is one candidate. Run drives it; everything else observes it.
type election struct {
	zc     *zkClient
	cfg    electionConfig
	log    *slog.Logger
	parent string // absolute

	mu    sync.Mutex
	st    status
	feeds map[*statusFeed]struct{}

	resignCh chan time.Duration
	goneCh   chan int64 // admission found our node gone (the session id it saw)

	// guids of creates whose outcome was never learned: any node with one of
	// them is an orphan of ours and is deleted before the next join.
	orphans []string

	wakeups atomic.Int64 // predecessor watches that fired (herd check)
	syncs   atomic.Int64 // Syncs issued after a new session (rule 4)

	// beforeCreate runs just before the election node is created; tests use
	// it to lose the create's reply.
	beforeCreate func()
}

func newElection(zc *zkClient, cfg electionConfig, log *slog.Logger) *election {
	return &election{
		zc:       zc,
		cfg:      cfg,
		log:      log,
		parent:   zc.abs(cfg.Parent),
		st:       status{State: statePassive, Reason: "starting", Since: time.Now()},
		feeds:    map[*statusFeed]struct{}{},
		resignCh: make(chan time.Duration),
		goneCh:   make(chan int64, 1),
	}
}

// statusFeed delivers every state change in order. Consecutive snapshots
// with the same State are merged, so a slow reader sees every transition
// but not every renewal.
type statusFeed struct {
	mu sync.Mutex
	q  []status
	c  chan struct{}
}

func (f *statusFeed) push(s status) {
	f.mu.Lock()
	if n := len(f.q); n > 0 && f.q[n-1].State == s.State {
		f.q[n-1] = s
	} else {
		f.q = append(f.q, s)
	}
	f.mu.Unlock()
	select {
	case f.c <- struct{}{}:
	default:
	}
}

// C signals that next has something.
func (f *statusFeed) C() <-chan struct{} { return f.c }

// next returns the snapshots queued since the last call.
func (f *statusFeed) next() []status {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.q
	f.q = nil
	return q
}

// subscribe returns a feed that starts with the current status.
func (e *election) subscribe() *statusFeed {
	f := &statusFeed{c: make(chan struct{}, 1)}
	e.mu.Lock()
	e.feeds[f] = struct{}{}
	f.push(e.st)
	e.mu.Unlock()
	return f
}

func (e *election) unsubscribe(f *statusFeed) {
	e.mu.Lock()
	delete(e.feeds, f)
	e.mu.Unlock()
}

// Status returns the current snapshot.
func (e *election) Status() status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st
}

// update changes the status and tells the feeds.
func (e *election) update(f func(*status)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.st
	f(&e.st)
	if e.st.State != old.State {
		e.st.Since = time.Now()
	}
	if e.st == old {
		return
	}
	if e.st.State != old.State || e.st.Reason != old.Reason {
		e.log.Info("election state", "state", e.st.State.String(), "from", old.State.String(),
			"reason", e.st.Reason, "token", e.st.Token, "node", e.st.Node)
	}
	for f := range e.feeds {
		f.push(e.st)
	}
}

func (e *election) setState(s roleState, reason string) {
	e.update(func(st *status) {
		st.State, st.Reason = s, reason
		if s != stateActive && s != stateSuspended {
			st.Token, st.Deadline = 0, time.Time{}
		}
	})
}

// Resign steps down now and stays out of the election for hold. The caller
// must have ended every job admitted under the lease first: deleting the node
// lets the next candidate in at once.
func (e *election) Resign(ctx context.Context, hold time.Duration) error {
	select {
	case e.resignCh <- hold:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var (
	errNotActive      = errors.New("this node is not active")
	errOutcomeUnknown = errors.New("ZooKeeper did not answer: outcome unknown")
	errLeadership     = errors.New("leadership lost during admission")
)

// admit runs one linearizable write that only the current holder can pass:
// Multi(CheckVersion(our node), ops...) (rule 9). Paths in ops are absolute.
// It returns the status the admission was made under (token, deadline).
func (e *election) admit(ops ...any) (status, []zk.MultiResponse, error) {
	st := e.Status()
	if !st.active(time.Now()) {
		return st, nil, errNotActive
	}
	s := e.zc.snapshot()
	if !s.Usable() || s.ID != st.SessionID {
		return st, nil, errNotActive
	}
	all := append([]any{&zk.CheckVersionRequest{Path: st.Node, Version: -1}}, ops...)
	res, err := s.Conn.Multi(all...)
	if err == nil {
		return st, res, nil
	}
	if errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrClosing) {
		return st, res, errOutcomeUnknown
	}
	if len(res) > 0 && res[0].Error != nil {
		if errors.Is(res[0].Error, zk.ErrNoNode) {
			select {
			case e.goneCh <- st.SessionID:
			default:
			}
		}
		return st, res, errLeadership
	}
	if errors.Is(err, zk.ErrSessionExpired) {
		return st, res, errLeadership
	}
	return st, res, err
}

// Run campaigns until ctx ends, then releases (rule 11) and returns. The
// caller closes the connection afterwards, which ends the session.
func (e *election) Run(ctx context.Context) error {
	defer e.setState(stateStopped, "stopped")
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		end, err := e.term(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			e.log.Warn("election", "err", err)
			e.setState(statePassive, err.Error())
			if !sleepCtx(ctx, pause) {
				return nil
			}
			pause = min(2*pause, 2*time.Second)
			continue
		}
		pause = 100 * time.Millisecond
		if end.reopen {
			if err := e.zc.reopen(); err != nil {
				return err
			}
		}
		if end.hold > 0 {
			e.setState(statePassive, fmt.Sprintf("resigned, out of the election for %v", end.hold))
			if !sleepCtx(ctx, end.hold) {
				return nil
			}
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// termEnd says how one candidacy ended.
type termEnd struct {
	hold   time.Duration // resigned: stay out this long
	reopen bool          // the session may still hold our node: abandon it
}

// term is one candidacy in one session: fresh state every time (rule 11).
type term struct {
	e    *election
	sess session
	node string // absolute path of our node
	name string
}

var errSessionLost = errors.New("ZooKeeper session lost")

// term joins, waits for its turn, leads, and ends.
func (e *election) term(ctx context.Context) (termEnd, error) {
	if s := e.zc.snapshot(); !s.Usable() {
		e.setState(statePassive, "waiting for a ZooKeeper session")
	}
	sess, err := e.zc.waitUsable(ctx)
	if err != nil {
		return termEnd{}, err
	}
	t := &term{e: e, sess: sess}
	e.update(func(st *status) {
		st.SessionID, st.Timeout, st.Node = sess.ID, sess.Timeout, ""
	})
	if err := e.zc.ensurePath(sess.Conn, e.cfg.Parent); err != nil {
		return termEnd{}, t.classify(err)
	}
	// A new session may be served by a follower that lags behind what the
	// last session saw (go-zk resets its last zxid on expiry): catch up
	// before trusting any read (rule 4).
	if _, err := call(ctx, t, func() (string, error) { return sess.Conn.Sync(e.parent) }); err != nil {
		return termEnd{}, t.classify(err)
	}
	e.syncs.Add(1)
	if err := t.cleanOrphans(ctx); err != nil {
		return termEnd{reopen: true}, nil
	}
	if err := t.create(ctx); err != nil {
		if errors.Is(err, errSessionLost) {
			return termEnd{}, nil
		}
		if ctx.Err() != nil {
			return termEnd{}, nil
		}
		// Rule 2: after any error past the create, our node must not stay.
		if t.cleanOrphans(ctx) != nil {
			return termEnd{reopen: true}, nil
		}
		return termEnd{}, err
	}
	end, err := t.campaign(ctx)
	if ctx.Err() != nil {
		t.release()
		return termEnd{}, nil
	}
	if err != nil && !errors.Is(err, errSessionLost) {
		// An unexpected error with our node in place: remove it, or drop
		// the session so the server does.
		if t.deleteNode() != nil {
			end.reopen = true
		}
		return end, err
	}
	return end, nil
}

// callTimeout bounds one ZooKeeper call; go-zk has none of its own.
func (t *term) callTimeout() time.Duration { return t.sess.Timeout }

// call runs a go-zk call that cannot be cancelled, giving up after the
// session timeout or when ctx ends. An abandoned call's outcome is unknown.
func call[T any](ctx context.Context, t *term, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	timer := time.NewTimer(t.callTimeout())
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-timer.C:
		var zero T
		return zero, errOutcomeUnknown
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// classify maps go-zk errors that mean "this session is over".
func (t *term) classify(err error) error {
	if errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrClosing) {
		return fmt.Errorf("%w: %v", errSessionLost, err)
	}
	return err
}

// unknown reports an error after which the request may or may not have
// been applied.
func unknown(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, errOutcomeUnknown) || errors.Is(err, zk.ErrNoServer)
}

// sameSession waits for the connection to be usable again and says whether
// it is still this term's session.
func (t *term) sameSession(ctx context.Context) error {
	s, err := t.e.zc.waitUsable(ctx)
	if err != nil {
		return err
	}
	if s.ID != t.sess.ID || s.Conn != t.sess.Conn {
		return errSessionLost
	}
	return nil
}

func newGUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// candidateName is hacron's protected node name: _c_<guid>-n_<10 digits>;
// compiled on first use, not at start-up, which every `hacron run` pays.
var candidateName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^_c_([0-9a-f]{32})-n_([0-9]{10})$`)
})

type candidate struct {
	name string
	guid string
	seq  int64
}

// parseCandidates keeps hacron's nodes, sorted by sequence number and never
// by whole name (ZOOKEEPER-2931); other children are ignored.
func parseCandidates(children []string, skip map[string]bool) []candidate {
	var out []candidate
	for _, c := range children {
		m := candidateName().FindStringSubmatch(c)
		if m == nil || skip[c] {
			continue
		}
		seq, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, candidate{name: c, guid: m[1], seq: seq})
	}
	slices.SortFunc(out, func(a, b candidate) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// create makes our node (rule 1) and survives a lost reply (rule 2): with
// the same session, the node is found by its guid; with a new session, the
// term ends and the next one deletes it.
func (t *term) create(ctx context.Context) error {
	e := t.e
	info, _ := json.Marshal(memberInfo{Node: e.cfg.ID, PID: os.Getpid(), Version: e.cfg.Version, Since: jsonTime(time.Now())})
	for {
		guid := newGUID()
		e.orphans = append(e.orphans, guid)
		if e.beforeCreate != nil {
			e.beforeCreate()
		}
		name, err := call(ctx, t, func() (string, error) {
			return t.sess.Conn.Create(e.parent+"/_c_"+guid+"-n_", info, zk.FlagEphemeralSequential, e.zc.acl)
		})
		if err == nil {
			e.orphans = e.orphans[:len(e.orphans)-1]
			t.setNode(name)
			return nil
		}
		if !unknown(err) {
			return t.classify(err)
		}
		e.log.Info("election node create: no reply, looking for it", "err", err)
		if err := t.sameSession(ctx); err != nil {
			return err
		}
		found, err := t.findOurs(ctx)
		if err != nil {
			return t.classify(err)
		}
		if found != "" {
			t.setNode(e.parent + "/" + found)
			return nil
		}
	}
}

func (t *term) setNode(path string) {
	t.node = path
	t.name = path[strings.LastIndexByte(path, '/')+1:]
	t.e.update(func(st *status) { st.Node = path })
}

// findOurs adopts the lowest node carrying one of our unconfirmed guids and
// deletes any others.
func (t *term) findOurs(ctx context.Context) (string, error) {
	e := t.e
	children, err := call(ctx, t, func() ([]string, error) {
		c, _, err := t.sess.Conn.Children(e.parent)
		return c, err
	})
	if err != nil {
		return "", err
	}
	var found string
	for _, c := range parseCandidates(children, nil) {
		if !slices.Contains(e.orphans, c.guid) {
			continue
		}
		if found == "" {
			found = c.name
			continue
		}
		if _, err := call(ctx, t, func() (struct{}, error) {
			return struct{}{}, t.sess.Conn.Delete(e.parent+"/"+c.name, -1)
		}); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return "", err
		}
	}
	if found != "" {
		e.orphans = nil
	}
	return found, nil
}

// cleanOrphans deletes every node left by a create whose outcome was never
// learned. Failing that, the caller drops the session so the server does.
func (t *term) cleanOrphans(ctx context.Context) error {
	e := t.e
	if len(e.orphans) == 0 {
		return nil
	}
	children, err := call(ctx, t, func() ([]string, error) {
		c, _, err := t.sess.Conn.Children(e.parent)
		return c, err
	})
	if err != nil {
		return err
	}
	for _, c := range parseCandidates(children, nil) {
		if !slices.Contains(e.orphans, c.guid) {
			continue
		}
		e.log.Info("deleting orphaned election node", "node", c.name)
		if _, err := call(ctx, t, func() (struct{}, error) {
			return struct{}{}, t.sess.Conn.Delete(e.parent+"/"+c.name, -1)
		}); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
	}
	e.orphans = nil
	return nil
}

// campaign waits behind its predecessor until it is the lowest, then leads.
func (t *term) campaign(ctx context.Context) (termEnd, error) {
	e := t.e
	skip := map[string]bool{} // persistent impostors with a candidate's name
	for {
		children, err := call(ctx, t, func() ([]string, error) {
			c, _, err := t.sess.Conn.Children(e.parent)
			return c, err
		})
		if err != nil {
			if err := t.recover(ctx, err); err != nil {
				return termEnd{}, err
			}
			continue
		}
		cands := parseCandidates(children, skip)
		if slices.ContainsFunc(cands, func(c candidate) bool { return slices.Contains(e.orphans, c.guid) }) {
			// A create of ours applied after all: our own orphan ahead of
			// us would block the queue.
			if err := t.cleanOrphans(ctx); err != nil {
				return termEnd{}, err
			}
			continue
		}
		me := slices.IndexFunc(cands, func(c candidate) bool { return c.name == t.name })
		if me < 0 {
			e.setState(stateLost, "our election node is gone")
			return termEnd{}, nil
		}
		if me == 0 {
			end, err := t.lead(ctx)
			if errors.Is(err, errRecheck) {
				continue
			}
			return end, err
		}
		leader := t.memberName(ctx, cands[0].name)
		pred := cands[me-1].name
		w, err := call(ctx, t, func() (existsW, error) {
			ok, st, ch, err := t.sess.Conn.ExistsW(e.parent + "/" + pred)
			return existsW{ok, st, ch}, err
		})
		if err != nil {
			if err := t.recover(ctx, err); err != nil {
				return termEnd{}, err
			}
			continue
		}
		if !w.ok {
			continue
		}
		if w.stat.EphemeralOwner == 0 {
			// A persistent node is no session's candidate: it would block
			// the queue forever.
			e.log.Warn("ignoring a persistent node in the election", "node", pred)
			skip[pred] = true
			continue
		}
		e.update(func(st *status) {
			st.State, st.Reason, st.Leader, st.Ahead = statePassive, "waiting behind "+pred, leader, me
			st.Token, st.Deadline = 0, time.Time{}
		})
		if end, done, err := t.waitWatch(ctx, w.ch); done {
			return end, err
		}
	}
}

type existsW struct {
	ok   bool
	stat *zk.Stat
	ch   <-chan zk.Event
}

// waitWatch waits for the predecessor's watch (only ours fires when it
// leaves: no herd), a session change, a resignation or the end.
func (t *term) waitWatch(ctx context.Context, ch <-chan zk.Event) (termEnd, bool, error) {
	for {
		s := t.e.zc.snapshot()
		if err := t.sessionGone(s); err != nil {
			return termEnd{}, true, err
		}
		select {
		case <-ch:
			t.e.wakeups.Add(1)
			return termEnd{}, false, nil
		case <-s.Changed:
			if s2 := t.e.zc.snapshot(); s2.Usable() && s2.ID == t.sess.ID && !s.Usable() {
				// Reconnected: the watch was re-set by go-zk, but look
				// again in case the predecessor left meanwhile.
				return termEnd{}, false, nil
			}
		case hold := <-t.e.resignCh:
			t.release()
			return termEnd{hold: hold}, true, nil
		case <-ctx.Done():
			return termEnd{}, true, nil // term releases
		}
	}
}

// sessionGone says whether s is no longer this term's session.
func (t *term) sessionGone(s session) error {
	if s.Conn != t.sess.Conn || s.State == zk.StateExpired || (s.ID != 0 && s.ID != t.sess.ID) {
		t.e.setState(statePassive, "ZooKeeper session expired")
		return errSessionLost
	}
	return nil
}

// recover handles an error from a read while waiting: an unknown outcome
// waits for the session to come back; anything else ends the term.
func (t *term) recover(ctx context.Context, err error) error {
	if !unknown(err) {
		return t.classify(err)
	}
	if err := t.sameSession(ctx); err != nil {
		t.e.setState(statePassive, "ZooKeeper session expired")
		return err
	}
	return nil
}

// memberName reads the node id from a candidate's data; hostile or foreign
// data only loses the name.
func (t *term) memberName(ctx context.Context, name string) string {
	m, err := call(ctx, t, func() (memberInfo, error) {
		m, _, err := readMember(t.sess.Conn, t.e.parent+"/"+name)
		return m, err
	})
	if err != nil {
		return ""
	}
	return m.Node
}

var errRecheck = errors.New("recheck the election")

type renewal struct {
	sent time.Time
	err  error
}

// lead holds the role: ownership check (rule 3), own-node watch (rule 6),
// write-renewed lease (rule 7), suspended and lost states (rule 5).
func (t *term) lead(ctx context.Context) (termEnd, error) {
	e := t.e
	w, err := call(ctx, t, func() (existsW, error) {
		ok, st, ch, err := t.sess.Conn.ExistsW(t.node)
		return existsW{ok, st, ch}, err
	})
	if err != nil {
		if err := t.recover(ctx, err); err != nil {
			return termEnd{}, err
		}
		return termEnd{}, errRecheck
	}
	if !w.ok {
		e.setState(stateLost, "our election node is gone")
		return termEnd{}, nil
	}
	// A node of an expired session can still be visible for a moment
	// (CURATOR-696): only a node our live session owns counts.
	if w.stat.EphemeralOwner != t.sess.ID || t.sess.Conn.SessionID() != t.sess.ID {
		e.setState(stateLost, "our election node belongs to another session")
		return termEnd{}, errSessionLost
	}
	token := w.stat.Czxid
	own := w.ch
	T := t.sess.Timeout
	lease := time.Duration(float64(T) * leaseFraction)

	results := make(chan renewal, maxInflightRenewals)
	inflight := 0
	renew := func() {
		if inflight >= maxInflightRenewals {
			return
		}
		inflight++
		conn := t.sess.Conn
		go func() {
			sent := time.Now()
			_, err := conn.Multi(&zk.CheckVersionRequest{Path: t.node, Version: -1})
			if err == nil && conn.SessionID() != t.sess.ID {
				err = errSessionLost
			}
			results <- renewal{sent: sent, err: err}
		}()
	}

	var deadline time.Time
	leaseTimer := time.NewTimer(time.Hour)
	defer leaseTimer.Stop()
	ticker := time.NewTicker(T / renewDivisor)
	defer ticker.Stop()
	renew()

	// lose ends the term: jobs must stop now, not at the deadline.
	lose := func(reason string, reopen bool) (termEnd, error) {
		e.update(func(st *status) {
			st.State, st.Reason, st.Deadline, st.Node = stateLost, reason, time.Now(), ""
		})
		return termEnd{reopen: reopen}, nil
	}
	e.update(func(st *status) {
		st.Token, st.Leader, st.Ahead = token, e.cfg.ID, 0
		if st.State == stateActive {
			st.State = stateSuspended
		}
		if st.State != stateSuspended {
			st.State, st.Reason = stateSuspended, "lowest node, proving the lease"
		}
	})
	connected := true
	for {
		s := e.zc.snapshot()
		if s.Conn != t.sess.Conn || s.State == zk.StateExpired || (s.ID != 0 && s.ID != t.sess.ID) {
			return lose("ZooKeeper session expired", false)
		}
		select {
		case <-ctx.Done():
			return termEnd{}, nil // term releases

		case hold := <-e.resignCh:
			t.release()
			return termEnd{hold: hold}, nil

		case sid := <-e.goneCh:
			if sid == t.sess.ID {
				return lose("our election node is gone (seen by an admission)", false)
			}

		case ev, ok := <-own:
			if !ok || ev.Type == zk.EventNodeDeleted || ev.Type == zk.EventNotWatching {
				return lose("our election node was deleted", false)
			}
			// Some other change (data, children): watch again. Renewals
			// still notice a deletion if this fails.
			own = nil
			if w, err := call(ctx, t, func() (existsW, error) {
				ok, st, ch, err := t.sess.Conn.ExistsW(t.node)
				return existsW{ok, st, ch}, err
			}); err == nil {
				if !w.ok {
					return lose("our election node was deleted", false)
				}
				own = w.ch
			}

		case <-s.Changed:
			now := e.zc.snapshot()
			if now.Usable() {
				if !connected {
					connected = true
					renew() // back: only a new write proves the lease
				}
				continue
			}
			if connected {
				connected = false
				e.update(func(st *status) {
					st.State, st.Reason = stateSuspended, "disconnected from ZooKeeper"
				})
			}
			if !time.Now().Before(deadline) {
				return lose("lease expired while disconnected from ZooKeeper", true)
			}

		case <-ticker.C:
			renew()

		case r := <-results:
			inflight--
			switch {
			case r.err == nil:
				if d := r.sent.Add(lease); d.After(deadline) {
					deadline = d
					leaseTimer.Reset(time.Until(deadline))
				}
				if !connected || !time.Now().Before(deadline) {
					continue
				}
				e.update(func(st *status) {
					st.Deadline = deadline
					st.State, st.Reason = stateActive, "holding the lowest node, lease renewed"
				})
			case errors.Is(r.err, zk.ErrNoNode):
				return lose("our election node is gone (renewal)", false)
			case errors.Is(r.err, zk.ErrSessionExpired), errors.Is(r.err, errSessionLost):
				return lose("ZooKeeper session expired (renewal)", false)
			default:
				// Unknown outcome or no server: the lease is not extended.
			}

		case <-leaseTimer.C:
			if time.Now().Before(deadline) {
				leaseTimer.Reset(time.Until(deadline))
				continue
			}
			if !connected {
				return lose("lease expired while disconnected from ZooKeeper", true)
			}
			e.update(func(st *status) {
				st.State, st.Reason = stateSuspended, "lease expired: no quorum write succeeded in time"
			})
		}
	}
}

// deleteNode removes our node (rule 11), retrying within one session
// timeout; ErrNoNode means it is already gone. Each attempt is bounded: on
// a dead link go-zk would block until it notices.
func (t *term) deleteNode() error {
	if t.node == "" {
		return nil
	}
	deadline := time.Now().Add(t.sess.Timeout)
	for {
		_, err := call(context.Background(), t, func() (struct{}, error) {
			return struct{}{}, t.sess.Conn.Delete(t.node, -1)
		})
		if err == nil || errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if time.Now().After(deadline) || errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrClosing) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// release is the graceful end: delete our node so the next candidate takes
// over after one watch notification. If that fails, closing the session
// (the caller's job) removes it.
func (t *term) release() {
	e := t.e
	e.setState(statePassive, "released")
	if err := t.deleteNode(); err != nil {
		e.log.Warn("could not delete the election node; closing the session removes it", "node", t.node, "err", err)
	}
	e.update(func(st *status) { st.Node = "" })
}
