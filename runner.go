package main

// hacron run: ask for admission, run the job in its own process group, and
// keep it inside the lease by itself, so that a hung agent cannot keep a
// job alive. The run loop waits on the job's exit, the lease (pushed by the
// agent, enforced here), the timeout, and signals to forward.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"hacron/internal/contain"
	"hacron/internal/wire"
)

type runCmd struct {
	Name      string         `name:"name" placeholder:"NAME" help:"Job identity (default: <command>-<first 8 hex of sha256 of argv>)."`
	Wait      time.Duration  `name:"wait" placeholder:"D" help:"If not active, wait up to D to become active (failover); ends early when another node takes the slot."`
	Slot      string         `name:"slot" placeholder:"KEY" help:"Explicit slot key (default: the invocation minute, UTC)."`
	Schedule  string         `name:"schedule" placeholder:"EXPR" help:"The job's cron expression: the slot is its latest time not after now."`
	NoOverlap bool           `name:"no-overlap" help:"Skip if this job is still running anywhere in the cluster."`
	Timeout   time.Duration  `name:"timeout" placeholder:"D" help:"Terminate the job after D (exit 124)."`
	KillGrace *time.Duration `name:"kill-grace" placeholder:"D" help:"SIGTERM-to-SIGKILL grace (default 5s, lowered to what the lease allows)."`
	SkipExit  int            `name:"skip-exit" placeholder:"N" default:"0" help:"Exit code of a skipped run."`
	Nice      *int           `name:"nice" placeholder:"N" help:"Run the job at this nice level (rcron's nice_level)."`
	OnFailure string         `name:"on-failure" placeholder:"CMD" help:"When the run ends failed, killed, lost or timed out, run CMD (by /bin/sh -c) with the run's HACRON_* variables, HACRON_RESULT and HACRON_EXIT_CODE."`
	Command   []string       `arg:"" passthrough:"partial" name:"command" help:"The job and its arguments, after --."`
}

// Exit codes of hacron run beside the job's own (docs/contract.md).
const (
	exitLost     = 123
	exitTimeout  = 124
	exitNotExec  = 126
	exitNotFound = 127
)

// defaultJobName is <basename>-<8 hex>: the same on every node with the
// same crontab line, because it hashes argv exactly as typed.
func defaultJobName(argv []string) string {
	sum := sha256.Sum256([]byte(strings.Join(argv, "\x00")))
	base := []byte(filepath.Base(argv[0]))
	for i, c := range base {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			base[i] = '_'
		}
	}
	if len(base) > 119 {
		base = base[:119]
	}
	return string(base) + "-" + hex.EncodeToString(sum[:])[:8]
}

func (r *runCmd) Validate() error {
	if len(r.Command) > 0 && r.Command[0] == "--" {
		r.Command = r.Command[1:]
	}
	if len(r.Command) == 0 {
		return errors.New("missing COMMAND: hacron run [options] -- COMMAND [ARG...]")
	}
	if r.Name != "" {
		if err := checkJobName(r.Name); err != nil {
			return err
		}
	}
	if r.SkipExit < 0 || r.SkipExit > 255 {
		return fmt.Errorf("--skip-exit %d: want 0-255", r.SkipExit)
	}
	if r.Nice != nil && (*r.Nice < -20 || *r.Nice > 19) {
		return fmt.Errorf("--nice %d: want -20..19", *r.Nice)
	}
	if r.Timeout < 0 {
		return errors.New("--timeout must not be negative")
	}
	if r.Wait < 0 {
		return errors.New("--wait must not be negative")
	}
	if r.Slot != "" && r.Schedule != "" {
		return errors.New("--slot and --schedule exclude each other")
	}
	if r.KillGrace != nil && *r.KillGrace < 0 {
		return errors.New("--kill-grace must not be negative")
	}
	return nil
}

// slotClock is the clock slots are computed from; tests set it (only
// inside the test binary's hacron command) to start a run "late" without
// sleeping.
var slotClock = time.Now

// slot returns the run's slot and whether slot claims are on.
func (r *runCmd) slot(g *globals) (string, bool, error) {
	claim := g.Direct || r.Wait > 0 || r.Slot != "" || r.Schedule != ""
	switch {
	case r.Slot != "":
		return r.Slot, claim, validSlot(r.Slot)
	case r.Schedule != "":
		s, err := scheduleSlot(r.Schedule, slotClock())
		return s, claim, err
	}
	return defaultSlot(slotClock()), claim, nil
}

