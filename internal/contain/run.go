package contain

import (
	"errors"
	"slices"
	"syscall"
	"time"
)

// Run is all of one run that hacron must end: the job's process group
// and, where cgroups are in use, the run's cgroup. A run is over when both
// are empty.
type Run struct {
	group *Group  // nil for a cgroup found without its group (EndPrevious)
	cg    *Cgroup // nil under PGroup containment
}

// NewRun makes a run of the job's process group and its cgroup (nil where
// the process group is the only containment).
func NewRun(g *Group, cg *Cgroup) *Run { return &Run{group: g, cg: cg} }

// Containment is the run record's `containment` value.
func (r *Run) Containment() Kind {
	if r.cg != nil {
		return r.cg.kind
	}
	return PGroup
}

// Group is the job's process group (nil for a run found by its cgroup
// alone).
func (r *Run) Group() *Group { return r.group }

// Cgroup is the run's cgroup, nil under PGroup containment.
func (r *Run) Cgroup() *Cgroup { return r.cg }

// Procs lists the run's live processes: those of its group and of its
// cgroup, each once.
func (r *Run) Procs() []int {
	var pids []int
	if r.group != nil {
		m, _ := r.group.Members()
		pids = append(pids, m...)
	}
	if r.cg != nil {
		m, _ := r.cg.Procs()
		pids = append(pids, m...)
	}
	slices.Sort(pids)
	return slices.Compact(pids)
}

// Empty says whether nothing of the run is left running.
func (r *Run) Empty() bool {
	if r.group != nil && !r.group.Empty() {
		return false
	}
	if r.cg != nil {
		if empty, err := r.cg.Empty(); err != nil || !empty {
			return false
		}
	}
	return true
}

// Signal sends sig to every process of the run, once each: the group at
// once (if it is still the run's), then each process of the cgroup that
// left the group. It is for ending the run (SIGTERM); signals a user sends
// the job go to Group alone, as a shell's job control would send them.
// ErrGone when nothing of the run is left.
func (r *Run) Signal(sig syscall.Signal) error {
	gerr := ErrGone
	pgid := 0
	if r.group != nil {
		gerr = r.group.Signal(sig)
		if gerr == nil {
			pgid = r.group.pgid
		}
	}
	if r.cg != nil {
		n, err := r.cg.signalOutside(sig, pgid)
		if err != nil {
			return err
		}
		if n > 0 && errors.Is(gerr, ErrGone) {
			return nil
		}
	}
	return gerr
}

// SignalStrays sends sig to the processes of the run's cgroup that left
// its process group (setsid, setpgid), once each, and returns how many it
// reached. The group is left alone: while a wrapper lives, it ends the
// group itself (it tells the job's exit code), and a second SIGTERM would
// run a job's trap twice. Without a cgroup there is nothing to reach.
func (r *Run) SignalStrays(sig syscall.Signal) (int, error) {
	if r.cg == nil {
		return 0, nil
	}
	pgid := 0
	if r.group != nil {
		pgid = r.group.pgid
	}
	return r.cg.signalOutside(sig, pgid)
}

// Kill sends SIGKILL to every process of the run; with a cgroup, those that
// left the group too, with no window for a fork to escape (see
// Cgroup.Kill). It does not wait: Empty tells when they are gone.
func (r *Run) Kill() error {
	var err error
	if r.group != nil {
		if gerr := r.group.Signal(syscall.SIGKILL); !errors.Is(gerr, ErrGone) {
			err = gerr
		}
	}
	if r.cg != nil {
		err = errors.Join(err, r.cg.Kill())
	}
	return err
}

// Terminate ends whatever of the run is still running: SIGTERM, at most
// grace for it to exit, SIGKILL, then at most wait until it is gone. It
// returns how many processes it found running (0 when the run was already
// over), and an error when some are left after wait. The wrapper calls it
// once the job's main process has exited, before it reports the end.
func (r *Run) Terminate(grace, wait time.Duration) (int, error) {
	seen := map[int]bool{}
	note := func() {
		for _, pid := range r.Procs() {
			seen[pid] = true
		}
	}
	note()
	if len(seen) == 0 {
		return 0, nil
	}
	r.Signal(syscall.SIGTERM)
	if r.waitEmpty(grace, false) {
		return len(seen), nil
	}
	// Those forked during the grace count too.
	note()
	if err := r.Kill(); err != nil {
		return len(seen), err
	}
	if !r.waitEmpty(wait, true) {
		return len(seen), errors.New("processes of the run are left after SIGKILL")
	}
	return len(seen), nil
}

// waitEmpty polls until the run is empty, at most d; with rekill it sends
// SIGKILL again now and then, for any process that was past the kill when
// it was sent (a v1 freezer that never reached FROZEN).
func (r *Run) waitEmpty(d time.Duration, rekill bool) bool {
	deadline := time.Now().Add(d)
	lastKill := time.Now()
	for pause := time.Millisecond; ; pause = min(2*pause, 20*time.Millisecond) {
		if r.Empty() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		if rekill && time.Since(lastKill) >= 100*time.Millisecond {
			r.Kill()
			lastKill = time.Now()
		}
		time.Sleep(pause)
	}
}

// Remove removes the run's cgroup (nothing under PGroup). Call it once
// the run is empty, on every path that ends a run: no cgroup of a finished
// run is left behind.
func (r *Run) Remove() error {
	if r.cg == nil {
		return nil
	}
	return r.cg.Remove()
}

// Close releases the pidfd held for the group's leader.
func (r *Run) Close() error {
	if r.group == nil {
		return nil
	}
	return r.group.Close()
}
