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
	"syscall"

	"github.com/go-zookeeper/zk"
	"hacron/internal/wire"
)

// admitDirect admits one run in direct mode: its own session, the job's
// own election, and the same admission as an agent's.
func admitDirect(ctx context.Context, g *globals, log *slog.Logger, req runRequest) (*grant, string, error) {
	job, err := jobName(req.job, req.uid)
	if err != nil {
		return nil, "", err
	}
	slot := req.slot
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
	for _, p := range []string{jobPath(root, job) + "/runs", jobPath(root, job) + "/lock"} {
		if err := zc.ensurePath(conn, p); err != nil {
			return fail(fmt.Errorf("admission: %w", err))
		}
	}
	// A slot someone already ran is skipped without joining anything.
	if taken, _, err := conn.Exists(zc.abs(jobPath(root, job) + "/runs/" + slot)); err == nil && taken {
		zc.Close()
		return nil, skipSlot, nil
	}

	el := newElection(zc, electionConfig{Parent: jobPath(root, job) + "/lock", ID: g.Node, Version: version}, log)
	elCtx, stopElection := context.WithCancel(context.Background())
	elDone := make(chan struct{})
	go func() {
		defer close(elDone)
		if err := el.Run(elCtx); err != nil {
			log.Error("election stopped", "err", err)
		}
	}()
	// release is rule 11 (docs/zookeeper-rules.md) for the job's lock:
	// delete the node, close the session.
	release := func() {
		stopElection()
		<-elDone
		zc.Close()
	}
	adm := newAdmitter(el, zc, root, g.Node, log)
	adm.made[job] = true
	// Try once (the default) still waits for the election to place this
	// run, at most one session timeout.
	req.job, req.claim = job, true
	req.limit = max(req.wait, zc.cfg.SessionTimeout)
	req.settled = func(st standing) bool { return st.Ahead > 0 }
	t, skip, err := adm.admit(ctx, req)
	if err != nil || skip != "" {
		release()
		return nil, skip, err
	}
	// Holding the job's lock means every earlier run of the job is over:
	// one whose wrapper was killed left its record without an end.
	// The records it lists serve the pruning after the run: nobody else
	// writes to the job's runs while we hold its lock.
	leftovers := make(chan struct{})
	var listed []storedRecord
	go func() {
		defer close(leftovers)
		lctx, cancel := context.WithTimeout(context.Background(), zc.cfg.SessionTimeout)
		defer cancel()
		var n int
		var err error
		listed, n, err = completeLeftovers(lctx, zc.snapshot().Conn, t.adm.runsPath(), func(name string, _ runRecord) bool {
			return t.adm.runsPath()+"/"+name != t.record
		})
		if n > 0 {
			log.Warn("completed run records of earlier runs left without an end as unknown", "job", job, "records", n)
		}
		if err != nil {
			log.Debug("completing earlier run records", "job", job, "err", err)
		}
	}()
	news := make(chan leaseNews, 16)
	done := make(chan struct{})
	go followLease(el, t, news, done)
	return &grant{
		cluster: g.Cluster, node: g.Node, job: job, slot: slot, token: t.token,
		grace: t.grace, deadline: t.deadline, news: news,
		report: func(code int, result string) {
			close(done)
			// The lock is held until the record is complete, or the
			// session is surely gone (2T): then the next run of the job
			// completes it as unknown.
			fctx, cancel := context.WithTimeout(context.Background(), 2*zc.cfg.SessionTimeout)
			if err := finishRun(fctx, zc, t, &code, result); err != nil {
				log.Warn("run record", "record", t.record, "err", err)
			}
			cancel()
			<-leftovers
			if err := pruneListed(zc.snapshot().Conn, t.adm.runsPath(), listed, g.History); err != nil {
				log.Warn("pruning run records", "job", job, "err", err)
			}
			release()
		},
	}, "", nil
}

// watchdogWait begins the watchdog's script: it waits for hacron run to
// say "done"; the run's kill script (contain.Run.KillScript) follows, for
// when hacron run disappears without saying so (SIGKILL, OOM): in direct
// mode there is no agent left to end the run, and the session, with the
// lock, lives on for up to T.
const watchdogWait = `read -r x <&3; [ "$x" = done ] && exit 0
`

// startWatchdog starts the watchdog in a session of its own, so that a
// signal to hacron run's process group does not take it along, and outside
// the run's cgroup (it is started by hacron run, not by the job).
func startWatchdog(kill string) (*os.File, error) {
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// The watchdog's ends, its own after the fork.
	defer func() { _ = rd.Close() }()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		_ = wr.Close() // nothing was written
		return nil, err
	}
	defer func() { _ = devnull.Close() }()
	// syscall.ForkExec, as for the shim (startShim): nothing waits for it.
	_, err = syscall.ForkExec("/bin/sh", []string{"sh", "-c", watchdogWait + kill, "hacron-watchdog"},
		&syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{devnull.Fd(), devnull.Fd(), devnull.Fd(), rd.Fd()}, Sys: &syscall.SysProcAttr{Setsid: true}})
	if err != nil {
		_ = wr.Close() // nothing was written
		return nil, fmt.Errorf("watchdog: %w", &os.PathError{Op: "fork/exec", Path: "/bin/sh", Err: err})
	}
	return wr, nil
}

// stopWatchdog tells the watchdog (if any) that the run is over.
func stopWatchdog(w *os.File) {
	if w == nil {
		return
	}
	// A watchdog that is gone, or misses this, ends a run that is over:
	// nothing is left to end, and nobody to tell.
	_, _ = io.WriteString(w, "done\n")
	_ = w.Close()
}

// directState answers `hacron state` in direct mode from ZooKeeper: this
// node is active while it holds some job's lock.
func directState(ctx context.Context, g *globals) (wire.StateInfo, error) {
	log := slog.New(slog.DiscardHandler)
	zc, err := dialZK(ctx, g.zkConfig(), log)
	if err != nil {
		return wire.StateInfo{}, err
	}
	defer zc.Close()
	conn := zc.snapshot().Conn
	if mode, _, err := conn.Get(zc.abs(g.clusterRoot() + "/mode")); err == nil && string(mode) != "direct" {
		return wire.StateInfo{}, withHint(fmt.Errorf("cluster %s is in %s mode, not direct", g.Cluster, mode),
			"ask the agent: hacron state without --direct")
	}
	info := wire.StateInfo{Cluster: g.Cluster, Node: g.Node, State: "passive", Reason: "holds no job lock", SessionID: "0x0"}
	jobs, _, err := conn.Children(zc.abs(g.clusterRoot() + "/jobs"))
	if errors.Is(err, zk.ErrNoNode) {
		return info, nil
	}
	if err != nil {
		return wire.StateInfo{}, err
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
