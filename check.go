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
)

type checkCmd struct{}

// exitCheckFailed is hacron check's "something is wrong".
const exitCheckFailed = 1

func (c *checkCmd) Run(ctx context.Context, g *globals) error {
	problems := runCheck(ctx, g, os.Stdout)
	if problems > 0 {
		return withExit(exitCheckFailed, fmt.Errorf("%d problem(s) found", problems))
	}
	return nil
}

func runCheck(ctx context.Context, g *globals, w io.Writer) (problems int) {
	ok := func(format string, args ...any) { fmt.Fprintf(w, "ok       "+format+"\n", args...) }
	warn := func(format string, args ...any) { fmt.Fprintf(w, "warning  "+format+"\n", args...) }
	bad := func(format string, args ...any) {
		problems++
		fmt.Fprintf(w, "PROBLEM  "+format+"\n", args...)
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
	mode := "agent"
	if g.Direct {
		mode = "direct"
	}
	ok("cluster %s, node %s, %s mode", g.Cluster, g.Node, mode)

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
	lease := time.Duration(float64(T) * leaseFraction)
	limit := maxKillGrace(T)
	ok("lease T/2 = %v, renewed every T/%d = %v; a crashed node's successor is active within T + 1 s = %v", lease, renewDivisor, T/renewDivisor, T+time.Second)
	if limit <= 0 {
		bad("kill grace: T = %v leaves no time to end jobs (T - T/2 - margin %v <= 0): raise --session-timeout", T, killMargin(T))
	} else {
		ok("kill grace at most T - T/2 - margin = %v - %v - %v = %v; the default (5s) becomes %v", T, lease, killMargin(T), limit, min(defaultKillGrace, limit))
	}

	doc, err := readStatus(zc, g.Cluster)
	if err != nil {
		bad("reading /hacron/%s: %v", g.Cluster, err)
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

// foreignChildren lists election children that do not have hacron's
// protected name: ignored for the order, reported here.
func foreignChildren(zc *zkClient, g *globals) []string {
	kids, _, err := zc.snapshot().Conn.Children(zc.abs(g.clusterRoot() + "/election"))
	if err != nil {
		return nil
	}
	var out []string
	for _, k := range kids {
		if !candidateName().MatchString(k) {
			out = append(out, k)
		}
	}
	return out
}
