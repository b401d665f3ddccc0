package contain

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hacron/internal/contain/containtest"
)

// patience bounds every wait for something that takes milliseconds on an
// idle machine, so that a loaded one does not fail the tests.
const patience = 10 * time.Second

// hierarchies returns the cgroup hierarchies usable here, by kind,
// logging why a kind is not.
func hierarchies(t testing.TB) map[Kind]*Hierarchy {
	t.Helper()
	hs := map[Kind]*Hierarchy{}
	for _, k := range []Kind{Cgroup2, Cgroup1} {
		h, err := Probe(k)
		if err != nil {
			t.Logf("%s not usable here: %v", k, err)
			continue
		}
		hs[k] = h
	}
	return hs
}

// forEachHierarchy runs f as a subtest per usable hierarchy, or skips.
func forEachHierarchy(t *testing.T, f func(t *testing.T, h *Hierarchy)) {
	hs := hierarchies(t)
	if len(hs) == 0 {
		t.Skip("no writable cgroup hierarchy here (cgroups need root and a v2 hierarchy with cgroup.kill or a v1 freezer)")
	}
	for _, k := range []Kind{Cgroup2, Cgroup1} {
		if h := hs[k]; h != nil {
			t.Run(string(k), func(t *testing.T) { f(t, h) })
		}
	}
}

var scopes atomic.Int64

// testScope is a scope of this test alone; its directories go with the
// test (a run cgroup left inside fails the removal, and the test).
func testScope(t *testing.T, h *Hierarchy) string {
	t.Helper()
	top := fmt.Sprintf("test-%d", os.Getpid())
	scope := fmt.Sprintf("%s/s%d", top, scopes.Add(1))
	t.Cleanup(func() {
		for _, dir := range []string{scope, top} {
			err := syscall.Rmdir(filepath.Join(h.base, parentDir, dir))
			if err != nil && !errors.Is(err, syscall.ENOENT) && !(dir == top && errors.Is(err, syscall.EBUSY)) {
				t.Errorf("test scope %s: %v", dir, err)
			}
		}
	})
	return scope
}

// startGated starts script in a shell leading a new process group; the
// script runs once release is called, so that the caller can hold the
// group and move it into a cgroup first, as the wrapper does with its shim.
func startGated(t *testing.T, script string) (cmd *exec.Cmd, g *Group, release func()) {
	t.Helper()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("/bin/sh", "-c", "read x; "+script)
	cmd.Stdin = rd
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	g, err = OpenGroup(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := wr.Close(); err != nil {
			t.Error(err)
		}
		g.Signal(syscall.SIGKILL)
		_ = cmd.Wait() // killed, or ended before: the test said how
		g.Close()
	})
	return cmd, g, func() {
		if _, err := wr.WriteString("go\n"); err != nil {
			t.Fatal(err)
		}
	}
}

// eventually polls cond until it holds or patience runs out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after %v", what, patience)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// escapee waits for a process in cg that left the group pgid for a
// session of its own (setsid) and holds it.
func escapee(t *testing.T, cg *Cgroup, pgid int) *Proc {
	t.Helper()
	var p *Proc
	eventually(t, "seeing the setsid'ed process in the cgroup", func() bool {
		pids, _ := cg.Procs()
		for _, pid := range pids {
			if st, err := readStat(pid); err == nil && st.sid == pid && st.pgrp != pgid {
				p, err = Open(pid)
				return err == nil
			}
		}
		return false
	})
	t.Cleanup(func() { p.Close() })
	return p
}

