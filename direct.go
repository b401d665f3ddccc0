package main

// Direct mode: no agent. Each `hacron run` opens its own ZooKeeper session,
// joins the job's own election (jobs/<job>/lock/) for at most --wait (by
// default it tries once), claims the slot in the admission Multi, holds the
// lease itself while the job runs, then releases and closes the session.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
)

func (r *runCmd) admitDirect(ctx context.Context, g *globals, log *slog.Logger, job, slot string, pgid int) (*grant, string, error) {
	job, err := jobName(job, os.Getuid())
	if err != nil {
		return nil, "", err
	}
	zc, err := dialZK(ctx, g.zkConfig(), log)
	if err != nil {
		return nil, "", err
	}
	root := g.clusterRoot()
	fail := func(err error) (*grant, string, error) {
		zc.Close()
		return nil, "", err
	}
	if err := claimMode(zc, root, "direct"); err != nil {
		return fail(err)
	}
	conn := zc.snapshot().Conn
	adm := admission{root: zc.abs(root), job: job, slot: slot, claim: true, noOverlap: r.NoOverlap, acl: zc.acl}
	for _, p := range []string{jobPath(root, job) + "/runs", jobPath(root, job) + "/lock"} {
		if err := zc.ensurePath(conn, p); err != nil {
			return fail(fmt.Errorf("admission: %w", err))
		}
	}
	// A slot someone already ran is skipped without joining anything.
	if taken, _, err := adm.slotTaken(conn); err == nil && taken {
		zc.Close()
		return nil, skipSlot, nil
	}

	el := newElection(zc, electionConfig{Parent: jobPath(root, job) + "/lock", ID: g.Node, Version: version}, log)
	elCtx, stopElection := context.WithCancel(context.Background())
	elDone := make(chan struct{})
	go func() {
		defer close(elDone)
		el.Run(elCtx)
	}()
	// release is rule 11 for the job's lock: delete the node, close the
	// session.
	release := func() {
		stopElection()
		<-elDone
		zc.Close()
	}
	// Try once (the default) still waits for the election to place this
	// run, at most one session timeout.
	st, skip := awaitTurn(ctx, el, zc, adm, r.Wait, max(r.Wait, zc.cfg.SessionTimeout), func(st status) bool { return st.Ahead > 0 })
	if skip != "" {
		release()
		return nil, skip, nil
	}
	grace, err := killGrace(st.Timeout, durationOr(r.KillGrace), r.KillGrace != nil)
	if err != nil {
		release()
		return nil, "", err
	}
	adm.rec = runRecord{Job: job, Node: g.Node, Slot: slot, Start: jsonTime(time.Now()), Token: st.Token, UID: os.Getuid(), User: userName(os.Getuid())}
	ast, res, err := el.admit(adm.ops()...)
	record, skip, err := adm.outcome(res, err)
	if err != nil || skip != "" {
		release()
		return nil, skip, err
	}

	watchdog, err := startWatchdog(pgid)
	if err != nil {
		unclaim(zc.snapshot().Conn, adm, record)
		release()
		return nil, "", err
	}

	// The election's renewals and losses, in the agent's words, for the
	// supervisor.
	updates := make(chan reply, 16)
	feed := el.subscribe()
	watchDone := make(chan struct{})
	go func() {
		defer el.unsubscribe(feed)
		var last time.Time
		for {
			select {
			case <-feed.C():
			case <-watchDone:
				return
			}
			for _, s := range feed.next() {
				m, news := leaseNews(s, ast.Token, last)
				if !news {
					continue
				}
				last = s.Deadline
				select {
				case updates <- m:
				default: // the supervisor is behind; a later one follows
				}
				if m.Lost != "" {
					return
				}
			}
		}
	}()
	return &grant{
		cluster: g.Cluster, node: g.Node, job: job, slot: slot, token: ast.Token,
		grace: grace, deadline: ast.Deadline, updates: updates,
		report: func(code int, result string) {
			io.WriteString(watchdog, "done\n")
			watchdog.Close()
			close(watchDone)
			c := zc.snapshot().Conn
			if err := finishRecord(c, adm, record, &code, result); err != nil {
				log.Warn("run record", "record", record, "err", err)
			}
			pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := pruneRuns(pctx, c, adm.runsPath(), g.History); err != nil {
				log.Warn("pruning run records", "job", job, "err", err)
			}
			cancel()
			release()
		},
	}, "", nil
}

// watchdogScript ends the job's process group when hacron run disappears
// without saying "done" (SIGKILL, OOM): in direct mode there is no agent
// left to end it, and the session, with the lock, lives on for up to T.
const watchdogScript = `read -r x <&3; [ "$x" = done ] || kill -9 -"$1" 2>/dev/null`

// startWatchdog starts the watchdog in a session of its own, so that a
// signal to hacron run's process group does not take it along.
func startWatchdog(pgid int) (*os.File, error) {
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		wr.Close()
		return nil, err
	}
	defer devnull.Close()
	// syscall.ForkExec, as for the shim (startShim): nothing waits for it.
	_, err = syscall.ForkExec("/bin/sh", []string{"sh", "-c", watchdogScript, "hacron-watchdog", strconv.Itoa(pgid)},
		&syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{devnull.Fd(), devnull.Fd(), devnull.Fd(), rd.Fd()}, Sys: &syscall.SysProcAttr{Setsid: true}})
	if err != nil {
		wr.Close()
		return nil, fmt.Errorf("watchdog: %w", &os.PathError{Op: "fork/exec", Path: "/bin/sh", Err: err})
	}
	return wr, nil
}

func durationOr(d *time.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return *d
}

// directState answers `hacron state` in direct mode from ZooKeeper: this
// node is active while it holds some job's lock.
func directState(ctx context.Context, g *globals) (stateInfo, error) {
	log := slog.New(slog.DiscardHandler)
	zc, err := dialZK(ctx, g.zkConfig(), log)
	if err != nil {
		return stateInfo{}, err
	}
	defer zc.Close()
	conn := zc.snapshot().Conn
	info := stateInfo{Cluster: g.Cluster, Node: g.Node, State: "passive", Reason: "holds no job lock", SessionID: "0x0"}
	jobs, _, err := conn.Children(zc.abs(g.clusterRoot() + "/jobs"))
	if errors.Is(err, zk.ErrNoNode) {
		return info, nil
	}
	if err != nil {
		return stateInfo{}, err
	}
	for _, job := range jobs {
		lock := zc.abs(jobPath(g.clusterRoot(), job) + "/lock")
		kids, _, err := conn.Children(lock)
		if err != nil {
			continue
		}
		cands := parseCandidates(kids, nil)
		if len(cands) == 0 {
			continue
		}
		m, st, err := readMember(conn, lock+"/"+cands[0].name)
		if err == nil && m.Node == g.Node {
			info.State, info.Reason, info.Leader, info.Token = "active", "holds the lock of job "+job, g.Node, st.Czxid
			return info, nil
		}
	}
	return info, nil
}
