package main

// hacron run: ask for admission, run the job in its own process group, and
// keep it inside the lease by itself, so that a hung agent cannot keep a
// job alive. The run loop waits on the job's exit, the lease (pushed by the
// agent, enforced here), the timeout, and signals to forward.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	Command   []string       `arg:"" passthrough:"partial" name:"command" help:"The job and its arguments, after --."`
}

// Exit codes of hacron.md beside the job's own.
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
	if r.Name != "" && !validName(r.Name, maxJobName) {
		return fmt.Errorf("bad job name %q: want 1-128 of A-Z a-z 0-9 . _ -", r.Name)
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

// now is the clock slots are computed from; tests set it (only inside the
// test binary's hacron command) to start a run "late" without sleeping.
var now = time.Now

// slot returns the run's slot and whether slot claims are on.
func (r *runCmd) slot(g *globals) (string, bool, error) {
	claim := g.Direct || r.Wait > 0 || r.Slot != "" || r.Schedule != ""
	switch {
	case r.Slot != "":
		return r.Slot, claim, validSlot(r.Slot)
	case r.Schedule != "":
		s, err := scheduleSlot(r.Schedule, now())
		return s, claim, err
	}
	return defaultSlot(now()), claim, nil
}

// grant is an admitted run, whichever mode admitted it.
type grant struct {
	cluster, node, job, slot string
	token                    int64
	grace                    time.Duration
	deadline                 time.Time
	updates                  <-chan reply // lease renewals and loss, then the end's acknowledgement
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

	// The job's descendants that lose their parent are re-parented to us,
	// not to init: we reap them at once, so a finished group is seen empty
	// at once (an init that reaps late would keep zombies in it).
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("subreaper: %w", err)
	}
	// The job's process group exists before admission: the agent records
	// it, so from the moment a run is admitted the agent can end it even if
	// this process dies. The shim waits for the go-ahead before exec.
	shim, handshake, err := startShim(r.Command)
	if err != nil {
		return err
	}
	shimDone := make(chan syscall.WaitStatus, 1)
	go reapChildren(shim, shimDone)

	var gr *grant
	var skip string
	if g.Direct {
		gr, skip, err = r.admitDirect(ctx, g, log, job, slot, shim)
	} else {
		gr, skip, err = r.admitAgent(ctx, g, job, slot, claim, shim)
	}
	if err != nil || skip != "" {
		// Without the go-ahead the shim exits on its own, running
		// nothing; a skipped run need not wait for that.
		handshake.Close()
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
		handshake.Close()
		gr.report(exitCodeOf(err, exitNotExec), resultFailed)
		return err
	}
	if r.Nice != nil {
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, shim, *r.Nice); err != nil {
			handshake.Close()
			gr.report(exitUsage, resultFailed)
			return fmt.Errorf("--nice %d: %w", *r.Nice, err)
		}
	}
	var ahead strings.Builder
	for _, kv := range [][2]string{
		{"HACRON_CLUSTER", gr.cluster},
		{"HACRON_NODE", gr.node},
		{"HACRON_JOB", gr.job},
		{"HACRON_SLOT", gr.slot},
		{"HACRON_FENCING_TOKEN", strconv.FormatInt(gr.token, 10)},
	} {
		fmt.Fprintf(&ahead, "%s=%s\n", kv[0], strings.ReplaceAll(kv[1], "\n", " "))
	}
	ahead.WriteString("exec\n")
	_, werr := io.WriteString(handshake, ahead.String())
	handshake.Close()
	if werr != nil {
		<-shimDone
		gr.report(exitUsage, resultFailed)
		return fmt.Errorf("start job: %w", werr)
	}

	s := supervisor{pgid: shim, grace: gr.grace, deadline: gr.deadline, timeout: r.Timeout, log: log}
	code, result := s.supervise(shimDone, gr.updates)
	gr.report(code, result)
	status := "ok"
	if result != resultOK {
		status = "fail"
	}
	log.Info("run", "cluster", g.Cluster, "state", "active", "status", status, "dur", fmt.Sprintf("%.3f", time.Since(start).Seconds()),
		"job", job, "slot", gr.slot, "token", gr.token, "exit_code", code, "result", result, "cmd", joinArgs(r.Command))
	return silentExit(code)
}

// admitAgent asks the local agent.
func (r *runCmd) admitAgent(ctx context.Context, g *globals, job, slot string, claim bool, pgid int) (*grant, string, error) {
	conn, err := dialAgent(g.Socket)
	if err != nil {
		return nil, "", err
	}
	// A signal while the agent decides (it may wait, with --wait) ends
	// the wait: nothing has run.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	req := request{V: protoVersion, Op: "run", Job: job, Slot: slot, Claim: claim, NoOverlap: r.NoOverlap,
		WaitMS: r.Wait.Milliseconds(), Argv: r.Command, PGID: pgid}
	if r.KillGrace != nil {
		req.KillGraceMS, req.KillGraceSet = r.KillGrace.Milliseconds(), true
	}
	br := bufio.NewReader(conn)
	var rep reply
	if err := writeMsg(conn, req); err == nil {
		err = readMsg(br, &rep)
	}
	if !stop() {
		return nil, "", withExit(exitUsage, errors.New("interrupted while waiting for admission; the job did not run"))
	}
	if err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("agent at %s: %w", g.Socket, err)
	}
	switch {
	case rep.Skip != "":
		conn.Close()
		return nil, rep.Skip, nil
	case rep.Error != "":
		conn.Close()
		err := errors.New(rep.Error)
		if rep.Hint != "" {
			err = withHint(err, strings.Split(rep.Hint, "; ")...)
		}
		return nil, "", withExit(max(rep.Code, 1), err)
	case !rep.Admitted:
		conn.Close()
		return nil, "", errors.New("agent: unexpected answer")
	}
	// One reader for the rest of the conversation: lease updates, then the
	// acknowledgement of the exit report.
	fromAgent := make(chan reply, 16)
	go func() {
		defer close(fromAgent)
		for {
			var m reply
			if readMsg(br, &m) != nil {
				return
			}
			fromAgent <- m
		}
	}()
	return &grant{
		cluster: rep.Cluster, node: rep.Node, job: rep.Job, slot: rep.Slot, token: rep.Token,
		grace:    time.Duration(rep.KillGraceMS) * time.Millisecond,
		deadline: fromMono(rep.DeadlineMono),
		updates:  fromAgent,
		report: func(code int, result string) {
			reportExit(conn, fromAgent, code, result)
			conn.Close()
		},
	}, "", nil
}

