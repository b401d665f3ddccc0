package main

// hacron agent: joins the election, serves the local socket, writes the
// state file, and keeps every job it admitted inside its lease: it tracks
// each job's process group, so a job whose `hacron run` died is still
// terminated when the lease ends.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/go-zookeeper/zk"
)

type agentCmd struct {
	StateFile string `name:"state-file" placeholder:"PATH" help:"Write active or passive here on every change (rcron's state file; hacron never reads it)."`
	Detach    bool   `name:"detach" help:"Run in the background; exit 0 at once if an agent of this cluster already runs here."`
	PIDFile   string `name:"pid-file" placeholder:"PATH" help:"Pid file, locked while the agent runs (default: the socket path with .pid)."`
	Metrics   string `name:"metrics-listen" placeholder:"ADDR" help:"Serve Prometheus metrics on ADDR (host:port) at /metrics."`
}

// defaultKillGrace is the SIGTERM-to-SIGKILL grace when none is given:
// long enough for a job to clean up, and lowered to what the lease allows.
const defaultKillGrace = 5 * time.Second

// killMargin is kept free between the last SIGKILL and the earliest moment
// the session can expire: signals, scheduling and a loaded machine take
// time. A tenth of T, at least 250 ms.
func killMargin(T time.Duration) time.Duration {
	return max(T/10, 250*time.Millisecond)
}

// maxKillGrace is the largest grace for which every job is dead before the
// session can expire: s + f*T + k + margin <= s + T.
func maxKillGrace(T time.Duration) time.Duration {
	return max(T-time.Duration(float64(T)*leaseFraction)-killMargin(T), 0)
}

// killGrace picks the grace for a job, or refuses an explicit one that
// could let the job outlive the lease.
func killGrace(T time.Duration, asked time.Duration, explicit bool) (time.Duration, error) {
	limit := maxKillGrace(T)
	if !explicit {
		return min(defaultKillGrace, limit), nil
	}
	if asked < 0 {
		return 0, errors.New("--kill-grace must not be negative")
	}
	if asked > limit {
		lease := time.Duration(float64(T) * leaseFraction)
		return 0, withHint(fmt.Errorf("--kill-grace %v could let the job outlive the lease", asked),
			fmt.Sprintf("lease %v (T/2) + kill grace %v + margin %v > granted session timeout T = %v", lease, asked, killMargin(T), T),
			fmt.Sprintf("use --kill-grace %v or less, or a longer --session-timeout (the servers' maxSessionTimeout caps it)", limit))
	}
	return asked, nil
}

// admittedRun is a job the agent let run.
type admittedRun struct {
	adm    admission // job, slot, record data
	record string
	pgid   int
	grace  time.Duration
	start  time.Time

	// Owned by the enforcer.
	wrapperGone bool
	reported    bool      // the wrapper sent the exit status
	stopAt      time.Time // when the lease was seen over for this run
	termSent    bool
	killSent    bool
}

type agent struct {
	g         *globals
	log       *slog.Logger
	zc        *zkClient
	el        *election
	root      string
	stateFile string

	mu       sync.Mutex
	runs     map[*admittedRun]struct{}
	revoked  string        // non-empty: jobs must stop (resign, shutdown)
	revokeCh chan struct{} // closed when revoked is set
	jobsSeen map[string]bool
	metrics  *metrics
}

func (a *agentCmd) Run(ctx context.Context, g *globals) error {
	log, err := newLogger(g, slog.LevelInfo)
	if err != nil {
		return err
	}
	if g.Direct {
		return errors.New("hacron agent runs in agent mode; this configuration says mode = direct")
	}
	pidPath := a.PIDFile
	if pidPath == "" {
		pidPath = strings.TrimSuffix(g.Socket, ".sock") + ".pid"
	}
	for _, dir := range []string{filepath.Dir(pidPath), filepath.Dir(g.Socket)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	pidFile, err := lockPIDFile(pidPath)
	if errors.Is(err, errAgentRunning) {
		log.Debug("an agent of this cluster already runs here", "pid_file", pidPath)
		return nil
	}
	if err != nil {
		return err
	}
	if a.Detach {
		// The child takes the lock itself; a child that loses a race with
		// another start exits 0 like any second start.
		pidFile.Close()
		return detach()
	}
	defer pidFile.Close()
	defer os.Remove(pidPath)
	return runAgent(ctx, g, log, a)
}

var errAgentRunning = errors.New("an agent already runs")

// lockPIDFile takes the pid file's lock, held until the file is closed.
func lockPIDFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errAgentRunning
		}
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

