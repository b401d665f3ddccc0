package main

// hacron agent: joins the election, serves the local socket, writes the
// state file, and keeps every job it admitted inside its lease: it holds
// each job's process group (and cgroup, where it can make one), so a job
// whose `hacron run` died is still terminated when the lease ends, and it
// keeps a run-state file per run, so that the next agent on this node ends
// what a dead agent left.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/go-zookeeper/zk"

	"hacron/internal/contain"
	"hacron/internal/lease"
	"hacron/internal/wire"
)

type agentCmd struct {
	StateFile string `name:"state-file" placeholder:"PATH" help:"Write active or passive here on every change (rcron's state file; hacron never reads it)."`
	Detach    bool   `name:"detach" help:"Run in the background; exit 0 at once if an agent of this cluster already runs here."`
	PIDFile   string `name:"pid-file" placeholder:"PATH" help:"Pid file, locked while the agent runs (default: the socket path with .pid)."`
	Metrics   string `name:"metrics-listen" placeholder:"ADDR" help:"Serve Prometheus metrics on ADDR (host:port) at /metrics."`
	Crontab   string `name:"crontab" placeholder:"PATH" help:"Fire this crontab's jobs while active: a file, or a directory of files as /etc/cron.d has them, without the user field (docs in hacron(1))."`
	LogFile   string `name:"log-file" placeholder:"PATH" help:"Log to this file (appended). A --detach'ed agent without /dev/log logs to /var/log/hacron/<cluster>.log."`
}

// defaultLogDir holds a detached agent's log when there is no syslog.
const defaultLogDir = "/var/log/hacron"

// admittedRun is a job the agent let run (or is letting run: it is
// tracked from just before the admission write).
type admittedRun struct {
	id    string // names its cgroup and run-state file
	pgid  int
	token int64 // the fencing token it is admitted under
	start time.Time
	// run holds the job's processes: its group, by the leader's pidfd, and
	// its cgroup. Set before the run is tracked, never changed after.
	run *contain.Run
	// Set by hold, before the run is tracked.
	stateWritten bool            // its run-state file exists
	revokeCh     <-chan struct{} // closed when the agent steps down

	// Guarded by agent.mu.
	t           *ticket // nil until the admission write succeeded
	wrapperGone bool
	reported    bool // the wrapper sent the exit status

	// Owned by the enforcer.
	stopAt     time.Time // when the lease was seen over for this run
	termSent   bool
	killSent   bool
	straysSent bool // SIGTERM to what left the group, while the wrapper ends the group
}

type agent struct {
	g         *globals
	log       *slog.Logger
	zc        *zkClient
	el        *election
	root      string
	stateFile string

	adm       *admitter
	history   atomic.Int64 // run records kept per job; changes on SIGHUP
	noSession atomic.Int64 // since when there is no usable session (unix ns); 0: there is one

	// Containment: where runs get their cgroups (hier, scope) and where
	// their run-state files go.
	hier     *contain.Hierarchy
	scope    string
	stateDir string

	mu       sync.Mutex
	runs     map[*admittedRun]struct{}
	open     map[string]bool // records this agent will complete
	revoked  string          // non-empty: jobs must stop (resign, shutdown)
	draining string          // non-empty: no new run, running ones may finish
	revokeCh chan struct{}   // closed when revoked is set
	metrics  *metrics
	sched    *scheduler // nil without --crontab

	// life ends when the agent has stopped: record completions still
	// retrying then give up (the next agent completes them as unknown).
	life context.Context
}

func (a *agentCmd) Run(ctx context.Context, g *globals, cfg *config, reload reloadFunc) error {
	target := logTarget{w: os.Stderr}
	if a.LogFile != "" {
		f, err := openLogFile(a.LogFile)
		if err != nil {
			return err
		}
		// Each record is written as it comes: closing loses nothing.
		defer func() { _ = f.Close() }()
		target.w = f
	}
	h, err := newHandler(g, slog.LevelInfo, target)
	if err != nil {
		return err
	}
	live := newLiveHandler(h)
	log := slog.New(live)
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
		_ = pidFile.Close() // only its lock, which the child takes again
		return detach(g, a)
	}
	defer func() {
		// Best effort: a pid file left behind is unlocked, and the next
		// agent takes it.
		_ = os.Remove(pidPath)
		_ = pidFile.Close()
	}()
	if v, ok := cfg.ignoredActive(); ok {
		log.Warn("default_state = active is ignored: hacron has no state to fall back to and fails closed", "at", fmt.Sprintf("%s:%d", v.path, v.line))
	}
	return runAgent(ctx, g, log, live, a, reload)
}

// openLogFile opens a log file for appending, making its directory.
func openLogFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("--log-file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("--log-file: %w", err)
	}
	return f, nil
}

var errAgentRunning = errors.New("an agent already runs")

// lockPIDFile takes the pid file's lock, held until the file is closed.
func lockPIDFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close() // nothing written
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errAgentRunning
		}
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	if _, err := fmt.Fprintf(f, "%d\n", os.Getpid()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("pid file %s: %w", path, err)
	}
	return f, nil
}

