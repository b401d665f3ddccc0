package contain

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup is the cgroup of one run: every process the job starts is born
// in it and cannot leave it (a job that is not root cannot move itself), so
// ending the cgroup ends the run, setsid and double forks included.
type Cgroup struct {
	kind Kind
	path string
}

// Create makes the cgroup of a run, scope/run below this process's own
// cgroup (under a directory "hacron"). scope groups the runs that one
// agent or one mode owns, so that Leftovers finds exactly those (for
// example "agent/<cluster>" and "direct/<cluster>"); it may have several
// components. Each component must be a plain name that does not begin with
// a dot. The scope's directories are kept for the next run (one per scope);
// the run's own directory goes with Remove.
func (h *Hierarchy) Create(scope, run string) (*Cgroup, error) {
	if h.Kind == PGroup {
		return nil, errors.New("no cgroup hierarchy in use")
	}
	if err := checkName(scope, true); err != nil {
		return nil, fmt.Errorf("cgroup scope %q: %w", scope, err)
	}
	if err := checkName(run, false); err != nil {
		return nil, fmt.Errorf("cgroup name %q: %w", run, err)
	}
	dir := filepath.Join(h.base, parentDir)
	for _, c := range strings.Split(scope, "/") {
		dir = filepath.Join(dir, c)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("make cgroup: %w", err)
		}
	}
	cg := &Cgroup{kind: h.Kind, path: filepath.Join(dir, run)}
	if err := os.Mkdir(cg.path, 0o755); err != nil {
		return nil, fmt.Errorf("make cgroup: %w", err)
	}
	// A name that is also one of the hierarchy's own files (say "tasks")
	// would not be a cgroup.
	if _, err := os.Stat(filepath.Join(cg.path, "cgroup.procs")); err != nil {
		return nil, fmt.Errorf("make cgroup %s: not a cgroup", cg.path)
	}
	return cg, nil
}

// checkName accepts a cgroup name: one component, or with multi a path of
// them; none empty, "..", or beginning with a dot.
func checkName(name string, multi bool) error {
	parts := []string{name}
	if multi {
		parts = strings.Split(name, "/")
	}
	for _, p := range parts {
		switch {
		case p == "":
			return errors.New("empty name")
		case strings.HasPrefix(p, "."):
			return errors.New("a name must not begin with a dot")
		case strings.ContainsAny(p, "/\n\x00"):
			return errors.New("a name must not contain a slash or a newline")
		case len(p) > 200:
			return errors.New("name too long")
		}
	}
	return nil
}

// Leftovers lists the run cgroups of scope: at an agent's start, what a
// previous agent of this node left behind (it ends them, see
// EndPrevious).
func (h *Hierarchy) Leftovers(scope string) ([]*Cgroup, error) {
	if h.Kind == PGroup {
		return nil, nil
	}
	if err := checkName(scope, true); err != nil {
		return nil, fmt.Errorf("cgroup scope %q: %w", scope, err)
	}
	dir := filepath.Join(h.base, parentDir, scope)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var cgs []*Cgroup
	for _, e := range ents {
		if e.IsDir() {
			cgs = append(cgs, &Cgroup{kind: h.Kind, path: filepath.Join(dir, e.Name())})
		}
	}
	return cgs, nil
}

// RemoveScope removes the directory of scope once no run cgroup is left in
// it: an agent that stops cleanly leaves nothing behind. A scope that still
// holds a run's cgroup stays, for the next agent to find (Leftovers). The
// directories above the scope stay: another scope may be made in them at
// any moment.
func (h *Hierarchy) RemoveScope(scope string) error {
	if h.Kind == PGroup {
		return nil
	}
	if err := checkName(scope, true); err != nil {
		return fmt.Errorf("cgroup scope %q: %w", scope, err)
	}
	err := unix.Rmdir(filepath.Join(h.base, parentDir, scope))
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("remove cgroup scope %s: %w", scope, err)
}

// OpenCgroup holds the cgroup at path (one recorded in a run-state file).
// ErrGone if it no longer exists.
func OpenCgroup(path string) (*Cgroup, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, ErrGone
		}
		return nil, err
	}
	cg := &Cgroup{path: filepath.Clean(path)}
	switch st.Type {
	case unix.CGROUP2_SUPER_MAGIC:
		cg.kind = Cgroup2
	case unix.CGROUP_SUPER_MAGIC:
		cg.kind = Cgroup1
		if _, err := os.Stat(filepath.Join(path, "freezer.state")); err != nil {
			return nil, fmt.Errorf("%s: not a freezer cgroup", path)
		}
	default:
		return nil, fmt.Errorf("%s: not a cgroup", path)
	}
	return cg, nil
}

// Path is the cgroup's directory (for a run-state file, or an fd for
// clone3's CLONE_INTO_CGROUP).
func (c *Cgroup) Path() string { return c.path }

// Kind is Cgroup2 or Cgroup1.
func (c *Cgroup) Kind() Kind { return c.kind }

// Add moves process pid, with all its threads, into the cgroup. The run's
// first process is added before it starts the job: what it starts is then
// born inside.
func (c *Cgroup) Add(pid int) error {
	return writeFile(filepath.Join(c.path, "cgroup.procs"), strconv.Itoa(pid))
}

// Procs lists the processes in the cgroup and its descendants (zombies are
// not listed: they are dead).
func (c *Cgroup) Procs() ([]int, error) {
	var pids []int
	err := c.walk(func(dir string) error {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile: empty
		}
		if err != nil {
			return err
		}
		for _, l := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(l); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	}, false)
	return pids, err
}