// detach starts this agent again in the background, in its own session,
// with the same options but --detach.
func detach() error {
	var args []string
	for _, a := range os.Args[1:] {
		if a != "--detach" && a != "--detach=true" {
			args = append(args, a)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	return cmd.Process.Release()
}

// agentMemoryLimit is a soft limit for the Go heap: the agent is a small
// daemon that lives for months, and collecting earlier under a burst of
// connections keeps its footprint small (GOMEMLIMIT overrides it).
const agentMemoryLimit = 16 << 20

func runAgent(ctx context.Context, g *globals, log *slog.Logger, opts *agentCmd) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(agentMemoryLimit)
	}
	zc, err := dialZK(ctx, g.zkConfig(), log)
	if err != nil {
		return err
	}
	defer zc.Close()
	root := g.clusterRoot()
	if err := claimMode(zc, root, "agent"); err != nil {
		return err
	}
	a := &agent{
		g: g, log: log, zc: zc, root: root, stateFile: opts.StateFile,
		runs:     map[*admittedRun]struct{}{},
		revokeCh: make(chan struct{}),
		jobsSeen: map[string]bool{},
	}
	a.el = newElection(zc, electionConfig{Parent: root + "/election", ID: g.Node, Version: version}, log)
	a.metrics = newMetrics(a)
	if opts.Metrics != "" {
		mln, err := a.metrics.serve(opts.Metrics)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		defer mln.Close()
	}
	metricsDone := make(chan struct{})
	defer close(metricsDone)
	go a.metrics.observe(a.el.subscribe(), metricsDone)

	os.Remove(g.Socket) // stale: the pid file lock says no agent of ours uses it
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: g.Socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("agent socket: %w", err)
	}
	defer os.Remove(g.Socket)
	if err := os.Chmod(g.Socket, 0o660); err != nil {
		ln.Close()
		return fmt.Errorf("agent socket: %w", err)
	}
	if g.SocketGroup != "" {
		grp, err := user.LookupGroup(g.SocketGroup)
		if err == nil {
			gid, _ := strconv.Atoi(grp.Gid)
			err = os.Chown(g.Socket, os.Getuid(), gid)
		}
		if err != nil {
			ln.Close()
			return fmt.Errorf("--socket-group %s: %w", g.SocketGroup, err)
		}
	}

	elCtx, stopElection := context.WithCancel(context.Background())
	elDone := make(chan struct{})
	go func() {
		defer close(elDone)
		if err := a.el.Run(elCtx); err != nil {
			log.Error("election stopped", "err", err)
		}
	}()
	stateDone := make(chan struct{})
	stateCtx, stopState := context.WithCancel(context.Background())
	go func() {
		defer close(stateDone)
		a.writeStates(stateCtx)
	}()
	enfCtx, stopEnforcer := context.WithCancel(context.Background())
	enfDone := make(chan struct{})
	go func() {
		defer close(enfDone)
		a.enforce(enfCtx)
	}()
	go a.accept(ln)
	log.Info("agent started", "cluster", g.Cluster, "node", g.Node, "socket", g.Socket, "version", version)
	// systemd (Type=notify): ready now; without NOTIFY_SOCKET a no-op.
	daemon.SdNotify(false, daemon.SdNotifyReady)

	<-ctx.Done()
	// Graceful stop (docs/zookeeper-rules.md, rule 11): no new job,
	// running jobs end as on a lease loss, then the node goes and the
	// session closes, so the standby takes over at once.
	log.Info("agent stopping")
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	ln.Close()
	a.revoke("agent stopping")
	a.waitJobsGone(maxKillGrace(a.el.Status().Timeout) + 2*time.Second)
	stopElection()
	<-elDone
	zc.Close()
	stopEnforcer()
	<-enfDone
	stopState()
	<-stateDone
	if err := a.writeStateFile("passive"); err != nil {
		log.Warn("state file", "err", err)
	}
	log.Info("agent stopped")
	return nil
}