func TestDetect(t *testing.T) {
	// A trial cut short by a process that is gone now.
	stale := map[Kind]string{}
	if os.Geteuid() == 0 {
		gone := exec.Command("/bin/true")
		if err := gone.Run(); err != nil {
			t.Fatal(err)
		}
		for _, h := range hierarchies(t) {
			dir := filepath.Join(h.base, parentDir, trialName(gone.Process.Pid, 1))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			stale[h.Kind] = dir
		}
	}
	h := Detect()
	t.Logf("containment here: %s (%s)", h.Kind, h.Reason)
	if os.Geteuid() != 0 {
		if h.Kind != PGroup {
			t.Fatalf("not root but %s", h.Kind)
		}
		return
	}
	// The first kind whose trial passes, in order of preference.
	want := PGroup
	if _, err := Probe(Cgroup2); err == nil {
		want = Cgroup2
	} else if _, err := Probe(Cgroup1); err == nil {
		want = Cgroup1
	}
	if h.Kind != want {
		t.Fatalf("Detect chose %s, want %s", h.Kind, want)
	}
	if h.Kind != PGroup && !strings.HasPrefix(h.Base(), "/") {
		t.Fatalf("base %q is not a directory path", h.Base())
	}
	// The trials leave nothing behind, and clear what others left.
	for k, dir := range stale {
		if _, err := Probe(k); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale trial cgroup %s not cleared", dir)
		}
	}
	if h.Kind != PGroup {
		ents, _ := os.ReadDir(filepath.Join(h.base, parentDir))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), trialPrefix+strconv.Itoa(os.Getpid())+"-") {
				t.Fatalf("trial cgroup %s left behind", e.Name())
			}
		}
	}
}

// A job that leaves its process group by setsid is out of reach of the
// group's signals, and is still ended with its cgroup.
func TestCgroupKillEndsSetsid(t *testing.T) {
	forEachHierarchy(t, func(t *testing.T, h *Hierarchy) {
		scope := testScope(t, h)
		cg, err := h.Create(scope, "run1")
		if err != nil {
			t.Fatal(err)
		}
		cmd, g, release := startGated(t, "setsid sleep 60 & sleep 60")
		if err := cg.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		release()
		esc := escapee(t, cg, g.Pgid())
		// A job run as root may make cgroups of its own below its run's.
		inner, err := h.Create(strings.TrimPrefix(cg.Path(), filepath.Join(h.base, parentDir)+"/"), "inner")
		if err != nil {
			t.Fatal(err)
		}
		if err := inner.Add(esc.Pid()); err != nil {
			t.Fatal(err)
		}
		if pids, _ := cg.Procs(); !slices.Contains(pids, esc.Pid()) {
			t.Fatalf("Procs %v leave out %d in a cgroup below", pids, esc.Pid())
		}

		if err := g.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, "an empty process group", g.Empty)
		if !esc.Alive() {
			t.Fatal("the setsid'ed process died with the group; this test shows nothing")
		}

		if err := cg.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := cg.Wait(patience); err != nil {
			t.Fatal(err)
		}
		if esc.Alive() {
			t.Fatal("the setsid'ed process survived its cgroup's end")
		}
		if err := cg.Remove(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(cg.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("cgroup %s still there: %v", cg.Path(), err)
		}
		left, err := h.Leftovers(scope)
		if err != nil || len(left) != 0 {
			t.Fatalf("leftovers %v, %v", left, err)
		}
	})
}

// The watchdog's script ends a run from outside, the setsid'ed process and
// a cgroup below the run's included, and removes the cgroup.
func TestKillScript(t *testing.T) {
	t.Run("pgroup", func(t *testing.T) {
		_, g, release := startGated(t, "sleep 60 & sleep 60")
		release()
		eventually(t, "three processes in the group", func() bool { m, _ := g.Members(); return len(m) == 3 })
		if out, err := exec.Command("/bin/sh", "-c", NewRun(g, nil).KillScript()).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		eventually(t, "an empty group", g.Empty)
	})
	t.Run("cgroup", func(t *testing.T) { forEachHierarchy(t, killScriptCgroup) })
}

func killScriptCgroup(t *testing.T, h *Hierarchy) {
	scope := testScope(t, h)
	cg, err := h.Create(scope, "run 1")
	if err != nil {
		t.Fatal(err)
	}
	cmd, g, release := startGated(t, "setsid sleep 60 & sleep 60")
	if err := cg.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	release()
	esc := escapee(t, cg, g.Pgid())
	inner, err := h.Create(scope+"/"+"run 1", "inner")
	if err != nil {
		t.Fatal(err)
	}
	if err := inner.Add(esc.Pid()); err != nil {
		t.Fatal(err)
	}
	script := NewRun(g, cg).KillScript()
	if out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s\n%s", err, out, script)
	}
	if esc.Alive() || !g.Empty() {
		t.Fatal("processes of the run survived")
	}
	if _, err := os.Stat(cg.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cgroup left: %v", err)
	}
}

