package main

// hacron state and hacron resign: what scripts ask the local agent.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hacron/internal/wire"
	"os"
	"time"
)

type stateCmd struct {
	Quiet bool `name:"quiet" short:"q" help:"Print nothing; the exit code tells."`
	JSON  bool `name:"json" help:"Print the state as JSON."`
}

// Exit codes of hacron state: rcron's words, and unknown never counts as
// active.
const (
	stateActiveExit  = 0
	statePassiveExit = 1
	stateUnknownExit = 2
)

func (s *stateCmd) Run(ctx context.Context, g *globals) error {
	var info wire.StateInfo
	var err error
	if g.Direct {
		info, err = directState(ctx, g)
	} else {
		info, err = askState(g)
	}
	if err != nil {
		info = wire.StateInfo{Cluster: g.Cluster, Node: g.Node, State: "unknown", Reason: err.Error()}
	}
	if !s.Quiet {
		switch {
		case s.JSON:
			b, _ := json.MarshalIndent(info, "", "  ")
			fmt.Println(string(b))
		case info.State == "unknown":
			// Fail closed, and say why where people look for errors.
			if err == nil {
				err = errors.New("state unknown: " + info.Reason)
			}
			printError(os.Stderr, err)
		default:
			fmt.Println(info.State)
		}
	}
	switch info.State {
	case "active":
		return silentExit(stateActiveExit)
	case "passive":
		return silentExit(statePassiveExit)
	}
	return silentExit(stateUnknownExit)
}

// askState asks the agent; a lease that the answer says is over is passive.
func askState(g *globals) (wire.StateInfo, error) {
	ac, rep, err := askAgent(context.Background(), g.Socket, wire.Request{V: wire.Version, Op: "state"}, stateAnswerLimit)
	if err != nil {
		return wire.StateInfo{}, err
	}
	ac.Close()
	if rep.State == nil {
		return wire.StateInfo{}, fmt.Errorf("agent at %s: no state in the answer", g.Socket)
	}
	info := *rep.State
	if info.State == "active" && info.LeaseRemainingMS <= 0 {
		info.State, info.Reason = "passive", "lease expired"
	}
	if info.State != "active" && info.State != "passive" {
		info.State = "unknown"
	}
	return info, nil
}

// resignAnswerLimit bounds the wait for a step-down, which waits for the
// running jobs' kill grace (at most T/2 - margin) first. A variable only
// so that the test binary's hacron can wait less.
var resignAnswerLimit = time.Minute

// stateAnswerLimit bounds the wait for the agent's answer to `hacron state`.
const stateAnswerLimit = 5 * time.Second

type resignCmd struct {
	Hold  time.Duration `name:"hold" placeholder:"D" default:"30s" help:"Stay out of the election this long; 0 rejoins at once (default: ${default})."`
	Drain time.Duration `name:"drain" placeholder:"D" help:"First stop admitting and let running jobs end by themselves for up to D; what still runs then is terminated."`
}

func (r *resignCmd) Run(ctx context.Context, g *globals) error {
	if g.Direct {
		return errors.New("hacron resign needs an agent; this configuration says mode = direct")
	}
	if r.Hold < 0 || r.Drain < 0 {
		return errors.New("--hold and --drain must not be negative")
	}
	ac, rep, err := askAgent(ctx, g.Socket, wire.Request{V: wire.Version, Op: "resign", HoldMS: r.Hold.Milliseconds(), DrainMS: r.Drain.Milliseconds()}, r.Drain+resignAnswerLimit)
	if err != nil {
		return err
	}
	if rep.Note != "" {
		fmt.Println(rep.Note)
	}
	return ac.Close()
}

type rejoinCmd struct{}

func (r *rejoinCmd) Run(ctx context.Context, g *globals) error {
	if g.Direct {
		return errors.New("hacron rejoin needs an agent; this configuration says mode = direct")
	}
	ac, _, err := askAgent(ctx, g.Socket, wire.Request{V: wire.Version, Op: "rejoin"}, stateAnswerLimit)
	if err != nil {
		return err
	}
	return ac.Close()
}
