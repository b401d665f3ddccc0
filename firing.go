package main

// One firing of the agent's own schedule (hacron agent --crontab): the
// agent is the job's wrapper. The run is admitted, contained, kept inside
// its lease and recorded exactly as a `hacron run` in agent mode is; its
// output goes to the agent's log, its last 4 KiB into the run record, and,
// with MAILTO, to mail.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hacron/internal/contain"
)

// firing is one scheduled run: what the crontab says about the job, and
// the slot.
type firing struct {
	at        time.Time // the firing time: its slot and jitter, or now for a catch-up
	job       string    // the job's name in ZooKeeper
	slot      string
	schedule  string // the crontab line's schedule, recorded in the job node
	command   string // run by /bin/sh -c
	stdin     string // cron's % lines
	env       []string
	timeout   time.Duration
	noOverlap bool
	killGrace *time.Duration
	nice      *int
	onFailure string
	mailTo    string // "": no mail
}

// maxMailOutput bounds the output kept for a run's mail; cron mails all of
// it, but a job that writes without end must not grow the agent.
const maxMailOutput = 256 << 10

// fire runs one firing to its end and returns its result ("" when it was
// not admitted, with the reason).
func (a *agent) fire(ctx context.Context, f firing) (result, skip string) {
	log := a.log.With("job", f.job, "slot", f.slot)
	out, err := newJobOutput()
	if err != nil {
		log.Error("scheduled run: output pipe", "err", err)
		return "", "output pipe"
	}
	defer out.closeRead()
	out.log = log
	go out.read()
	stdin, err := stdinFor(f.stdin)
	if err != nil {
		out.closeWrite()
		log.Error("scheduled run: stdin", "err", err)
		return "", "stdin"
	}
	env := append(os.Environ(), f.env...)
	pid, handshake, err := startCommandShim(f.command, env, []uintptr{stdin.Fd(), out.w.Fd(), out.w.Fd()})
	_ = stdin.Close() // the job's now
	out.closeWrite()  // the job's now
	if err != nil {
		log.Error("scheduled run: start", "err", err)
		return "", "start"
	}
	done := make(chan syscall.WaitStatus, 1)
	go waitPID(pid, done)
	grp, err := contain.OpenGroup(pid)
	if err != nil {
		_ = handshake.Close()
		<-done
		log.Error("scheduled run: the job's group", "err", err)
		return "", "start"
	}
	// Prepared ahead of the firing time (the job's nodes too, on its first
	// firing): the admission waits for it.
	if err := a.adm.ensureJob(f.job, f.schedule); err != nil {
		log.Debug("scheduled run: the job's nodes", "err", err) // admit tries again, and says
	}
	select {
	case <-time.After(time.Until(f.at)):
	case <-ctx.Done():
	}
	run := &admittedRun{id: newRunID(), pgid: pid, start: time.Now(), run: contain.NewRun(grp, nil)}
	req := runRequest{job: f.job, slot: f.slot, schedule: f.schedule, claim: true, noOverlap: f.noOverlap,
		uid: os.Getuid(), cmd: recordCmd([]string{f.command}), pgid: pid, containment: a.hier.Kind,
		hold: func(token int64, record string) (func(), string, error) {
			return a.hold(run, grp, f.job, token, record)
		},
	}
	if f.killGrace != nil {
		req.killGrace, req.killGraceSet = *f.killGrace, true
	}
	t, skip, err := a.adm.admit(ctx, req)
	if err != nil || skip != "" {
		_ = handshake.Close() // no go-ahead: the shim exits, running nothing
		<-done
		a.drop(run, run.stateWritten)
		if err != nil {
			log.Error("scheduled run not admitted", "err", err)
			return "", err.Error()
		}
		log.Debug("scheduled run skipped", "reason", skip)
		return "", skip
	}
	a.mu.Lock()
	run.t = t
	a.open[t.record] = true
	revokeCh := run.revokeCh
	a.mu.Unlock()
	log.Info("run", "cluster", a.g.Cluster, "state", "active", "status", "start", "token", t.token, "record", t.record,
		"containment", run.run.Containment(), "cmd", f.command)

	news := make(chan leaseNews, 16)
	stop := make(chan struct{})
	go a.followRun(t, revokeCh, news, stop)
	s := supervisor{run: run.run, grace: t.grace, deadline: t.deadline, timeout: f.timeout, log: log}
	code, result := a.superviseFiring(&s, f, t.token, handshake, pid, done, news)
	close(stop)
	a.endLeftovers(run, t.grace)
	tail, mail := out.wait(leftoverWait)
	t.adm.rec.OutputTail = outputTail(tail)
	a.finish(run, &code, result)
	if f.onFailure != "" && hookResults[result] {
		agentHook(log, f.onFailure, hookEnv(a.g.Cluster, a.g.Node, f.job, f.slot, t.token, result, code, f.env))
	}
	if f.mailTo != "" && len(mail) > 0 {
		sendMail(log, f, mail)
	}
	return result, ""
}