// detach starts this agent again in the background, in its own session,
// with the same options but --detach. Its log must not go to /dev/null:
// syslog when the host has a syslog daemon, else a log file.
func detach(g *globals, opts *agentCmd) error {
	var args []string
	for _, a := range os.Args[1:] {
		if a != "--detach" && a != "--detach=true" {
			args = append(args, a)
		}
	}
	if !g.Syslog && opts.LogFile == "" {
		if _, err := os.Stat("/dev/log"); err == nil {
			args = append([]string{"--syslog"}, args...)
		} else {
			args = append(args, "--log-file", filepath.Join(defaultLogDir, g.Cluster+".log"))
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
	defer func() { _ = devnull.Close() }() // the child has its own copies
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

func runAgent(ctx context.Context, g *globals, log *slog.Logger, live *liveHandler, opts *agentCmd, reload reloadFunc) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(agentMemoryLimit)
	}
	hier, scope, stateDir, previous := cleanSlate(g, log, opts)
	// ZooKeeper unreachable is no reason to exit: the agent stays, says
	// unknown, and joins when ZooKeeper answers. Only a bad configuration
	// (auth file, TLS, connect string) ends it here.
	zc, err := newZKClient(g.zkConfig(), log)
	if err != nil {
		return err
	}
	if err := zc.open(); err != nil {
		return err
	}
	defer zc.Close()
	life, endLife := context.WithCancel(context.Background())
	defer endLife()
	a := newAgent(life, g, log, zc, opts)
	a.hier, a.scope, a.stateDir = hier, scope, stateDir
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
	ln, err := listenSocket(g)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(g.Socket) }() // best effort: the next agent removes it

	if opts.Crontab != "" {
		a.sched = newScheduler(a, opts.Crontab)
		go a.sched.run(life)
	}
	stopHelpers := a.startHelpers()
	go a.completeLeftoversPerTerm(life)
	go a.metrics.watchMissed(life, a.el, a.zc, a.root, a.log)
	go a.watchSession(life)
	go a.accept(ln)
	log.Info("agent started", "cluster", g.Cluster, "node", g.Node, "socket", g.Socket, "version", version)
	// systemd (Type=notify): ready now; without NOTIFY_SOCKET a no-op.
	daemon.SdNotify(false, daemon.SdNotifyReady)

	elCtx, stopElection := context.WithCancel(context.Background())
	elDone := make(chan struct{})
	fatal := make(chan error, 1)
	go func() {
		defer close(elDone)
		if err := a.join(elCtx, previous); err != nil {
			fatal <- err
		}
	}()
	exitErr := a.serveUntilStopped(ctx, fatal, reload, live, opts)

	// Graceful stop (docs/zookeeper-rules.md, rule 11): no new job, running
	// jobs end as on a lease loss, then the node goes and the session
	// closes, so the standby takes over at once.
	log.Info("agent stopping")
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	ln.Close()
	a.revoke("agent stopping")
	a.waitJobsGone(lease.MaxKillGrace(a.el.Status().Timeout) + 2*time.Second)
	// Records of runs that ended just now get a moment to be written.
	a.waitRecords(2 * time.Second)
	stopElection()
	<-elDone
	zc.Close()
	stopHelpers()
	a.leaveScope()
	if err := a.writeStateFile("passive"); err != nil {
		log.Warn("state file", "err", err)
	}
	log.Info("agent stopped")
	return exitErr
}

// cleanSlate runs before anything else, long before the election: the
// state file says passive (a file that says active after an unclean end,
// SIGKILL or the OOM killer, must not outlive it), and what a previous
// agent of this node left running is ended, so that a job whose wrapper
// and agent both died never runs beside the standby's. The runs it ended
// are returned, for their records.
func cleanSlate(g *globals, log *slog.Logger, opts *agentCmd) (*contain.Hierarchy, string, string, []contain.RunState) {
	early := &agent{stateFile: opts.StateFile}
	if err := early.writeStateFile("passive"); err != nil {
		log.Warn("state file", "err", err)
	}
	hier := detectContainment()
	log.Info("containment", "kind", hier.Kind, "reason", hier.Reason)
	scope, stateDir := agentScope(g.Cluster, g.Socket), runStateDir(g.Socket)
	previous, ended, err := contain.EndPrevious(hier, scope, stateDir,
		lease.KillMargin(g.SessionTimeout), leftoverWait)
	if ended > 0 {
		log.Warn("ended the runs a previous agent left running", "runs", len(previous), "processes", ended)
	}
	if err != nil {
		log.Warn("ending the runs a previous agent left", "err", err)
	}
	return hier, scope, stateDir, previous
}

// newAgent builds the agent: its election, admitter and metrics.
func newAgent(life context.Context, g *globals, log *slog.Logger, zc *zkClient, opts *agentCmd) *agent {
	root := g.clusterRoot()
	a := &agent{
		g: g, log: log, zc: zc, root: root, stateFile: opts.StateFile,
		runs:     map[*admittedRun]struct{}{},
		open:     map[string]bool{},
		revokeCh: make(chan struct{}),
		life:     life,
	}
	a.history.Store(int64(g.History))
	a.el = newElection(zc, electionConfig{Parent: root + "/election", ID: g.Node, Version: version}, log)
	a.adm = newAdmitter(a.el, zc, root, g.Node, log)
	a.metrics = newMetrics(a.el.Status, zc.snapshot, func() time.Time {
		if ns := a.noSession.Load(); ns != 0 {
			return time.Unix(0, ns)
		}
		return time.Time{}
	})
	a.adm.onGate = func(d time.Duration) { a.metrics.admission.Observe(d.Seconds()) }
	a.adm.background = life
	return a
}