// grant is an admitted run, whichever mode admitted it.
type grant struct {
	cluster, node, job, slot string
	token                    int64
	grace                    time.Duration
	deadline                 time.Time
	news                     <-chan leaseNews // renewals and the loss; closed when nobody can tell any more
	report                   func(code int, result string)
}

func (r *runCmd) Run(ctx context.Context, g *globals) error {
	log, err := newLogger(g, slog.LevelWarn)
	if err != nil {
		return err
	}
	job := r.Name
	if job == "" {
		job = defaultJobName(r.Command)
	}
	slot, claim, err := r.slot(g)
	if err != nil {
		return err
	}
	req := runRequest{job: job, slot: slot, schedule: r.Schedule, claim: claim, noOverlap: r.NoOverlap, wait: r.Wait,
		uid: os.Getuid(), cmd: recordCmd(r.Command)}
	if r.KillGrace != nil {
		req.killGrace, req.killGraceSet = *r.KillGrace, true
	}
	var l *launch
	startGroup := func() (int, error) {
		var err error
		l, err = startLaunch(r.Command, log)
		if err != nil {
			return 0, err
		}
		return l.shim, nil
	}
	var gr *grant
	var skip string
	if g.Direct {
		// The run's cgroup is ours to make (the agent makes it in agent
		// mode), once the job's lock is held. Detected before our reaper
		// starts: the detection reaps a trial child of its own.
		var hier *contain.Hierarchy
		req.group = func() (int, contain.Kind, error) {
			hier = detectContainment()
			pgid, err := startGroup()
			return pgid, hier.Kind, err
		}
		req.hold = func(int64, string) (func(), string, error) { return l.enclose(hier, directScope(g.Cluster)) }
		gr, skip, err = admitDirect(ctx, g, log, req)
	} else {
		gr, skip, err = admitAgent(ctx, g.Socket, req, r.Command, startGroup)
	}
	if err != nil || skip != "" {
		if l != nil {
			l.drop()
		}
		if err != nil {
			return err
		}
		log.Info("run", "cluster", g.Cluster, "state", "passive", "status", "ignore", "job", job, "slot", slot, "reason", skip, "cmd", joinArgs(r.Command))
		return silentExit(r.SkipExit)
	}

	start := time.Now()
	log.Info("run", "cluster", g.Cluster, "state", "active", "status", "start", "job", job, "slot", gr.slot, "token", gr.token, "cmd", joinArgs(r.Command))
	// Checked only now: a passive node skips a broken crontab line as
	// silently as a good one; on the active node the run fails like a shell.
	if err := execError(r.Command[0]); err != nil {
		l.notStarted(gr, exitCodeOf(err, exitNotExec), resultFailed)
		return err
	}
	if r.Nice != nil {
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, l.shim, *r.Nice); err != nil {
			l.notStarted(gr, exitUsage, resultFailed)
			return fmt.Errorf("--nice %d: %w", *r.Nice, err)
		}
	}
	s := supervisor{run: l.run, grace: gr.grace, deadline: gr.deadline, timeout: r.Timeout, log: log, forward: true}
	if code, result, err := s.letGo(&gr.news, func() error { return l.goAhead(gr) }); result != "" {
		l.notStarted(gr, code, result)
		if err != nil {
			return err
		}
		log.Warn("the lease ended before the job could start; it did not run", "job", job, "slot", gr.slot, "token", gr.token)
		return silentExit(exitLost)
	}
	// supervise returns once nothing of the run is left: the report (in
	// direct mode, the job lock's release) comes after.
	code, result := s.supervise(l.done, gr.news)
	l.finish()
	gr.report(code, result)
	if r.OnFailure != "" && hookResults[result] {
		env := hookEnv(gr.cluster, gr.node, gr.job, gr.slot, gr.token, result, code, nil)
		if err := runHook(r.OnFailure, env, os.Stdout, os.Stderr); err != nil {
			log.Warn(err.Error())
		}
	}
	status := "ok"
	if result != resultOK {
		status = "fail"
	}
	log.Info("run", "cluster", g.Cluster, "state", "active", "status", status, "dur", fmt.Sprintf("%.3f", time.Since(start).Seconds()),
		"job", job, "slot", gr.slot, "token", gr.token, "exit_code", code, "result", result, "cmd", joinArgs(r.Command))
	return silentExit(code)
}

