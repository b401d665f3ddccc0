// Package wire is the agent socket protocol, version 1: the messages
// between `hacron agent` and its clients, and how they are read and
// written. It knows nothing of elections or jobs.
//
// A unix stream socket (/run/hacron/<cluster>.sock, mode 0660). Every
// message is one line of JSON, at most MaxMessage bytes, and carries
// "v": 1. The client sends a Request; the agent answers. A message of an
// unknown version, an over-long line or bad JSON ends the connection with an
// error Reply; nothing is run.
//
//	op "state":   {"v":1,"op":"state"}
//	              <- {"v":1,"state":{...}} (the `hacron state --json` document)
//	op "resign":  {"v":1,"op":"resign","hold_ms":30000,"drain_ms":N}
//	              <- {"v":1,"ok":true[,"note":..]} once the agent has stepped
//	                 down (after letting running jobs end for up to drain_ms);
//	                 hold_ms 0: rejoin at once; during a hold, the new hold
//	                 replaces it and the note says so
//	op "rejoin":  {"v":1,"op":"rejoin"}
//	              <- {"v":1,"ok":true} the hold of a resignation is over
//	op "start":   {"v":1,"op":"start", the fields of "run" without "pgid"}
//	              The run's first step, before any process of the job
//	              exists: a skip needs none.
//	              <- {"v":1,"skip":"reason"}                    skipped; closed
//	              <- {"v":1,"error":..,"hints":[..],"code":125}  refused; closed
//	              <- {"v":1,"group":true} the agent cannot rule out running
//	                 the job: the client creates the job's process group
//	                 and sends
//	              -> {"v":1,"op":"group","pgid":N}
//	              and the conversation goes on as for "run" sent with that
//	              pgid. Agents that predate "start" refuse it as an unknown
//	              request; the client then sends "run" instead.
//	op "run":     {"v":1,"op":"run","job":..,"slot":..,"claim":..,"no_overlap":..,
//	               "wait_ms":N,"argv":[..],"pgid":N,"kill_grace_ms":N,
//	               "kill_grace_set":bool[,"schedule":..]}
//	              A passive agent waits up to wait_ms to become active, and
//	              less if the slot's record appears (claim only).
//	              schedule (optional, the job's cron expression) is recorded
//	              in the job's node by the agent that runs the job. Sent
//	              only when the job has one: agents older than the field
//	              refuse it as unknown, and the client then asks again
//	              without it.
//	              pgid is the process group the job will run in, created
//	              before asking (its first process waits for the go-ahead
//	              before exec), so the agent can always end it.
//	              <- {"v":1,"skip":"reason"}                    skipped; closed
//	              <- {"v":1,"error":..,"hints":[..],"code":125}  refused; closed
//	                 (agents before hints were a list sent "hint": the
//	                 hints joined by "; "; clients still read it)
//	              <- {"v":1,"admitted":true,"token":..,"job":..,"slot":..,
//	                  "node":..,"cluster":..,"run":..,"kill_grace_ms":..,
//	                  "deadline_mono_ns":N}
//	              then, while the job runs, the agent sends
//	              <- {"v":1,"deadline_mono_ns":N} after every lease renewal
//	              <- {"v":1,"lost":"reason"} when the lease ends early: a
//	                 lost session or node, a new token, a step-down; a
//	                 disconnect is not sent: the last deadline stands
//	              and the client ends with
//	              -> {"v":1,"op":"exit","exit_code":N,"result":"ok"}
//	              <- {"v":1,"ok":true}
//
// deadline_mono_ns is an absolute CLOCK_MONOTONIC time, which every process
// on the host shares: a lease end that does not drift with transit delays.
// Who may ask what (root or the agent's user for resign) is decided from the
// peer's SO_PEERCRED credentials.
package wire

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// Version is the protocol version every message carries in "v"; a
	// peer that sends another is refused rather than half understood.
	Version = 1
	// MaxMessage bounds one message line in bytes, so a peer cannot make
	// the agent buffer without limit.
	MaxMessage = 64 << 10
)

