package main

// Admission: the one way a run is let in, in agent mode and in direct mode
// alike. Wait for the election's turn, pick the kill grace the lease
// allows, clear a stale no-overlap marker, then one linearizable write
// (docs/zookeeper-rules.md, rule 9): Multi(CheckVersion(holder's node), Create(run record)
// [, Create(running marker)]). The caller only translates: the agent to its
// socket, direct mode to the wrapper in the same process.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"

	"hacron/internal/contain"
	"hacron/internal/lease"
)

// Why a run was skipped.
const (
	skipPassive = "passive"
	skipSlot    = "slot taken"
	skipRunning = "still running elsewhere"
	// skipNoSession is passive for want of a ZooKeeper session (state
	// unknown): the agent says so in its log.
	skipNoSession = "no ZooKeeper session"
)

// admission describes the ZooKeeper side of one run.
type admission struct {
	root      string // absolute cluster root (chroot included)
	job       string
	slot      string
	claim     bool   // the record is named after the slot: once per slot
	noOverlap bool   // also the job's ephemeral running marker
	name      string // the record's node name when not claiming
	rec       runRecord
	acl       []zk.ACL
}

func (a admission) runsPath() string    { return jobPath(a.root, a.job) + "/runs" }
func (a admission) runningPath() string { return jobPath(a.root, a.job) + "/running" }

// recordPath is where the run's record goes: named after the slot with
// claims (so a slot can be created once), else a fresh unique name, known
// before the write so that the running marker can point at it.
func (a admission) recordPath() string {
	if a.claim {
		return a.runsPath() + "/" + a.slot
	}
	return a.runsPath() + "/" + a.name
}

// marker is the data of a job's running marker: whose run it guards.
type marker struct {
	Record string `json:"record"`
	Node   string `json:"node"`
	PGID   int    `json:"pgid"`
}

// ops are the creates that go into the admission Multi after the check of
// the holder's node.
func (a admission) ops() []any {
	ops := []any{&zk.CreateRequest{Path: a.recordPath(), Data: a.rec.encode(), Acl: a.acl, Flags: zk.FlagPersistent}}
	if a.noOverlap {
		data, err := json.Marshal(marker{Record: a.recordPath(), Node: a.rec.Node, PGID: a.rec.PGID})
		if err != nil {
			panic(err) // strings and numbers always encode
		}
		ops = append(ops, &zk.CreateRequest{Path: a.runningPath(), Data: data, Acl: a.acl, Flags: zk.FlagEphemeral})
	}
	return ops
}

// outcome maps the admission Multi's result: the record's path, or a skip
// reason, or an error. res[0] is the check of the holder's node.
func (a admission) outcome(res []zk.MultiResponse, err error) (record, skip string, _ error) {
	switch {
	case err == nil:
		return res[1].String, "", nil
	case errors.Is(err, errNotActive), errors.Is(err, errLeadership):
		return "", skipPassive, nil
	case len(res) > 1 && errors.Is(res[1].Error, zk.ErrNodeExists):
		return "", skipSlot, nil
	case len(res) > 2 && errors.Is(res[2].Error, zk.ErrNodeExists):
		return "", skipRunning, nil
	case errors.Is(err, errOutcomeUnknown):
		// The record may exist: the run must not start, and the operator
		// must know.
		return "", "", errors.New("admission outcome unknown: ZooKeeper did not answer")
	}
	return "", "", fmt.Errorf("admission: %w", noAuth(err, "create a run record in "+a.runsPath(), a.runsPath()))
}

// runRequest is what one run asks for, whoever asks.
type runRequest struct {
	job, slot        string // job: the name in ZooKeeper (jobName)
	schedule         string // the job's schedule, recorded in its node ("" clears it)
	claim, noOverlap bool
	wait             time.Duration // wait this long to become active
	limit            time.Duration // and at most this long for the election to place us
	settled          func(standing) bool
	killGrace        time.Duration
	killGraceSet     bool
	uid              int
	cmd              string
	pgid             int
	// group, when pgid is not known yet, makes the job's process group
	// once the run is about to be admitted (direct mode: a skip, or a
	// run that waits for the job's lock, needs none) and returns the
	// group and the containment it will have.
	group       func() (int, contain.Kind, error)
	containment contain.Kind // the record's containment
	// hold runs just before the admission write, given the token and the
	// record's path, and says whether the write may go ahead; release
	// undoes it when the run is not admitted. The job's cgroup is made
	// here, and the agent tracks the run here, so that a lease that ends
	// at any moment from the write on reaches all of it.
	hold func(token int64, record string) (release func(), skip string, err error)
}

