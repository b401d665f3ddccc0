package main

// hacron check: is this node's setup sound? It reads the configuration,
// connects, and shows the numbers the guarantees rest on. Exit 0 when
// sound (warnings allowed), 1 when something is wrong.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"hacron/internal/contain"
	"hacron/internal/crontab"
	"hacron/internal/lease"
)

type checkCmd struct {
	Crontab   string `name:"crontab" placeholder:"PATH" help:"Check this crontab of hacron agent --crontab, line by line (default: the crontab config key)."`
	RcronConf string `name:"rcron-conf" placeholder:"FILE" default:"${rcron_config}" help:"rcron's config, checked against hacron's for the rcron drop-in; a missing default file is fine (default: ${default})."`
	Missed    bool   `name:"missed" help:"Check only that no job with a schedule left a slot of the last 24 h unrun: one line per job that did, exit 1."`
}

// exitCheckFailed is hacron check's "something is wrong".
const exitCheckFailed = 1

func (c *checkCmd) Run(ctx context.Context, g *globals, cfg *config) error {
	if c.Missed {
		return checkMissed(ctx, g, os.Stdout)
	}
	problems := runCheck(ctx, g, cfg, c.RcronConf, os.Stdout)
	if c.Crontab != "" {
		problems += checkCrontab(c.Crontab, os.Stdout)
	}
	if problems > 0 {
		return withExit(exitCheckFailed, fmt.Errorf("%d problem(s) found", problems))
	}
	return nil
}

func runCheck(ctx context.Context, g *globals, cfg *config, rcronPath string, w io.Writer) (problems int) {
	ok := func(format string, args ...any) { fmt.Fprintf(w, "ok       "+format+"\n", args...) }
	warn := func(format string, args ...any) { fmt.Fprintf(w, "warning  "+format+"\n", args...) }
	bad := func(format string, args ...any) {
		problems++
		fmt.Fprintf(w, "PROBLEM  "+format+"\n", args...)
	}
	// badErr is a problem with the hints of its error, each on a line.
	badErr := func(err error) {
		bad("%v", err)
		for _, h := range hintsOf(err) {
			fmt.Fprintf(w, "hint     %s\n", h)
		}
	}

	path, named := g.Config, g.Config != ""
	if !named {
		path = defaultConfigPath
	}
	if _, err := os.Stat(path); err == nil {
		ok("config %s read", path)
	} else if !named {
		ok("config %s absent: defaults, environment and flags only", path)
	}
	for _, f := range configFindings(g, cfg, rcronPath) {
		switch f.level {
		case findingOK:
			ok("%s", f.msg)
		case findingWarning:
			warn("%s", f.msg)
		default:
			bad("%s", f.msg)
		}
	}
	mode := "agent"
	if g.Direct {
		mode = "direct"
	}
	ok("cluster %s, node %s, %s mode", g.Cluster, g.Node, mode)
	// What this process can hold a run with: what the agent (agent mode)
	// or hacron run (direct mode) gets when it runs as the same user.
	if h := detectContainment(); h.Kind == contain.PGroup {
		warn("containment pgroup (as uid %d): %s; a job that leaves its process group (setsid, a double fork) is not ended with its run", os.Geteuid(), h.Reason)
	} else {
		ok("containment %s (as uid %d): %s", h.Kind, os.Geteuid(), h.Reason)
	}

	if g.ZKAuthFile != "" {
		if user, _, err := readAuthFile(g.ZKAuthFile); err != nil {
			bad("%v", err)
		} else {
			ok("ZooKeeper digest auth as %q: hacron's nodes are writable by that identity only", user)
		}
	} else {
		warn("no ZooKeeper auth (--zk-auth-file): any client that reaches ZooKeeper can change hacron's nodes")
	}
	if g.ZKTLSCA != "" {
		ok("TLS to ZooKeeper, server certificates checked against %s", g.ZKTLSCA)
	} else {
		warn("plain TCP to ZooKeeper (no --zk-tls-ca)")
	}

	log := slog.New(slog.DiscardHandler)
	zc, err := dialZK(ctx, g.zkConfig(), log)
	if err != nil {
		bad("ZooKeeper: %v", err)
		return problems
	}
	defer zc.Close()
	s := zc.snapshot()
	ok("ZooKeeper %s: session 0x%x", g.ZK, s.ID)
	T := s.Timeout
	if T != g.SessionTimeout {
		warn("session timeout: asked %v, the servers granted %v (their minSessionTimeout/maxSessionTimeout); hacron uses %v", g.SessionTimeout, T, T)
	} else {
		ok("session timeout T = %v granted", T)
	}
	length := lease.Length(T)
	limit := lease.MaxKillGrace(T)
	ok("lease T/2 = %v, renewed every T/%d = %v; a crashed node's successor is active within T + 1 s = %v", length, lease.RenewDivisor, lease.RenewEvery(T), T+time.Second)
	if limit <= 0 {
		bad("kill grace: T = %v leaves no time to end jobs (T - T/2 - margin %v <= 0): raise --session-timeout", T, lease.KillMargin(T))
	} else {
		ok("kill grace at most T - T/2 - margin = %v - %v - %v = %v; the default (5s) becomes %v", T, length, lease.KillMargin(T), limit, min(lease.DefaultKillGrace, limit))
	}

	if !zc.checkACLs(s.Conn, aclReport{ok: ok, warn: warn, bad: badErr}) {
		return problems
	}
	doc, err := readStatus(zc, g.Cluster, statusQuery{})
	if err != nil {
		badErr(fmt.Errorf("reading %s: %w", zc.abs(g.clusterRoot()), err))
		return problems
	}
	switch doc.Mode {
	case "none":
		ok("cluster %s has no mode recorded yet (the first agent or direct run records it)", g.Cluster)
	case mode:
		ok("cluster %s is in %s mode", g.Cluster, doc.Mode)
	default:
		bad("cluster %s is in %s mode, this node is configured for %s mode", g.Cluster, doc.Mode, mode)
	}
	var names []string
	for _, m := range doc.Members {
		n := m.Node
		if m.Active {
			n += " (active, token " + fmt.Sprint(doc.Token) + ")"
		}
		names = append(names, n)
	}
	if mode == "agent" {
		if len(names) == 0 {
			warn("no agent in the election: no node is active")
		} else {
			ok("members: %s", strings.Join(names, ", "))
		}
		if foreign := foreignChildren(zc, g); len(foreign) > 0 {
			warn("election children that are not hacron's (ignored): %s", strings.Join(foreign, ", "))
		}
		if info, err := askState(g); err != nil {
			warn("local agent: %v", err)
		} else if info.Cluster != g.Cluster || info.Node != g.Node {
			bad("the agent at %s is node %s of cluster %s, not node %s of cluster %s", g.Socket, info.Node, info.Cluster, g.Node, g.Cluster)
		} else {
			ok("local agent at %s: %s (%s)", g.Socket, info.State, info.Reason)
		}
	}
	return problems
}