// listenSocket opens the agent's socket, mode 0660, for the socket group.
func listenSocket(g *globals) (*net.UnixListener, error) {
	// Stale: the pid file lock says no agent of ours uses it. One that
	// cannot be removed fails the listen.
	_ = os.Remove(g.Socket)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: g.Socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("agent socket: %w", err)
	}
	fail := func(err error) (*net.UnixListener, error) {
		ln.Close()
		return nil, err
	}
	if err := os.Chmod(g.Socket, 0o660); err != nil {
		return fail(fmt.Errorf("agent socket: %w", err))
	}
	if g.SocketGroup != "" {
		grp, err := user.LookupGroup(g.SocketGroup)
		if err == nil {
			gid, _ := strconv.Atoi(grp.Gid)
			err = os.Chown(g.Socket, os.Getuid(), gid)
		}
		if err != nil {
			return fail(fmt.Errorf("--socket-group %s: %w", g.SocketGroup, err))
		}
	}
	return ln, nil
}

// startHelpers starts the state file's writer and the enforcer; the
// function returned stops both and waits for them.
func (a *agent) startHelpers() func() {
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
	return func() {
		stopEnforcer()
		<-enfDone
		stopState()
		<-stateDone
	}
}

// join enters the election once ZooKeeper has answered and the cluster's
// mode is this one, and campaigns until ctx ends. The records of the runs
// a previous agent left are completed first, unless ZooKeeper takes longer
// than T to answer: then in the background.
func (a *agent) join(ctx context.Context, previous []contain.RunState) error {
	if err := a.claimModeWhenReachable(ctx); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(a.life, a.zc.cfg.SessionTimeout)
	rest := a.completePrevious(pctx, previous)
	cancel()
	if len(rest) > 0 {
		go a.completePrevious(a.life, rest)
	}
	if err := a.el.Run(ctx); err != nil {
		a.log.Error("election stopped", "err", err)
	}
	return nil
}

// serveUntilStopped waits for the end (a signal, or a configuration error
// found on joining) and reloads on SIGHUP meanwhile.
func (a *agent) serveUntilStopped(ctx context.Context, fatal <-chan error, reload reloadFunc, live *liveHandler, opts *agentCmd) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-fatal:
			a.log.Error("cannot join the election", "err", err)
			return err
		case <-hup:
			a.reload(reload, live, opts)
		}
	}
}

// leaveScope removes the agent's cgroup scope when every run is over; a run
// that would not end keeps it for the next agent.
func (a *agent) leaveScope() {
	a.mu.Lock()
	left := len(a.runs)
	a.mu.Unlock()
	if left == 0 {
		if err := a.hier.RemoveScope(a.scope); err != nil {
			a.log.Warn("cgroup scope", "err", err)
		}
	}
}

// claimMode records the cluster's mode once and refuses the other mode.
func claimMode(zc *zkClient, root, mode string) error {
	s := zc.snapshot()
	if err := zc.ensureCluster(s.Conn); err != nil {
		return err
	}
	_, err := s.Conn.Create(zc.abs(root+"/mode"), []byte(mode), 0, zc.acl)
	if err == nil || !errors.Is(err, zk.ErrNodeExists) {
		return noAuth(err, "create "+zc.abs(root+"/mode"), zc.abs(root))
	}
	data, _, err := s.Conn.Get(zc.abs(root + "/mode"))
	if err != nil {
		return noAuth(err, "read "+zc.abs(root+"/mode"), zc.abs(root+"/mode"))
	}
	if got := string(data); got != mode {
		return withHint(fmt.Errorf("cluster %s is in %s mode, not %s", filepath.Base(root), got, mode),
			"a cluster uses one mode; use the other cluster name or the cluster's mode")
	}
	return nil
}

// claimModeWhenReachable waits for ZooKeeper as long as it takes, then
// records or checks the cluster's mode. A mode or permission problem is
// for the operator and ends the agent; an outage is waited out.
func (a *agent) claimModeWhenReachable(ctx context.Context) error {
	for {
		if _, err := a.zc.waitUsable(ctx); err != nil {
			return nil // stopping
		}
		err := claimMode(a.zc, a.root, "agent")
		if err == nil {
			return nil
		}
		if !unknown(err) && !errors.Is(err, zk.ErrSessionExpired) && !errors.Is(err, zk.ErrClosing) {
			return err
		}
		if !sleepCtx(ctx, time.Second) {
			return nil
		}
	}
}

// sessionWarnEvery rate-limits the warning that runs are being skipped for
// want of a ZooKeeper session.
const sessionWarnEvery = 30 * time.Second

