package main

// The election: docs/zookeeper-rules.md, rules 1-6 and 11 ("rule N" below
// refers to it); the lease it
// drives (rule 7) is internal/lease. An ephemeral znode is a lease, not a
// lock: the client never learns the moment the server expires its session.
// So leadership here is two things at once: holding the lowest election
// node of our own session, and a local lease that only a quorum write can
// extend. Jobs live under the lease.
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
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"hacron/internal/lease"
)

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

// reason says why the election is in its state. The log prints its text,
// the metrics its code: rewording a message never moves a metric.
type reason uint8

const (
	reasonStarting reason = iota
	reasonNoSession
	reasonQueued
	reasonProving
	reasonRenewed
	reasonDisconnected
	reasonLapsed
	reasonSessionExpired
	reasonNodeGone
	reasonOtherSession
	reasonResigned
	reasonReleased
	reasonStopped
	reasonError
)

var reasons = [...]struct{ text, code string }{
	reasonStarting:       {"starting", "starting"},
	reasonNoSession:      {"waiting for a ZooKeeper session", "no_session"},
	reasonQueued:         {"waiting behind another candidate", "queued"},
	reasonProving:        {"lowest node, proving the lease", "lowest"},
	reasonRenewed:        {"holding the lowest node, lease renewed", "renewed"},
	reasonDisconnected:   {"disconnected from ZooKeeper", "disconnected"},
	reasonLapsed:         {"lease expired: no quorum write succeeded in time", "lease_expired"},
	reasonSessionExpired: {"ZooKeeper session expired", "session_expired"},
	reasonNodeGone:       {"our election node is gone", "node_gone"},
	reasonOtherSession:   {"our election node belongs to another session", "other_session"},
	reasonResigned:       {"resigned", "resigned"},
	reasonReleased:       {"released", "released"},
	reasonStopped:        {"stopped", "stopped"},
	reasonError:          {"election error", "error"},
}

func (r reason) String() string {
	if int(r) < len(reasons) {
		return reasons[r].text
	}
	return "unknown"
}

// code is the metric label: few values, never a node name.
func (r reason) code() string {
	if int(r) < len(reasons) {
		return reasons[r].code
	}
	return "other"
}

// standing is one snapshot of the candidate.
type standing struct {
	State     roleState
	Reason    reason
	Detail    string        // what the reason refers to: a node id, an error
	Since     time.Time     // when State last changed
	Node      string        // our election znode, absolute path; "" when not joined
	Token     int64         // czxid of Node while it is the lowest: the fencing token
	Deadline  time.Time     // end of the lease; zero without one
	SessionID int64         // the session Node belongs to
	Timeout   time.Duration // the session timeout the server granted
	Leader    string        // node id of the lowest candidate, as far as we know
	Ahead     int           // candidates queued ahead of us (0 when leading or not joined)
}

// why is the reason as people read it.
func (s standing) why() string {
	if s.Detail == "" {
		return s.Reason.String()
	}
	return s.Reason.String() + " (" + s.Detail + ")"
}

// active is hacron's definition: the lowest node of our session and a lease
// valid now. A process resumed after a pause past its lease is not active
// until it has renewed. Only an active node admits runs.
func (s standing) active(now time.Time) bool {
	return s.State == stateActive && now.Before(s.Deadline)
}

// holds says whether a run admitted under token may go on at now: the same
// token, and within the lease. A disconnect (suspended) stops admissions,
// not runs: they end at the deadline unless a renewal moves it.
func (s standing) holds(token int64, now time.Time) bool {
	return (s.State == stateActive || s.State == stateSuspended) && s.Token == token && now.Before(s.Deadline)
}

