package lease

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestArithmetic(t *testing.T) {
	for _, c := range []struct {
		T, length, margin, maxGrace, defGrace time.Duration
	}{
		// T = 10 s: lease 5 s, margin 1 s, grace up to 4 s.
		{10 * time.Second, 5 * time.Second, time.Second, 4 * time.Second, 4 * time.Second},
		// T = 30 s: the default grace fits whole.
		{30 * time.Second, 15 * time.Second, 3 * time.Second, 12 * time.Second, 5 * time.Second},
		// T = 2 s: the margin's floor of 250 ms.
		{2 * time.Second, time.Second, 250 * time.Millisecond, 750 * time.Millisecond, 750 * time.Millisecond},
		// T = 400 ms: no room for a grace at all.
		{400 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond, 0, 0},
	} {
		if got := Length(c.T); got != c.length {
			t.Errorf("Length(%v) = %v, want %v", c.T, got, c.length)
		}
		if got := KillMargin(c.T); got != c.margin {
			t.Errorf("KillMargin(%v) = %v, want %v", c.T, got, c.margin)
		}
		if got := MaxKillGrace(c.T); got != c.maxGrace {
			t.Errorf("MaxKillGrace(%v) = %v, want %v", c.T, got, c.maxGrace)
		}
		if got, err := KillGrace(c.T, 0, false); err != nil || got != c.defGrace {
			t.Errorf("KillGrace(%v, default) = %v, %v; want %v", c.T, got, err, c.defGrace)
		}
		// The inequality the grace exists for: lease + grace + margin <= T.
		if g := MaxKillGrace(c.T); g > 0 && Length(c.T)+g+KillMargin(c.T) > c.T {
			t.Errorf("T=%v: lease %v + grace %v + margin %v > T", c.T, Length(c.T), g, KillMargin(c.T))
		}
	}
	if RenewEvery(10*time.Second) != 2*time.Second {
		t.Errorf("RenewEvery(10s) = %v", RenewEvery(10*time.Second))
	}
}

func TestKillGraceBoundaries(t *testing.T) {
	T := 10 * time.Second // limit 4 s
	for _, c := range []struct {
		asked   time.Duration
		want    time.Duration
		refused bool
	}{
		{0, 0, false},
		{4 * time.Second, 4 * time.Second, false},
		{4*time.Second + time.Nanosecond, 0, true},
		{time.Minute, 0, true},
		{-time.Millisecond, 0, true},
	} {
		got, err := KillGrace(T, c.asked, true)
		if (err != nil) != c.refused || got != c.want {
			t.Errorf("KillGrace(T=%v, %v) = %v, %v; want %v refused=%v", T, c.asked, got, err, c.want, c.refused)
		}
	}
	_, err := KillGrace(T, time.Minute, true)
	var ge *GraceError
	if !errors.As(err, &ge) || ge.Limit != 4*time.Second || len(ge.Hints()) != 2 {
		t.Fatalf("refusal %v: want a GraceError with the limit and two hints", err)
	}
	if _, err := KillGrace(T, -1, true); !errors.Is(err, ErrNegativeGrace) {
		t.Errorf("negative grace: %v", err)
	}
}