// watchSession says in the log when the ZooKeeper session goes and comes
// back, and every sessionWarnEvery while there is none: a passive agent
// that skips every run must not be silent about it.
func (a *agent) watchSession(ctx context.Context) {
	usable := true
	var since time.Time
	for {
		s := a.zc.snapshot()
		switch {
		case s.Usable() && !usable:
			a.log.Info("ZooKeeper session established", "after", time.Since(since).Round(time.Millisecond).String())
			usable = true
			a.noSession.Store(0)
		case !s.Usable() && usable:
			usable, since = false, time.Now()
			a.noSession.Store(since.UnixNano())
			a.log.Warn("no ZooKeeper session: runs are skipped until there is one", "servers", a.g.ZK, "last_error", a.zc.lastError())
		}
		var tick <-chan time.Time
		if !usable {
			tick = time.After(sessionWarnEvery)
		}
		select {
		case <-s.Changed:
		case <-tick:
			a.log.Warn("still no ZooKeeper session: runs are skipped", "for", time.Since(since).Round(time.Second).String(), "servers", a.g.ZK, "last_error", a.zc.lastError())
		case <-ctx.Done():
			return
		}
	}
}

// reload re-reads the configuration on SIGHUP and applies what can change
// while the agent runs; it never steps down. Changed settings that need a
// restart are named in a warning.
func (a *agent) reload(reload reloadFunc, live *liveHandler, opts *agentCmd) {
	c, err := reload()
	if err != nil {
		a.log.Warn("reload: the configuration has an error; nothing changed", "err", err)
		return
	}
	ng, old := c.globals, *a.g
	h, err := newHandler(&ng, slog.LevelInfo, a.logTarget(opts))
	if err != nil {
		a.log.Warn("reload: nothing changed", "err", err)
		return
	}
	live.set(h)
	a.history.Store(int64(ng.History))
	if a.sched != nil {
		a.sched.Reload()
	}
	var restart []string
	for _, d := range []struct {
		key     string
		changed bool
	}{
		{"zk", ng.ZK != old.ZK}, {"cluster", ng.Cluster != old.Cluster}, {"node", ng.Node != old.Node},
		{"session_timeout", ng.SessionTimeout != old.SessionTimeout}, {"socket", ng.Socket != old.Socket},
		{"socket_group", ng.SocketGroup != old.SocketGroup}, {"mode", ng.Direct != old.Direct},
		{"zk_auth_file", ng.ZKAuthFile != old.ZKAuthFile}, {"zk_world_read", ng.ZKWorldRead != old.ZKWorldRead},
		{"zk_tls_ca", ng.ZKTLSCA != old.ZKTLSCA}, {"zk_tls_cert", ng.ZKTLSCert != old.ZKTLSCert}, {"zk_tls_key", ng.ZKTLSKey != old.ZKTLSKey},
		{"state_file", c.Agent.StateFile != opts.StateFile}, {"pid_file", c.Agent.PIDFile != opts.PIDFile},
		{"metrics_listen", c.Agent.Metrics != opts.Metrics}, {"crontab", c.Agent.Crontab != opts.Crontab},
	} {
		if d.changed {
			restart = append(restart, d.key)
		}
	}
	a.log.Info("configuration reloaded", "log_level", ng.LogLevel, "log_format", ng.LogFormat, "syslog", ng.Syslog, "history", ng.History)
	if len(restart) > 0 {
		a.log.Warn("reload: these settings changed but take effect only after a restart (systemctl restart hacron-agent: a failover)", "keys", strings.Join(restart, ","))
	}
}