// launch is a run's job around its go-ahead: the shim (the job's first
// process, in a process group of its own, waiting for the go-ahead before
// exec), the group held by the leader's pidfd, its cgroup, and direct
// mode's watchdog.
type launch struct {
	shim      int
	handshake *os.File
	done      chan syscall.WaitStatus
	grp       *contain.Group
	run       *contain.Run
	watchdog  *os.File
	log       *slog.Logger
}

// startLaunch starts the job's shim. The job's process group exists
// before admission: the agent records it, so from the moment a run is
// admitted the agent can end it even if this process dies.
func startLaunch(argv []string, log *slog.Logger) (*launch, error) {
	// The job's descendants that lose their parent are re-parented to us,
	// not to init: we reap them at once, so a finished group is seen empty
	// at once (an init that reaps late would keep zombies in it).
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("subreaper: %w", err)
	}
	shim, handshake, err := startShim(argv, os.Environ(), []uintptr{0, 1, 2})
	if err != nil {
		return nil, err
	}
	l := &launch{shim: shim, handshake: handshake, done: make(chan syscall.WaitStatus, 1), log: log}
	go reapChildren(shim, l.done)
	if l.grp, err = contain.OpenGroup(shim); err != nil {
		// Without the go-ahead (EOF) the shim exits, running nothing.
		_ = handshake.Close()
		return nil, fmt.Errorf("start job: %w", err)
	}
	l.run = contain.NewRun(l.grp, nil)
	return l, nil
}

// enclose is direct mode's hold: the run's cgroup, and the watchdog that,
// from the admission write on, ends the run if this process dies without
// saying so.
func (l *launch) enclose(hier *contain.Hierarchy, scope string) (func(), string, error) {
	cr, err := enclose(hier, scope, newRunID(), l.grp)
	if err != nil {
		return nil, "", fmt.Errorf("the job's cgroup: %w", err)
	}
	l.run = cr
	if l.watchdog, err = startWatchdog(cr.KillScript()); err != nil {
		return nil, "", err
	}
	return func() {}, "", nil
}

// drop ends a run that was not admitted. Without the go-ahead the shim
// exits on its own, running nothing; a skipped run need not wait for that,
// unless it has a cgroup to remove.
func (l *launch) drop() {
	_ = l.handshake.Close()
	if err := dropRun(l.run); err != nil {
		l.log.Warn("the cgroup of a run that did not start", "err", err)
	}
	stopWatchdog(l.watchdog)
}

// notStarted reports an admitted run whose job never started, once its
// shim, without the go-ahead, has exited: nothing of the run is left then.
func (l *launch) notStarted(gr *grant, code int, result string) {
	_ = l.handshake.Close() // EOF: no go-ahead
	select {
	case <-l.done:
	case <-time.After(leftoverWait):
	}
	if err := dropRun(l.run); err != nil {
		l.log.Warn("the cgroup of a run that did not start", "err", err)
	}
	stopWatchdog(l.watchdog)
	gr.report(code, result)
}

// goAhead hands the shim the run's environment and lets it exec the job.
func (l *launch) goAhead(gr *grant) error {
	return goAhead(l.handshake, gr.cluster, gr.node, gr.job, gr.slot, gr.token)
}

// goAhead writes a shim's go-ahead: the run's HACRON_* variables, then
// "exec". The handshake is closed after it, written or not.
func goAhead(handshake *os.File, cluster, node, job, slot string, token int64) error {
	var ahead strings.Builder
	for _, kv := range [][2]string{
		{"HACRON_CLUSTER", cluster},
		{"HACRON_NODE", node},
		{"HACRON_JOB", job},
		{"HACRON_SLOT", slot},
		{"HACRON_FENCING_TOKEN", strconv.FormatInt(token, 10)},
	} {
		fmt.Fprintf(&ahead, "%s=%s\n", kv[0], strings.ReplaceAll(kv[1], "\n", " "))
	}
	ahead.WriteString("exec\n")
	_, err := io.WriteString(handshake, ahead.String())
	_ = handshake.Close() // the write, checked, was all of the go-ahead
	return err
}

// finish releases what held the run once nothing of it is left.
func (l *launch) finish() {
	if err := l.run.Remove(); err != nil {
		l.log.Warn("the cgroup of the run", "err", err)
	}
	l.run.Close()
	stopWatchdog(l.watchdog)
}

