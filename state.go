package main

// hacron state and hacron resign: what scripts ask the local agent.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
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
	var info stateInfo
	var err error
	if g.Direct {
		info, err = directState(ctx, g)
	} else {
		info, err = askState(g)
	}
	if err != nil {
		info = stateInfo{Cluster: g.Cluster, Node: g.Node, State: "unknown", Reason: err.Error()}
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
func askState(g *globals) (stateInfo, error) {
	c, err := dialAgent(g.Socket)
	if err != nil {
		return stateInfo{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := writeMsg(c, request{V: protoVersion, Op: "state"}); err != nil {
		return stateInfo{}, fmt.Errorf("agent at %s: %w", g.Socket, err)
	}
	var rep reply
	if err := readMsg(bufio.NewReader(c), &rep); err != nil {
		return stateInfo{}, fmt.Errorf("agent at %s: %w", g.Socket, err)
	}
	if rep.Error != "" {
		return stateInfo{}, errors.New(rep.Error)
	}
	if rep.State == nil {
		return stateInfo{}, fmt.Errorf("agent at %s: no state in the answer", g.Socket)
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

type resignCmd struct {
	Hold time.Duration `name:"hold" placeholder:"D" default:"30s" help:"Stay out of the election this long."`
}

func (r *resignCmd) Run(_ context.Context, g *globals) error {
	if g.Direct {
		return errors.New("hacron resign needs an agent; this configuration says mode = direct")
	}
	if r.Hold <= 0 {
		return errors.New("--hold must be positive")
	}
	c, err := dialAgent(g.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := writeMsg(c, request{V: protoVersion, Op: "resign", HoldMS: r.Hold.Milliseconds()}); err != nil {
		return fmt.Errorf("agent at %s: %w", g.Socket, err)
	}
	var rep reply
	if err := readMsg(bufio.NewReader(c), &rep); err != nil {
		return fmt.Errorf("agent at %s: %w", g.Socket, err)
	}
	if rep.Error != "" {
		err := errors.New(rep.Error)
		if rep.Hint != "" {
			err = withHint(err, strings.Split(rep.Hint, "; ")...)
		}
		return err
	}
	return nil
}