// ticket is an admitted run.
type ticket struct {
	adm      admission
	record   string // absolute path of the run record
	token    int64
	deadline time.Time
	grace    time.Duration
	session  int64 // the session the admission was written on
}

// admitter admits runs for one election: the agent's, or a direct run's
// job lock.
type admitter struct {
	el     *election
	zc     *zkClient
	root   string // chroot-relative cluster root
	node   string // this node's id
	log    *slog.Logger
	onGate func(time.Duration) // observes the admission write's duration
	// background, when set, takes abandoned admissions back in the
	// background for as long as it lives (the agent); without it they are
	// taken back before admit returns, for at most one session timeout
	// (direct mode, whose process is about to exit).
	background context.Context

	mu        sync.Mutex
	made      map[string]bool   // jobs whose nodes exist
	schedules map[string]string // what the nodes of jobs say of their schedules, as last read or written
}

func newAdmitter(el *election, zc *zkClient, root, node string, log *slog.Logger) *admitter {
	return &admitter{el: el, zc: zc, root: root, node: node, log: log, made: map[string]bool{}, schedules: map[string]string{}}
}

// admit decides one run: a ticket, a skip reason, or an error.
func (a *admitter) admit(ctx context.Context, req runRequest) (*ticket, string, error) {
	job := req.job
	if err := validSlot(req.slot); err != nil {
		return nil, "", err
	}
	if req.schedule != "" {
		if err := checkSchedule(req.schedule); err != nil {
			return nil, "", err
		}
	}
	adm := admission{root: a.zc.abs(a.root), job: job, slot: req.slot, claim: req.claim, noOverlap: req.noOverlap, acl: a.zc.acl}
	st, skip := awaitTurn(ctx, a.el, a.zc, adm, req.wait, req.limit, req.settled)
	if skip != "" {
		return nil, skip, nil
	}
	// The job's nodes are made, and its schedule recorded, by the node
	// that runs it, not by every passive node that skips it.
	if err := a.ensureJob(job, req.schedule); err != nil {
		return nil, "", fmt.Errorf("admission: %w", err)
	}
	grace, err := lease.KillGrace(st.Timeout, req.killGrace, req.killGraceSet)
	if err != nil {
		return nil, "", err
	}
	if adm.noOverlap {
		a.clearStaleMarker(adm)
	}
	if req.group != nil {
		if req.pgid, req.containment, err = req.group(); err != nil {
			return nil, "", err
		}
	}
	adm.name = "r-" + newGUID()[:16]
	adm.rec = runRecord{Job: job, Node: a.node, Slot: req.slot, Start: jsonTime(time.Now()), Token: st.Token,
		UID: req.uid, User: userName(req.uid), Cmd: req.cmd, PGID: req.pgid, Containment: string(req.containment)}
	release := func() {}
	if req.hold != nil {
		r, skip, err := req.hold(st.Token, adm.recordPath())
		if err != nil || skip != "" {
			return nil, skip, err
		}
		release = r
	}
	t0 := time.Now()
	ast, res, gateErr := a.el.gate(adm.ops()...)
	if a.onGate != nil {
		a.onGate(time.Since(t0))
	}
	record, skip, err := adm.outcome(res, gateErr)
	if err != nil || skip != "" {
		release()
		if errors.Is(gateErr, errOutcomeUnknown) {
			// The write may have applied: a record of a run that never
			// runs must not stay without an end.
			a.abandon(adm)
		}
		return nil, skip, err
	}
	if !a.el.Status().active(time.Now()) {
		// Admitted, but the reply came after the lease ran out: the job
		// must not start. Give the claim back so another node can run the
		// slot.
		release()
		a.abandon(adm)
		return nil, skipPassive, nil
	}
	return &ticket{adm: adm, record: record, token: ast.Token, deadline: ast.Deadline, grace: grace, session: ast.SessionID}, "", nil
}

// recordMissed records a slot of job that was due and will not run (the
// scheduler's catch-up ran a newer one): a record with result missed,
// written as an admission is, so only the active node writes it and a slot
// that has a record keeps it.
func (a *admitter) recordMissed(job, schedule, slot string) error {
	if err := validSlot(slot); err != nil {
		return err
	}
	st := a.el.Status()
	if !st.active(time.Now()) {
		return errNotActive
	}
	if err := a.ensureJob(job, schedule); err != nil {
		return err
	}
	adm := admission{root: a.zc.abs(a.root), job: job, slot: slot, claim: true, acl: a.zc.acl,
		rec: missedRecord(job, a.node, slot, st.Token, time.Now())}
	_, res, err := a.el.gate(adm.ops()...)
	_, skip, err := adm.outcome(res, err)
	if err == nil && skip == skipPassive {
		return errNotActive
	}
	return err
}