// admitAgent asks the local agent. The request and the socket's messages
// are translated here, at the edge: the agent names the job for the
// caller's uid and the command from argv.
//
// The job's process group is made (startGroup) only once the agent has
// said that it cannot rule the run out: a skip costs one exchange and no
// process.
func admitAgent(ctx context.Context, socket string, req runRequest, argv []string, startGroup func() (int, error)) (*grant, string, error) {
	m := wire.Request{V: wire.Version, Op: "start", Job: req.job, Slot: req.slot, Claim: req.claim, NoOverlap: req.noOverlap,
		WaitMS: req.wait.Milliseconds(), Argv: argv,
		KillGraceMS: req.killGrace.Milliseconds(), KillGraceSet: req.killGraceSet, Schedule: req.schedule}
	// The first answer comes at once from a working agent; the bound is
	// still the run's whole one (--wait + 10 s), as documented.
	ac, rep, err := askAgent(ctx, socket, m, req.wait+agentAnswerLimit)
	switch {
	case err != nil && (rep.Error == `unknown request "start"` || refusedSchedule(err)):
		// An agent older than "start" (until it is restarted after an
		// upgrade; it refuses the schedule field before it reads the
		// op): the group first, then one request.
		if m.PGID, err = startGroup(); err != nil {
			return nil, "", err
		}
		// Nor does it know the schedule field.
		m.Op, m.Schedule = "run", ""
		ac, rep, err = askAgent(ctx, socket, m, req.wait+agentAnswerLimit)
	case err == nil && rep.Group:
		var pgid int
		if pgid, err = startGroup(); err != nil {
			ac.Close()
			return nil, "", err
		}
		rep, err = ac.ask(ctx, wire.Request{V: wire.Version, Op: "group", PGID: pgid}, req.wait+agentAnswerLimit)
	}
	if errors.Is(err, errInterrupted) {
		return nil, "", withExit(exitUsage, errors.New("interrupted while waiting for admission; the job did not run"))
	}
	if err != nil {
		return nil, "", err
	}
	switch {
	case rep.Skip != "":
		ac.Close()
		return nil, rep.Skip, nil
	case !rep.Admitted:
		ac.Close()
		return nil, "", errors.New("agent: unexpected answer")
	}
	// One reader for the rest of the conversation: lease news, then the
	// acknowledgement of the exit report.
	news := make(chan leaseNews, 16)
	ack := make(chan struct{})
	go func() {
		defer close(news)
		for {
			var m wire.Reply
			if ac.read(&m) != nil {
				return
			}
			switch {
			case m.OK:
				close(ack)
				return
			case m.Lost != "":
				news <- leaseNews{kind: newsLost, why: m.Lost}
			case m.DeadlineMono != 0:
				news <- leaseNews{kind: newsRenewed, deadline: wire.FromMono(m.DeadlineMono)}
			}
		}
	}()
	return &grant{
		cluster: rep.Cluster, node: rep.Node, job: rep.Job, slot: rep.Slot, token: rep.Token,
		grace:    time.Duration(rep.KillGraceMS) * time.Millisecond,
		deadline: wire.FromMono(rep.DeadlineMono),
		news:     news,
		report: func(code int, result string) {
			// The agent ends what left the job's group (its cgroup)
			// before it acknowledges: up to a grace and the wait after
			// SIGKILL. A hung agent must not hold up the exit for
			// longer: it records the end itself when the run is gone.
			limit := time.Duration(rep.KillGraceMS)*time.Millisecond + leftoverWait + time.Second
			ac.conn.SetDeadline(time.Now().Add(limit))
			if wire.Write(ac.conn, wire.Request{V: wire.Version, Op: "exit", ExitCode: code, Result: result}) == nil {
				select {
				case <-ack:
				case <-time.After(limit):
				}
			}
			ac.Close()
		},
	}, "", nil
}

// supervisor keeps one running job inside its lease and timeout.
type supervisor struct {
	run      *contain.Run
	grace    time.Duration
	deadline time.Time
	timeout  time.Duration
	log      *slog.Logger
	forward  bool // pass our signals on to the job (hacron run; not the agent)
}