// logTarget is where the agent logs when not to syslog.
func (a *agent) logTarget(opts *agentCmd) logTarget {
	if opts.LogFile != "" {
		if f, err := openLogFile(opts.LogFile); err == nil {
			return logTarget{w: f}
		}
	}
	return logTarget{w: os.Stderr}
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

// setDraining stops admissions without ending running jobs.
func (a *agent) setDraining(reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.draining = reason
}

// unrevoke admits again (after a resignation's step-down).
func (a *agent) unrevoke() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.draining = ""
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
	// Gone once renamed; otherwise best effort.
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.WriteString(s + "\n"); err != nil {
		_ = tmp.Close() // the write's error is the one to report
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close() // the chmod's error is the one to report
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
	uid, _, err := wire.PeerCred(c)
	if err != nil {
		a.log.Warn("peer credentials", "err", err)
		return
	}
	r := bufio.NewReaderSize(c, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var req wire.Request
	if err := wire.Read(r, &req); err != nil {
		wire.Write(c, wire.Reply{V: wire.Version, Error: "bad request: " + err.Error(), Code: exitUsage})
		return
	}
	c.SetReadDeadline(time.Time{})
	switch req.Op {
	case "state":
		info := a.stateInfo()
		wire.Write(c, wire.Reply{V: wire.Version, State: &info})
	case "resign":
		a.resign(c, uid, req)
	case "rejoin":
		a.rejoin(c, uid)
	case "start":
		a.serveStart(c, r, uid, req)
	case "run":
		a.serveRun(c, r, uid, req)
	default:
		wire.Write(c, wire.Reply{V: wire.Version, Error: fmt.Sprintf("unknown request %q", req.Op), Code: exitUsage})
	}
}

// stateInfo answers `hacron state`. Fail closed: no session is unknown,
// a lapsed lease is passive.
func (a *agent) stateInfo() wire.StateInfo {
	now := time.Now()
	st := a.el.Status()
	s := a.zc.snapshot()
	info := wire.StateInfo{
		Cluster:   a.g.Cluster,
		Node:      a.g.Node,
		State:     "passive",
		Reason:    st.why(),
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

func (a *agent) resign(c *net.UnixConn, uid int, req wire.Request) {
	fail := func(msg string, hints ...string) {
		wire.Write(c, wire.Reply{V: wire.Version, Error: msg, Hints: hints, Code: exitUsage})
	}
	if uid != 0 && uid != os.Getuid() {
		fail(fmt.Sprintf("permission denied: only root or the agent's user (uid %d) may resign", os.Getuid()))
		return
	}
	hold := time.Duration(req.HoldMS) * time.Millisecond
	drain := time.Duration(req.DrainMS) * time.Millisecond
	if hold < 0 || drain < 0 {
		fail("resign: --hold and --drain must not be negative")
		return
	}
	if held, until := a.el.Holding(); held {
		// Already out: the new hold replaces the old one.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if a.el.Resign(ctx, hold) != nil {
			fail("resign: the election did not take the new hold; try again")
			return
		}
		note := fmt.Sprintf("already out of the election (%s); the hold now ends in %v", until, hold)
		if hold == 0 {
			note = "was out of the election (" + until + "); rejoined now"
		}
		wire.Write(c, wire.Reply{V: wire.Version, OK: true, Note: note})
		return
	}
	if !a.zc.snapshot().Usable() {
		fail("resign: no ZooKeeper session, so this node holds nothing to resign",
			"the node is not active while it has no session; `hacron state --json` says why")
		return
	}
	a.log.Info("resigning", "hold", hold.String(), "drain", drain.String(), "uid", uid)
	if drain > 0 {
		// No new run; the running ones may end by themselves.
		a.setDraining("draining before a resign")
		waitUntil(drain, func() bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			return len(a.runs) == 0
		})
	}
	a.revoke("resigning")
	a.waitJobsGone(lease.MaxKillGrace(a.el.Status().Timeout) + 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := a.el.Resign(ctx, hold)
	cancel()
	if err == nil {
		waitUntil(time.Second, func() bool { return a.el.Status().State != stateActive })
	}
	a.unrevoke()
	if err != nil {
		fail("resign: the election did not answer within 5s; nothing changed", "try again; `hacron state --json` shows the election's state")
		return
	}
	wire.Write(c, wire.Reply{V: wire.Version, OK: true})
}

// rejoin ends a resignation's hold early.
func (a *agent) rejoin(c *net.UnixConn, uid int) {
	if uid != 0 && uid != os.Getuid() {
		wire.Write(c, wire.Reply{V: wire.Version, Error: fmt.Sprintf("permission denied: only root or the agent's user (uid %d) may rejoin", os.Getuid()), Code: exitUsage})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.el.Rejoin(ctx); err != nil {
		wire.Write(c, wire.Reply{V: wire.Version, Error: err.Error(), Code: exitUsage})
		return
	}
	a.log.Info("rejoining the election", "uid", uid)
	wire.Write(c, wire.Reply{V: wire.Version, OK: true})
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

// serveStart is a run's first step: a run this node would skip anyway is
// skipped before any process of the job exists (on a passive node, every
// crontab line); otherwise the wrapper creates the job's process group now,
// and the run goes on as one asked with it. Nothing is written before the
// group is known, so an admitted job is always in a group the agent holds.
func (a *agent) serveStart(c *net.UnixConn, r *bufio.Reader, uid int, req wire.Request) {
	if req.PGID != 0 {
		wire.Write(c, wire.Reply{V: wire.Version, Error: "bad request: pgid before the group was asked for", Code: exitUsage})
		return
	}
	if _, err := jobName(req.Job, uid); err != nil {
		a.refuse(c, err)
		return
	}
	if reason := a.adm.skipAtOnce(time.Duration(req.WaitMS) * time.Millisecond); reason != "" {
		a.skipRun(c, req, reason)
		return
	}
	if wire.Write(c, wire.Reply{V: wire.Version, Group: true}) != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var next wire.Request
	if err := wire.Read(r, &next); err != nil || next.Op != "group" {
		// A wrapper that went away here leaves nothing: no group, no record.
		if err == nil {
			wire.Write(c, wire.Reply{V: wire.Version, Error: fmt.Sprintf("bad request: %q where the group was expected", next.Op), Code: exitUsage})
		}
		return
	}
	c.SetReadDeadline(time.Time{})
	req.PGID = next.PGID
	a.serveRun(c, r, uid, req)
}

// refuse answers a run request with an error, its code and hints.
func (a *agent) refuse(c *net.UnixConn, err error) {
	wire.Write(c, wire.Reply{V: wire.Version, Error: err.Error(), Code: exitCodeOf(err, exitUsage), Hints: hintsOf(err)})
}

// skipRun answers a run request with a skip, and logs it.
func (a *agent) skipRun(c *net.UnixConn, req wire.Request, reason string) {
	if reason == skipPassive && !a.zc.snapshot().Usable() {
		reason = skipNoSession
	}
	a.log.Info("run", "cluster", a.g.Cluster, "state", "passive", "status", "ignore", "job", req.Job, "slot", req.Slot, "reason", reason, "cmd", joinArgs(req.Argv))
	wire.Write(c, wire.Reply{V: wire.Version, Skip: reason})
}

// serveRun translates one run between the socket and the admission: the
// request in, the decision out, then the lease's news until the wrapper
// reports the end.
func (a *agent) serveRun(c *net.UnixConn, r *bufio.Reader, uid int, req wire.Request) {
	job, err := jobName(req.Job, uid)
	if err != nil {
		a.refuse(c, err)
		return
	}
	grp, err := holdJobGroup(c, req.PGID, uid)
	if err != nil {
		a.refuse(c, err)
		return
	}
	// One reader for the whole conversation. Before the admission nothing
	// is expected: end of input means the wrapper went away, and a --wait
	// for it is abandoned without claiming anything.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fromWrapper := make(chan wire.Request, 1)
	go func() {
		defer close(fromWrapper)
		defer cancel()
		var m wire.Request
		if wire.Read(r, &m) == nil && m.Op == "exit" {
			fromWrapper <- m
		}
	}()
	run := &admittedRun{id: newRunID(), pgid: req.PGID, start: time.Now(), run: contain.NewRun(grp, nil)}
	wait := time.Duration(req.WaitMS) * time.Millisecond
	t, reason, err := a.adm.admit(ctx, runRequest{
		job: job, slot: req.Slot, schedule: req.Schedule, claim: req.Claim, noOverlap: req.NoOverlap,
		wait: wait, limit: wait,
		killGrace: time.Duration(req.KillGraceMS) * time.Millisecond, killGraceSet: req.KillGraceSet,
		uid: uid, cmd: recordCmd(req.Argv), pgid: req.PGID, containment: a.hier.Kind,
		hold: func(token int64, record string) (func(), string, error) {
			return a.hold(run, grp, job, token, record)
		},
	})
	if err != nil || reason != "" {
		if err != nil {
			a.refuse(c, err)
		} else {
			a.skipRun(c, req, reason)
		}
		// After the answer: the wrapper need not wait for this.
		a.drop(run, run.stateWritten)
		return
	}
	a.mu.Lock()
	run.t = t
	a.open[t.record] = true
	a.mu.Unlock()
	a.log.Info("run", "cluster", a.g.Cluster, "state", "active", "status", "start", "job", t.adm.job, "slot", t.adm.slot, "token", t.token, "record", t.record,
		"containment", run.run.Containment(), "cmd", joinArgs(req.Argv))

	a.converse(c, run, t, fromWrapper, run.revokeCh)
}

// hold is the admission's last step before its write: the job's group is
// still there (after a long --wait), it gets its cgroup and its run-state
// file (an agent that dies from here on leaves the run to the next agent
// of this node), and it is tracked, unless the agent is stepping down or
// draining.
func (a *agent) hold(run *admittedRun, grp *contain.Group, job string, token int64, record string) (func(), string, error) {
	if !grp.Leader().Alive() {
		return nil, "the job's process is gone", nil
	}
	cr, err := enclose(a.hier, a.scope, run.id, grp)
	if err != nil {
		return nil, "", fmt.Errorf("the job's cgroup: %w", err)
	}
	run.run = cr
	if err := contain.WriteState(a.stateDir, cr.State(run.id, job, record)); err != nil {
		return nil, "", fmt.Errorf("run state: %w", err)
	}
	run.stateWritten = true
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.revoked != "" {
		return nil, a.revoked, nil
	}
	if a.draining != "" {
		return nil, a.draining, nil
	}
	run.token = token
	run.revokeCh = a.revokeCh
	a.runs[run] = struct{}{}
	return func() { a.untrack(run) }, "", nil
}

// converse keeps the wrapper of an admitted run informed: the admission,
// then the lease's news (translated to the socket's messages here, at the
// edge), until the wrapper reports the end or goes away.
func (a *agent) converse(c *net.UnixConn, run *admittedRun, t *ticket, fromWrapper <-chan wire.Request, revokeCh <-chan struct{}) {
	news := make(chan leaseNews, 16)
	done := make(chan struct{})
	defer close(done)
	go followLease(a.el, t, news, done)
	if err := wire.Write(c, wire.Reply{V: wire.Version, Admitted: true, Token: t.token, Job: t.adm.job, Slot: t.adm.slot,
		Node: a.g.Node, Cluster: a.g.Cluster, Run: t.record, KillGraceMS: t.grace.Milliseconds(), DeadlineMono: wire.MonoDeadline(t.deadline)}); err != nil {
		a.wrapperGone(run)
		return
	}
	lost := false
	for {
		select {
		case m, ok := <-fromWrapper:
			if !ok {
				a.wrapperGone(run)
				return
			}
			// The job's main process has exited and the wrapper has
			// ended what was left of its group; what left the group
			// (in the run's cgroup) ends now, before the end is
			// acknowledged: the wrapper exits once nothing of the run
			// is left. Then the acknowledgement: during a partition the
			// record's write waits for ZooKeeper, and the wrapper must
			// not.
			a.endLeftovers(run, t.grace)
			wire.Write(c, wire.Reply{V: wire.Version, OK: true})
			a.finish(run, &m.ExitCode, m.Result)
			return
		case <-revokeCh:
			revokeCh = nil
			if !lost {
				lost = true
				wire.Write(c, wire.Reply{V: wire.Version, Lost: "the agent is stepping down"})
			}
		case n := <-news:
			if lost {
				continue
			}
			switch n.kind {
			case newsLost:
				lost = true
				wire.Write(c, wire.Reply{V: wire.Version, Lost: n.why})
			default:
				// A disconnect changes nothing for the wrapper: the
				// deadline it has stands until a renewal moves it.
				wire.Write(c, wire.Reply{V: wire.Version, DeadlineMono: wire.MonoDeadline(n.deadline)})
			}
		}
	}
}

// holdJobGroup holds the job's process group by its leader's pidfd, once
// it has made sure the group is one the asking process (held by pidfd too,
// so that neither pid can be another process's by the time of the check)
// created for its job and owns: the agent will signal that group, and must
// not be talked into signalling anyone else's.
func holdJobGroup(c *net.UnixConn, pgid, uid int) (*contain.Group, error) {
	if pgid <= 1 {
		return nil, fmt.Errorf("bad process group %d", pgid)
	}
	peer, err := contain.OpenPeer(c)
	if err != nil {
		return nil, fmt.Errorf("the asking process: %w", err)
	}
	defer peer.Close()
	g, err := contain.OpenGroup(pgid)
	if err != nil {
		return nil, fmt.Errorf("job process %d: %w", pgid, err)
	}
	err = checkJobGroup(pgid, peer.Pid(), uid)
	if err == nil && (!peer.Alive() || !g.Leader().Alive()) {
		err = fmt.Errorf("job process %d: %w", pgid, contain.ErrGone)
	}
	if err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// endLeftovers ends what is left of a run whose main process has exited:
// SIGTERM, the grace, SIGKILL; and says how many processes it had to end.
func (a *agent) endLeftovers(run *admittedRun, grace time.Duration) {
	n, err := run.run.Terminate(grace, leftoverWait)
	if n > 0 {
		a.log.Warn("the job left processes behind; ended them", "job", run.t.adm.job, "slot", run.t.adm.slot,
			"processes", n, "containment", run.run.Containment())
	}
	if err != nil {
		a.log.Error("processes of an ended job are left", "job", run.t.adm.job, "pgid", run.pgid, "err", err)
	}
}

// drop undoes a run that was not admitted: its first process, which never
// got the go-ahead, its cgroup and its run-state file.
func (a *agent) drop(run *admittedRun, stateWritten bool) {
	if err := dropRun(run.run); err != nil {
		a.log.Warn("the cgroup of a run that did not start", "err", err)
	}
	if stateWritten {
		if err := contain.RemoveState(a.stateDir, run.id); err != nil {
			a.log.Warn("run state", "err", err)
		}
	}
}

// forget lets go of a run that is over, all of its processes gone: its
// cgroup, its run-state file and its pidfd.
func (a *agent) forget(run *admittedRun) {
	if err := run.run.Remove(); err != nil {
		a.log.Warn("the cgroup of an ended run", "pgid", run.pgid, "err", err)
	}
	if err := contain.RemoveState(a.stateDir, run.id); err != nil {
		a.log.Warn("run state", "err", err)
	}
	run.run.Close()
}

// checkJobGroup makes sure pgid is a process group that process peerPID
// created and user peerUID owns.
func checkJobGroup(pgid, peerPID, peerUID int) error {
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
	a.log.Warn("the wrapper of a running job is gone; the agent keeps the job inside the lease", "pgid", run.pgid)
}

// finish records the end of a run and prunes the job's history. The
// record is completed whatever ZooKeeper does meanwhile: retried until it
// is written or the agent has stopped. The run stays tracked until it is
// empty: a process that outlived even its SIGKILL (stuck in the kernel) is
// still ended when the lease ends.
func (a *agent) finish(run *admittedRun, code *int, result string) {
	a.mu.Lock()
	run.reported = true
	t := run.t
	a.mu.Unlock()
	if err := finishRun(a.life, a.zc, t, code, result); err != nil {
		a.log.Warn("run record", "record", t.record, "err", err)
	} else {
		a.mu.Lock()
		delete(a.open, t.record)
		a.mu.Unlock()
	}
	status := "ok"
	if result != resultOK {
		status = "fail"
	}
	a.log.Info("run", "cluster", a.g.Cluster, "state", "active", "status", status, "job", t.adm.job, "slot", t.adm.slot, "result", result, "token", t.token)
	a.metrics.runs.WithLabelValues(t.adm.job, result).Inc()
	a.metrics.runDuration.WithLabelValues(t.adm.job).Observe(time.Since(run.start).Seconds())
	ctx, cancel := context.WithTimeout(a.life, time.Minute)
	defer cancel()
	if err := pruneRuns(ctx, a.zc.snapshot().Conn, t.adm.runsPath(), int(a.history.Load())); err != nil {
		a.log.Warn("pruning run records", "job", t.adm.job, "err", err)
	}
}

// waitRecords waits, up to limit, for the records still being completed.
func (a *agent) waitRecords(limit time.Duration) {
	waitUntil(limit, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.open) == 0
	})
}

// completeLeftoversPerTerm completes, at start and on every new session,
// the records this node left without an end whose process group is gone:
// runs of an earlier agent, or of this one whose end could not be written.
func (a *agent) completeLeftoversPerTerm(ctx context.Context) {
	feed := a.el.subscribe()
	defer a.el.unsubscribe(feed)
	var done int64
	var again <-chan time.Time
	for {
		if s := a.zc.snapshot(); s.Usable() && (s.ID != done || again == nil && done == 0) {
			alive, err := a.completeLeftovers(ctx, s.Conn)
			if err == nil {
				done = s.ID
			}
			again = nil
			if alive > 0 || err != nil {
				// Groups still going (a wrapper ending its job after the
				// agent that admitted it died): look again soon.
				again = time.After(leftoverRecheck)
			}
		}
		select {
		case <-feed.C():
			feed.next()
		case <-again:
			done = 0
		case <-ctx.Done():
			return
		}
	}
}

// leftoverRecheck is how soon records whose process group was still alive
// are looked at again.
const leftoverRecheck = 2 * time.Second

// completeLeftovers completes this node's records without an end whose
// group is gone, and counts those whose group is still alive.
func (a *agent) completeLeftovers(ctx context.Context, conn *zk.Conn) (alive int, _ error) {
	jobs, _, err := conn.Children(a.zc.abs(a.root + "/jobs"))
	if errors.Is(err, zk.ErrNoNode) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for _, job := range jobs {
		runs := a.zc.abs(jobPath(a.root, job) + "/runs")
		_, n, err := completeLeftovers(ctx, conn, runs, func(name string, r runRecord) bool {
			a.mu.Lock()
			mine := a.open[runs+"/"+name]
			a.mu.Unlock()
			if r.Node != a.g.Node || mine {
				return false
			}
			if !groupGone(r.PGID) {
				alive++
				return false
			}
			return true
		})
		if n > 0 {
			a.log.Warn("completed run records left without an end as unknown", "job", job, "records", n)
		}
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return alive, err
		}
	}
	return alive, nil
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
		for _, r := range runs {
			a.enforceRun(r, now, st, revoked)
		}
	}
}

// enforceRun keeps one run inside its lease. The lease it holds is over
// when the token changed, leadership was lost, the deadline passed (a
// disconnect alone ends nothing), or the agent steps down.
func (a *agent) enforceRun(r *admittedRun, now time.Time, st standing, revoked bool) {
	a.mu.Lock()
	gone, reported, t := r.wrapperGone, r.reported, r.t
	a.mu.Unlock()
	if r.run.Empty() {
		if t == nil {
			return // admission in flight: it untracks the run if it fails
		}
		if gone || reported {
			if !reported {
				result := resultKilled
				if r.termSent || r.killSent {
					result = resultLost
				}
				// Off the enforcer's loop: a ZooKeeper write may hang.
				go a.finish(r, nil, result)
			}
			a.forget(r)
			a.untrack(r)
		}
		return
	}
	if !revoked && st.holds(r.token, now) {
		// Within a lease: a later lease end gets the whole grace again.
		r.stopAt, r.termSent, r.killSent, r.straysSent = time.Time{}, false, false, false
		return
	}
	if r.stopAt.IsZero() {
		r.stopAt = now
	}
	var grace time.Duration // none before the admission is written
	if t != nil {
		grace = t.grace
	}
	if gone || reported {
		if !r.termSent {
			r.termSent = true
			a.log.Warn("lease over: terminating a job whose wrapper is gone", "pgid", r.pgid, "containment", r.run.Containment())
			r.run.Signal(syscall.SIGTERM)
		}
		if !r.killSent && now.Sub(r.stopAt) >= grace {
			r.killSent = true
			r.run.Kill()
		}
		return
	}
	// The wrapper ends the job's group itself; what left the group is
	// the agent's to end, in the same grace.
	if !r.straysSent {
		r.straysSent = true
		if n, _ := r.run.SignalStrays(syscall.SIGTERM); n > 0 {
			a.log.Warn("lease over: terminating processes that left the job's process group", "pgid", r.pgid, "processes", n)
		}
	}
	if !r.killSent && now.Sub(r.stopAt) >= grace+lease.KillMargin(st.Timeout)/2 {
		r.killSent = true
		a.log.Warn("lease over and the job still runs after its grace: SIGKILL", "pgid", r.pgid)
		r.run.Kill()
	}
}

// completePrevious completes, as unknown, the records of the runs a
// previous agent of this node left (ended before this agent joins the
// election), then lets go of their run-state files. Retried until
// ZooKeeper answers or ctx ends; it returns the runs not done by then (a
// file left when the agent stops is read again by the next agent).
func (a *agent) completePrevious(ctx context.Context, states []contain.RunState) []contain.RunState {
	for i, s := range states {
		if s.Record != "" && !a.completeUnknown(ctx, s.Record) {
			return states[i:]
		}
		if err := contain.RemoveState(a.stateDir, s.ID); err != nil {
			a.log.Warn("run state", "err", err)
		}
	}
	return nil
}

// completeUnknown completes record as unknown unless it has an end or does
// not exist (its admission failed, or it was pruned); false when ctx ended
// first.
func (a *agent) completeUnknown(ctx context.Context, record string) bool {
	pause := 50 * time.Millisecond
	for {
		s := a.zc.snapshot()
		if s.Usable() {
			data, _, err := s.Conn.Get(record)
			switch {
			case errors.Is(err, zk.ErrNoNode):
				return true
			case err == nil:
				r, derr := decodeRunRecord(data)
				if derr != nil || r.End != "" {
					return true
				}
				if completeRecord(s.Conn, record, r, nil, resultUnknown) == nil {
					a.log.Warn("completed the record of a run a previous agent left as unknown", "record", record)
					return true
				}
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pause):
		case <-s.Changed:
		}
		pause = min(2*pause, finishRetry)
	}
}