// superviseFiring starts the admitted job and supervises it; a job that
// never started is reported as hacron run reports one.
func (a *agent) superviseFiring(s *supervisor, f firing, token int64, handshake *os.File, pid int, done chan syscall.WaitStatus, news chan leaseNews) (int, string) {
	notStarted := func(code int, result string) (int, string) {
		_ = handshake.Close()
		<-done
		return code, result
	}
	if f.nice != nil {
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, pid, *f.nice); err != nil {
			s.log.Error("scheduled run: nice", "nice", *f.nice, "err", err)
			return notStarted(exitUsage, resultFailed)
		}
	}
	var ch <-chan leaseNews = news
	if code, result, err := s.letGo(&ch, func() error { return goAhead(handshake, a.g.Cluster, a.g.Node, f.job, f.slot, token) }); result != "" {
		if err != nil {
			s.log.Error("scheduled run", "err", err)
		} else {
			s.log.Warn("the lease ended before the job could start; it did not run", "token", token)
		}
		return notStarted(code, result)
	}
	a.metrics.firingDelay.Observe(time.Since(f.at).Seconds())
	return s.supervise(done, news)
}

// followRun is the lease's news for one scheduled run, the agent's
// stepping down included (a wrapper hears that from converse).
func (a *agent) followRun(t *ticket, revokeCh <-chan struct{}, out chan<- leaseNews, stop <-chan struct{}) {
	in := make(chan leaseNews, 16)
	done := make(chan struct{})
	defer close(done)
	go followLease(a.el, t, in, done)
	for {
		select {
		case n := <-in:
			select {
			case out <- n:
			case <-stop:
				return
			}
		case <-revokeCh:
			revokeCh = nil
			select {
			case out <- leaseNews{kind: newsLost, why: "the agent is stepping down"}:
			case <-stop:
				return
			}
		case <-stop:
			return
		}
	}
}

// waitPID reports the exit of one child (the agent reaps only its own
// children, one by one: the job's orphans are not its to wait for).
func waitPID(pid int, done chan<- syscall.WaitStatus) {
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		done <- ws
		return
	}
}

// stdinFor is the job's standard input: cron's % lines, or /dev/null.
func stdinFor(text string) (*os.File, error) {
	if text == "" {
		return os.Open(os.DevNull)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go func() {
		// A job that does not read its input must not hold up anything.
		_, _ = io.WriteString(w, text)
		_ = w.Close()
	}()
	return r, nil
}

// jobOutput reads a scheduled job's stdout and stderr (one pipe, as a
// terminal would interleave them): every line to the agent's log with the
// job's name, the last 4 KiB for the record, up to maxMailOutput for mail.
type jobOutput struct {
	r, w *os.File
	done chan struct{}
	tail []byte
	mail bytes.Buffer
	over bool // mail output cut
	log  *slog.Logger
}

func newJobOutput() (*jobOutput, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &jobOutput{r: r, w: w, done: make(chan struct{})}, nil
}

func (o *jobOutput) closeWrite() {
	if o.w != nil {
		_ = o.w.Close()
		o.w = nil
	}
}

func (o *jobOutput) closeRead() { _ = o.r.Close() }

// read runs until every writer has closed the pipe.
func (o *jobOutput) read() {
	defer close(o.done)
	br := bufio.NewReaderSize(o.r, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			o.take(line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (o *jobOutput) take(b []byte) {
	o.tail = append(o.tail, b...)
	if len(o.tail) > 2*maxOutputTail {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-maxOutputTail:]...)
	}
	if o.mail.Len()+len(b) <= maxMailOutput {
		o.mail.Write(b)
	} else {
		o.over = true
	}
	if o.log != nil {
		o.log.Info("output", "line", strings.TrimRight(string(b), "\n"))
	}
}

// wait waits, up to limit, for the output's end (a process that left the
// run holding the pipe was ended with the run; one stuck in the kernel is
// not waited for) and returns the tail and the mail's text.
func (o *jobOutput) wait(limit time.Duration) (tail, mail []byte) {
	select {
	case <-o.done:
	case <-time.After(limit):
		_ = o.r.Close()
		<-o.done
	}
	if o.over {
		o.mail.WriteString("\n[output cut at " + strconv.Itoa(maxMailOutput) + " bytes]\n")
	}
	return o.tail, o.mail.Bytes()
}

// hookResults are the results on which a run's on-failure command runs.
var hookResults = map[string]bool{resultFailed: true, resultKilled: true, resultLost: true, resultTimeout: true}

// hookEnv is the on-failure command's environment: the run's HACRON_*
// variables and its result and exit code.
func hookEnv(cluster, node, job, slot string, token int64, result string, code int, extra []string) []string {
	env := append(os.Environ(), extra...)
	return append(env,
		"HACRON_CLUSTER="+cluster,
		"HACRON_NODE="+node,
		"HACRON_JOB="+job,
		"HACRON_SLOT="+slot,
		"HACRON_FENCING_TOKEN="+strconv.FormatInt(token, 10),
		"HACRON_RESULT="+result,
		"HACRON_EXIT_CODE="+strconv.Itoa(code),
	)
}

// runHook runs an on-failure command through /bin/sh -c and waits for it.
// Its failure is the hook's, never the run's: the caller reports it.
func runHook(cmd string, env []string, stdout, stderr io.Writer) error {
	c := exec.Command("/bin/sh", "-c", cmd)
	c.Env = env
	c.Stdout, c.Stderr = stdout, stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("on-failure command %q: %w", cmd, err)
	}
	return nil
}

// agentHook runs a scheduled run's on-failure command; its output goes
// to the agent's log, line by line.
func agentHook(log *slog.Logger, cmd string, env []string) {
	var out bytes.Buffer
	err := runHook(cmd, env, &out, &out)
	if out.Len() > 0 {
		for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
			log.Warn("on-failure output", "line", l)
		}
	}
	if err != nil {
		log.Warn("on-failure", "err", err)
	}
}
