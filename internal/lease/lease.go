// Package lease is hacron's local lease: the rule that decides, without
// ZooKeeper, until when the holder of the lowest election node may let jobs
// run. An ephemeral node is a lease, not a lock: the client never learns the
// moment the server expires its session. Only a quorum write proves the
// session alive, and only from the moment the write was sent: a write sent
// at s that succeeded means the session cannot expire before s+T (the
// server rounds expiry up to its next tick, and a new ZooKeeper leader
// resets every session to a full T). The lease ends at s+f*T; the rest of T
// is for ending jobs (docs/zookeeper-rules.md, rule 7).
//
// The election drives a Lease with what happened (a renewal was sent, it
// succeeded or failed, the connection dropped or came back) and asks it
// what holds now. Nothing here reads a clock by itself, so every rule is a
// table test.
package lease

import (
	"errors"
	"fmt"
	"time"
)

// Fraction is f: the lease lasts f*T from the send time of the last
// successful renewal. At most 1/2, so that a kill grace and a margin fit in
// the rest of T, with room for two clocks that run at slightly different
// rates.
const Fraction = 0.5

// RenewDivisor sets the renewal period to T/5, so two renewals in a row
// can be lost before the lease (T/2) lapses.
const RenewDivisor = 5

// MaxInflight bounds renewals waiting on a dead link; more would only queue
// behind them in the ZooKeeper client.
const MaxInflight = 2

// DefaultKillGrace is the SIGTERM-to-SIGKILL grace when none is given: long
// enough for a job to clean up, and lowered to what the lease allows.
const DefaultKillGrace = 5 * time.Second

// Length is f*T, the lease one successful renewal buys.
func Length(T time.Duration) time.Duration { return time.Duration(float64(T) * Fraction) }

// RenewEvery is the renewal period.
func RenewEvery(T time.Duration) time.Duration { return T / RenewDivisor }

// KillMargin is kept free between the last SIGKILL and the earliest moment
// the session can expire: signals, scheduling and a loaded machine take
// time. A tenth of T, at least 250 ms.
func KillMargin(T time.Duration) time.Duration { return max(T/10, 250*time.Millisecond) }

// MaxKillGrace is the largest grace for which every job is dead before the
// session can expire: s + f*T + k + margin <= s + T. Zero when T leaves no
// room at all.
func MaxKillGrace(T time.Duration) time.Duration {
	return max(T-Length(T)-KillMargin(T), 0)
}

// GraceError refuses a kill grace that could let a job outlive the lease.
type GraceError struct {
	Asked, Limit, T time.Duration
}

func (e *GraceError) Error() string {
	return fmt.Sprintf("--kill-grace %v could let the job outlive the lease", e.Asked)
}

// Hints say what the arithmetic was and what to do.
func (e *GraceError) Hints() []string {
	return []string{
		fmt.Sprintf("lease %v (T/2) + kill grace %v + margin %v > granted session timeout T = %v", Length(e.T), e.Asked, KillMargin(e.T), e.T),
		fmt.Sprintf("use --kill-grace %v or less, or a longer --session-timeout (the servers' maxSessionTimeout caps it)", e.Limit),
	}
}

// ErrNegativeGrace refuses a negative kill grace.
var ErrNegativeGrace = errors.New("--kill-grace must not be negative")

// KillGrace picks the grace for a job under a session timeout T: the
// default lowered to what the lease allows, or the one asked for, refused
// when it breaks s + f*T + k + margin <= s + T.
func KillGrace(T, asked time.Duration, explicit bool) (time.Duration, error) {
	limit := MaxKillGrace(T)
	if !explicit {
		return min(DefaultKillGrace, limit), nil
	}
	if asked < 0 {
		return 0, ErrNegativeGrace
	}
	if asked > limit {
		return 0, &GraceError{Asked: asked, Limit: limit, T: T}
	}
	return asked, nil
}

// Result is what became of one renewal write.
type Result int

const (
	// Renewed means the write passed the server's session check.
	Renewed Result = iota
	// Unknown means no reply came in time, or the connection dropped; the
	// write may or may not have been applied. The lease is not extended.
	Unknown
	// NodeGone means our election node no longer exists.
	NodeGone
	// SessionGone means the session expired, or the reply came on another one.
	SessionGone
)

// Outcome is what a renewal's result does to the lease.
type Outcome int

const (
	// Unchanged means the deadline stays (an unknown result, or an older write
	// than one already counted).
	Unchanged Outcome = iota
	// Extended means the deadline moved later.
	Extended
	// Lost means leadership is over now, whatever the deadline says.
	Lost
)

// Standing is what the holder of the lease may do at one moment.
type Standing int

const (
	// Active means connected and within the lease: admit jobs, let them run.
	Active Standing = iota
	// Suspended means within the lease, but not connected (or not proven since
	// it reconnected): admit nothing, let running jobs run to the deadline.
	Suspended
	// Lapsed means past the deadline: every job must end now.
	Lapsed
)

func (s Standing) String() string {
	switch s {
	case Active:
		return "active"
	case Suspended:
		return "suspended"
	}
	return "lapsed"
}

// Lease is one term's lease. The zero deadline means not proven yet.
// It is not safe for concurrent use: the election's loop owns it.
type Lease struct {
	length    time.Duration
	deadline  time.Time
	inflight  int
	connected bool
	proven    bool // a renewal sent since the last reconnect succeeded
}

// New starts a lease for a session with granted timeout T, connected and
// not yet proven.
func New(T time.Duration) *Lease {
	return &Lease{length: Length(T), connected: true}
}

// Deadline is the end of the lease; zero before the first renewal.
func (l *Lease) Deadline() time.Time { return l.deadline }

// Begin says whether a renewal may be sent now, and counts it in flight.
func (l *Lease) Begin() bool {
	if l.inflight >= MaxInflight {
		return false
	}
	l.inflight++
	return true
}

// Done applies the result of a renewal sent at sent.
func (l *Lease) Done(sent time.Time, r Result) Outcome {
	if l.inflight > 0 {
		l.inflight--
	}
	switch r {
	case NodeGone, SessionGone:
		return Lost
	case Renewed:
		if l.connected {
			l.proven = true
		}
		if d := sent.Add(l.length); d.After(l.deadline) {
			l.deadline = d
			return Extended
		}
	}
	return Unchanged
}

// Disconnect records that the connection dropped: no admissions until a
// renewal sent after the reconnect succeeds.
func (l *Lease) Disconnect() {
	l.connected, l.proven = false, false
}

// Reconnect records that the same session is usable again. It reports
// whether a renewal should be sent now: only a new write proves the lease.
func (l *Lease) Reconnect() bool {
	if l.connected {
		return false
	}
	l.connected = true
	return true
}

// Connected says whether the connection is up.
func (l *Lease) Connected() bool { return l.connected }

// At says what holds at now.
func (l *Lease) At(now time.Time) Standing {
	switch {
	case !now.Before(l.deadline):
		return Lapsed
	case l.connected && l.proven:
		return Active
	}
	return Suspended
}
