package main

// The client side of the agent socket: one request, an answer within a
// bound, and the conversation that follows.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hacron/internal/wire"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// agentAnswerLimit is how long the agent may take to answer beyond what
// the request itself asks it to wait: a hung or stopped agent must not
// pile up wrappers, one per cron tick.
const agentAnswerLimit = 10 * time.Second

// dialAgent connects to the local agent.
func dialAgent(path string) (*net.UnixConn, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if errors.Is(err, unix.EACCES) {
		return nil, withHint(fmt.Errorf("agent unreachable at %s: %w", path, unwrapOp(err)), socketDeniedHints(path)...)
	}
	if err != nil {
		return nil, withHint(fmt.Errorf("agent unreachable at %s: %w", path, unwrapOp(err)),
			"is `hacron agent` running for this cluster? (systemctl status hacron-agent)")
	}
	return c.(*net.UnixConn), nil
}

// errInterrupted: a signal ended the wait for the agent's answer.
var errInterrupted = errors.New("interrupted while waiting for the agent")

// agentConn is a conversation with the local agent.
type agentConn struct {
	conn *net.UnixConn
	br   *bufio.Reader
	path string
}

func (a *agentConn) Close() error { return a.conn.Close() }

func (a *agentConn) read(v any) error { return wire.Read(a.br, v) }

// askAgent sends one request and returns the agent's first answer, which
// must arrive within limit; an error answer becomes an error with the
// agent's hints and code. ctx ending (a signal) abandons the wait: nothing
// has run. The connection stays open for what follows the answer.
func askAgent(ctx context.Context, path string, req wire.Request, limit time.Duration) (*agentConn, wire.Reply, error) {
	c, err := dialAgent(path)
	if err != nil {
		return nil, wire.Reply{}, err
	}
	ac := &agentConn{conn: c, br: bufio.NewReader(c), path: path}
	rep, err := ac.ask(ctx, req, limit)
	if err != nil {
		return nil, rep, err
	}
	return ac, rep, nil
}

// ask is one exchange on an open conversation, with askAgent's rules; on
// an error the conversation is over and closed.
func (a *agentConn) ask(ctx context.Context, req wire.Request, limit time.Duration) (wire.Reply, error) {
	var rep wire.Reply
	c := a.conn
	stop := context.AfterFunc(ctx, func() { c.Close() })
	c.SetDeadline(time.Now().Add(limit))
	err := wire.Write(c, req)
	if err == nil {
		err = a.read(&rep)
	}
	if !stop() {
		return rep, errInterrupted
	}
	c.SetDeadline(time.Time{})
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		c.Close()
		return rep, withHint(fmt.Errorf("the agent did not answer within %v", limit),
			fmt.Sprintf("the agent at %s accepts connections but is hung or stopped; check `systemctl status hacron-agent`", a.path))
	case err != nil:
		c.Close()
		return rep, fmt.Errorf("agent at %s: %w", a.path, err)
	case rep.Error != "":
		c.Close()
		hints := rep.Hints
		if rep.Hint != "" {
			hints = append(hints, rep.Hint)
		}
		err := errors.New(rep.Error)
		if len(hints) > 0 {
			err = withHint(err, hints...)
		}
		return rep, withExit(max(rep.Code, 1), err)
	}
	return rep, nil
}

// unwrapOp shortens net.OpError's "dial unix /path: connect: ..." to the
// cause.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
