package main

// hacron agent --crontab: the active agent fires the crontab's jobs
// itself. Every node reads the same crontab and computes the same slots;
// only the active node fires, each firing one admission that claims its
// slot, so a slot runs once in the cluster. When a node becomes active it
// first catches up: within each job's catch-up window, the newest slot
// nobody ran is run now and older ones are recorded as missed.

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"hacron/internal/crontab"
)

// crontabPoll is how often the crontab's files are checked for changes.
const crontabPoll = 2 * time.Second

// catchUpRetry is how often an unfinished catch-up is tried again while
// the node is active, and catchUpSettle how long after its firing time a
// slot is left to its own firing before a retry counts it as unrun.
const (
	catchUpRetry  = 2 * time.Second
	catchUpSettle = 2 * time.Second
)

// fireLead is how long before its firing time a run is prepared (the job's
// first process forked and held, waiting for the go-ahead), so that at the
// firing time only the admission stands between the schedule and the job.
const fireLead = 200 * time.Millisecond

// scheduler fires one agent's crontab.
type scheduler struct {
	a    *agent
	path string
	log  *slog.Logger

	mu     sync.Mutex
	jobs   []*crontab.Job
	errs   int    // bad lines in the last load
	stamp  string // the files' names, sizes and times at the last load
	reload chan struct{}
	// behind: a catch-up could not finish (ZooKeeper did not answer, the
	// lease went while it ran), or a firing ended without a record (not
	// admitted for want of the lease, or its outcome unknown): the next
	// catch-up pass, while active, looks again.
	behind atomic.Bool
}

func newScheduler(a *agent, path string) *scheduler {
	s := &scheduler{a: a, path: path, log: a.log.With("crontab", path), reload: make(chan struct{}, 1)}
	s.load()
	return s
}

// load reads the crontab; a bad line is logged with its file and line, the
// others are kept. A crontab that cannot be read at all keeps the jobs
// already loaded: a file being replaced must not stop the schedule.
func (s *scheduler) load() bool {
	tab, errs := crontab.Load(s.path)
	for _, err := range errs {
		s.log.Error("crontab: " + err.Error())
	}
	stamp := filesStamp(tab.Files)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(tab.Files) == 0 && len(s.jobs) > 0 {
		s.stamp = stamp
		return false
	}
	s.jobs, s.errs, s.stamp = tab.Jobs, len(errs), stamp
	s.log.Info("crontab loaded", "jobs", len(tab.Jobs), "bad_lines", len(errs))
	return true
}

// changed says whether the crontab's files differ from the last load.
func (s *scheduler) changed() bool {
	tab, _ := crontab.Load(s.path)
	s.mu.Lock()
	defer s.mu.Unlock()
	return filesStamp(tab.Files) != s.stamp
}

// filesStamp identifies the files' contents cheaply: names, sizes, times.
func filesStamp(files []string) string {
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(&b, "%s:gone;", f)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// Reload asks for a reload (SIGHUP).
func (s *scheduler) Reload() {
	select {
	case s.reload <- struct{}{}:
	default:
	}
}

func (s *scheduler) current() []*crontab.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs
}

