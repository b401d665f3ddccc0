package contain

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RunState is what an agent keeps on disk about each run it admitted, so
// that the next agent on this node can end the run if the agent dies
// (with the wrapper already gone, nothing else would): one JSON file per
// run in a directory under /run, which a reboot empties along with the
// runs.
type RunState struct {
	ID          string `json:"id"`
	Job         string `json:"job,omitempty"`
	PGID        int    `json:"pgid"`
	LeaderStart uint64 `json:"leader_start"` // clock ticks since boot, from /proc
	Containment Kind   `json:"containment"`
	Cgroup      string `json:"cgroup,omitempty"`
	Record      string `json:"record,omitempty"` // the run record to complete as unknown
}

// State describes the run for a run-state file.
func (r *Run) State(id, job, record string) RunState {
	s := RunState{ID: id, Job: job, Containment: r.Containment(), Record: record}
	if r.group != nil {
		s.PGID, s.LeaderStart = r.group.pgid, r.group.leader.start
	}
	if r.cg != nil {
		s.Cgroup = r.cg.path
	}
	return s
}

// stateSuffix ends every run-state file name.
const stateSuffix = ".json"

// WriteState writes s to dir/<id>.json, whole or not at all (a crash
// leaves at most a temporary file, which ListStates ignores).
func WriteState(dir string, s RunState) error {
	if err := checkName(s.ID, false); err != nil {
		return fmt.Errorf("run state %q: %w", s.ID, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+s.ID+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, s.ID+stateSuffix))
}

// ListStates reads every run-state file in dir. A file it cannot read is
// named in the error, and the others are still returned.
func ListStates(dir string) ([]RunState, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var states []RunState
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, stateSuffix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		var s RunState
		if err == nil {
			err = json.Unmarshal(b, &s)
		}
		if err == nil && s.ID+stateSuffix != name {
			err = errors.New("id does not match the file name")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("run state %s: %w", filepath.Join(dir, name), err))
			continue
		}
		states = append(states, s)
	}
	return states, errors.Join(errs...)
}

// RemoveState removes the run-state file of run id (none is no error).
func RemoveState(dir, id string) error {
	if err := checkName(id, false); err != nil {
		return fmt.Errorf("run state %q: %w", id, err)
	}
	err := os.Remove(filepath.Join(dir, id+stateSuffix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Reopen holds the run a state file describes, as far as it still exists:
// its group is recognised by the leader's start time, so a group number
// given to someone else since is not taken for the run's.
func (s RunState) Reopen() (*Run, error) {
	r := &Run{}
	if s.PGID > 1 {
		r.group = reopenGroup(s.PGID, s.LeaderStart)
	}
	if s.Cgroup != "" {
		cg, err := OpenCgroup(s.Cgroup)
		switch {
		case err == nil:
			r.cg = cg
		case !errors.Is(err, ErrGone):
			r.Close()
			return nil, fmt.Errorf("run %s: %w", s.ID, err)
		}
	}
	return r, nil
}

// EndPrevious ends every run that a previous agent of this node left
// behind: those of the run-state files in dir, and any cgroup left in
// scope (h may be nil under PGroup). Each gets SIGTERM, grace, SIGKILL and
// at most wait to go; cgroups are removed. It returns the states, whose
// records the caller completes (result unknown) before RemoveState, and
// how many processes it ended. An agent calls it before it joins the
// election.
func EndPrevious(h *Hierarchy, scope, dir string, grace, wait time.Duration) ([]RunState, int, error) {
	states, err := ListStates(dir)
	errs := []error{err}
	ended := 0
	done := map[string]bool{}
	end := func(r *Run) {
		n, err := r.Terminate(grace, wait)
		ended += n
		errs = append(errs, err)
		if err == nil {
			errs = append(errs, r.Remove())
		}
		r.Close()
	}
	for _, s := range states {
		r, err := s.Reopen()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if s.Cgroup != "" {
			done[filepath.Clean(s.Cgroup)] = true
		}
		end(r)
	}
	if h != nil {
		cgs, err := h.Leftovers(scope)
		errs = append(errs, err)
		for _, cg := range cgs {
			if !done[cg.path] {
				end(&Run{cg: cg})
			}
		}
	}
	return states, ended, errors.Join(errs...)
}