// checkMissed is hacron check --missed: a line for each job with a
// schedule whose slots of the last 24 h went unrun (or whose schedule in
// ZooKeeper cannot be read, so cannot be judged), and exit 1 when there is
// one. Nothing is printed when every slot ran.
func checkMissed(ctx context.Context, g *globals, w io.Writer) error {
	zc, err := dialZK(ctx, g.zkConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer zc.Close()
	if err := clusterExists(zc, g); err != nil {
		return err
	}
	doc, err := readStatus(zc, g.Cluster, statusQuery{last: 1})
	if err != nil {
		return fmt.Errorf("reading %s: %w", zc.abs(g.clusterRoot()), err)
	}
	bad := 0
	for _, j := range doc.Jobs {
		switch {
		case j.scheduleErr != nil:
			fmt.Fprintf(w, "%s: cannot be judged: %v\n", cell(j.Job, maxJobName), j.scheduleErr)
		case len(j.Missed) > 0:
			more := ""
			if j.missedCapped {
				more = " or more"
			}
			fmt.Fprintf(w, "%s: %d%s missed slot(s) in the last 24h, newest %s (schedule %s)\n",
				cell(j.Job, maxJobName), len(j.Missed), more, j.Missed[0], cell(j.Schedule, maxScheduleLen))
		default:
			continue
		}
		bad++
	}
	if bad > 0 {
		return withExit(exitCheckFailed, fmt.Errorf("%d job(s) with missed slots", bad))
	}
	return nil
}

// foreignChildren lists election children that do not have hacron's
// protected name: ignored for the order, reported here.
func foreignChildren(zc *zkClient, g *globals) []string {
	kids, _, err := zc.snapshot().Conn.Children(zc.abs(g.clusterRoot() + "/election"))
	if err != nil {
		return nil
	}
	var out []string
	for _, k := range kids {
		if _, ok := parseCandidate(k); !ok {
			out = append(out, k)
		}
	}
	return out
}

// A finding of hacron check about the configuration files.
type finding struct {
	level int
	msg   string
}

const (
	findingOK = iota
	findingWarning
	findingProblem
)

// configFindings checks what the configuration files say against each
// other: rcron's default_state, and, where an rcron.conf exists, what the
// rcron drop-in would make of it next to hacron's config (which alone the
// agent reads).
func configFindings(g *globals, cfg *config, rcronPath string) []finding {
	var out []finding
	add := func(level int, format string, args ...any) {
		out = append(out, finding{level, fmt.Sprintf(format, args...)})
	}
	var rc *config
	if _, err := os.Stat(rcronPath); err == nil || rcronPath != rcronDefaultConfig {
		var err error
		if rc, err = loadConfig(rcronPath, true); err != nil {
			add(findingProblem, "%v", err)
		}
	}
	// Once, whichever file says it: hacron has no state to fall back to.
	for _, c := range []*config{cfg, rc} {
		if c == nil {
			continue
		}
		if v, ok := c.ignoredActive(); ok {
			add(findingWarning, "default_state = active (%s) is ignored: a node is active only while it holds the ZooKeeper lock", v.where())
			break
		}
	}
	if rc == nil {
		return out
	}
	// The drop-in's cluster: HACRON_CLUSTER, else hacron's config, else
	// rcron's cluster_name, else the default. The agent's is g.Cluster.
	dropIn, from := "default", "the default"
	rcCluster, rcNames := rc.values["cluster"]
	if v, ok := os.LookupEnv("HACRON_CLUSTER"); ok {
		dropIn, from = v, "HACRON_CLUSTER"
	} else if v, ok := cfg.values["cluster"]; ok {
		dropIn, from = v.value, v.where()
	} else if rcNames {
		dropIn, from = rcCluster.value, rc.path+" "+rcCluster.key
	}
	switch {
	case dropIn != g.Cluster:
		add(findingProblem, "the rcron drop-in would use cluster %s (%s), this node's agent serves cluster %s: every rcron line would fail; name the cluster in %s, which both read",
			dropIn, from, g.Cluster, cfg.path)
	case rcNames && rcCluster.value != dropIn:
		add(findingWarning, "%s names cluster %s, hacron's cluster %s (%s) wins: rcron lines run in cluster %s",
			rcCluster.where(), rcCluster.value, dropIn, from, dropIn)
	default:
		add(findingOK, "rcron drop-in: %s read, rcron lines run in cluster %s", rc.path, dropIn)
	}
	if v, ok := rc.values["state-file"]; ok {
		if h, hok := cfg.values["state-file"]; !hok || h.value != v.value {
			add(findingWarning, "%s: state_file %s is not written: the agent writes only the state_file of %s; scripts that read %s need state_file = %s there",
				v.where(), v.value, cfg.path, v.value, v.value)
		}
	}
	return out
}

// checkCrontab reports every bad line of the agent's crontab, with its
// file and line, and what the good ones will do.
func checkCrontab(path string, w io.Writer) (problems int) {
	tab, errs := crontab.Load(path)
	for _, err := range errs {
		fmt.Fprintf(w, "PROBLEM  crontab %v\n", err)
	}
	for _, f := range tab.Ignored {
		fmt.Fprintf(w, "warning  crontab %s: ignored (cron.d names: A-Z a-z 0-9 _ - only)\n", f)
	}
	if len(errs) == 0 {
		now := time.Now()
		fmt.Fprintf(w, "ok       crontab %s: %d job(s)\n", path, len(tab.Jobs))
		for _, j := range tab.Jobs {
			fmt.Fprintf(w, "ok       crontab %s:%d: job %s, next slot %s\n", j.File, j.Line, j.Name, crontab.SlotKey(j.Schedule.Next(now)))
		}
	}
	return len(errs)
}
