package main

// Missed slots: a job whose schedule hacron knows (`hacron run --schedule`,
// the agent's crontab) has it in its job node, and every slot of that
// schedule in the last day should have a run record named after it. A slot
// without one, or whose record says `missed` (written by a catch-up that
// did not run it), went unrun: hacron status shows it, hacron check
// --missed fails on it, and the active agent exports a count per job.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/robfig/cron/v3"

	"hacron/internal/crontab"
)

// jobInfo is the data of a job's node, /hacron/<cluster>/jobs/<job>: the
// schedule the job runs on, and since when it does (the time the node that
// ran it first recorded this schedule). Empty for a job without one.
type jobInfo struct {
	Schedule string `json:"schedule,omitempty"`
	Since    string `json:"since,omitempty"`
}

// maxJobData bounds what is parsed of a job node's data; maxScheduleLen
// bounds the schedule a run may record there.
const (
	maxJobData     = 4 << 10
	maxScheduleLen = 1 << 10
)

// decodeJobInfo parses a job node's data. Nothing, or anything that is not
// hacron's, is a job without a schedule.
func decodeJobInfo(data []byte) jobInfo {
	var info jobInfo
	if len(data) > maxJobData || json.Unmarshal(data, &info) != nil {
		return jobInfo{}
	}
	return info
}

func (j jobInfo) encode() []byte {
	if j.Schedule == "" {
		return nil
	}
	b, err := json.Marshal(j)
	if err != nil {
		panic(err) // two strings always encode
	}
	return b
}

// parseSchedule is the one place a schedule's text becomes its firing
// times, for `hacron run --schedule`, missed slots and the agent's
// crontab alike: five cron fields or a descriptor, CRON_TZ= allowed, the
// daylight-saving rules of docs/crontab.md. `@every D` fires at the
// multiples of D since the Unix epoch, so that every node, and every
// invocation, computes the same slots.
func parseSchedule(spec string) (crontab.Schedule, error) {
	return crontab.ParseSchedule(spec, time.Local)
}

// checkSchedule checks a schedule a run wants recorded: it parses, and is
// short enough for the job node.
func checkSchedule(spec string) error {
	if len(spec) > maxScheduleLen {
		return fmt.Errorf("schedule of %d bytes: at most %d", len(spec), maxScheduleLen)
	}
	if _, err := parseSchedule(spec); err != nil {
		return fmt.Errorf("schedule %q: %w", spec, err)
	}
	return nil
}

// recordSchedule makes the job node at path (absolute) say schedule: left
// alone when it does already, else written with since = now; an empty
// schedule clears it. A node changed meanwhile by another writer is read
// again.
func recordSchedule(conn *zk.Conn, path, schedule string, now time.Time) error {
	for range 3 {
		data, st, err := conn.Get(path)
		if err != nil {
			return err
		}
		if decodeJobInfo(data).Schedule == schedule {
			return nil
		}
		info := jobInfo{}
		if schedule != "" {
			info = jobInfo{Schedule: schedule, Since: jsonTime(now)}
		}
		_, err = conn.Set(path, info.encode(), st.Version)
		if !errors.Is(err, zk.ErrBadVersion) {
			return err
		}
	}
	return errors.New("the job node keeps changing")
}

// refusedSchedule says whether the agent refused a run request for its
// schedule field: agents older than it refuse fields they do not know.
func refusedSchedule(err error) bool {
	return err != nil && strings.Contains(err.Error(), `unknown field "schedule"`)
}

// missedRecord is the record a catch-up writes for a slot it did not run:
// it started and ended when it was written, with result missed and no exit
// code, by the node that wrote it.
func missedRecord(job, node, slot string, token int64, now time.Time) runRecord {
	t := jsonTime(now)
	return runRecord{Job: job, Node: node, Slot: slot, Start: t, End: t, Result: resultMissed, Token: token}
}

const (
	// missedWindow is how far back slots are judged.
	missedWindow = 24 * time.Hour
	// missedMargin is how long a slot's run may take to be admitted before
	// the slot counts as missed; a schedule that fires more often gives
	// each slot until the next one.
	missedMargin = time.Minute
	// maxSlotScan caps the slots examined per job and question. Only
	// `@every` schedules of under ten seconds have more in a day; their
	// newest slots are examined.
	maxSlotScan = 10_000
)