// Run.Signal reaches the group and the process that left it, each once.
func TestRunSignalOnce(t *testing.T) {
	forEachHierarchy(t, func(t *testing.T, h *Hierarchy) {
		cg, err := h.Create(testScope(t, h), "run1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := errors.Join(cg.Kill(), cg.Wait(patience), cg.Remove()); err != nil {
				t.Error(err)
			}
		})
		log := filepath.Join(t.TempDir(), "got")
		cmd, g, release := startGated(t, fmt.Sprintf(`trap 'echo group >>%[1]s' TERM
setsid sh -c 'trap "echo setsid >>%[1]s" TERM; : >%[1]s.ready; while :; do sleep 0.05; done' &
while :; do sleep 0.05; done`, log))
		if err := cg.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		release()
		escapee(t, cg, g.Pgid())
		eventually(t, "the setsid'ed shell trapping SIGTERM", func() bool {
			_, err := os.Stat(log + ".ready")
			return err == nil
		})
		if err := NewRun(g, cg).Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		got := func() string { b, _ := os.ReadFile(log); return string(b) }
		eventually(t, "both shells trapping SIGTERM", func() bool {
			return strings.Contains(got(), "group") && strings.Contains(got(), "setsid")
		})
		// A second signal to either would show by now.
		time.Sleep(300 * time.Millisecond)
		if n := strings.Count(got(), "\n"); n != 2 {
			t.Fatalf("SIGTERM seen %d times, want once by each shell:\n%s", n, got())
		}
	})
}

// SignalStrays reaches the processes that left the group, and leaves the
// group to whoever ends it (the wrapper, in agent mode).
func TestSignalStrays(t *testing.T) {
	forEachHierarchy(t, func(t *testing.T, h *Hierarchy) {
		cg, err := h.Create(testScope(t, h), "run1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := errors.Join(cg.Kill(), cg.Wait(patience), cg.Remove()); err != nil {
				t.Error(err)
			}
		})
		cmd, g, release := startGated(t, "setsid sleep 60 & sleep 60")
		if err := cg.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		release()
		esc := escapee(t, cg, g.Pgid())
		run := NewRun(g, cg)
		n, err := run.SignalStrays(syscall.SIGTERM)
		if err != nil || n != 1 {
			t.Fatalf("SignalStrays reached %d processes, %v; want the setsid'ed sleep alone", n, err)
		}
		eventually(t, "the setsid'ed sleep gone", func() bool { return !esc.Alive() })
		time.Sleep(100 * time.Millisecond)
		if g.Empty() {
			t.Fatal("SignalStrays ended the group too")
		}
		if n, err := NewRun(g, nil).SignalStrays(syscall.SIGTERM); n != 0 || err != nil {
			t.Fatalf("without a cgroup SignalStrays = %d, %v; want 0, nil", n, err)
		}
	})
}

// RemoveScope removes an empty scope, and keeps one that holds a run.
func TestRemoveScope(t *testing.T) {
	forEachHierarchy(t, func(t *testing.T, h *Hierarchy) {
		scope := testScope(t, h)
		cg, err := h.Create(scope, "run1")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.RemoveScope(scope); err == nil {
			t.Fatal("a scope that holds a run's cgroup was removed")
		}
		if err := cg.Remove(); err != nil {
			t.Fatal(err)
		}
		if err := h.RemoveScope(scope); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(h.Base(), parentDir, scope)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the scope is still there: %v", err)
		}
		if err := h.RemoveScope(scope); err != nil {
			t.Fatalf("removing a scope that is gone: %v", err)
		}
	})
}

// Signal reaches every process of a cgroup, the setsid'ed one too.
func TestCgroupSignal(t *testing.T) {
	forEachHierarchy(t, func(t *testing.T, h *Hierarchy) {
		cg, err := h.Create(testScope(t, h), "run1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := errors.Join(cg.Kill(), cg.Wait(patience), cg.Remove()); err != nil {
				t.Error(err)
			}
		})
		cmd, g, release := startGated(t, "setsid sleep 60 & sleep 60")
		if err := cg.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		release()
		esc := escapee(t, cg, g.Pgid())
		n, err := cg.Signal(syscall.SIGTERM)
		if err != nil || n < 2 {
			t.Fatalf("signalled %d processes, %v; want at least the shell and the setsid'ed sleep", n, err)
		}
		if err := cg.Wait(patience); err != nil {
			t.Fatal(err)
		}
		if esc.Alive() {
			t.Fatal("the setsid'ed process survived SIGTERM")
		}
	})
}