// forwarded are the signals hacron run passes on to the job's group.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// letGo is the last look at the lease before the job can start, then the
// go-ahead: a pause between the admission and here must never start a job
// after its lease. It returns the code and result of a job that did not
// start (none when it did), and the go-ahead's error.
func (s *supervisor) letGo(news *<-chan leaseNews, goAhead func() error) (int, string, error) {
	if lost := s.drain(news); lost != "" || !time.Now().Before(s.deadline) {
		return exitLost, resultLost, nil
	}
	if err := goAhead(); err != nil {
		return exitUsage, resultFailed, fmt.Errorf("start job: %w", err)
	}
	return 0, "", nil
}

// supervise waits on exactly three things (the job's exit, the end of the
// lease or the timeout, signals to forward); once the job's main process
// has exited it ends what is left of the run. It returns the exit code and
// the run's result.
func (s *supervisor) supervise(done <-chan syscall.WaitStatus, news <-chan leaseNews) (int, string) {
	sigs := make(chan os.Signal, 8)
	if s.forward {
		signal.Notify(sigs, forwarded...)
		defer signal.Stop(sigs)
	}

	lease := time.NewTimer(time.Until(s.deadline))
	defer lease.Stop()
	var timeout <-chan time.Time
	if s.timeout > 0 {
		t := time.NewTimer(s.timeout)
		defer t.Stop()
		timeout = t.C
	}
	var killAt <-chan time.Time
	why := "" // set once hacron decides to terminate the job
	terminate := func(reason, msg string) {
		if why != "" {
			return
		}
		why = reason
		s.log.Warn(msg, "pgid", s.run.Group().Pgid(), "grace", s.grace.String())
		s.run.Signal(syscall.SIGTERM)
		killAt = time.After(s.grace)
	}
	for {
		select {
		case ws := <-done:
			s.endRest(killAt, why != "")
			return s.exitCode(ws, why)
		case n, ok := <-news:
			if !ok {
				// Nobody can renew the lease any more (the agent is
				// gone): it ends at the last deadline we had.
				news = nil
				continue
			}
			if lost := s.apply(n, why); lost != "" {
				terminate(resultLost, "leadership lost: terminating the job ("+lost+")")
			}
			lease.Reset(time.Until(s.deadline))
		case <-lease.C:
			// On a starved machine the timer and a renewal that already
			// arrived become ready together: give the reader a moment
			// (far less than the kill margin) and take what it has.
			time.Sleep(2 * time.Millisecond)
			if lost := s.drain(&news); lost != "" {
				terminate(resultLost, "leadership lost: terminating the job ("+lost+")")
			}
			if !time.Now().Before(s.deadline) {
				terminate(resultLost, "lease ended without renewal: terminating the job")
			} else {
				lease.Reset(time.Until(s.deadline))
			}
		case <-timeout:
			terminate(resultTimeout, "--timeout reached: terminating the job")
		case <-killAt:
			s.run.Kill()
			killAt = nil
		case sig := <-sigs:
			// As a shell's job control would: to the group alone.
			s.run.Group().Signal(sig.(syscall.Signal))
		}
	}
}

// endRest ends what is left of the run once the job's main process has
// exited, so that nothing of it outlives the report (and, in direct mode,
// the job lock): SIGTERM, the grace, SIGKILL. A run hacron was already
// terminating gets the rest of its grace (killAt; nil once SIGKILL was
// sent).
func (s *supervisor) endRest(killAt <-chan time.Time, terminating bool) {
	var err error
	if terminating {
		tick := time.NewTicker(5 * time.Millisecond)
		for killAt != nil && !s.run.Empty() {
			select {
			case <-killAt:
				killAt = nil
			case <-tick.C:
			}
		}
		tick.Stop()
		if !s.run.Empty() {
			s.run.Kill()
			if !waitUntil(leftoverWait, s.run.Empty) {
				err = errors.New("processes of the run are left after SIGKILL")
			}
		}
	} else {
		var n int
		n, err = s.run.Terminate(s.grace, leftoverWait)
		if n > 0 {
			s.log.Warn("the job left processes behind; ended them", "processes", n, "containment", s.run.Containment())
		}
	}
	if err != nil {
		s.log.Error("processes of the ended job are left", "pgid", s.run.Group().Pgid(), "err", err)
	}
}

// apply takes one piece of lease news: a later deadline moves the job's,
// unless hacron is already terminating it; a disconnect changes nothing;
// the loss is returned.
func (s *supervisor) apply(n leaseNews, why string) (lost string) {
	switch {
	case n.kind == newsLost:
		return n.why
	case why == "" && n.deadline.After(s.deadline):
		s.deadline = n.deadline
	}
	return ""
}

