package contain

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrGone says that a process, a process group or a cgroup is no longer the
// one a handle was opened for: it ended, or its number now names another.
var ErrGone = errors.New("gone")

// procStat is what hacron needs of /proc/<pid>/stat.
type procStat struct {
	state byte
	ppid  int
	pgrp  int
	sid   int
	// start is the start time in clock ticks since boot: with the pid it
	// names one process for the whole uptime, which the pid alone does not.
	start uint64
}

// readStat reads /proc/<pid>/stat; a missing process is ErrGone.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return procStat{}, ErrGone
		}
		return procStat{}, err
	}
	return parseStat(string(b))
}

// parseStat parses a stat line. The command name is in parentheses and may
// itself contain spaces and parentheses, so the fields are counted from the
// last ')'.
func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("unreadable /proc stat")
	}
	// state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime priority nice num_threads
	// itrealvalue starttime ...
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errors.New("unreadable /proc stat")
	}
	var st procStat
	var err [4]error
	st.state = f[0][0]
	st.ppid, err[0] = strconv.Atoi(f[1])
	st.pgrp, err[1] = strconv.Atoi(f[2])
	st.sid, err[2] = strconv.Atoi(f[3])
	st.start, err[3] = strconv.ParseUint(f[19], 10, 64)
	if e := errors.Join(err[:]...); e != nil {
		return procStat{}, fmt.Errorf("unreadable /proc stat: %w", e)
	}
	return st, nil
}

// dead says whether a process in this state has finished running: a zombie
// waits only for its parent to collect its status.
func (st procStat) dead() bool { return st.state == 'Z' || st.state == 'X' }

// Proc holds one process by identity rather than by number. Where the
// kernel has pidfds (Linux 5.3+) it holds one, and signals go through it:
// the kernel then refuses to signal anything but that very process.
// Elsewhere the process is the pid together with its start time, checked
// before each signal (a pid reused within that check is the one window
// left, microseconds wide).
type Proc struct {
	pid   int
	start uint64
	fd    int // pidfd, or -1
}

// Open holds the running process pid. ErrGone if there is none.
func Open(pid int) (*Proc, error) {
	return openProc(pid, true)
}

// openProc opens pid with a pidfd when usePidfd and the kernel has them;
// tests open without one to exercise the start-time check.
func openProc(pid int, usePidfd bool) (*Proc, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("bad pid %d", pid)
	}
	p := &Proc{pid: pid, fd: -1}
	if usePidfd {
		fd, err := unix.PidfdOpen(pid, 0)
		switch {
		case err == nil:
			p.fd = fd
		case errors.Is(err, unix.ESRCH):
			return nil, ErrGone
		case errors.Is(err, unix.ENOSYS):
			// An older kernel: the start time alone.
		default:
			return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
		}
	}
	// The start time is read after the pidfd is held: if the process is
	// still alive afterwards, the stat read was of the same process.
	st, err := readStat(pid)
	if err == nil && st.dead() {
		err = ErrGone
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	p.start = st.start
	if !p.Alive() {
		p.Close()
		return nil, ErrGone
	}
	return p, nil
}

// OpenPeer holds the process at the other end of a Unix socket. The kernel
// gives its pidfd itself where it can (SO_PEERPIDFD, Linux 6.5+), so a
// peer that died and whose pid was reused before the call is not mistaken
// for the new process; elsewhere the peer's pid is opened.
func OpenPeer(c *net.UnixConn) (*Proc, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	pidfd := -1
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr == nil {
			if f, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
				pidfd = f
			}
		}
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("peer credentials: %w", credErr)
	}
	if pidfd < 0 {
		return Open(int(cred.Pid))
	}
	p := &Proc{pid: int(cred.Pid), fd: pidfd}
	st, err := readStat(p.pid)
	if err == nil && (st.dead() || !p.Alive()) {
		err = ErrGone
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	p.start = st.start
	return p, nil
}

// Pid is the process id (it names the process only while Alive).
func (p *Proc) Pid() int { return p.pid }

// StartTime is the process's start time in clock ticks since boot, the
// value to store beside the pid (a run-state file) to recognise it later.
func (p *Proc) StartTime() uint64 { return p.start }

// Alive says whether the process still runs; a zombie does not.
func (p *Proc) Alive() bool {
	if p.fd >= 0 {
		// A pidfd turns readable when its process has exited.
		fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err == nil && n == 0
		}
	}
	st, err := readStat(p.pid)
	return err == nil && st.start == p.start && !st.dead()
}