// skipAtOnce is admit's answer when it needs nothing but the standing: a
// run that will not wait, on a node that is not active, is skipped.
// Deciding it first spares a passive node the job's process group.
func (a *admitter) skipAtOnce(wait time.Duration) string {
	if wait == 0 && !a.el.Status().active(time.Now()) {
		return skipPassive
	}
	return ""
}

// abandon takes back an admission whose job will not run: its record
// (and running marker) are deleted once ZooKeeper answers, if they are
// this admission's. The write may or may not have applied; with a slot
// claim, a record found there may be another node's, and is left alone.
func (a *admitter) abandon(adm admission) {
	if a.background != nil {
		go a.takeBackWhenReachable(a.background, adm)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.zc.cfg.SessionTimeout)
	defer cancel()
	a.takeBackWhenReachable(ctx, adm)
}

func (a *admitter) takeBackWhenReachable(ctx context.Context, adm admission) {
	pause := 50 * time.Millisecond
	for {
		s := a.zc.snapshot()
		if s.Usable() {
			err := takeBack(s.Conn, adm)
			if err == nil {
				return
			}
			a.log.Debug("taking back an admission", "record", adm.recordPath(), "err", err)
		}
		select {
		case <-ctx.Done():
			a.log.Warn("an admission whose outcome is unknown could not be taken back; the agent completes its record once its process group is gone",
				"record", adm.recordPath())
			return
		case <-s.Changed:
		case <-time.After(pause):
		}
		pause = min(2*pause, finishRetry)
	}
}

// takeBack deletes adm's record and running marker if they are there and
// are adm's own (by the record's node, start and token, the marker's
// record), in one write.
func takeBack(conn *zk.Conn, adm admission) error {
	data, st, err := conn.Get(adm.recordPath())
	if errors.Is(err, zk.ErrNoNode) {
		return nil // the write did not apply: nothing to take back
	}
	if err != nil {
		return err
	}
	r, derr := decodeRunRecord(data)
	if derr != nil || r.Node != adm.rec.Node || r.Start != adm.rec.Start || r.Token != adm.rec.Token {
		return nil // another run's record
	}
	ops := []any{&zk.DeleteRequest{Path: adm.recordPath(), Version: st.Version}}
	if adm.noOverlap {
		mdata, mst, err := conn.Get(adm.runningPath())
		var m marker
		if err == nil && json.Unmarshal(mdata, &m) == nil && m.Record == adm.recordPath() {
			ops = append(ops, &zk.DeleteRequest{Path: adm.runningPath(), Version: mst.Version})
		}
	}
	_, err = conn.Multi(ops...)
	if errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrBadVersion) {
		return nil // gone, or no longer what we looked at
	}
	return err
}

// ensureJob creates the job's runs parent and makes the job's node say
// its schedule, each once per admitter and job (per schedule): an agent
// pays for them once, a direct run (a new admitter) one read. A schedule
// that cannot be recorded is logged, never a reason not to run the job:
// the next admission tries again.
func (a *admitter) ensureJob(job, schedule string) error {
	a.mu.Lock()
	made := a.made[job]
	known, read := a.schedules[job]
	a.mu.Unlock()
	if !made {
		if err := a.zc.ensurePath(a.zc.snapshot().Conn, jobPath(a.root, job)+"/runs"); err != nil {
			return err
		}
		a.mu.Lock()
		a.made[job] = true
		a.mu.Unlock()
	}
	if read && known == schedule {
		return nil
	}
	if err := recordSchedule(a.zc.snapshot().Conn, a.zc.abs(jobPath(a.root, job)), schedule, time.Now()); err != nil {
		a.log.Warn("recording the job's schedule in its node", "job", job, "schedule", schedule, "err", err)
		return nil
	}
	a.mu.Lock()
	a.schedules[job] = schedule
	a.mu.Unlock()
	return nil
}