// claimMode records the cluster's mode once and refuses the other mode.
func claimMode(zc *zkClient, root, mode string) error {
	s := zc.snapshot()
	if err := zc.ensurePath(s.Conn, root); err != nil {
		return err
	}
	_, err := s.Conn.Create(zc.abs(root+"/mode"), []byte(mode), 0, zc.acl)
	if err == nil || !errors.Is(err, zk.ErrNodeExists) {
		return err
	}
	data, _, err := s.Conn.Get(zc.abs(root + "/mode"))
	if err != nil {
		return err
	}
	if got := string(data); got != mode {
		return withHint(fmt.Errorf("cluster %s is in %s mode, not %s", filepath.Base(root), got, mode),
			"a cluster uses one mode; use the other cluster name or the cluster's mode")
	}
	return nil
}

// revoke stops admissions and makes every running job end as on a lease
// loss.
func (a *agent) revoke(reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.revoked == "" {
		a.revoked = reason
		close(a.revokeCh)
	}
}

// unrevoke admits again (after a resignation's step-down).
func (a *agent) unrevoke() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.revoked != "" {
		a.revoked = ""
		a.revokeCh = make(chan struct{})
	}
}

func (a *agent) waitJobsGone(limit time.Duration) {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		a.mu.Lock()
		n := len(a.runs)
		a.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeStates keeps the state file in step with the election.
func (a *agent) writeStates(ctx context.Context) {
	feed := a.el.subscribe()
	defer a.el.unsubscribe(feed)
	last := ""
	for {
		for _, st := range feed.next() {
			s := "passive"
			if st.active(time.Now()) {
				s = "active"
			}
			if s != last {
				if err := a.writeStateFile(s); err != nil {
					a.log.Warn("state file", "err", err)
				}
				last = s
			}
		}
		select {
		case <-feed.C():
		case <-ctx.Done():
			return
		}
	}
}

// writeStateFile replaces the state file atomically: a reader sees the old
// or the new word, never a torn one.
func (a *agent) writeStateFile(s string) error {
	if a.stateFile == "" {
		return nil
	}
	dir := filepath.Dir(a.stateFile)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".hacron-state-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(s + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), a.stateFile)
}

func (a *agent) accept(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			a.log.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go a.serve(c)
	}
}