// memberInfo is the data of an election node.
type memberInfo struct {
	Node    string `json:"node"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	Since   string `json:"since"`
}

// readMember reads a candidate's node data; hostile or foreign data is an
// error, never a crash.
func readMember(conn *zk.Conn, path string) (memberInfo, *zk.Stat, error) {
	var m memberInfo
	data, st, err := conn.Get(path)
	if err != nil {
		return m, nil, err
	}
	if len(data) > maxMemberData {
		return m, st, errors.New("member data too large")
	}
	return m, st, json.Unmarshal(data, &m)
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
	st    standing
	feeds map[*standingFeed]struct{}

	resignCh chan time.Duration
	rejoinCh chan struct{}
	// goneCh carries the path of an election node that an admission found
	// gone. Keyed by path: a notice about an earlier term's node must
	// never end a later term.
	goneCh chan string

	// guids of creates whose outcome was never learned: any node with one of
	// them is an orphan of ours and is deleted before the next join.
	orphans []string

	wakeups atomic.Int64 // predecessor watches that fired (herd check)
	syncs   atomic.Int64 // Syncs issued after a new session (rule 4)

	// beforeCreate runs just before the election node is created; tests use
	// it to lose the create's reply or to change the session under it.
	beforeCreate func()
}

func newElection(zc *zkClient, cfg electionConfig, log *slog.Logger) *election {
	return &election{
		zc:       zc,
		cfg:      cfg,
		log:      log,
		parent:   zc.abs(cfg.Parent),
		st:       standing{State: statePassive, Reason: reasonStarting, Since: time.Now()},
		feeds:    map[*standingFeed]struct{}{},
		resignCh: make(chan time.Duration),
		rejoinCh: make(chan struct{}),
		goneCh:   make(chan string, 1),
	}
}

// standingFeed delivers every state change in order. Consecutive snapshots
// with the same State are merged, so a slow reader sees every transition
// but not every renewal.
type standingFeed struct {
	mu sync.Mutex
	q  []standing
	c  chan struct{}
}

func (f *standingFeed) push(s standing) {
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
func (f *standingFeed) C() <-chan struct{} { return f.c }

// next returns the snapshots queued since the last call.
func (f *standingFeed) next() []standing {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.q
	f.q = nil
	return q
}

// subscribe returns a feed that starts with the current standing.
func (e *election) subscribe() *standingFeed {
	f := &standingFeed{c: make(chan struct{}, 1)}
	e.mu.Lock()
	e.feeds[f] = struct{}{}
	f.push(e.st)
	e.mu.Unlock()
	return f
}

func (e *election) unsubscribe(f *standingFeed) {
	e.mu.Lock()
	delete(e.feeds, f)
	e.mu.Unlock()
}

// Status returns the current snapshot.
func (e *election) Status() standing {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st
}

// update changes the standing and tells the feeds.
func (e *election) update(f func(*standing)) {
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
	if e.st.State != old.State || e.st.Reason != old.Reason || e.st.Detail != old.Detail {
		e.log.Info("election state", "state", e.st.State.String(), "from", old.State.String(),
			"reason", e.st.why(), "token", e.st.Token, "leader", e.st.Leader)
	}
	for f := range e.feeds {
		f.push(e.st)
	}
}

func (e *election) setState(s roleState, r reason, detail string) {
	e.update(func(st *standing) {
		st.State, st.Reason, st.Detail = s, r, detail
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

// gate runs one linearizable write that only the current holder can pass:
// Multi(CheckVersion(our node), ops...) (rule 9). Paths in ops are absolute.
// It returns the standing the write was made under (token, deadline).
func (e *election) gate(ops ...any) (standing, []zk.MultiResponse, error) {
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
			case e.goneCh <- st.Node:
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
	defer e.setState(stateStopped, reasonStopped, "")
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		end, err := e.term(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			e.log.Warn("election", "err", err)
			e.setState(statePassive, reasonError, err.Error())
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
		if end.hold > 0 && !e.holdOff(ctx, end.hold) {
			return nil
		}
	}
	return nil
}

// holdOff stays out of the election for hold after a resignation. Another
// resignation meanwhile sets a new hold (0: rejoin now); Rejoin ends it.
func (e *election) holdOff(ctx context.Context, hold time.Duration) bool {
	for {
		until := time.Now().Add(hold)
		e.setState(statePassive, reasonResigned, "out of the election until "+until.Format(time.TimeOnly))
		t := time.NewTimer(hold)
		select {
		case <-t.C:
			return true
		case hold = <-e.resignCh:
			t.Stop()
			if hold <= 0 {
				return true
			}
		case <-e.rejoinCh:
			t.Stop()
			return true
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
}

// Holding says whether the candidate is out of the election after a
// resignation, and until when as text.
func (e *election) Holding() (bool, string) {
	st := e.Status()
	return st.Reason == reasonResigned && st.State == statePassive, st.Detail
}

// errNotHolding: a rejoin with no hold to end.
var errNotHolding = errors.New("this node is not out of the election (no resign hold to end)")

// Rejoin ends a resignation's hold now.
func (e *election) Rejoin(ctx context.Context) error {
	if held, _ := e.Holding(); !held {
		return errNotHolding
	}
	select {
	case e.rejoinCh <- struct{}{}:
		return nil
	case <-ctx.Done():
		return errNotHolding
	}
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
		e.setState(statePassive, reasonNoSession, "")
	}
	sess, err := e.zc.waitUsable(ctx)
	if err != nil {
		return termEnd{}, err
	}
	t := &term{e: e, sess: sess}
	e.update(func(st *standing) {
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
	// Nodes of ours from earlier attempts would queue us behind ourselves.
	if _, err := t.sweep(ctx, false); err != nil {
		return termEnd{reopen: true}, nil
	}
	if err := t.create(ctx); err != nil {
		if errors.Is(err, errSessionLost) || ctx.Err() != nil {
			return termEnd{}, nil
		}
		// Rule 2: after any error past the create, our node must not stay.
		if _, serr := t.sweep(ctx, false); serr != nil {
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
	timer := time.NewTimer(t.sess.Timeout)
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

type existsW struct {
	ok   bool
	stat *zk.Stat
	ch   <-chan zk.Event
}

// existsW sets a watch on path within this term's session.
func (t *term) existsW(ctx context.Context, path string) (existsW, error) {
	return call(ctx, t, func() (existsW, error) {
		ok, st, ch, err := t.sess.Conn.ExistsW(path)
		return existsW{ok, st, ch}, err
	})
}

// exists reads a node's stat within this term's session.
func (t *term) exists(ctx context.Context, path string) (bool, *zk.Stat, error) {
	w, err := call(ctx, t, func() (existsW, error) {
		ok, st, err := t.sess.Conn.Exists(path)
		return existsW{ok: ok, stat: st}, err
	})
	return w.ok, w.stat, err
}

// children lists the election's candidates.
func (t *term) children(ctx context.Context) ([]string, error) {
	return call(ctx, t, func() ([]string, error) {
		c, _, err := t.sess.Conn.Children(t.e.parent)
		return c, err
	})
}

// remove deletes a node; already gone is fine.
func (t *term) remove(ctx context.Context, path string) error {
	_, err := call(ctx, t, func() (struct{}, error) {
		return struct{}{}, t.sess.Conn.Delete(path, -1)
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	return err
}

// classify maps go-zk errors that mean "this session is over".
func (t *term) classify(err error) error {
	if errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrClosing) {
		return fmt.Errorf("%w: %w", errSessionLost, err)
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

// sessionGone says whether s is no longer this term's session.
func (t *term) sessionGone(s session) bool {
	return s.Conn != t.sess.Conn || s.State == zk.StateExpired || (s.ID != 0 && s.ID != t.sess.ID)
}

func newGUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

type candidate struct {
	name string
	guid string
	seq  int64
}

// parseCandidate recognises hacron's protected node name,
// _c_<32 hex guid>-n_<10 digits>; anything else is not a candidate.
func parseCandidate(name string) (candidate, bool) {
	const prefix, infix = "_c_", "-n_"
	if len(name) != len(prefix)+32+len(infix)+10 || name[:3] != prefix || name[35:38] != infix {
		return candidate{}, false
	}
	guid, digits := name[3:35], name[38:]
	for _, c := range guid {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return candidate{}, false
		}
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return candidate{}, false
		}
	}
	seq, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return candidate{}, false
	}
	return candidate{name: name, guid: guid, seq: seq}, true
}

// seqOf is a candidate's sequence number, for logs: people know nodes by
// their ids, and an election node by its place in the queue.
func seqOf(name string) int64 {
	c, _ := parseCandidate(name)
	return c.seq
}

// parseCandidates keeps hacron's nodes, sorted by sequence number and never
// by whole name (ZOOKEEPER-2931); other children are ignored.
func parseCandidates(children []string, skip map[string]bool) []candidate {
	var out []candidate
	for _, c := range children {
		if cand, ok := parseCandidate(c); ok && !skip[c] {
			out = append(out, cand)
		}
	}
	slices.SortFunc(out, func(a, b candidate) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// create makes our node (rule 1) and survives a lost reply (rule 2): with
// the same session, the node is found by its guid; with a new session, the
// term ends and the next one deletes it. A create the client queued during
// a disconnect can be sent on a later session: the node it returns is
// checked to belong to this term's session.
func (t *term) create(ctx context.Context) error {
	e := t.e
	info, err := json.Marshal(memberInfo{Node: e.cfg.ID, PID: os.Getpid(), Version: e.cfg.Version, Since: jsonTime(time.Now())})
	if err != nil {
		return err
	}
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
			return t.checkOwner(ctx)
		}
		if !unknown(err) {
			return t.classify(err)
		}
		e.log.Info("election node create: no reply, looking for it", "err", err)
		if err := t.sameSession(ctx); err != nil {
			return err
		}
		found, err := t.sweep(ctx, true)
		if err != nil {
			return t.classify(err)
		}
		if found != "" {
			t.setNode(e.parent + "/" + found)
			return nil
		}
	}
}

// checkOwner makes sure our new node belongs to this term's session; one
// that belongs to a later session of ours is deleted (it would block us).
func (t *term) checkOwner(ctx context.Context) error {
	ok, st, err := t.exists(ctx, t.node)
	if err != nil {
		return t.classify(err)
	}
	if ok && st.EphemeralOwner == t.sess.ID && t.sess.Conn.SessionID() == t.sess.ID {
		return nil
	}
	if ok {
		t.e.log.Info("election node made on another session; deleting it", "seq", seqOf(t.name))
		if err := t.remove(ctx, t.node); err != nil {
			t.e.log.Warn("could not delete an election node of another session", "seq", seqOf(t.name), "err", err)
		}
	}
	return errSessionLost
}

func (t *term) setNode(path string) {
	t.node = path
	t.name = path[len(t.e.parent)+1:]
	t.e.update(func(st *standing) { st.Node = path })
}

// sweep deletes the election nodes that are ours but not in use: those of
// creates whose outcome was never learned (by guid), and any other node
// that this term's session owns. With adopt, the lowest node with one of
// our unconfirmed guids is kept and returned instead of deleted. Failing,
// the caller drops the session so the server deletes them.
func (t *term) sweep(ctx context.Context, adopt bool) (string, error) {
	e := t.e
	children, err := t.children(ctx)
	if err != nil {
		return "", err
	}
	var found string
	for _, c := range parseCandidates(children, nil) {
		path := e.parent + "/" + c.name
		if path == t.node {
			continue
		}
		if !slices.Contains(e.orphans, c.guid) {
			ok, st, err := t.exists(ctx, path)
			if err != nil {
				return "", err
			}
			if !ok || st.EphemeralOwner != t.sess.ID {
				continue
			}
		} else if adopt && found == "" {
			found = c.name
			continue
		}
		e.log.Info("deleting an unused election node of this agent", "node", e.cfg.ID, "seq", c.seq)
		if err := t.remove(ctx, path); err != nil {
			return "", err
		}
	}
	if !adopt || found != "" {
		e.orphans = nil
	}
	return found, nil
}

// campaign waits behind its predecessor until it is the lowest, then leads.
func (t *term) campaign(ctx context.Context) (termEnd, error) {
	e := t.e
	skip := map[string]bool{} // persistent impostors with a candidate's name
	for {
		children, err := t.children(ctx)
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
			if _, err := t.sweep(ctx, false); err != nil {
				return termEnd{}, err
			}
			continue
		}
		me := slices.IndexFunc(cands, func(c candidate) bool { return c.name == t.name })
		if me < 0 {
			e.setState(stateLost, reasonNodeGone, "")
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
		w, err := t.existsW(ctx, e.parent+"/"+pred)
		if err != nil {
			if err := t.recover(ctx, err); err != nil {
				return termEnd{}, err
			}
			continue
		}
		if !w.ok {
			continue
		}
		switch w.stat.EphemeralOwner {
		case 0:
			// A persistent node is no session's candidate: it would block
			// the queue forever.
			e.log.Warn("ignoring a persistent node in the election", "node", pred)
			skip[pred] = true
			continue
		case t.sess.ID:
			// A node of our own session that is not ours to use: we would
			// wait behind ourselves forever.
			e.log.Info("deleting an unused election node of this agent", "node", e.cfg.ID, "seq", seqOf(pred))
			if err := t.remove(ctx, e.parent+"/"+pred); err != nil {
				if err := t.recover(ctx, err); err != nil {
					return termEnd{}, err
				}
			}
			continue
		}
		e.update(func(st *standing) {
			st.State, st.Reason, st.Detail, st.Leader, st.Ahead = statePassive, reasonQueued, leader, leader, me
			st.Token, st.Deadline = 0, time.Time{}
		})
		if end, done, err := t.waitWatch(ctx, w.ch); done {
			return end, err
		}
	}
}

// waitWatch waits for the predecessor's watch (only ours fires when it
// leaves: no herd), a session change, a resignation or the end.
func (t *term) waitWatch(ctx context.Context, ch <-chan zk.Event) (termEnd, bool, error) {
	for {
		s := t.e.zc.snapshot()
		if t.sessionGone(s) {
			t.e.setState(statePassive, reasonSessionExpired, "")
			return termEnd{}, true, errSessionLost
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

// recover handles an error from a read while waiting: an unknown outcome
// waits for the session to come back; anything else ends the term.
func (t *term) recover(ctx context.Context, err error) error {
	if !unknown(err) {
		return t.classify(err)
	}
	if err := t.sameSession(ctx); err != nil {
		t.e.setState(statePassive, reasonSessionExpired, "")
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
	sent   time.Time
	result lease.Result
}

// lead holds the role: ownership check (rule 3), own-node watch (rule 6),
// the write-renewed lease (rule 7), suspended and lost (rule 5). Only a
// lost session, our node gone or a step-down end it; a disconnect only
// suspends admissions, and the lease's deadline ends the jobs.
func (t *term) lead(ctx context.Context) (termEnd, error) {
	l, end, err := t.takeLead(ctx)
	if l == nil {
		return end, err
	}
	defer l.stop()
	e := t.e
	l.publish()
	l.renew()
	for {
		s := e.zc.snapshot()
		if t.sessionGone(s) {
			return l.lose(reasonSessionExpired, "")
		}
		select {
		case <-ctx.Done():
			return termEnd{}, nil // term releases

		case hold := <-e.resignCh:
			t.release()
			return termEnd{hold: hold}, nil

		case node := <-e.goneCh:
			if node == t.node {
				return l.lose(reasonNodeGone, "seen by an admission")
			}

		case ev, ok := <-l.own:
			if gone := l.ownNodeChanged(ctx, ev, ok); gone {
				return l.lose(reasonNodeGone, "deleted")
			}

		case <-s.Changed:
			switch now := e.zc.snapshot(); {
			case now.Usable():
				if l.lease.Reconnect() {
					l.renew() // back: only a new write proves the lease
				}
			case l.lease.Connected():
				l.lease.Disconnect()
			}
			l.publish()

		case <-l.ticker.C:
			l.renew()

		case r := <-l.results:
			if why, lost := l.renewed(r); lost {
				return l.lose(why, "renewal")
			}

		case <-l.timer.C:
			if time.Now().Before(l.lease.Deadline()) {
				l.timer.Reset(time.Until(l.lease.Deadline()))
				continue
			}
			l.publish()
		}
	}
}

// leader is one term's hold on the lowest node: the lease, the renewals
// in flight, the watch on our own node.
type leader struct {
	t       *term
	token   int64
	lease   *lease.Lease
	results chan renewal
	own     <-chan zk.Event
	timer   *time.Timer // fires at the lease's deadline
	ticker  *time.Ticker
}

// takeLead checks that the lowest node is ours and owned by this session
// (a node of an expired session can still be visible for a moment:
// CURATOR-696), and starts leading. A nil leader comes with how the term
// goes on.
func (t *term) takeLead(ctx context.Context) (*leader, termEnd, error) {
	e := t.e
	w, err := t.existsW(ctx, t.node)
	if err != nil {
		if err := t.recover(ctx, err); err != nil {
			return nil, termEnd{}, err
		}
		return nil, termEnd{}, errRecheck
	}
	if !w.ok {
		e.setState(stateLost, reasonNodeGone, "")
		return nil, termEnd{}, nil
	}
	if w.stat.EphemeralOwner != t.sess.ID || t.sess.Conn.SessionID() != t.sess.ID {
		e.setState(stateLost, reasonOtherSession, "")
		return nil, termEnd{}, errSessionLost
	}
	T := t.sess.Timeout
	return &leader{
		t: t, token: w.stat.Czxid, own: w.ch,
		lease:   lease.New(T),
		results: make(chan renewal, lease.MaxInflight),
		timer:   time.NewTimer(time.Hour),
		ticker:  time.NewTicker(lease.RenewEvery(T)),
	}, termEnd{}, nil
}

func (l *leader) stop() {
	l.timer.Stop()
	l.ticker.Stop()
}

// renew sends one renewal write, unless too many are in flight: its send
// time is what the lease counts from.
func (l *leader) renew() {
	if !l.lease.Begin() {
		return
	}
	t := l.t
	conn := t.sess.Conn
	go func() {
		sent := time.Now()
		_, err := conn.Multi(&zk.CheckVersionRequest{Path: t.node, Version: -1})
		l.results <- renewal{sent: sent, result: renewalResult(err, conn.SessionID() == t.sess.ID)}
	}()
}

// renewed applies a renewal's result, and says why when leadership is
// over.
func (l *leader) renewed(r renewal) (reason, bool) {
	switch l.lease.Done(r.sent, r.result) {
	case lease.Lost:
		if r.result == lease.NodeGone {
			return reasonNodeGone, true
		}
		return reasonSessionExpired, true
	case lease.Extended:
		l.timer.Reset(time.Until(l.lease.Deadline()))
	}
	l.publish()
	return 0, false
}

// ownNodeChanged handles the watch on our own node: true when it is gone.
// Another change (data, children) only re-arms the watch; renewals still
// notice a deletion if that fails.
func (l *leader) ownNodeChanged(ctx context.Context, ev zk.Event, ok bool) bool {
	if !ok || ev.Type == zk.EventNodeDeleted || ev.Type == zk.EventNotWatching {
		return true
	}
	l.own = nil
	if w, err := l.t.existsW(ctx, l.t.node); err == nil {
		if !w.ok {
			return true
		}
		l.own = w.ch
	}
	return false
}

// publish shows what the lease says now.
func (l *leader) publish() {
	e := l.t.e
	now := time.Now()
	e.update(func(st *standing) {
		st.Token, st.Leader, st.Ahead, st.Deadline = l.token, e.cfg.ID, 0, l.lease.Deadline()
		switch l.lease.At(now) {
		case lease.Active:
			st.State, st.Reason, st.Detail = stateActive, reasonRenewed, ""
		case lease.Suspended:
			st.State, st.Detail = stateSuspended, ""
			if l.lease.Connected() {
				st.Reason = reasonProving
			} else {
				st.Reason = reasonDisconnected
			}
		case lease.Lapsed:
			st.State, st.Reason, st.Detail = stateSuspended, reasonLapsed, ""
			if l.lease.Deadline().IsZero() {
				st.Reason = reasonProving
			} else if !l.lease.Connected() {
				st.Reason, st.Detail = reasonDisconnected, "lease expired"
			}
		}
	})
}

// lose ends the term: jobs must stop now, not at the deadline.
func (l *leader) lose(r reason, detail string) (termEnd, error) {
	l.t.e.update(func(st *standing) {
		st.State, st.Reason, st.Detail, st.Deadline, st.Node = stateLost, r, detail, time.Now(), ""
	})
	return termEnd{}, nil
}

// renewalResult classifies a renewal write's error for the lease.
func renewalResult(err error, sameSession bool) lease.Result {
	switch {
	case err == nil && sameSession:
		return lease.Renewed
	case err == nil, errors.Is(err, zk.ErrSessionExpired):
		return lease.SessionGone
	case errors.Is(err, zk.ErrNoNode):
		return lease.NodeGone
	}
	return lease.Unknown
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
		err := t.remove(context.Background(), t.node)
		if err == nil {
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
	e.setState(statePassive, reasonReleased, "")
	if err := t.deleteNode(); err != nil {
		e.log.Warn("could not delete the election node; closing the session removes it", "node", e.cfg.ID, "seq", seqOf(t.name), "err", err)
	}
	e.update(func(st *standing) { st.Node = "" })
}