// reportExit tells the agent how the run ended, for its record. A hung
// agent must not hold up the exit for long: it records the end itself when
// the job's group is gone.
func reportExit(conn net.Conn, fromAgent <-chan reply, code int, result string) {
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	if writeMsg(conn, request{V: protoVersion, Op: "exit", ExitCode: code, Result: result}) != nil {
		return
	}
	ack := time.After(time.Second)
	for {
		select {
		case m, ok := <-fromAgent:
			if !ok || m.OK {
				return
			}
		case <-ack:
			return
		}
	}
}

// supervisor keeps one running job inside its lease and timeout.
type supervisor struct {
	pgid     int
	grace    time.Duration
	deadline time.Time
	timeout  time.Duration
	log      *slog.Logger
}

// forwarded are the signals hacron run passes on to the job's group.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// supervise waits on exactly three things (the job's exit, the end of the
// lease or the timeout, signals to forward) and returns the exit code and
// the run's result.
func (s *supervisor) supervise(done <-chan syscall.WaitStatus, updates <-chan reply) (int, string) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

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
		s.log.Warn(msg, "pgid", s.pgid, "grace", s.grace.String())
		syscall.Kill(-s.pgid, syscall.SIGTERM)
		killAt = time.After(s.grace)
	}
	for {
		select {
		case ws := <-done:
			// The job's leader is gone; a group we are terminating gets the
			// rest of its grace, then SIGKILL, so that nothing survives.
			if why != "" {
				s.reapGroup(killAt)
			}
			return s.exitCode(ws, why)
		case m, ok := <-updates:
			if !ok {
				// The agent is gone: the lease cannot be renewed, and ends
				// at the last deadline it gave.
				updates = nil
				continue
			}
			s.apply(m, why, terminate)
			lease.Reset(time.Until(s.deadline))
		case <-lease.C:
			// On a starved machine the timer and a renewal that already
			// arrived become ready together: give the reader a moment
			// (far less than the kill margin) and take what it has.
			time.Sleep(2 * time.Millisecond)
			s.drain(&updates, terminate)
			if !time.Now().Before(s.deadline) {
				terminate(resultLost, "lease ended without renewal: terminating the job")
			} else {
				lease.Reset(time.Until(s.deadline))
			}
		case <-timeout:
			terminate(resultTimeout, "--timeout reached: terminating the job")
		case <-killAt:
			syscall.Kill(-s.pgid, syscall.SIGKILL)
			killAt = nil
		case sig := <-sigs:
			syscall.Kill(-s.pgid, sig.(syscall.Signal))
		}
	}
}

// apply takes one message of the agent: a renewed deadline, or the loss.
func (s *supervisor) apply(m reply, why string, terminate func(reason, msg string)) {
	if m.Lost != "" {
		terminate(resultLost, "leadership lost: terminating the job ("+m.Lost+")")
	} else if m.DeadlineMono != 0 && why == "" {
		s.deadline = fromMono(m.DeadlineMono)
	}
}

// drain applies the messages already waiting.
func (s *supervisor) drain(updates *<-chan reply, terminate func(reason, msg string)) {
	for *updates != nil {
		select {
		case m, ok := <-*updates:
			if !ok {
				*updates = nil
				return
			}
			s.apply(m, "", terminate)
		default:
			return
		}
	}
}

// reapGroup waits for the rest of the group until the grace ends, kills
// what is left, and waits (briefly) until the kernel and our reaper are
// done with it, so that nothing of the job outlives this process.
func (s *supervisor) reapGroup(killAt <-chan time.Time) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var giveUp <-chan time.Time
	for {
		if errors.Is(syscall.Kill(-s.pgid, 0), syscall.ESRCH) {
			return
		}
		select {
		case <-killAt:
			syscall.Kill(-s.pgid, syscall.SIGKILL)
			killAt = nil
			giveUp = time.After(time.Second)
		case <-giveUp:
			return
		case <-tick.C:
		}
	}
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

// startShim starts the shim for argv in a new process group. With
// syscall.ForkExec rather than os.StartProcess: reapChildren waits for it,
// so os.Process would be released at once, and its first use in a process
// forks a throwaway child to probe pidfd support, on every run.
func startShim(argv []string) (int, *os.File, error) {
	rd, wr, err := os.Pipe()
	if err != nil {
		return 0, nil, err
	}
	defer rd.Close()
	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2, rd.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	args := append([]string{"sh", "-c", shimScript, "hacron-job"}, argv...)
	pid, err := syscall.ForkExec("/bin/sh", args, attr)
	if err != nil {
		wr.Close()
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
