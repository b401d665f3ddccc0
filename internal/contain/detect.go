package contain

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Kind is the containment a run gets; its value is the run record's
// `containment` key.
type Kind string

const (
	// Cgroup2 is a cgroup of the unified hierarchy, ended with cgroup.kill.
	Cgroup2 Kind = "cgroup2"
	// Cgroup1 is a cgroup of a v1 freezer hierarchy, ended by freezing it,
	// killing every task and thawing it.
	Cgroup1 Kind = "cgroup1"
	// PGroup is the process group alone.
	PGroup Kind = "pgroup"
)

// parentDir is the directory, below the creating process's own cgroup,
// that holds every run cgroup of hacron.
const parentDir = "hacron"

// Hierarchy is where this process makes run cgroups, and which kind of
// containment it gives.
type Hierarchy struct {
	// Kind is the containment runs get.
	Kind Kind
	// Reason says why, in words for `hacron check`.
	Reason string
	// base is this process's own cgroup in the hierarchy (a directory);
	// empty for PGroup.
	base string
}

// Base is the directory under which run cgroups are made (this process's
// own cgroup), or "" for PGroup.
func (h *Hierarchy) Base() string { return h.base }

// Detect picks the containment this process can give its runs: cgroup v2
// if it works here, else a v1 freezer hierarchy, else the process group.
// It never fails; the reason says what was found. Detect starts, kills and
// reaps one short-lived child per hierarchy it tries, so it must run before
// the caller starts reaping every child (wait for any pid).
func Detect() *Hierarchy {
	if os.Geteuid() != 0 {
		return &Hierarchy{Kind: PGroup, Reason: "process group only: cgroups need root"}
	}
	h2, err2 := Probe(Cgroup2)
	if err2 == nil {
		return h2
	}
	h1, err1 := Probe(Cgroup1)
	if err1 == nil {
		h1.Reason += "; cgroup v2 not used: " + err2.Error()
		return h1
	}
	return &Hierarchy{Kind: PGroup, Reason: fmt.Sprintf("process group only: cgroup v2: %v; cgroup v1 freezer: %v", err2, err1)}
}

// Probe checks that this process can contain runs in a cgroup of the given
// kind, by doing once what a run does: make a cgroup, move a process into
// it, kill it there and remove the cgroup.
func Probe(kind Kind) (*Hierarchy, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("not root")
	}
	var base, mount string
	var err error
	switch kind {
	case Cgroup2:
		base, mount, err = ownCgroup("")
	case Cgroup1:
		base, mount, err = ownCgroup("freezer")
	default:
		return nil, fmt.Errorf("no cgroup kind %q", kind)
	}
	if err != nil {
		return nil, err
	}
	h := &Hierarchy{Kind: kind, base: base}
	if err := h.trial(); err != nil {
		return nil, err
	}
	if kind == Cgroup2 {
		h.Reason = fmt.Sprintf("cgroup v2 at %s: runs get a cgroup under %s, ended with cgroup.kill", mount, filepath.Join(base, parentDir))
	} else {
		h.Reason = fmt.Sprintf("cgroup v1 freezer at %s: runs get a cgroup under %s, frozen, killed and thawed", mount, filepath.Join(base, parentDir))
	}
	return h, nil
}

// trial makes a cgroup, moves a child into it, ends it and removes the
// cgroup. Its directory is named after this process (pid and start time),
// so a trial cut short (the process was killed) is cleared by a later one.
func (h *Hierarchy) trial() error {
	parent := filepath.Join(h.base, parentDir)
	if err := unix.Mkdir(parent, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("cannot make a cgroup in %s: %w", h.base, err)
	}
	clearTrials(parent)
	self, err := readStat(os.Getpid())
	if err != nil {
		return err
	}
	cg := &Cgroup{kind: h.Kind, path: filepath.Join(parent, trialName(os.Getpid(), self.start))}
	if err := unix.Mkdir(cg.path, 0o755); err != nil {
		return fmt.Errorf("cannot make a cgroup in %s: %w", parent, err)
	}
	// A trial left behind is cleared by a later one (clearTrials).
	defer func() { _ = cg.Remove() }()
	switch h.Kind {
	case Cgroup2:
		if _, err := os.Stat(filepath.Join(cg.path, "cgroup.kill")); err != nil {
			return errors.New("no cgroup.kill (it needs Linux 5.14 or later)")
		}
	case Cgroup1:
		if _, err := os.Stat(filepath.Join(cg.path, "freezer.state")); err != nil {
			return errors.New("no freezer.state in the freezer hierarchy")
		}
	}
	// A shell that waits for its input, which never comes.
	rd, wr, err := os.Pipe()
	if err != nil {
		return err
	}
	defer func() { _ = wr.Close() }() // EOF for the shell, if it still runs
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "read x"},
		&os.ProcAttr{Files: []*os.File{rd, nil, nil}, Sys: &syscall.SysProcAttr{Setpgid: true}})
	_ = rd.Close() // the shell's end, its own after the fork
	if err != nil {
		return fmt.Errorf("trial process: %w", err)
	}
	defer func() { _, _ = p.Wait() }() // reaps it; how it ended is no matter
	addErr := cg.Add(p.Pid)
	if addErr != nil {
		p.Kill()
		return fmt.Errorf("cannot move a process into a cgroup: %w", addErr)
	}
	if err := cg.Kill(); err != nil {
		p.Kill()
		return fmt.Errorf("cannot end a cgroup: %w", err)
	}
	if err := cg.wait(5 * time.Second); err != nil {
		p.Kill()
		return fmt.Errorf("cannot end a cgroup: %w", err)
	}
	return nil
}