// What the job's main process leaves behind in its group is ended once it
// exits, and counted.
func TestTerminateLeftovers(t *testing.T) {
	t.Run("pgroup", func(t *testing.T) {
		cmd, g, release := startGated(t, "sleep 30 & exit 0")
		release()
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		left, _ := g.Members()
		if len(left) != 1 {
			t.Fatalf("want the background sleep left in the group, have %v", left)
		}
		bg, err := Open(left[0])
		if err != nil {
			t.Fatal(err)
		}
		defer bg.Close()
		run := NewRun(g, nil)
		if run.Containment() != PGroup {
			t.Fatalf("containment %s", run.Containment())
		}
		n, err := run.Terminate(patience, patience)
		if err != nil || n != 1 {
			t.Fatalf("Terminate = %d, %v; want 1 process ended", n, err)
		}
		if bg.Alive() || !run.Empty() {
			t.Fatal("the background sleep survived")
		}
		if n, err := run.Terminate(patience, patience); n != 0 || err != nil {
			t.Fatalf("a second Terminate = %d, %v; want 0", n, err)
		}
	})

	t.Run("sigterm-ignored", func(t *testing.T) {
		// A leftover that ignores SIGTERM gets the grace, then SIGKILL.
		const grace = 300 * time.Millisecond
		cmd, g, release := startGated(t, "trap '' TERM; sleep 30 & exit 0")
		release()
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		run := NewRun(g, nil)
		start := time.Now()
		n, err := run.Terminate(grace, patience)
		if err != nil || n != 1 {
			t.Fatalf("Terminate = %d, %v; want 1 process ended", n, err)
		}
		if el := time.Since(start); el < grace {
			t.Fatalf("ended after %v, before the grace %v", el, grace)
		}
		if !run.Empty() {
			t.Fatal("the leftover survived SIGKILL")
		}
	})

	t.Run("cgroup", func(t *testing.T) {
		forEachHierarchy(t, func(t *testing.T, h *Hierarchy) {
			cg, err := h.Create(testScope(t, h), "run1")
			if err != nil {
				t.Fatal(err)
			}
			cmd, g, release := startGated(t, "setsid sleep 30 & sleep 30 & exit 0")
			if err := cg.Add(cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			run := NewRun(g, cg)
			if run.Containment() != h.Kind {
				t.Fatalf("containment %s, want %s", run.Containment(), h.Kind)
			}
			release()
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			n, err := run.Terminate(patience, patience)
			if err != nil || n != 2 {
				t.Fatalf("Terminate = %d, %v; want 2 processes ended (one outside the group)", n, err)
			}
			if !run.Empty() {
				t.Fatal("processes left")
			}
			if err := run.Remove(); err != nil {
				t.Fatal(err)
			}
		})
	})
}

// reusePid starts `sleep 60` in a process group of its own with exactly
// the given pid, now free.
func reusePid(t *testing.T, pid int) *exec.Cmd {
	t.Helper()
	cmd, err := containtest.StartAt(pid, 200, func() *exec.Cmd {
		cmd := exec.Command("/bin/sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	})
	if err != nil {
		t.Skipf("cannot reuse pid %d: %v", pid, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		_ = cmd.Wait() // killed
	})
	return cmd
}

// A process and a group that ended and whose number went to a new process
// and group are not signalled, with a pidfd and with the start time alone.
// With a pidfd even a reuse within the clock tick of the old process's
// start, where start times are equal, is seen.
func TestPidReuse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reusing a pid on purpose needs root")
	}
	t.Run("later tick", func(t *testing.T) { pidReuse(t, true) })
	t.Run("same tick", func(t *testing.T) { pidReuse(t, false) })
}

func pidReuse(t *testing.T, laterTick bool) {
	old := exec.Command("/bin/sleep", "60")
	old.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	pid := old.Process.Pid
	if laterTick {
		// Past the clock tick of its start (100 per second, or fewer):
		// the start-time handle can tell the new process apart.
		time.Sleep(50 * time.Millisecond)
	}
	withFd, err := Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer withFd.Close()
	if withFd.fd < 0 {
		t.Skip("no pidfd on this kernel")
	}
	noFd, err := openProc(pid, false)
	if err != nil {
		t.Fatal(err)
	}
	g, err := OpenGroup(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	gNoFd := &Group{pgid: pid, leader: noFd}
	old.Process.Kill()
	_ = old.Wait() // killed

	reused := reusePid(t, pid)
	newer, err := Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer newer.Close()
	procs := map[string]*Proc{"pidfd": withFd}
	groups := map[string]*Group{"pidfd": g}
	switch {
	case laterTick && newer.StartTime() == withFd.StartTime():
		t.Fatal("the new process has the start time of the old")
	case laterTick:
		procs["start time"], groups["start time"] = noFd, gNoFd
	case newer.StartTime() != withFd.StartTime():
		t.Log("the reuse fell in a later tick")
	}
	for name, p := range procs {
		if p.Alive() {
			t.Errorf("%s: the ended process counts as alive", name)
		}
		if err := p.Signal(syscall.SIGKILL); !errors.Is(err, ErrGone) {
			t.Errorf("%s: Signal = %v, want ErrGone", name, err)
		}
	}
	for name, g := range groups {
		if err := g.Signal(syscall.SIGKILL); !errors.Is(err, ErrGone) {
			t.Errorf("group by %s: Signal = %v, want ErrGone", name, err)
		}
		if m, _ := g.Members(); len(m) != 0 {
			t.Errorf("group by %s: members %v of a group that is not ours", name, m)
		}
	}
	// A SIGKILL sent despite all would have ended it by now.
	time.Sleep(200 * time.Millisecond)
	if !newer.Alive() {
		t.Fatalf("process %d, which reused the pid, was signalled", reused.Process.Pid)
	}
}

// The start-time check alone, with the reuse forced: a handle whose start
// time differs from the process now at its pid refuses to signal it. Runs
// without root.
func TestStartTimeMismatch(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		_ = cmd.Wait() // killed
	})
	pid := cmd.Process.Pid
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	// As if the handle had been opened for an earlier process of this pid.
	stale := &Proc{pid: pid, start: st.start - 1, fd: -1}
	if stale.Alive() {
		t.Fatal("a stale handle counts as alive")
	}
	if err := stale.Signal(syscall.SIGKILL); !errors.Is(err, ErrGone) {
		t.Fatalf("Signal = %v, want ErrGone", err)
	}
	g := &Group{pgid: pid, leader: stale}
	if err := g.Signal(syscall.SIGKILL); !errors.Is(err, ErrGone) {
		t.Fatalf("group Signal = %v, want ErrGone", err)
	}
	// Once gone, always gone: the number may come back, the group not.
	g2 := reopenGroup(pid, st.start-1)
	if !g2.Empty() {
		t.Fatal("a reopened group with a stale leader has members")
	}
	time.Sleep(200 * time.Millisecond)
	if p, err := Open(pid); err != nil || !p.Alive() {
		t.Fatalf("the process at the reused pid was signalled: %v", err)
	}
}

func TestOpenGroupNeedsLeader(t *testing.T) {
	if _, err := OpenGroup(os.Getpid()); err == nil {
		if st, _ := readStat(os.Getpid()); st.pgrp != os.Getpid() {
			t.Fatal("OpenGroup accepted a process that leads no group")
		}
	}
	if _, err := Open(1 << 30); !errors.Is(err, ErrGone) {
		t.Fatalf("Open of no process = %v, want ErrGone", err)
	}
}

func TestOpenPeer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := OpenPeer(s)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Pid() != os.Getpid() || !p.Alive() || p.fd < 0 {
		t.Fatalf("peer %d (fd %d, alive %v), want this process %d with a pidfd", p.Pid(), p.fd, p.Alive(), os.Getpid())
	}
	self, _ := readStat(os.Getpid())
	if p.StartTime() != self.start {
		t.Fatalf("start time %d, want %d", p.StartTime(), self.start)
	}
}

func TestRunStateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runs")
	a := RunState{ID: "a", Job: "nightly", PGID: 1234, LeaderStart: 99, Containment: Cgroup2, Cgroup: "/sys/fs/cgroup/x", Record: "/hacron/c/jobs/nightly/runs/r-1"}
	b := RunState{ID: "b", PGID: 5678, LeaderStart: 7, Containment: PGroup}
	for _, s := range []RunState{a, b} {
		if err := WriteState(dir, s); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state directory: %v, %v", fi.Mode(), err)
	}
	// A temporary file of a write cut short, and a damaged file.
	for _, name := range []string{".c.tmp", "d.json"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ListStates(dir)
	if err == nil || !strings.Contains(err.Error(), "d.json") {
		t.Fatalf("want the damaged file named, got %v", err)
	}
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("ListStates = %+v", got)
	}
	if err := WriteState(dir, RunState{ID: "../x"}); err == nil {
		t.Fatal("an id with a slash was accepted")
	}
	for _, id := range []string{"a", "b", "d", "never"} {
		if err := RemoveState(dir, id); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := ListStates(dir); len(got) != 0 || err != nil {
		t.Fatalf("after removal: %v, %v", got, err)
	}
	if got, err := ListStates(filepath.Join(dir, "none")); len(got) != 0 || err != nil {
		t.Fatalf("no directory: %v, %v", got, err)
	}
}