// Request is a client's message. Op names the request and decides which
// other fields it uses (see the package comment); the rest stay empty.
type Request struct {
	V            int      `json:"v"`
	Op           string   `json:"op"`
	Job          string   `json:"job,omitempty"`
	Slot         string   `json:"slot,omitempty"`
	Claim        bool     `json:"claim,omitempty"`
	NoOverlap    bool     `json:"no_overlap,omitempty"`
	WaitMS       int64    `json:"wait_ms,omitempty"`
	Argv         []string `json:"argv,omitempty"`
	PGID         int      `json:"pgid,omitempty"`
	KillGraceMS  int64    `json:"kill_grace_ms,omitempty"`
	KillGraceSet bool     `json:"kill_grace_set,omitempty"`
	Schedule     string   `json:"schedule,omitempty"`
	HoldMS       int64    `json:"hold_ms,omitempty"`
	DrainMS      int64    `json:"drain_ms,omitempty"`
	ExitCode     int      `json:"exit_code,omitempty"`
	Result       string   `json:"result,omitempty"`
}

// Reply is the agent's message: an answer to a Request (Error, Skip, OK,
// Admitted or State), or, while a job runs, a new deadline or a Lost.
type Reply struct {
	V            int        `json:"v"`
	Error        string     `json:"error,omitempty"`
	Hint         string     `json:"hint,omitempty"`  // version 1's hints joined by "; "; read, never sent
	Hints        []string   `json:"hints,omitempty"` // one per line
	Code         int        `json:"code,omitempty"`
	OK           bool       `json:"ok,omitempty"`
	Note         string     `json:"note,omitempty"` // something the operator should read (resign)
	Skip         string     `json:"skip,omitempty"`
	Group        bool       `json:"group,omitempty"` // "start": create the job's group and send its pgid
	Admitted     bool       `json:"admitted,omitempty"`
	Token        int64      `json:"token,omitempty"`
	Job          string     `json:"job,omitempty"`
	Slot         string     `json:"slot,omitempty"`
	Node         string     `json:"node,omitempty"`
	Cluster      string     `json:"cluster,omitempty"`
	Run          string     `json:"run,omitempty"`
	KillGraceMS  int64      `json:"kill_grace_ms,omitempty"`
	DeadlineMono int64      `json:"deadline_mono_ns,omitempty"`
	Lost         string     `json:"lost,omitempty"`
	State        *StateInfo `json:"state,omitempty"`
}

// StateInfo is the `hacron state --json` document.
type StateInfo struct {
	Cluster          string `json:"cluster"`
	Node             string `json:"node"`
	State            string `json:"state"`
	Reason           string `json:"reason"`
	Since            string `json:"since,omitempty"`
	Leader           string `json:"leader"`
	Token            int64  `json:"token"`
	SessionID        string `json:"session_id"`
	LeaseRemainingMS int64  `json:"lease_remaining_ms"`
}

// ErrTooLong is Read's error for a line over MaxMessage: the rest of the
// line cannot be told from the next message, so the connection ends.
var ErrTooLong = errors.New("message too long")

// Read reads one line of JSON into v. Unknown fields are refused, so a
// peer speaking another dialect fails loudly.
func Read(r *bufio.Reader, v any) error {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxMessage {
			return ErrTooLong
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	return Decode(line, v)
}

// Decode decodes one message and checks its version.
func Decode(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad message: %w", err)
	}
	if dec.More() {
		return errors.New("bad message: trailing data")
	}
	var ver int
	switch m := v.(type) {
	case *Request:
		ver = m.V
	case *Reply:
		ver = m.V
	}
	if ver != Version {
		return fmt.Errorf("protocol version %d, want %d", ver, Version)
	}
	return nil
}

// Write sends one message; a write that cannot finish in time means
// the peer is stuck, and the connection is given up.
func Write(c net.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Write(append(b, '\n'))
	return err
}

// MonoNow is CLOCK_MONOTONIC, shared by every process on the host (Go's
// own monotonic readings are relative to each process's start).
func MonoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // cannot fail on Linux
	}
	return ts.Nano()
}

// MonoDeadline converts a deadline of this process to CLOCK_MONOTONIC.
func MonoDeadline(t time.Time) int64 {
	return MonoNow() + int64(time.Until(t))
}

// FromMono converts a CLOCK_MONOTONIC deadline to a time of this process.
func FromMono(ns int64) time.Time {
	return time.Now().Add(time.Duration(ns - MonoNow()))
}

// PeerCred returns the uid and pid of the process on the other end.
func PeerCred(c *net.UnixConn) (uid, pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if serr != nil {
		return 0, 0, serr
	}
	return int(cred.Uid), int(cred.Pid), nil
}
