package main

// hacron logs: the end of a run's output, as its run record keeps it
// (output_tail), read from ZooKeeper on any host.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"
)

type logsCmd struct {
	Job  string `arg:"" name:"job" help:"The job: a name as hacron run --name takes it (a non-root user's own job), or USER:JOB."`
	Slot string `name:"slot" placeholder:"KEY" help:"The run of this slot (default: the newest run that left output)."`

	job string // Job as it is named in ZooKeeper
}

func (l *logsCmd) Validate() error {
	if l.Slot != "" {
		if err := validSlot(l.Slot); err != nil {
			return err
		}
	}
	var err error
	l.job, err = statusJobName(l.Job, os.Getuid())
	return err
}

func (l *logsCmd) Run(ctx context.Context, g *globals) error {
	log, err := newLogger(g, slog.LevelWarn)
	if err != nil {
		return err
	}
	zc, err := dialZK(ctx, g.zkConfig(), log)
	if err != nil {
		return err
	}
	defer zc.Close()
	if err := clusterExists(zc, g); err != nil {
		return err
	}
	tail, err := readOutputTail(ctx, zc, g.Cluster, l.job, l.Slot)
	if err != nil {
		return err
	}
	// Cleaned again: a record is data from ZooKeeper, and whoever can
	// write there must not reach the reader's terminal.
	_, err = io.WriteString(os.Stdout, cleanOutput(tail))
	return err
}

// noOutputHint says where output is recorded, for a run without any.
const noOutputHint = "output is recorded for the runs the agent starts from its crontab; hacron run leaves its job's output to cron"

// readOutputTail is the output tail of job's run in slot, or of its newest
// run that has one when slot is empty. Whatever is missing (the job, the
// slot's run, any output) is an exit-1 error saying which.
func readOutputTail(ctx context.Context, zc *zkClient, cluster, job, slot string) (string, error) {
	conn := zc.snapshot().Conn
	jobNode := zc.abs(jobPath("/hacron/"+cluster, job))
	noJob := func() error {
		return withExit(exitNoSuch, fmt.Errorf("no job %s in cluster %s", job, cluster))
	}
	if slot != "" {
		data, _, err := conn.Get(jobNode + "/runs/" + slot)
		if errors.Is(err, zk.ErrNoNode) {
			if ok, _, err := conn.Exists(jobNode); err == nil && !ok {
				return "", noJob()
			}
			return "", withExit(exitNoSuch, fmt.Errorf("no run of job %s in slot %s", job, slot))
		}
		if err != nil {
			return "", noAuth(err, "read "+jobNode+"/runs/"+slot, jobNode+"/runs/"+slot)
		}
		r, err := decodeRunRecord(data)
		if err != nil {
			return "", withExit(exitNoSuch, fmt.Errorf("the record of job %s in slot %s is not a run record: %v", job, slot, err))
		}
		if r.OutputTail == "" {
			return "", withExit(exitNoSuch, withHint(fmt.Errorf("the run of job %s in slot %s has no output recorded", job, slot), noOutputHint))
		}
		return r.OutputTail, nil
	}
	recs, err := listRecords(ctx, conn, jobNode+"/runs")
	if errors.Is(err, zk.ErrNoNode) {
		return "", noJob()
	}
	if err != nil {
		return "", noAuth(err, "read the runs of "+jobNode, jobNode+"/runs")
	}
	for _, r := range recs { // newest first
		if r.ok && r.rec.OutputTail != "" {
			return r.rec.OutputTail, nil
		}
	}
	return "", withExit(exitNoSuch, withHint(fmt.Errorf("no run of job %s has output recorded", job), noOutputHint))
}

// maxOutputTail is how much of a run's output its record keeps, in bytes.
const maxOutputTail = 4096

// outputTail is what a run record keeps of a job's output b: its last
// maxOutputTail bytes, starting at a character, as cleanOutput makes them,
// and at most maxOutputTail bytes long.
func outputTail(b []byte) string {
	if len(b) > maxOutputTail {
		b = b[len(b)-maxOutputTail:]
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	s := cleanOutput(string(b))
	if cut := len(s) - maxOutputTail; cut > 0 {
		// Cleaning made it longer (a byte that is not UTF-8 becomes a
		// three-byte U+FFFD): drop whole characters from the front.
		for !utf8.RuneStart(s[cut]) {
			cut++
		}
		s = s[cut:]
	}
	return s
}

// cleanOutput makes output text that is safe to store and to print on a
// terminal: bytes that are not UTF-8, and control characters other than
// newline and tab (escape sequences, carriage returns, C1 controls), become
// U+FFFD. Text it made comes out unchanged.
func cleanOutput(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			return utf8.RuneError
		}
		return r // strings.Map already gives U+FFFD for bytes that are not UTF-8
	}, s)
}