func TestLeaseLifecycle(t *testing.T) {
	T := 10 * time.Second
	t0 := time.Unix(1000, 0)
	l := New(T)
	if got := l.At(t0); got != Lapsed {
		t.Fatalf("a new lease is %v, want lapsed (nothing proven)", got)
	}
	// Three calls, each with its effect: the third must be refused.
	if first, second, third := l.Begin(), l.Begin(), l.Begin(); !first || !second || third {
		t.Fatalf("in-flight renewals are bounded by %d", MaxInflight)
	}
	// The deadline runs from the send time, not the reply's arrival.
	if got := l.Done(t0, Renewed); got != Extended || !l.Deadline().Equal(t0.Add(5*time.Second)) {
		t.Fatalf("renewal sent at t0: %v, deadline %v", got, l.Deadline())
	}
	if got := l.At(t0.Add(time.Second)); got != Active {
		t.Fatalf("renewed: %v", got)
	}
	// An older write arriving late never moves the deadline back.
	if got := l.Done(t0.Add(-time.Second), Renewed); got != Unchanged || !l.Deadline().Equal(t0.Add(5*time.Second)) {
		t.Fatalf("older renewal: %v, deadline %v", got, l.Deadline())
	}
	// A disconnect suspends admissions but not the lease.
	l.Disconnect()
	if got := l.At(t0.Add(2 * time.Second)); got != Suspended {
		t.Fatalf("disconnected within the lease: %v, want suspended", got)
	}
	// An unknown outcome does not extend it.
	l.Begin()
	if got := l.Done(t0.Add(2*time.Second), Unknown); got != Unchanged {
		t.Fatalf("unknown outcome: %v", got)
	}
	// A success that was sent before the disconnect extends the deadline
	// but does not make the holder active again.
	l.Begin()
	if got := l.Done(t0.Add(time.Second), Renewed); got != Extended {
		t.Fatalf("late success: %v", got)
	}
	if got := l.At(t0.Add(3 * time.Second)); got != Suspended {
		t.Fatalf("disconnected: %v, want suspended", got)
	}
	if !l.Reconnect() || l.Reconnect() {
		t.Fatalf("Reconnect asks for one renewal per reconnect")
	}
	if got := l.At(t0.Add(3 * time.Second)); got != Suspended {
		t.Fatalf("reconnected, not yet proven: %v, want suspended", got)
	}
	l.Begin()
	l.Done(t0.Add(3*time.Second), Renewed)
	if got := l.At(t0.Add(4 * time.Second)); got != Active {
		t.Fatalf("reconnected and renewed: %v", got)
	}
	// Past the deadline nothing runs, connected or not.
	if got := l.At(l.Deadline()); got != Lapsed {
		t.Fatalf("at the deadline: %v, want lapsed", got)
	}
	for _, r := range []Result{NodeGone, SessionGone} {
		l.Begin()
		if got := l.Done(t0.Add(4*time.Second), r); got != Lost {
			t.Fatalf("%v: %v, want lost", r, got)
		}
	}
}

// TestLeaseRandomSequences drives a lease with random events and checks the
// rule after each: the deadline is never later than f*T after the send time
// of a successful renewal, never moves back, and the holder is active only
// while connected, proven since the last reconnect, and before the deadline.
func TestLeaseRandomSequences(t *testing.T) {
	T := 3 * time.Second
	for seed := uint64(0); seed < 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		l := New(T)
		now := time.Unix(0, 0)
		var latestOK time.Time
		var sent []time.Time
		connected, provenSinceReconnect := true, false
		for step := 0; step < 300; step++ {
			now = now.Add(time.Duration(rng.IntN(800)) * time.Millisecond)
			before := l.Deadline()
			switch rng.IntN(5) {
			case 0:
				if l.Begin() {
					sent = append(sent, now)
				}
			case 1, 2:
				if len(sent) == 0 {
					continue
				}
				i := rng.IntN(len(sent))
				s := sent[i]
				sent = append(sent[:i], sent[i+1:]...)
				r := []Result{Renewed, Renewed, Unknown, NodeGone}[rng.IntN(4)]
				out := l.Done(s, r)
				if r == NodeGone && out != Lost {
					t.Fatalf("seed %d: node gone gave %v", seed, out)
				}
				if r == Renewed {
					if s.After(latestOK) {
						latestOK = s
					}
					if connected {
						provenSinceReconnect = true
					}
				}
			case 3:
				l.Disconnect()
				connected, provenSinceReconnect = false, false
			case 4:
				l.Reconnect()
				connected = true
			}
			if l.Deadline().Before(before) {
				t.Fatalf("seed %d step %d: deadline moved back", seed, step)
			}
			if !latestOK.IsZero() && l.Deadline().After(latestOK.Add(Length(T))) {
				t.Fatalf("seed %d step %d: deadline %v beyond the last proof %v + f*T", seed, step, l.Deadline(), latestOK)
			}
			want := Lapsed
			if now.Before(l.Deadline()) {
				want = Suspended
				if connected && provenSinceReconnect {
					want = Active
				}
			}
			if got := l.At(now); got != want {
				t.Fatalf("seed %d step %d: %v, want %v", seed, step, got, want)
			}
		}
	}
}