// An agent that starts ends what a previous one left: runs it has
// run-state files of (cgroup or process group), and cgroups without one.
func TestEndPrevious(t *testing.T) {
	h := Detect()
	t.Logf("containment here: %s", h.Kind)
	dir := t.TempDir()
	var scope string
	var cgs []*Cgroup
	var watch []*Proc

	// A run with a cgroup and a process that left its group.
	if h.Kind != PGroup {
		scope = testScope(t, h)
		cg, err := h.Create(scope, "r1")
		if err != nil {
			t.Fatal(err)
		}
		cmd, g, release := startGated(t, "setsid sleep 60 & sleep 60")
		if err := cg.Add(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		release()
		watch = append(watch, escapee(t, cg, g.Pgid()))
		if err := WriteState(dir, NewRun(g, cg).State("r1", "job1", "/rec/1")); err != nil {
			t.Fatal(err)
		}
		// A cgroup without a state file.
		orphan, err := h.Create(scope, "r2")
		if err != nil {
			t.Fatal(err)
		}
		cmd2, _, release2 := startGated(t, "sleep 60")
		if err := orphan.Add(cmd2.Process.Pid); err != nil {
			t.Fatal(err)
		}
		release2()
		cgs = append(cgs, cg, orphan)
	}
	// A run contained by its process group alone.
	cmd, g, release := startGated(t, "sleep 60 & sleep 60")
	release()
	eventually(t, "three processes in the group", func() bool { m, _ := g.Members(); return len(m) == 3 })
	m, _ := g.Members()
	for _, pid := range m {
		if p, err := Open(pid); err == nil {
			watch = append(watch, p)
			defer p.Close()
		}
	}
	if err := WriteState(dir, NewRun(g, nil).State("r3", "job3", "/rec/3")); err != nil {
		t.Fatal(err)
	}
	_ = cmd
	// A run already over.
	gone := exec.Command("/bin/true")
	gone.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := WriteState(dir, RunState{ID: "r4", PGID: gone.Process.Pid, LeaderStart: 1, Containment: PGroup}); err != nil {
		t.Fatal(err)
	}

	var hh *Hierarchy
	if h.Kind != PGroup {
		hh = h
	}
	states, ended, err := EndPrevious(hh, scope, dir, patience, patience)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ended %d processes of %d runs with state files", ended, len(states))
	ids := []string{}
	for _, s := range states {
		ids = append(ids, s.ID)
	}
	want := "r3 r4"
	if h.Kind != PGroup {
		want = "r1 r3 r4"
	}
	if strings.Join(ids, " ") != want {
		t.Fatalf("states %v, want %s", ids, want)
	}
	for _, p := range watch {
		if p.Alive() {
			t.Errorf("process %d of a previous run survived", p.Pid())
		}
	}
	if ended < 3 {
		t.Errorf("ended %d processes, want at least 3", ended)
	}
	for _, cg := range cgs {
		if _, err := os.Stat(cg.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left: %v", cg.Path(), err)
		}
	}
	if h.Kind != PGroup {
		if left, _ := h.Leftovers(scope); len(left) != 0 {
			t.Errorf("leftovers %v", left)
		}
	}
}

func TestCreateNames(t *testing.T) {
	for _, c := range []struct {
		name  string
		multi bool
		ok    bool
	}{
		{"run-1", false, true},
		{"agent/prod.eu", true, true},
		{"agent/prod", false, false},
		{"", false, false},
		{".", false, false},
		{"..", false, false},
		{".hidden", false, false},
		{"agent/..", true, false},
		{"agent//x", true, false},
		{"a\nb", false, false},
		{strings.Repeat("x", 201), false, false},
	} {
		if err := checkName(c.name, c.multi); (err == nil) != c.ok {
			t.Errorf("checkName(%q, %v) = %v, want ok %v", c.name, c.multi, err, c.ok)
		}
	}
}

func TestParseStat(t *testing.T) {
	line := "4242 (a) (b c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.state != 'S' || st.ppid != 1 || st.pgrp != 4242 || st.sid != 4242 || st.start != 123456 {
		t.Fatalf("parsed %+v", st)
	}
	for _, bad := range []string{"", "1 (x) S 1", "1 (x) S a 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

func TestCgroupLocation(t *testing.T) {
	hybridCgroup := "9:name=systemd:/\n6:freezer:/jobs\n4:memory:/process_api/33f7\n0::/\n"
	hybridMounts := `24 23 0:21 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
30 24 0:27 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
31 24 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 24 0:32 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
`
	pureCgroup := "0::/system.slice/hacron.service\n"
	pureMounts := "28 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
	// A bind mount of part of the hierarchy that does not show our
	// cgroup, before one that does (with a space in its path).
	boundMounts := `40 22 0:26 /other /mnt/other rw - cgroup2 cgroup2 rw
41 22 0:26 /system.slice /mnt/cg\040v2 rw - cgroup2 cgroup2 rw
`
	for _, c := range []struct {
		name, cgroup, mounts, controller string
		dir, mount                       string
	}{
		{"hybrid v2", hybridCgroup, hybridMounts, "", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified"},
		{"hybrid freezer", hybridCgroup, hybridMounts, "freezer", "/sys/fs/cgroup/freezer/jobs", "/sys/fs/cgroup/freezer"},
		{"pure v2", pureCgroup, pureMounts, "", "/sys/fs/cgroup/system.slice/hacron.service", "/sys/fs/cgroup"},
		{"pure v2 no freezer", pureCgroup, pureMounts, "freezer", "", ""},
		{"bind mounts", pureCgroup, boundMounts, "", "/mnt/cg v2/hacron.service", "/mnt/cg v2"},
	} {
		path, ok := cgroupPath(strings.NewReader(c.cgroup), c.controller)
		var dir, mount string
		if ok {
			dir, mount, _ = cgroupDir(strings.NewReader(c.mounts), c.controller, path)
		}
		if dir != c.dir || mount != c.mount {
			t.Errorf("%s: dir %q mount %q, want %q %q", c.name, dir, mount, c.dir, c.mount)
		}
	}
}

// The cost of a run's cgroup: made before admission, removed at its end.
func BenchmarkCgroupCreateRemove(b *testing.B) {
	for _, k := range []Kind{Cgroup2, Cgroup1} {
		b.Run(string(k), func(b *testing.B) {
			h, err := Probe(k)
			if err != nil {
				b.Skipf("%s not usable here: %v", k, err)
			}
			scope := fmt.Sprintf("bench-%d", os.Getpid())
			defer func() {
				if err := syscall.Rmdir(filepath.Join(h.base, parentDir, scope)); err != nil {
					b.Error(err)
				}
			}()
			for i := 0; b.Loop(); i++ {
				cg, err := h.Create(scope, strconv.Itoa(i))
				if err != nil {
					b.Fatal(err)
				}
				if err := cg.Remove(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The cost of choosing the containment, which each wrapper in direct mode
// pays once.
func BenchmarkDetect(b *testing.B) {
	for b.Loop() {
		Detect()
	}
}
