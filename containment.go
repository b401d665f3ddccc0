package main

// Containment: what holds a run's processes, so that a run is over only
// when all of them are gone. The job's process group always; where hacron
// runs as root and a cgroup hierarchy is writable, a cgroup of the run's
// own as well, which a process cannot leave by setsid or a double fork.
// The agent makes the cgroups of the runs it admits (under a scope of its
// own, where the next agent of the node finds what it left); a direct run
// makes its own.

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
	"time"

	"hacron/internal/contain"
)

// detectContainment finds the containment this process can give runs.
// Tests force a kind through it (only in the test binary's hacron).
var detectContainment = contain.Detect

// leftoverWait bounds the wait for a run's processes to go after SIGKILL;
// only a process stuck in the kernel (a hung NFS mount) takes longer.
const leftoverWait = 2 * time.Second

// cgroupName makes a name a cgroup directory takes: cluster names may
// begin with a dot, cgroup names may not.
func cgroupName(s string) string {
	if strings.HasPrefix(s, ".") {
		return "_" + s
	}
	return s
}

// agentScope holds the cgroups of one agent's runs: the cluster, and a
// hash of the socket path, which tells apart two agents of one cluster on
// one host (tests run several) and is the same for an agent that restarts.
func agentScope(cluster, socket string) string {
	if abs, err := filepath.Abs(socket); err == nil {
		socket = abs
	}
	sum := sha256.Sum256([]byte(socket))
	return "agent/" + cgroupName(cluster) + "-" + hex.EncodeToString(sum[:4])
}

// directScope holds the cgroups of a cluster's direct runs on this host.
func directScope(cluster string) string { return "direct/" + cgroupName(cluster) }

// runStateDir is where an agent keeps a file per run it admitted, for the
// next agent on this node should this one die: beside the socket, one
// directory per socket (/run/hacron/runs/<cluster> by default).
func runStateDir(socket string) string {
	return filepath.Join(filepath.Dir(socket), "runs", strings.TrimSuffix(filepath.Base(socket), ".sock"))
}

// newRunID names a run's cgroup and run-state file: random, so that no job
// or user name has to fit a directory name.
func newRunID() string { return "r-" + newGUID()[:16] }

// enclose gives a run of group g a cgroup named id under scope, with the
// group's leader (still waiting for its go-ahead, so alone in its group)
// moved in: whatever the job starts is born inside. Without a cgroup
// hierarchy the group alone is the run.
func enclose(h *contain.Hierarchy, scope, id string, g *contain.Group) (*contain.Run, error) {
	if h.Kind == contain.PGroup {
		return contain.NewRun(g, nil), nil
	}
	cg, err := h.Create(scope, id)
	if err != nil {
		return nil, err
	}
	if err := cg.Add(g.Pgid()); err != nil {
		_ = cg.Remove() // empty (nothing was added); Add's error is the one to report
		return nil, err
	}
	return contain.NewRun(g, cg), nil
}

// dropRun ends a run that was not admitted, whose job never started (its
// first process still waits for the go-ahead, or has given up), and
// removes its cgroup.
func dropRun(run *contain.Run) error {
	defer run.Close()
	if run.Cgroup() == nil {
		return nil
	}
	run.Kill()
	waitUntil(leftoverWait, run.Empty)
	return run.Remove()
}