// drain applies the news already waiting and returns a loss among it.
func (s *supervisor) drain(news *<-chan leaseNews) (lost string) {
	for *news != nil {
		select {
		case n, ok := <-*news:
			if !ok {
				*news = nil
				return lost
			}
			if l := s.apply(n, ""); l != "" {
				lost = l
			}
		default:
			return lost
		}
	}
	return lost
}

// exitCode maps the job's end to hacron's table.
func (s *supervisor) exitCode(ws syscall.WaitStatus, why string) (int, string) {
	switch {
	case why == resultLost:
		return exitLost, resultLost
	case why == resultTimeout:
		return exitTimeout, resultTimeout
	case ws.Signaled():
		return 128 + int(ws.Signal()), resultKilled
	case ws.ExitStatus() == 0:
		return 0, resultOK
	default:
		return ws.ExitStatus(), resultFailed
	}
}

// reapChildren reaps every child, the job's orphans included (we are their
// subreaper), and reports the job's own status.
func reapChildren(pid int, job chan<- syscall.WaitStatus) {
	for {
		var ws syscall.WaitStatus
		p, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return // ECHILD: nobody left
		}
		if p == pid {
			job <- ws
		}
	}
}

// shimScript is the job's first process: a POSIX shell that waits on fd 3
// for the go-ahead (environment lines, then "exec"), then becomes the job.
// No go-ahead (the run was skipped, or the wrapper died) means exit without
// running anything. A shell, not hacron itself: it starts in a fraction of
// the time.
const shimScript = `while IFS= read -r l <&3; do
case $l in
exec) exec 3<&-; exec "$@" ;;
*=*) export "$l" ;;
esac
done
exit 125`

// commandShimWait begins a scheduled run's shim: the same wait for the
// go-ahead, after which the shell goes on with the crontab's command as the
// rest of its own script. The command runs as `sh -c COMMAND` would run it,
// one exec sooner: the firing's latency is the agent's to keep short.
const commandShimWait = `while IFS= read -r l <&3; do
case $l in
exec) break ;;
*=*) export "$l" ;;
esac
done
[ "$l" = exec ] || exit 125
exec 3<&-
unset l
`

// startShim starts the shim for argv in a new process group, with env and
// stdio (the shim's fds 0-2).
func startShim(argv, env []string, stdio []uintptr) (int, *os.File, error) {
	return forkShim(append([]string{"sh", "-c", shimScript, "hacron-job"}, argv...), env, stdio)
}

// startCommandShim starts a shim that runs command itself once let go.
func startCommandShim(command string, env []string, stdio []uintptr) (int, *os.File, error) {
	return forkShim([]string{"sh", "-c", commandShimWait + command}, env, stdio)
}

// forkShim starts /bin/sh with args in a new process group, the go-ahead's
// pipe as its fd 3. With syscall.ForkExec rather than os.StartProcess: the
// caller waits for it, so os.Process would be released at once, and its
// first use in a process forks a throwaway child to probe pidfd support,
// on every run.
func forkShim(args, env []string, stdio []uintptr) (int, *os.File, error) {
	rd, wr, err := os.Pipe()
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = rd.Close() }() // the shim's end, its own after the fork
	attr := &syscall.ProcAttr{
		Env:   env,
		Files: append(stdio[:3:3], rd.Fd()),
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	pid, err := syscall.ForkExec("/bin/sh", args, attr)
	if err != nil {
		_ = wr.Close() // nothing was written
		return 0, nil, fmt.Errorf("start job: %w", &os.PathError{Op: "fork/exec", Path: "/bin/sh", Err: err})
	}
	return pid, wr, nil
}

// execError says why COMMAND cannot be executed, with the shell's codes:
// 127 when it is not there, 126 when it is there but cannot run.
func execError(cmd string) error {
	_, err := exec.LookPath(cmd)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist):
		return withExit(exitNotFound, fmt.Errorf("%s: command not found", cmd))
	case errors.Is(err, fs.ErrPermission):
		return withExit(exitNotExec, fmt.Errorf("%s: permission denied", cmd))
	default:
		return withExit(exitNotExec, fmt.Errorf("%s: %w", cmd, err))
	}
}