// run fires the schedule while this node is active, until ctx ends.
func (s *scheduler) run(ctx context.Context) {
	feed := s.a.el.subscribe()
	defer s.a.el.unsubscribe(feed)
	poll := time.NewTicker(crontabPoll)
	defer poll.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	retry := time.NewTicker(catchUpRetry)
	defer retry.Stop()
	var q firingQueue
	active := false
	for {
		now := time.Now()
		switch isActive := s.a.el.Status().active(now); {
		case isActive && !active:
			active = true
			q = s.activate(ctx, now)
		case !isActive && active:
			active = false
			q = nil
		}
		wait := time.Hour
		if len(q) > 0 {
			wait = max(time.Until(q[0].at.Add(-fireLead)), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-feed.C():
			feed.next()
		case <-timer.C:
			now := time.Now()
			for len(q) > 0 && !q[0].at.After(now.Add(fireLead)) {
				f := heap.Pop(&q).(*queued)
				if active {
					go s.fire(ctx, f.job, f.slot, f.at)
				}
				s.push(&q, f.job, f.slot)
			}
		case <-retry.C:
			if active && s.behind.Swap(false) {
				s.catchUpAll(ctx, time.Now().Add(-catchUpSettle))
			}
		case <-poll.C:
			if s.changed() && s.load() && active {
				q = s.queue(time.Now())
			}
		case <-s.reload:
			if s.load() && active {
				q = s.queue(time.Now())
			}
		}
	}
}

// activate is the start of a term: catch up, then queue what is due next.
func (s *scheduler) activate(ctx context.Context, now time.Time) firingQueue {
	s.catchUpAll(ctx, now)
	return s.queue(now)
}

// catchUpAll catches up every job with a catch-up window on the slots due
// by dueBy; what it cannot finish is left for the next pass.
func (s *scheduler) catchUpAll(ctx context.Context, dueBy time.Time) {
	for _, j := range s.current() {
		if j.CatchUp > 0 && !s.catchUp(ctx, j, dueBy) {
			s.behind.Store(true)
		}
	}
}

// catchUp runs a job's newest slot within its catch-up window that has no
// record, and records the older ones as missed. A slot is due when its
// firing time (the slot and its jitter) is not after dueBy. It says
// whether it finished: every older slot recorded and the newest handed to
// a firing.
func (s *scheduler) catchUp(ctx context.Context, j *crontab.Job, dueBy time.Time) bool {
	name, err := jobName(j.Name, os.Getuid())
	if err != nil {
		return true // the job can never run; nothing to retry
	}
	// Only slots since the job's schedule was first recorded: a job new to
	// the cluster has nothing to catch up on.
	conn := s.a.zc.snapshot().Conn
	if conn == nil {
		return false
	}
	info, err := readJobInfo(conn, s.a.zc.abs(jobPath(s.a.root, name)))
	if err != nil {
		s.log.Warn("catch-up: reading the job's node", "job", name, "err", err)
		return false
	}
	since, err := time.Parse(time.RFC3339Nano, info.Since)
	if err != nil || info.Schedule != j.ZonedSpec() {
		return true
	}
	now := dueBy
	from := now.Add(-j.CatchUp)
	if since.After(from) {
		from = since
	}
	var due []time.Time
	for _, slot := range j.Schedule.Between(from, now) {
		if !slot.Add(crontab.Jitter(name, slot, j.Jitter)).After(now) {
			due = append(due, slot)
		}
	}
	if len(due) == 0 {
		return true
	}
	have, err := s.recorded(name)
	if err != nil {
		s.log.Warn("catch-up: reading the job's records", "job", name, "err", err)
		return false
	}
	var unrun []time.Time
	for _, slot := range due {
		if !have[crontab.SlotKey(slot)] {
			unrun = append(unrun, slot)
		}
	}
	if len(unrun) == 0 {
		return true
	}
	newest := unrun[len(unrun)-1]
	done := true
	for _, slot := range unrun[:len(unrun)-1] {
		if err := s.a.adm.recordMissed(name, j.ZonedSpec(), crontab.SlotKey(slot)); err != nil {
			s.log.Warn("catch-up: recording a missed slot", "job", name, "slot", crontab.SlotKey(slot), "err", err)
			done = false
		}
	}
	s.log.Warn("catch-up: running a slot nobody ran", "job", name, "slot", crontab.SlotKey(newest), "missed", len(unrun)-1)
	go s.fire(ctx, j, newest, time.Now())
	return done
}

// recorded is the set of a job's slots that have a record.
func (s *scheduler) recorded(job string) (map[string]bool, error) {
	conn := s.a.zc.snapshot().Conn
	if conn == nil {
		return nil, zk.ErrNoServer
	}
	kids, _, err := conn.Children(s.a.zc.abs(jobPath(s.a.root, job) + "/runs"))
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return nil, err
	}
	have := make(map[string]bool, len(kids))
	for _, k := range kids {
		have[k] = true
	}
	return have, nil
}

// queue is every job's next firing after now.
func (s *scheduler) queue(now time.Time) firingQueue {
	var q firingQueue
	for _, j := range s.current() {
		// A slot before now whose jitter delays it past now is still to
		// fire: a failover inside the delay keeps slot and delay.
		s.pushAfter(&q, j, j.Schedule.Next(now.Add(-j.Jitter-time.Second)), now)
	}
	return q
}

// push queues a job's firing after slot.
func (s *scheduler) push(q *firingQueue, j *crontab.Job, slot time.Time) {
	s.pushAfter(q, j, j.Schedule.Next(slot), slot)
}

// pushAfter queues the first of j's slots from slot on whose firing time
// is after after.
func (s *scheduler) pushAfter(q *firingQueue, j *crontab.Job, slot, after time.Time) {
	name, err := jobName(j.Name, os.Getuid())
	if err != nil {
		return
	}
	for i := 0; !slot.IsZero() && i < 10_000; i++ {
		at := slot.Add(crontab.Jitter(name, slot, j.Jitter))
		if at.After(after) {
			heap.Push(q, &queued{at: at, job: j, slot: slot})
			return
		}
		slot = j.Schedule.Next(slot)
	}
}

// fire runs one slot of j at the time at (at once when it has passed).
func (s *scheduler) fire(ctx context.Context, j *crontab.Job, slot, at time.Time) {
	name, err := jobName(j.Name, os.Getuid())
	if err != nil {
		s.log.Error("crontab job", "job", j.Name, "err", err)
		return
	}
	f := firing{at: at, job: name, slot: crontab.SlotKey(slot), schedule: j.ZonedSpec(), command: j.Command, stdin: j.Stdin, env: j.Env,
		timeout: j.Timeout, noOverlap: j.NoOverlap, killGrace: j.KillGrace, nice: j.Nice, onFailure: j.OnFailure}
	if j.MailToSet {
		f.mailTo = j.MailTo
	}
	if result, skip := s.a.fire(ctx, f); result == "" && skip != skipSlot && skip != skipRunning {
		// Not run, and maybe no record: a catch-up pass looks again.
		s.behind.Store(true)
	}
}

// queued is one firing in the queue.
type queued struct {
	at   time.Time
	job  *crontab.Job
	slot time.Time
}

// firingQueue is a min-heap of firings by time.
type firingQueue []*queued

func (q firingQueue) Len() int           { return len(q) }
func (q firingQueue) Less(i, k int) bool { return q[i].at.Before(q[k].at) }
func (q firingQueue) Swap(i, k int)      { q[i], q[k] = q[k], q[i] }
func (q *firingQueue) Push(x any)        { *q = append(*q, x.(*queued)) }
func (q *firingQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}