func (a *agent) serve(c *net.UnixConn) {
	defer c.Close()
	uid, pid, err := peerCred(c)
	if err != nil {
		a.log.Warn("peer credentials", "err", err)
		return
	}
	r := bufio.NewReaderSize(c, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var req request
	if err := readMsg(r, &req); err != nil {
		writeMsg(c, reply{V: protoVersion, Error: "bad request: " + err.Error(), Code: exitUsage})
		return
	}
	c.SetReadDeadline(time.Time{})
	switch req.Op {
	case "state":
		info := a.stateInfo()
		writeMsg(c, reply{V: protoVersion, State: &info})
	case "resign":
		a.resign(c, uid, req)
	case "run":
		a.admit(c, r, uid, pid, req)
	default:
		writeMsg(c, reply{V: protoVersion, Error: fmt.Sprintf("unknown request %q", req.Op), Code: exitUsage})
	}
}

// stateInfo answers `hacron state`. Fail closed: no session is unknown,
// a lapsed lease is passive.
func (a *agent) stateInfo() stateInfo {
	now := time.Now()
	st := a.el.Status()
	s := a.zc.snapshot()
	info := stateInfo{
		Cluster:   a.g.Cluster,
		Node:      a.g.Node,
		State:     "passive",
		Reason:    st.Reason,
		Since:     jsonTime(st.Since),
		Leader:    st.Leader,
		SessionID: fmt.Sprintf("0x%x", s.ID),
	}
	switch {
	case st.active(now):
		info.State = "active"
		info.Token = st.Token
		info.LeaseRemainingMS = st.Deadline.Sub(now).Milliseconds()
	case !s.Usable():
		info.State = "unknown"
		info.Reason = "no ZooKeeper session"
		info.Leader = ""
	case st.State == stateActive:
		info.Reason = "lease expired, not yet renewed"
	}
	return info
}

func (a *agent) resign(c *net.UnixConn, uid int, req request) {
	if uid != 0 && uid != os.Getuid() {
		writeMsg(c, reply{V: protoVersion, Error: fmt.Sprintf("permission denied: only root or the agent's user (uid %d) may resign", os.Getuid()), Code: exitUsage})
		return
	}
	hold := time.Duration(req.HoldMS) * time.Millisecond
	if hold <= 0 {
		writeMsg(c, reply{V: protoVersion, Error: "resign: --hold must be positive", Code: exitUsage})
		return
	}
	a.log.Info("resigning", "hold", hold.String(), "uid", uid)
	a.revoke("resigning")
	a.waitJobsGone(maxKillGrace(a.el.Status().Timeout) + 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := a.el.Resign(ctx, hold)
	cancel()
	if err == nil {
		waitUntil(time.Second, func() bool { return a.el.Status().State != stateActive })
	}
	a.unrevoke()
	if err != nil {
		writeMsg(c, reply{V: protoVersion, Error: "resign: the election is busy (no ZooKeeper session?)", Code: exitUsage})
		return
	}
	writeMsg(c, reply{V: protoVersion, OK: true})
}

func waitUntil(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// admit decides one run: one Multi that checks our election node and
// creates the run record (docs/zookeeper-rules.md, rule 9), then keeps the wrapper informed of the
// lease until the job ends.
func (a *agent) admit(c *net.UnixConn, r *bufio.Reader, uid, pid int, req request) {
	fail := func(err error) {
		rep := reply{V: protoVersion, Error: err.Error(), Code: exitCodeOf(err, exitUsage)}
		rep.Hint = strings.Join(hintsOf(err), "; ")
		writeMsg(c, rep)
	}
	skip := func(reason string) {
		a.log.Info("run", "cluster", a.g.Cluster, "state", "passive", "status", "ignore", "job", req.Job, "slot", req.Slot, "reason", reason, "cmd", joinArgs(req.Argv))
		writeMsg(c, reply{V: protoVersion, Skip: reason})
	}
	job, err := jobName(req.Job, uid)
	if err != nil {
		fail(err)
		return
	}
	req.Job = job
	if err := validSlot(req.Slot); err != nil {
		fail(err)
		return
	}
	if err := checkJobGroup(req.PGID, pid, uid); err != nil {
		fail(err)
		return
	}
	adm := admission{root: a.zc.abs(a.root), job: req.Job, slot: req.Slot, claim: req.Claim, noOverlap: req.NoOverlap, acl: a.zc.acl}
	wait := time.Duration(req.WaitMS) * time.Millisecond
	st, reason := awaitTurn(context.Background(), a.el, a.zc, adm, wait, wait, func(status) bool { return true })
	if reason != "" {
		skip(reason)
		return
	}
	// The job's nodes are made by the node that runs it, not by every
	// passive node that skips it.
	if err := a.ensureJob(req.Job); err != nil {
		fail(fmt.Errorf("admission: %w", err))
		return
	}
	grace, err := killGrace(st.Timeout, time.Duration(req.KillGraceMS)*time.Millisecond, req.KillGraceSet)
	if err != nil {
		fail(err)
		return
	}
	adm.rec = runRecord{Job: req.Job, Node: a.g.Node, Slot: req.Slot, Start: jsonTime(time.Now()), Token: st.Token, UID: uid, User: userName(uid)}
	run := &admittedRun{adm: adm, pgid: req.PGID, grace: grace, start: time.Now()}

	// Tracked before the admission, so that a lease that ends at any point
	// from here on reaches the job's process group.
	a.mu.Lock()
	if a.revoked != "" {
		a.mu.Unlock()
		skip(a.revoked)
		return
	}
	a.runs[run] = struct{}{}
	revokeCh := a.revokeCh
	a.mu.Unlock()

	t0 := time.Now()
	ast, res, err := a.el.admit(adm.ops()...)
	a.metrics.admission.Observe(time.Since(t0).Seconds())
	record, reason, err := adm.outcome(res, err)
	if err != nil || reason != "" {
		a.untrack(run)
		if err != nil {
			fail(err)
		} else {
			skip(reason)
		}
		return
	}
	run.record = record
	if !a.el.Status().active(time.Now()) {
		// Admitted, but the reply came after the lease ran out: the job
		// must not start. Give the claim back so another node can run the
		// slot.
		a.untrack(run)
		if err := unclaim(a.zc.snapshot().Conn, adm, record); err != nil {
			a.log.Warn("admitted after the lease ended; the record could not be removed", "record", record, "err", err)
		}
		skip(skipPassive)
		return
	}
	a.log.Info("run", "cluster", a.g.Cluster, "state", "active", "status", "start", "job", run.adm.job, "slot", run.adm.slot, "token", ast.Token, "record", run.record, "cmd", joinArgs(req.Argv))

	feed := a.el.subscribe()
	defer a.el.unsubscribe(feed)
	last := ast.Deadline
	if err := writeMsg(c, reply{V: protoVersion, Admitted: true, Token: ast.Token, Job: run.adm.job, Slot: run.adm.slot,
		Node: a.g.Node, Cluster: a.g.Cluster, Run: run.record, KillGraceMS: grace.Milliseconds(), DeadlineMono: monoDeadline(last)}); err != nil {
		a.wrapperGone(run)
		return
	}

	exitCh := make(chan request, 1)
	go func() {
		defer close(exitCh)
		var m request
		if readMsg(r, &m) == nil && m.Op == "exit" {
			exitCh <- m
		}
	}()
	lost := false
	for {
		select {
		case m, ok := <-exitCh:
			if !ok {
				a.wrapperGone(run)
				return
			}
			// Acknowledged first: during a partition the record's write
			// waits for ZooKeeper, and the wrapper must not.
			writeMsg(c, reply{V: protoVersion, OK: true})
			a.finish(run, &m.ExitCode, m.Result)
			return
		case <-revokeCh:
			revokeCh = nil
			if !lost {
				lost = true
				writeMsg(c, reply{V: protoVersion, Lost: "the agent is stepping down"})
			}
		case <-feed.C():
			for _, st := range feed.next() {
				if lost {
					break
				}
				if m, news := leaseNews(st, ast.Token, last); news {
					lost, last = m.Lost != "", st.Deadline
					m.V = protoVersion
					writeMsg(c, m)
				}
			}
		}
	}
}

// checkJobGroup makes sure pgid is a process group the asking process
// created for its job: the agent will signal it, and must not be talked
// into signalling anyone else's.
func checkJobGroup(pgid, peerPID, peerUID int) error {
	if pgid <= 1 {
		return fmt.Errorf("bad process group %d", pgid)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pgid))
	if err != nil {
		return fmt.Errorf("job process %d: %w", pgid, err)
	}
	// Fields after the parenthesised command: state ppid pgrp ...
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 3 {
		return fmt.Errorf("job process %d: unreadable /proc stat", pgid)
	}
	ppid, _ := strconv.Atoi(f[1])
	pgrp, _ := strconv.Atoi(f[2])
	if ppid != peerPID || pgrp != pgid {
		return fmt.Errorf("process %d is not a process group of the caller", pgid)
	}
	fi, err := os.Stat(fmt.Sprintf("/proc/%d", pgid))
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != peerUID {
		return fmt.Errorf("process %d belongs to another user", pgid)
	}
	return nil
}

// ensureJob creates the job's runs parent once per agent lifetime.
func (a *agent) ensureJob(job string) error {
	a.mu.Lock()
	seen := a.jobsSeen[job]
	a.mu.Unlock()
	if seen {
		return nil
	}
	if err := a.zc.ensurePath(a.zc.snapshot().Conn, jobPath(a.root, job)+"/runs"); err != nil {
		return err
	}
	a.mu.Lock()
	a.jobsSeen[job] = true
	a.mu.Unlock()
	return nil
}

func (a *agent) untrack(run *admittedRun) {
	a.mu.Lock()
	delete(a.runs, run)
	a.mu.Unlock()
}

// wrapperGone hands a run whose wrapper disappeared to the enforcer alone.
func (a *agent) wrapperGone(run *admittedRun) {
	a.mu.Lock()
	run.wrapperGone = true
	a.mu.Unlock()
	a.log.Warn("the wrapper of a running job is gone; the agent keeps its process group inside the lease", "job", run.adm.job, "pgid", run.pgid)
}

// finish records the end of a run and prunes the job's history. The
// process group stays tracked until it is empty: background children of a
// job live under the same lease.
func (a *agent) finish(run *admittedRun, code *int, result string) {
	a.mu.Lock()
	run.reported = true
	a.mu.Unlock()
	conn := a.zc.snapshot().Conn
	if err := finishRecord(conn, run.adm, run.record, code, result); err != nil {
		a.log.Warn("run record", "record", run.record, "err", err)
	}
	status := "ok"
	if result != resultOK {
		status = "fail"
	}
	a.log.Info("run", "cluster", a.g.Cluster, "state", "active", "status", status, "job", run.adm.job, "slot", run.adm.slot, "result", result, "token", run.adm.rec.Token)
	a.metrics.runs.WithLabelValues(run.adm.job, result).Inc()
	a.metrics.runDuration.WithLabelValues(run.adm.job).Observe(time.Since(run.start).Seconds())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pruneRuns(ctx, conn, run.adm.runsPath(), a.g.History); err != nil {
		a.log.Warn("pruning run records", "job", run.adm.job, "err", err)
	}
}

// enforceTick is how often the agent checks its jobs against the lease.
const enforceTick = 20 * time.Millisecond

// enforce keeps every tracked process group inside the lease. A wrapper
// that is alive does the terminating itself (it tells the job's exit
// code); the agent then only sends SIGKILL as a backstop, half a margin
// after the grace. Groups without a wrapper get the whole treatment.
func (a *agent) enforce(ctx context.Context) {
	t := time.NewTicker(enforceTick)
	defer t.Stop()
	// systemd's watchdog is fed from here, the loop that keeps jobs inside
	// the lease: if it hangs, systemd restarts the agent.
	watchdog, _ := daemon.SdWatchdogEnabled(false)
	var fed time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if watchdog > 0 && now.Sub(fed) >= watchdog/3 {
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			fed = now
		}
		st := a.el.Status()
		a.mu.Lock()
		revoked := a.revoked != ""
		runs := make([]*admittedRun, 0, len(a.runs))
		for r := range a.runs {
			runs = append(runs, r)
		}
		a.mu.Unlock()
		active := st.active(now) && !revoked
		for _, r := range runs {
			a.enforceRun(r, now, active, st)
		}
	}
}

func (a *agent) enforceRun(r *admittedRun, now time.Time, active bool, st status) {
	a.mu.Lock()
	gone, reported := r.wrapperGone, r.reported
	a.mu.Unlock()
	// EPERM still means someone is in the group.
	alive := !errors.Is(syscall.Kill(-r.pgid, 0), syscall.ESRCH)
	if !alive {
		if gone || reported {
			if !reported {
				result := resultKilled
				if r.termSent || r.killSent {
					result = resultLost
				}
				// Off the enforcer's loop: a ZooKeeper write may hang.
				go a.finish(r, nil, result)
			}
			a.untrack(r)
		}
		return
	}
	if active && r.adm.rec.Token == st.Token {
		return
	}
	if r.stopAt.IsZero() {
		r.stopAt = now
	}
	if gone || reported {
		if !r.termSent {
			r.termSent = true
			a.log.Warn("lease over: terminating a job whose wrapper is gone", "job", r.adm.job, "pgid", r.pgid)
			syscall.Kill(-r.pgid, syscall.SIGTERM)
		}
		if !r.killSent && now.Sub(r.stopAt) >= r.grace {
			r.killSent = true
			syscall.Kill(-r.pgid, syscall.SIGKILL)
		}
		return
	}
	if !r.killSent && now.Sub(r.stopAt) >= r.grace+killMargin(st.Timeout)/2 {
		r.killSent = true
		a.log.Warn("lease over and the job still runs after its grace: SIGKILL", "job", r.adm.job, "pgid", r.pgid)
		syscall.Kill(-r.pgid, syscall.SIGKILL)
	}
}