// missedSlots judges the slots of sched from the later of since and a day
// before now, each once its margin is over (the minute after it, or the
// next slot when that comes sooner): a slot is missed when runs (the job's
// run records: name to result) has no record named after it, or one whose
// result is missed. The slots of pruned records cannot be told from missed
// ones, so nothing older than the oldest record named after a slot is
// judged. It returns the missed slots' keys, newest first, and whether the
// window held more slots than maxSlotScan (only its newest were examined).
func missedSlots(sched cron.Schedule, since, now time.Time, runs map[string]string) ([]string, bool) {
	lower := now.Add(-missedWindow)
	if since.After(lower) {
		lower = since
	}
	done := make(map[int64]bool, len(runs)) // slot second: ran
	var oldest time.Time
	for name, result := range runs {
		t, err := time.Parse(time.RFC3339, name)
		if err != nil || t.Nanosecond() != 0 {
			continue // not named after a schedule's slot
		}
		done[t.Unix()] = result != resultMissed
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.After(lower) {
		lower = oldest
	}
	// walk examines up to maxSlotScan judged slots from lower on and
	// says whether that was all of them, and the span it examined.
	walk := func(from time.Time) (missed []time.Time, complete bool, span time.Duration) {
		n := 0
		first := sched.Next(from.Add(-time.Nanosecond))
		for t := first; !t.IsZero(); n++ {
			next := sched.Next(t)
			judged := t.Add(missedMargin)
			if !next.IsZero() && next.Before(judged) {
				judged = next
			}
			if now.Before(judged) {
				break
			}
			if n == maxSlotScan {
				return missed, false, t.Sub(first)
			}
			if !done[t.Unix()] {
				missed = append(missed, t)
			}
			t = next
		}
		return missed, true, 0
	}
	missed, complete, span := walk(lower)
	if !complete {
		// More slots than the cap: the newest ones, about as many.
		missed, _, _ = walk(now.Add(-span))
	}
	keys := make([]string, len(missed))
	for i, t := range missed {
		keys[len(missed)-1-i] = t.UTC().Format(time.RFC3339)
	}
	return keys, !complete
}

// jobMissed is what the alarm says of one job with a schedule.
type jobMissed struct {
	schedule string
	missed   []string // slot keys, newest first
	capped   bool     // more slots than maxSlotScan in the window
	err      error    // the schedule in the job node does not parse
}

// judgeJob judges a job from its node's data and its run records (name to
// result; "" for a record that is not hacron's: still a slot somebody
// took).
func judgeJob(info jobInfo, runs map[string]string, now time.Time) jobMissed {
	j := jobMissed{schedule: info.Schedule}
	sched, err := parseSchedule(info.Schedule)
	if err != nil {
		j.err = fmt.Errorf("schedule %q in the job node: %w", info.Schedule, err)
		return j
	}
	since, err := time.Parse(time.RFC3339, info.Since)
	if err != nil {
		since = time.Time{} // unreadable: the whole window
	}
	j.missed, j.capped = missedSlots(sched, since, now, runs)
	return j
}

// readJobInfo reads a job node's data (absolute path); a job node that is
// gone is a job without a schedule.
func readJobInfo(conn *zk.Conn, path string) (jobInfo, error) {
	data, _, err := conn.Get(path)
	if errors.Is(err, zk.ErrNoNode) {
		return jobInfo{}, nil
	}
	if err != nil {
		return jobInfo{}, noAuth(err, "read "+path, path)
	}
	return decodeJobInfo(data), nil
}

// missedKinds remembers, for each job the agent counts, which of its
// records are missed records: a record is one or not from its creation on
// (a catch-up writes a missed slot's record whole), so a count reads only
// the records created since the last one, not a job's whole history every
// minute.
type missedKinds struct {
	mu   sync.Mutex
	jobs map[string]map[string]bool // job: record name: result missed
}

func (k *missedKinds) get(job string) map[string]bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.jobs[job]
}

func (k *missedKinds) set(job string, kinds map[string]bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if kinds == nil {
		delete(k.jobs, job)
	} else {
		k.jobs[job] = kinds
	}
}

// keepOnly forgets the jobs that are gone.
func (k *missedKinds) keepOnly(jobs []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for job := range k.jobs {
		if !slices.Contains(jobs, job) {
			delete(k.jobs, job)
		}
	}
}

// countMissed counts the missed slots of every job with a schedule under
// root (absolute). A job that cannot be read now has no count.
func countMissed(ctx context.Context, conn *zk.Conn, root string, now time.Time, kinds *missedKinds) (map[string]int, error) {
	jobs, _, err := conn.Children(root + "/jobs")
	if errors.Is(err, zk.ErrNoNode) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, err
	}
	kinds.keepOnly(jobs)
	var mu sync.Mutex
	counts := map[string]int{}
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(missedReaders, len(jobs)) {
		wg.Go(func() {
			for job := range work {
				n, known := countJobMissed(conn, root+"/jobs/"+job, now, kinds.get(job))
				kinds.set(job, known)
				if known != nil {
					mu.Lock()
					counts[job] = n
					mu.Unlock()
				}
			}
		})
	}
	for _, job := range jobs {
		select {
		case work <- job:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return counts, ctx.Err()
}

// countJobMissed counts one job's missed slots, reading the job node, its
// records' names, and the records known does not know. It returns what it
// knows of the records then; nil when the job has no schedule it can
// judge, or could not be read.
func countJobMissed(conn *zk.Conn, path string, now time.Time, known map[string]bool) (int, map[string]bool) {
	info, err := readJobInfo(conn, path)
	if err != nil || info.Schedule == "" {
		return 0, nil
	}
	names, _, err := conn.Children(path + "/runs")
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return 0, nil
	}
	kinds := make(map[string]bool, len(names))
	runs := make(map[string]string, len(names))
	for _, name := range names {
		missed, ok := known[name]
		if !ok {
			data, _, err := conn.Get(path + "/runs/" + name)
			if errors.Is(err, zk.ErrNoNode) {
				continue // pruned meanwhile
			}
			if err != nil {
				return 0, nil
			}
			r, _ := decodeRunRecord(data) // not hacron's: a slot somebody took
			missed = r.Result == resultMissed
		}
		kinds[name] = missed
		runs[name] = ""
		if missed {
			runs[name] = resultMissed
		}
	}
	j := judgeJob(info, runs, now)
	if j.err != nil {
		return 0, nil
	}
	return len(j.missed), kinds
}