// trialPrefix begins the name of a trial cgroup; run scopes cannot begin
// with a dot, so it never clashes with them.
const trialPrefix = ".trial-"

func trialName(pid int, start uint64) string {
	return fmt.Sprintf("%s%d-%d", trialPrefix, pid, start)
}

// clearTrials removes the trial cgroups of processes that are gone.
func clearTrials(parent string) {
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		var pid int
		var start uint64
		if !e.IsDir() || !strings.HasPrefix(e.Name(), trialPrefix) {
			continue
		}
		if _, err := fmt.Sscanf(e.Name(), trialPrefix+"%d-%d", &pid, &start); err != nil {
			continue
		}
		if st, err := readStat(pid); errors.Is(err, ErrGone) || (err == nil && st.start != start) {
			// One that cannot be removed now is tried again next time.
			_ = (&Cgroup{path: filepath.Join(parent, e.Name())}).Remove()
		}
	}
}

// ownCgroup finds this process's cgroup directory in the v2 hierarchy
// (controller "") or in the v1 hierarchy of controller, and the
// hierarchy's mount point.
func ownCgroup(controller string) (dir, mount string, err error) {
	what := "cgroup v2"
	if controller != "" {
		what = "cgroup v1 " + controller
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", "", err
	}
	path, ok := cgroupPath(bytes.NewReader(cg), controller)
	if !ok {
		return "", "", fmt.Errorf("this process is in no %s hierarchy", what)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	dir, mount, ok = cgroupDir(bytes.NewReader(mi), controller, path)
	if !ok {
		return "", "", fmt.Errorf("no %s hierarchy is mounted here", what)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", "", fmt.Errorf("own cgroup %s not found", dir)
	}
	return dir, mount, nil
}

// cgroupPath reads /proc/<pid>/cgroup ("id:controllers:path" lines) for
// the path in the v2 hierarchy (controller "", the "0::" line) or in the
// v1 hierarchy that has controller.
func cgroupPath(r io.Reader, controller string) (string, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		if controller == "" {
			if f[0] == "0" && f[1] == "" {
				return f[2], true
			}
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == controller {
				return f[2], true
			}
		}
	}
	return "", false
}

// cgroupDir finds, in /proc/<pid>/mountinfo, a mount of the v2 hierarchy
// (controller "") or of the v1 hierarchy with controller that shows the
// cgroup path, and returns the path's directory and the mount point.
func cgroupDir(r io.Reader, controller, path string) (dir, mount string, ok bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(f) {
			continue
		}
		fstype, super := f[sep+1], f[sep+3]
		if controller == "" {
			if fstype != "cgroup2" {
				continue
			}
		} else {
			has := false
			for _, o := range strings.Split(super, ",") {
				has = has || o == controller
			}
			if fstype != "cgroup" || !has {
				continue
			}
		}
		// The mount shows the hierarchy from its root down; our path must
		// lie below it to be reachable through this mount.
		root, mp := unescapeMount(f[3]), unescapeMount(f[4])
		rel, found := strings.CutPrefix(path, root)
		if root == "/" {
			rel, found = path, true
		}
		if !found || (rel != "" && !strings.HasPrefix(rel, "/")) {
			continue
		}
		return filepath.Join(mp, rel), mp, true
	}
	return "", "", false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