// holdsPid says whether the process still holds its pid: it runs or is a
// zombie. Once it does not, the number is free to be given to a new
// process. With a pidfd the kernel says so exactly (fdinfo's Pid turns -1
// when the process is reaped); by start time, a reuse within the same
// clock tick goes unseen.
func (p *Proc) holdsPid() bool {
	if p.fd >= 0 {
		b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(p.fd))
		if err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "Pid:"); ok {
					return strings.TrimSpace(v) != "-1"
				}
			}
		}
	}
	st, err := readStat(p.pid)
	return err == nil && st.start == p.start
}

// Signal sends sig to the process, never to another one that got its pid.
// ErrGone when the process has ended.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.fd >= 0 {
		err := unix.PidfdSendSignal(p.fd, sig, nil, 0)
		if errors.Is(err, unix.ESRCH) {
			return ErrGone
		}
		return err
	}
	if !p.Alive() {
		return ErrGone
	}
	err := unix.Kill(p.pid, sig)
	if errors.Is(err, unix.ESRCH) {
		return ErrGone
	}
	return err
}

// Close releases the pidfd; no other call on p may be in progress.
func (p *Proc) Close() error {
	if p.fd < 0 {
		return nil
	}
	fd := p.fd
	p.fd = -1
	return unix.Close(fd)
}

// Group is a process group held through its leader's identity. The kernel
// keeps a group's number from being given to a new process while any
// member lives, so the number stays the run's as long as the leader is
// the same process or the group has not once been seen empty. Signal and
// Members check that first, and a group once found gone stays gone: a
// tracked group that emptied and whose number came back as someone else's
// is never signalled.
type Group struct {
	mu     sync.Mutex
	pgid   int
	leader *Proc
	gone   bool
}

// OpenGroup holds the process group pgid, whose leader (the process pgid)
// must be alive and lead it.
func OpenGroup(pgid int) (*Group, error) {
	leader, err := Open(pgid)
	if err != nil {
		return nil, err
	}
	st, err := readStat(pgid)
	if err == nil && st.pgrp != pgid {
		err = fmt.Errorf("process %d does not lead a process group", pgid)
	}
	if err != nil {
		leader.Close()
		return nil, err
	}
	return &Group{pgid: pgid, leader: leader}, nil
}

// reopenGroup holds a group known from before by its leader's number and
// start time (a run-state file), whether or not the leader still runs.
func reopenGroup(pgid int, start uint64) *Group {
	g := &Group{pgid: pgid, leader: &Proc{pid: pgid, start: start, fd: -1}}
	if p, err := Open(pgid); err == nil && p.start == start {
		g.leader.Close()
		g.leader = p
	}
	return g
}

// Pgid is the group's number.
func (g *Group) Pgid() int { return g.pgid }

// Leader is the group's first process (the job's main process).
func (g *Group) Leader() *Proc { return g.leader }

// check says whether the group number still names this group.
func (g *Group) check() error {
	if g.gone {
		return ErrGone
	}
	if g.leader.holdsPid() {
		// Alive or a zombie, the leader keeps the number the group's.
		return nil
	}
	// The leader is reaped. The kernel gives its number to a new process
	// only once no group uses it either: a process holding it means the
	// run's group is gone.
	if _, err := readStat(g.pgid); !errors.Is(err, ErrGone) {
		g.gone = true
		return ErrGone
	}
	// EPERM still means someone is in the group.
	if errors.Is(unix.Kill(-g.pgid, 0), unix.ESRCH) {
		g.gone = true
		return ErrGone
	}
	return nil
}

// Signal sends sig to every process of the group. ErrGone when the group
// is empty or its number is no longer this group's.
func (g *Group) Signal(sig syscall.Signal) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.check(); err != nil {
		return err
	}
	err := unix.Kill(-g.pgid, sig)
	if errors.Is(err, unix.ESRCH) {
		g.gone = true
		return ErrGone
	}
	return err
}

// Members lists the group's live processes (zombies, already dead, are
// left out).
func (g *Group) Members() ([]int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.check() != nil {
		return nil, nil
	}
	return scanGroup(g.pgid)
}

// Empty says whether no live process is left in the group.
func (g *Group) Empty() bool {
	g.mu.Lock()
	alive := !g.gone && g.leader.Alive()
	g.mu.Unlock()
	if alive {
		// The common case, without a scan of /proc.
		return false
	}
	m, err := g.Members()
	return err == nil && len(m) == 0
}

// Close releases the leader's pidfd.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leader.Close()
}

// scanGroup lists the live processes of group pgid from /proc.
func scanGroup(pgid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.pgrp != pgid || st.dead() {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
