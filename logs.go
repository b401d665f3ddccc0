package main

// hacron logs: the end of a run's output, as its run record keeps it
// (output_tail), read from ZooKeeper on any host.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

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
	zc, err := openCluster(ctx, g)
	if err != nil {
		return err
	}
	defer zc.Close()
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
			return "", withExit(exitNoSuch, fmt.Errorf("the record of job %s in slot %s is not a run record: %w", job, slot, err))
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
