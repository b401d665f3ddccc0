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
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
)

type runCmd struct {
	Name      string         `name:"name" placeholder:"NAME" help:"Job identity (default: <command>-<first 8 hex of sha256 of argv>)."`
	Timeout   time.Duration  `name:"timeout" placeholder:"D" help:"Terminate the job after D (exit 124)."`
	KillGrace *time.Duration `name:"kill-grace" placeholder:"D" help:"SIGTERM-to-SIGKILL grace (default 5s, lowered to what the lease allows)."`
	SkipExit  int            `name:"skip-exit" placeholder:"N" default:"0" help:"Exit code of a skipped run."`
	Nice      *int           `name:"nice" placeholder:"N" help:"Run the job at this nice level (rcron's nice_level)."`
	Command   []string       `arg:"" passthrough:"partial" name:"command" help:"The job and its arguments, after --."`
}

// Exit codes of hacron.md beside the job's own.
const (
	exitLost        = 123
	exitTimeout     = 124
	exitNotExec     = 126
	exitNotFound    = 127
	execShimArg     = "__exec"
	shimHandshakeFD = 3
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
	if r.Name != "" && !jobNameRE.MatchString(r.Name) {
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
	if r.KillGrace != nil && *r.KillGrace < 0 {
		return errors.New("--kill-grace must not be negative")
	}
	return nil
}

func (r *runCmd) Run(ctx context.Context, g *globals) error {
	log, err := newLogger(g, slog.LevelWarn)
	if err != nil {
		return err
	}
	if g.Direct {
		return errors.New("direct mode is not available in this version of hacron")
	}
	job := r.Name
	if job == "" {
		job = defaultJobName(r.Command)
	}
	slot := defaultSlot(time.Now())

	conn, err := dialAgent(g.Socket)
	if err != nil {
		return err
	}
	defer conn.Close()

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
	abort := func() {
		handshake.Close()
		<-shimDone
	}

	req := request{V: protoVersion, Op: "run", Job: job, Slot: slot, Argv: r.Command, PGID: shim}
	if r.KillGrace != nil {
		req.KillGraceMS, req.KillGraceSet = r.KillGrace.Milliseconds(), true
	}
	br := bufio.NewReader(conn)
	var rep reply
	if err := writeMsg(conn, req); err == nil {
		err = readMsg(br, &rep)
	}
	if err != nil {
		abort()
		return fmt.Errorf("agent at %s: %w", g.Socket, err)
	}
	switch {
	case rep.Skip != "":
		abort()
		log.Info("run", "cluster", g.Cluster, "state", "passive", "status", "ignore", "job", job, "slot", slot, "reason", rep.Skip, "cmd", joinArgs(r.Command))
		return silentExit(r.SkipExit)
	case rep.Error != "":
		abort()
		err := errors.New(rep.Error)
		if rep.Hint != "" {
			err = withHint(err, strings.Split(rep.Hint, "; ")...)
		}
		return withExit(max(rep.Code, 1), err)
	case !rep.Admitted:
		abort()
		return errors.New("agent: unexpected answer")
	}

	start := time.Now()
	log.Info("run", "cluster", g.Cluster, "state", "active", "status", "start", "job", job, "slot", rep.Slot, "token", rep.Token, "cmd", joinArgs(r.Command))
	ahead := shimGo{Env: []string{
		"HACRON_CLUSTER=" + rep.Cluster,
		"HACRON_NODE=" + rep.Node,
		"HACRON_JOB=" + rep.Job,
		"HACRON_SLOT=" + rep.Slot,
		"HACRON_FENCING_TOKEN=" + strconv.FormatInt(rep.Token, 10),
	}, Nice: r.Nice}
	b, _ := json.Marshal(ahead)
	_, werr := handshake.Write(b)
	handshake.Close()
	if werr != nil {
		<-shimDone
		return fmt.Errorf("start job: %w", werr)
	}

	s := supervisor{
		pgid:     shim,
		grace:    time.Duration(rep.KillGraceMS) * time.Millisecond,
		deadline: fromMono(rep.DeadlineMono),
		timeout:  r.Timeout,
		log:      log,
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
	code, result := s.supervise(shimDone, fromAgent)
	// The agent records the end; a hung agent must not hold up the exit
	// for long (it records the end itself when the group is gone).
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	if writeMsg(conn, request{V: protoVersion, Op: "exit", ExitCode: code, Result: result}) == nil {
		ack := time.After(time.Second)
	wait:
		for {
			select {
			case m, ok := <-fromAgent:
				if !ok || m.OK {
					break wait
				}
			case <-ack:
				break wait
			}
		}
	}
	status := "ok"
	if result != resultOK {
		status = "fail"
	}
	log.Info("run", "cluster", g.Cluster, "state", "active", "status", status, "dur", fmt.Sprintf("%.3f", time.Since(start).Seconds()),
		"job", job, "slot", rep.Slot, "token", rep.Token, "exit_code", code, "result", result, "cmd", joinArgs(r.Command))
	return silentExit(code)
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
			if m.Lost != "" {
				terminate(resultLost, "leadership lost: terminating the job ("+m.Lost+")")
			} else if m.DeadlineMono != 0 && why == "" {
				s.deadline = fromMono(m.DeadlineMono)
				lease.Reset(time.Until(s.deadline))
			}
		case <-lease.C:
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

// shimGo is what the wrapper tells the shim once the run is admitted.
type shimGo struct {
	Env  []string `json:"env"`
	Nice *int     `json:"nice,omitempty"`
}

// startShim starts `hacron __exec COMMAND...` in a new process group. It
// waits on fd 3 for the go-ahead, then becomes the job with execve.
func startShim(argv []string) (int, *os.File, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return 0, nil, err
	}
	defer rd.Close()
	attr := &os.ProcAttr{
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr, rd},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	p, err := os.StartProcess(exe, append([]string{"hacron", execShimArg}, argv...), attr)
	if err != nil {
		wr.Close()
		return 0, nil, fmt.Errorf("start job: %w", err)
	}
	// reapChildren waits for it; the Process must not.
	pid := p.Pid
	p.Release()
	return pid, wr, nil
}

// execShim is the job's first moments: wait for the go-ahead on fd 3, then
// exec. No go-ahead (the run was skipped, or the wrapper died) means exit
// without running anything.
func execShim(argv []string) {
	f := os.NewFile(shimHandshakeFD, "handshake")
	b, err := io.ReadAll(io.LimitReader(f, maxMessage))
	f.Close()
	if err != nil || len(b) == 0 || len(argv) == 0 {
		os.Exit(exitUsage)
	}
	var g shimGo
	if err := json.Unmarshal(b, &g); err != nil {
		os.Exit(exitUsage)
	}
	if g.Nice != nil {
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, *g.Nice); err != nil {
			printError(os.Stderr, fmt.Errorf("nice %d: %w", *g.Nice, err))
			os.Exit(exitUsage)
		}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		shimFail(argv[0], err)
	}
	err = syscall.Exec(path, argv, append(os.Environ(), g.Env...))
	shimFail(argv[0], err)
}

// shimFail reports why the command could not be executed: 127 when it is
// not there, 126 when it is there but cannot run (the shell's codes).
func shimFail(cmd string, err error) {
	code := exitNotExec
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) {
		code = exitNotFound
		err = errors.New("command not found")
	} else if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EACCES) {
		err = errors.New("permission denied")
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	printError(os.Stderr, fmt.Errorf("%s: %w", cmd, err))
	os.Exit(code)
}
