package main

// Run records: one persistent node per admitted run under
// /hacron/<cluster>/jobs/<job>/runs/, created by the admission Multi and
// completed when the run ends.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/robfig/cron/v3"
)

// runRecord is the data of a run record (docs/contract.md, "ZooKeeper
// layout").
type runRecord struct {
	Job      string `json:"job"`
	Node     string `json:"node"`
	Slot     string `json:"slot"`
	Start    string `json:"start"`
	End      string `json:"end,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Result   string `json:"result,omitempty"`
	Token    int64  `json:"token"`
	UID      int    `json:"uid"`
	User     string `json:"user"`
}

// Results of a run.
const (
	resultOK      = "ok"
	resultFailed  = "failed"
	resultLost    = "lost"
	resultTimeout = "timeout"
	resultKilled  = "killed"
)

// maxRecordData bounds what is parsed of a run record: records are small,
// and a foreign or hostile node may be up to ZooKeeper's 1 MB.
const maxRecordData = 16 << 10

// decodeRunRecord parses a run record's data; anything else is an error,
// never a crash.
func decodeRunRecord(data []byte) (runRecord, error) {
	var r runRecord
	if len(data) > maxRecordData {
		return r, errors.New("run record too large")
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, err
	}
	if r.Job == "" || r.Start == "" {
		return r, errors.New("not a run record")
	}
	return r, nil
}

func (r runRecord) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // plain strings and numbers always encode
	}
	return b
}

// userName is the login name of uid, or the number when it has none.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// jobPath is the node of a job under the cluster root.
func jobPath(root, job string) string { return fmt.Sprintf("%s/jobs/%s", root, job) }

// defaultSlot is the invocation time truncated to the minute, UTC.
func defaultSlot(now time.Time) string {
	return now.UTC().Truncate(time.Minute).Format(time.RFC3339)
}

// validSlot: a slot names a znode, so no "/" and nothing ZooKeeper refuses.
func validSlot(s string) error {
	if s == "" || len(s) > 128 || s == "." || s == ".." || s == "running" ||
		strings.ContainsAny(s, "/\x00") || strings.HasPrefix(s, "r-") {
		return fmt.Errorf("bad slot %q: 1-128 characters, no /, not . .. running or r-...", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("bad slot %q: control characters", s)
		}
	}
	return nil
}

// scheduleSlot is the latest time the schedule fired that is not after
// now, in UTC: the slot a late cron start still belongs to.
func scheduleSlot(expr string, now time.Time) (string, error) {
	sched, err := cron.ParseStandard(expr)
	if err != nil {
		return "", fmt.Errorf("--schedule %q: %w", expr, err)
	}
	// robfig/cron only steps forward: walk from ever earlier starts until a
	// firing at or before now is found.
	for _, back := range []time.Duration{time.Hour, 48 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, 5 * 367 * 24 * time.Hour} {
		var last time.Time
		for t := sched.Next(now.Add(-back)); !t.IsZero() && !t.After(now); t = sched.Next(t) {
			last = t
		}
		if !last.IsZero() {
			return last.UTC().Format(time.RFC3339), nil
		}
	}
	return "", fmt.Errorf("--schedule %q: no firing time in the last five years", expr)
}

// admission describes the ZooKeeper side of one admission.
type admission struct {
	root      string // absolute cluster root (chroot included)
	job       string
	slot      string
	claim     bool // the record is named after the slot: once per slot
	noOverlap bool // also the job's ephemeral running marker
	rec       runRecord
	acl       []zk.ACL
}

func (a admission) runsPath() string    { return jobPath(a.root, a.job) + "/runs" }
func (a admission) runningPath() string { return jobPath(a.root, a.job) + "/running" }

// ops are the creates that go into the admission Multi after the check of
// the holder's node.
func (a admission) ops() []any {
	rec := &zk.CreateRequest{Path: a.runsPath() + "/r-", Data: a.rec.encode(), Acl: a.acl, Flags: zk.FlagSequence}
	if a.claim {
		rec.Path, rec.Flags = a.runsPath()+"/"+a.slot, 0
	}
	ops := []any{rec}
	if a.noOverlap {
		ops = append(ops, &zk.CreateRequest{Path: a.runningPath(), Acl: a.acl, Flags: zk.FlagEphemeral})
	}
	return ops
}

// Why a run was skipped.
const (
	skipPassive = "passive"
	skipSlot    = "slot taken"
	skipRunning = "still running elsewhere"
)

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
	return "", "", fmt.Errorf("admission: %w", err)
}

// slotTaken says whether the slot's record exists, with a watch that fires
// when that changes.
func (a admission) slotTaken(conn *zk.Conn) (bool, <-chan zk.Event, error) {
	ok, _, ch, err := conn.ExistsW(a.runsPath() + "/" + a.slot)
	return ok, ch, err
}

// watchSlot is slotTaken on the current session, for a waiting run: taken,
// or a channel that fires when it may have been (nil when ZooKeeper cannot
// be asked now; the caller's other wake-ups cover that).
func (a admission) watchSlot(zc *zkClient) (bool, <-chan zk.Event) {
	s := zc.snapshot()
	if !s.Usable() {
		return false, nil
	}
	taken, ch, err := a.slotTaken(s.Conn)
	if err != nil {
		return false, nil
	}
	return taken, ch
}

// awaitTurn returns once the election says active, or why the run skips:
// the slot taken meanwhile (claims only), passive once wait is over and
// settled says the election has placed us, or the limit or ctx reached.
func awaitTurn(ctx context.Context, el *election, zc *zkClient, a admission, wait, limit time.Duration, settled func(status) bool) (status, string) {
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
		if !time.Now().Before(deadline) && settled(st) {
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

// leaseNews is what a run admitted under token must hear of a status: the
// loss, or a deadline later than last; news is false for neither.
func leaseNews(st status, token int64, last time.Time) (m reply, news bool) {
	if !st.active(time.Now()) || st.Token != token {
		return reply{Lost: st.State.String() + ": " + st.Reason}, true
	}
	if st.Deadline.After(last) {
		return reply{DeadlineMono: monoDeadline(st.Deadline)}, true
	}
	return reply{}, false
}

// unclaim removes the record (and running marker) of a run that was
// admitted but never started.
func unclaim(conn *zk.Conn, a admission, record string) error {
	ops := []any{&zk.DeleteRequest{Path: record, Version: -1}}
	if a.noOverlap {
		ops = append(ops, &zk.DeleteRequest{Path: a.runningPath(), Version: -1})
	}
	_, err := conn.Multi(ops...)
	return err
}

// finishRecord completes a run record with its end, and removes the job's
// running marker.
func finishRecord(conn *zk.Conn, a admission, record string, code *int, result string) error {
	rec := a.rec
	rec.End = jsonTime(time.Now())
	rec.ExitCode = code
	rec.Result = result
	_, err := conn.Set(record, rec.encode(), -1)
	if a.noOverlap {
		if derr := conn.Delete(a.runningPath(), -1); derr != nil && !errors.Is(derr, zk.ErrNoNode) && err == nil {
			err = derr
		}
	}
	return err
}

// pruneRuns keeps the newest keep records of a job (by creation, czxid).
// A record of a run still going is never deleted: its outcome must be
// recorded; it goes at a later prune.
func pruneRuns(ctx context.Context, conn *zk.Conn, runs string, keep int) error {
	children, _, err := conn.Children(runs)
	if err != nil || len(children) <= keep {
		return err
	}
	type rec struct {
		name  string
		czxid int64
		done  bool
	}
	var all []rec
	for _, c := range children {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		data, st, err := conn.Get(runs + "/" + c)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return err
		}
		r, err := decodeRunRecord(data)
		done := err != nil || r.End != ""
		all = append(all, rec{name: c, czxid: st.Czxid, done: done})
	}
	slices.SortFunc(all, func(a, b rec) int { return cmp.Compare(b.czxid, a.czxid) })
	for _, r := range all[min(keep, len(all)):] {
		if !r.done {
			continue
		}
		if err := conn.Delete(runs+"/"+r.name, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
	}
	return nil
}
