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
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"hacron/internal/crontab"
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
	Cmd      string `json:"cmd,omitempty"`
	PGID     int    `json:"pgid,omitempty"` // the job's process group on Node, to tell whether it is over
	// Containment is what held the job's processes: cgroup2, cgroup1 or
	// pgroup (a job that left its process group escaped pgroup).
	Containment string `json:"containment,omitempty"`
	// OutputTail is the end of what the job wrote, as outputTail makes it
	// (runs the agent starts from its crontab; hacron run leaves the output
	// to cron).
	OutputTail string `json:"output_tail,omitempty"`
}

// Results of a run.
const (
	resultOK      = "ok"
	resultFailed  = "failed"
	resultLost    = "lost"
	resultTimeout = "timeout"
	resultKilled  = "killed"
	resultUnknown = "unknown" // the run is over, but nobody saw how it ended
	resultMissed  = "missed"  // a catch-up recorded the slot without running it
)

// maxRecordData bounds what is parsed of a run record: records are small,
// and a foreign or hostile node may be up to ZooKeeper's 1 MB. The largest
// record hacron writes stays below it with every byte escaped in JSON: a
// cmd of maxRecordCmd and an output tail of maxOutputTail bytes, six each
// (\u003c), and the names (TestRunRecordWorstCaseFits).
const maxRecordData = 64 << 10

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
		return fmt.Errorf("bad slot %q: 1-128 characters, no /, not . .. or running, not starting with r-", s)
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
	sched, err := parseSchedule(expr)
	if err != nil {
		return "", fmt.Errorf("--schedule %q: %w", expr, err)
	}
	last := sched.Prev(now)
	if last.IsZero() {
		return "", fmt.Errorf("--schedule %q: no firing time at or before now", expr)
	}
	return crontab.SlotKey(last), nil
}

// completeRecord writes a run's end into its record once.
func completeRecord(conn *zk.Conn, record string, rec runRecord, code *int, result string) error {
	rec.End = jsonTime(time.Now())
	rec.ExitCode = code
	rec.Result = result
	_, err := conn.Set(record, rec.encode(), -1)
	if errors.Is(err, zk.ErrNoNode) {
		return nil // removed by hand: nothing left to complete
	}
	return err
}

// finishRetry bounds the pause between attempts to complete a record.
const finishRetry = 2 * time.Second

// finishRun completes a run's record and removes its running marker,
// retrying until both are done, ctx ends, or (for the marker, which is
// ephemeral) the session it was made on is gone with it. The record is
// persistent: any later session of ours may complete it, so an outage
// shorter than ctx's limit loses nothing.
func finishRun(ctx context.Context, zc *zkClient, t *ticket, code *int, result string) error {
	markerDone := !t.adm.noOverlap
	recordDone := false
	pause := 50 * time.Millisecond
	for {
		s := zc.snapshot()
		if s.Usable() {
			if !recordDone {
				recordDone = completeRecord(s.Conn, t.record, t.adm.rec, code, result) == nil
			}
			if !markerDone {
				err := s.Conn.Delete(t.adm.runningPath(), -1)
				markerDone = err == nil || errors.Is(err, zk.ErrNoNode)
			}
			if s.ID != t.session {
				markerDone = true // ephemeral: gone with its session
			}
			if recordDone && markerDone {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("run record %s not completed: %w", t.record, ctx.Err())
		case <-time.After(pause):
		case <-s.Changed:
		}
		pause = min(2*pause, finishRetry)
	}
}

// storedRecord is a run record with where it is and when it was made.
type storedRecord struct {
	name  string
	czxid int64
	rec   runRecord
	ok    bool // rec parsed: a record of ours
}

// listRecords reads a job's records, newest first (by creation, czxid).
// The reads go out together: the client pipelines concurrent requests on
// one session, so a job's history costs about one round trip, not one per
// record (a direct run prunes, and so reads them all, on every run once the
// history is full).
func listRecords(ctx context.Context, conn *zk.Conn, runs string) ([]storedRecord, error) {
	children, _, err := conn.Children(runs)
	if err != nil {
		return nil, err
	}
	type read struct {
		data []byte
		st   *zk.Stat
		err  error
	}
	reads := make([]read, len(children))
	var wg sync.WaitGroup
	for i, c := range children {
		wg.Go(func() {
			data, st, err := conn.Get(runs + "/" + c)
			reads[i] = read{data, st, err}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	all := make([]storedRecord, 0, len(children))
	for i, c := range children {
		rd := reads[i]
		if errors.Is(rd.err, zk.ErrNoNode) {
			continue
		}
		if rd.err != nil {
			return nil, rd.err
		}
		r, err := decodeRunRecord(rd.data)
		all = append(all, storedRecord{name: c, czxid: rd.st.Czxid, rec: r, ok: err == nil})
	}
	slices.SortFunc(all, func(a, b storedRecord) int { return cmp.Compare(b.czxid, a.czxid) })
	return all, nil
}

// pruneRuns keeps the newest keep records of a job. A record of a run
// still going is never deleted: its outcome must be recorded; it goes at a
// later prune.
func pruneRuns(ctx context.Context, conn *zk.Conn, runs string, keep int) error {
	if children, _, err := conn.Children(runs); err != nil || len(children) <= keep {
		return err
	}
	all, err := listRecords(ctx, conn, runs)
	if err != nil {
		return err
	}
	return pruneListed(conn, runs, all, keep)
}

// pruneListed is pruneRuns on records already listed, newest first: for a
// caller that knows nobody else wrote to runs since it listed them.
func pruneListed(conn *zk.Conn, runs string, all []storedRecord, keep int) error {
	for _, r := range all[min(keep, len(all)):] {
		if r.ok && r.rec.End == "" {
			continue
		}
		if err := conn.Delete(runs+"/"+r.name, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
	}
	return nil
}

// completeLeftovers completes, as unknown, the records in a job's runs
// that have no end and whose run is over by over's judgement. Used when
// nobody is left to report the end: an agent that starts or begins a new
// term (runs of this node whose process group is gone), and a direct run
// that holds the job's lock (every earlier run of the job is over).
//
// It returns the records it listed, those it completed marked ended, for
// a caller that prunes them later (pruneListed).
func completeLeftovers(ctx context.Context, conn *zk.Conn, runs string, over func(name string, r runRecord) bool) ([]storedRecord, int, error) {
	all, err := listRecords(ctx, conn, runs)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	for i, r := range all {
		if !r.ok || r.rec.End != "" || !over(r.name, r.rec) {
			continue
		}
		if err := completeRecord(conn, runs+"/"+r.name, r.rec, nil, resultUnknown); err != nil {
			return nil, n, err
		}
		all[i].rec.End = jsonTime(time.Now())
		n++
	}
	return all, n, nil
}