// clearStaleMarker removes a running marker whose run is over, so that it
// cannot make the next --no-overlap run skip: its record has an end (or is
// gone), or it guards a run of this node whose process group is gone.
// Whatever fails here leaves the marker; the admission then skips, as it
// would for a run still going.
func (a *admitter) clearStaleMarker(adm admission) {
	conn := a.zc.snapshot().Conn
	data, st, err := conn.Get(adm.runningPath())
	if err != nil {
		return
	}
	var m marker
	if json.Unmarshal(data, &m) != nil || m.Record == "" {
		return // a marker of an older hacron: it goes with its session
	}
	over := false
	rdata, _, err := conn.Get(m.Record)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		over = true
	case err != nil:
		return
	default:
		r, err := decodeRunRecord(rdata)
		over = err == nil && r.End != ""
		if !over && err == nil && m.Node == a.node && groupGone(m.PGID) {
			if completeRecord(conn, m.Record, r, nil, resultUnknown) != nil {
				return
			}
			over = true
		}
	}
	if !over {
		return
	}
	if err := conn.Delete(adm.runningPath(), st.Version); err == nil {
		a.log.Info("removed the running marker of a run that is over", "job", adm.job, "record", m.Record)
	}
}

// groupGone says whether no process of group pgid is left on this host.
// EPERM still means someone is in it.
func groupGone(pgid int) bool {
	return pgid <= 1 || errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}

// watchSlot says whether the slot's record exists, and gives a channel that
// fires when that may have changed (nil when ZooKeeper cannot be asked now;
// the caller's other wake-ups cover that).
func (a admission) watchSlot(zc *zkClient) (bool, <-chan zk.Event) {
	s := zc.snapshot()
	if !s.Usable() {
		return false, nil
	}
	ok, _, ch, err := s.Conn.ExistsW(a.runsPath() + "/" + a.slot)
	if err != nil {
		return false, nil
	}
	return ok, ch
}

// awaitTurn returns once the election says active, or why the run skips:
// the slot taken meanwhile (claims only), passive once wait is over and
// settled says the election has placed us, or the limit or ctx reached.
func awaitTurn(ctx context.Context, el *election, zc *zkClient, a admission, wait, limit time.Duration, settled func(standing) bool) (standing, string) {
	feed := el.subscribe()
	defer el.unsubscribe(feed)
	deadline := time.Now().Add(wait)
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		st := el.Status()
		if st.active(time.Now()) {
			return st, ""
		}
		if !time.Now().Before(deadline) && (settled == nil || settled(st)) {
			return st, skipPassive
		}
		var slotCh <-chan zk.Event
		if a.claim {
			var taken bool
			if taken, slotCh = a.watchSlot(zc); taken {
				return st, skipSlot
			}
		}
		select {
		case <-feed.C():
			feed.next()
		case <-slotCh:
		case <-timer.C:
			return st, skipPassive
		case <-ctx.Done():
			return st, skipPassive
		}
	}
}

// newsKind is what happened to the lease a run holds.
type newsKind int

const (
	newsRenewed   newsKind = iota // the deadline moved later
	newsSuspended                 // disconnected: the deadline stands, and ends the run unless a renewal comes
	newsLost                      // the lease is over now: end the run
)

// leaseNews is one thing a running job's supervisor must hear.
type leaseNews struct {
	kind     newsKind
	deadline time.Time
	why      string
}

// newsFor is what a run admitted under token hears of a standing, given
// the last news it had; false when there is nothing new. A disconnect is
// not a loss: only a lost session or node, a new token or a step-down is.
func newsFor(st standing, token int64, last leaseNews) (leaseNews, bool) {
	if (st.State != stateActive && st.State != stateSuspended) || st.Token != token {
		return leaseNews{kind: newsLost, why: st.State.String() + ": " + st.why()}, true
	}
	n := leaseNews{kind: newsRenewed, deadline: st.Deadline}
	if st.State == stateSuspended {
		n.kind, n.why = newsSuspended, st.why()
	}
	if n.deadline.Before(last.deadline) {
		n.deadline = last.deadline
	}
	if n.kind == last.kind && !n.deadline.After(last.deadline) {
		return leaseNews{}, false
	}
	return n, true
}

// followLease sends out the news of the lease a run holds, from the
// admission's deadline on, until the lease is lost or done closes. A slow
// reader misses intermediate renewals, never the loss.
func followLease(el *election, t *ticket, out chan<- leaseNews, done <-chan struct{}) {
	feed := el.subscribe()
	defer el.unsubscribe(feed)
	last := leaseNews{kind: newsRenewed, deadline: t.deadline}
	for {
		for _, st := range feed.next() {
			n, ok := newsFor(st, t.token, last)
			if !ok {
				continue
			}
			last = n
			if n.kind == newsLost {
				select {
				case out <- n:
				case <-done:
				}
				return
			}
			select {
			case out <- n:
			default: // the reader is behind; a later one follows
			}
		}
		select {
		case <-feed.C():
		case <-done:
			return
		}
	}
}