// Empty says whether no process is left in the cgroup (a cgroup already
// removed is empty).
func (c *Cgroup) Empty() (bool, error) {
	if c.kind == Cgroup2 {
		// One file covers the descendants.
		b, err := os.ReadFile(filepath.Join(c.path, "cgroup.events"))
		if errors.Is(err, fs.ErrNotExist) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return bytes.Contains(b, []byte("populated 0")), nil
	}
	pids, err := c.Procs()
	return len(pids) == 0, err
}

// Signal sends sig to every process in the cgroup and returns how many it
// reached. A pid read from the cgroup is held as a pidfd and signalled
// only if it is still listed afterwards, so a process that ended and whose
// pid was reused outside the cgroup is not signalled. It is meant for the
// gentle SIGTERM: a process forked meanwhile may be missed, which Kill
// never does.
func (c *Cgroup) Signal(sig syscall.Signal) (int, error) {
	return c.signalOutside(sig, 0)
}

// signalOutside is Signal, leaving out the members of process group pgid
// (which got sig from the group already).
func (c *Cgroup) signalOutside(sig syscall.Signal, pgid int) (int, error) {
	pids, err := c.Procs()
	if err != nil || len(pids) == 0 {
		return 0, err
	}
	held := make(map[int]*Proc, len(pids))
	for _, pid := range pids {
		if pgid > 0 {
			if st, err := readStat(pid); err != nil || st.pgrp == pgid {
				continue
			}
		}
		if p, err := Open(pid); err == nil {
			held[pid] = p
		}
	}
	defer func() {
		for _, p := range held {
			p.Close()
		}
	}()
	still, err := c.Procs()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pid := range still {
		if p := held[pid]; p != nil && p.Signal(sig) == nil {
			n++
		}
	}
	return n, nil
}

// freezeWait bounds one wait for a v1 freezer to report FROZEN. A task in
// uninterruptible sleep (a hung NFS mount) can hold a cgroup in FREEZING;
// its tasks are then killed unfrozen, and the round repeated.
const freezeWait = time.Second

// killRounds bounds the freeze-kill-thaw rounds of Kill on a v1 freezer.
const killRounds = 3

// Kill sends SIGKILL to every process of the cgroup and its descendants,
// those that left the job's process group or session included, without a
// window in which one could fork a survivor: cgroup v2 writes cgroup.kill;
// a v1 freezer is frozen (nothing forks or exits), every task gets SIGKILL,
// and it is thawed so that they die. Kill does not wait until they are
// gone: Wait does (or Empty, polled).
func (c *Cgroup) Kill() error {
	if c.kind == Cgroup2 {
		err := writeFile(filepath.Join(c.path, "cgroup.kill"), "1")
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	for range killRounds {
		frozen, err := c.freeze()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		pids, err := c.Procs()
		if err == nil {
			for _, pid := range pids {
				// Frozen, a task cannot exit: its pid is not reused
				// before the thaw.
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		if terr := c.setFreezer("THAWED"); err == nil && !errors.Is(terr, fs.ErrNotExist) {
			err = terr
		}
		if err != nil || frozen {
			return err
		}
	}
	return nil
}

// freeze freezes a v1 cgroup and waits, at most freezeWait, until it is.
func (c *Cgroup) freeze() (bool, error) {
	if err := c.setFreezer("FROZEN"); err != nil {
		return false, err
	}
	deadline := time.Now().Add(freezeWait)
	for pause := 100 * time.Microsecond; ; pause = min(2*pause, 10*time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(c.path, "freezer.state"))
		if err != nil {
			return false, err
		}
		if strings.TrimSpace(string(b)) == "FROZEN" {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		time.Sleep(pause)
	}
}

func (c *Cgroup) setFreezer(state string) error {
	return writeFile(filepath.Join(c.path, "freezer.state"), state)
}

// Wait waits until the cgroup is empty, at most d; processes killed in
// uninterruptible sleep can take a while.
func (c *Cgroup) Wait(d time.Duration) error {
	return c.wait(d)
}

func (c *Cgroup) wait(d time.Duration) error {
	deadline := time.Now().Add(d)
	for pause := 100 * time.Microsecond; ; pause = min(2*pause, 10*time.Millisecond) {
		empty, err := c.Empty()
		if err != nil {
			return err
		}
		if empty {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has processes after %v", c.path, d)
		}
		time.Sleep(pause)
	}
}

// removeBusy bounds the retries of a removal that the kernel refuses for a
// moment after the last process left.
const removeBusy = 2 * time.Second

// Remove removes the cgroup and any the job made below it. It fails while
// a process is left (end them first: Kill, Wait). A cgroup already removed
// is no error.
func (c *Cgroup) Remove() error {
	return c.walk(func(dir string) error {
		deadline := time.Now().Add(removeBusy)
		for {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) {
				return nil
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("remove cgroup %s: %w", dir, err)
			}
			if empty, _ := (&Cgroup{kind: c.kind, path: dir}).Empty(); !empty {
				return fmt.Errorf("remove cgroup %s: it still has processes", dir)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}, true)
}

// walk calls fn for the cgroup's directory and every descendant, parents
// first, or children first with post.
func (c *Cgroup) walk(fn func(dir string) error, post bool) error {
	var visit func(dir string) error
	visit = func(dir string) error {
		if !post {
			if err := fn(dir); err != nil {
				return err
			}
		}
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, e := range ents {
			if e.IsDir() {
				if err := visit(filepath.Join(dir, e.Name())); err != nil {
					return err
				}
			}
		}
		if post {
			return fn(dir)
		}
		return nil
	}
	return visit(c.path)
}

// writeFile writes one value to a cgroup file (which exists: no create).
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
