package main

// Unit tests of the wrapper's pure parts: no ZooKeeper.

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDefaultJobName(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want string
	}{
		// sha256("/usr/local/bin/backup\x00--full")
		{[]string{"/usr/local/bin/backup", "--full"}, "backup-"},
		{[]string{"sh", "-c", "echo hi"}, "sh-"},
		{[]string{"./weird name!"}, "weird_name_-"},
	} {
		got := defaultJobName(c.argv)
		if !strings.HasPrefix(got, c.want) || len(got) != len(c.want)+8 {
			t.Errorf("defaultJobName(%q) = %q, want %s<8 hex>", c.argv, got, c.want)
		}
		if !validName(got, maxJobName) {
			t.Errorf("defaultJobName(%q) = %q is not a valid job name", c.argv, got)
		}
	}
	// argv as typed, joined by NUL: different splits are different jobs.
	if defaultJobName([]string{"a b"}) == defaultJobName([]string{"a", "b"}) {
		t.Errorf("argv boundaries must count")
	}
	if got := defaultJobName([]string{strings.Repeat("x", 300)}); len(got) > 128 {
		t.Errorf("long basename gives a %d-character name", len(got))
	}
	if a, b := defaultJobName([]string{"/bin/true"}), defaultJobName([]string{"/bin/true"}); a != b {
		t.Errorf("not deterministic: %s %s", a, b)
	}
}

func TestExitCodeMapping(t *testing.T) {
	s := supervisor{}
	exited := func(code int) syscall.WaitStatus { return syscall.WaitStatus(code << 8) }
	signaled := func(sig syscall.Signal) syscall.WaitStatus { return syscall.WaitStatus(sig) }
	for _, c := range []struct {
		ws     syscall.WaitStatus
		why    string
		code   int
		result string
	}{
		{exited(0), "", 0, resultOK},
		{exited(3), "", 3, resultFailed},
		{signaled(syscall.SIGKILL), "", 128 + 9, resultKilled},
		{signaled(syscall.SIGTERM), resultLost, exitLost, resultLost},
		{exited(0), resultLost, exitLost, resultLost}, // ended by itself after hacron decided: still lost
		{signaled(syscall.SIGTERM), resultTimeout, exitTimeout, resultTimeout},
	} {
		code, result := s.exitCode(c.ws, c.why)
		if code != c.code || result != c.result {
			t.Errorf("exitCode(%v, %q) = %d, %s; want %d, %s", c.ws, c.why, code, result, c.code, c.result)
		}
	}
}

func TestSupervisorApplyAndDrain(t *testing.T) {
	t0 := time.Now()
	s := supervisor{deadline: t0.Add(time.Second), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if lost := s.apply(leaseNews{kind: newsRenewed, deadline: t0.Add(3 * time.Second)}, ""); lost != "" || !s.deadline.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("renewal: lost %q, deadline %v", lost, s.deadline)
	}
	if s.apply(leaseNews{kind: newsSuspended, deadline: t0.Add(3 * time.Second)}, ""); !s.deadline.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("a disconnect moved the deadline")
	}
	if s.apply(leaseNews{kind: newsRenewed, deadline: t0.Add(9 * time.Second)}, resultTimeout); !s.deadline.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("a renewal moved the deadline of a job being terminated")
	}
	news := make(chan leaseNews, 4)
	news <- leaseNews{kind: newsRenewed, deadline: t0.Add(4 * time.Second)}
	news <- leaseNews{kind: newsLost, why: "lost: our election node is gone"}
	close(news)
	ch := (<-chan leaseNews)(news)
	if lost := s.drain(&ch); lost != "lost: our election node is gone" || ch != nil {
		t.Fatalf("drain: lost %q, channel %v", lost, ch)
	}
}

func TestSlots(t *testing.T) {
	if got := defaultSlot(time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("X", 3600))); got != "2026-03-04T04:06:00Z" {
		t.Errorf("defaultSlot = %s, want the minute in UTC", got)
	}
	// Schedules are read in the clock's zone (the machine's); this one is UTC.
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, c := range []struct {
		expr, want string
	}{
		{"*/5 * * * *", "2026-03-04T05:05:00Z"},
		{"0 3 * * *", "2026-03-04T03:00:00Z"},
		{"0 0 1 1 *", "2026-01-01T00:00:00Z"},
		{"CRON_TZ=Europe/Paris 0 6 * * *", "2026-03-04T05:00:00Z"},
		{"0 0 29 2 *", "2024-02-29T00:00:00Z"},
	} {
		got, err := scheduleSlot(c.expr, at)
		if err != nil || got != c.want {
			t.Errorf("scheduleSlot(%q) = %s, %v; want %s", c.expr, got, err, c.want)
		}
	}
	if _, err := scheduleSlot("61 * * * *", at); err == nil {
		t.Errorf("a bad expression must fail")
	}
	for _, bad := range []string{"", ".", "..", "running", "r-1", "a/b", "x\x00", strings.Repeat("s", 129), "tab\there"} {
		if validSlot(bad) == nil {
			t.Errorf("validSlot(%q) accepted", bad)
		}
	}
	for _, good := range []string{"2026-03-04T04:05:00Z", "nightly", "a.b_c-d"} {
		if err := validSlot(good); err != nil {
			t.Errorf("validSlot(%q): %v", good, err)
		}
	}
}

func TestHintsAndErrorLines(t *testing.T) {
	// error-strings: the trailing period is what printError must drop.
	err := withExit(124, withHint(errors.New("outer: inner."), "first; with a semicolon", "second")) //nolint:revive
	if got := hintsOf(err); len(got) != 2 || got[0] != "first; with a semicolon" {
		t.Errorf("hints %q", got)
	}
	if exitCodeOf(err, 125) != 124 || exitCodeOf(errors.New("x"), 125) != 125 {
		t.Errorf("exit codes")
	}
	var b strings.Builder
	printError(&b, err)
	want := "hacron: error: outer: inner\nhacron: hint: first; with a semicolon\nhacron: hint: second\n"
	if b.String() != want {
		t.Errorf("printError:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestOwnRace(t *testing.T) {
	upstream := `WARNING: DATA RACE
Write at 0x00c0000d4480 by goroutine 48:
  github.com/go-zookeeper/zk.(*Conn).recvLoop()
Previous read at 0x00c0000d4480 by goroutine 17:
  github.com/go-zookeeper/zk.(*Conn).sendSetWatches()
Goroutine 48 (running) created at:
  github.com/go-zookeeper/zk.(*Conn).loop()
Goroutine 17 (running) created at:
  hacron.(*zkClient).open()
`
	ours := `WARNING: DATA RACE
Write at 0x00c0000d4480 by goroutine 48:
  hacron.(*agent).finish()
Previous read at 0x00c0000d4480 by goroutine 17:
  github.com/go-zookeeper/zk.(*Conn).recvLoop()
Goroutine 48 (running) created at:
`
	if ownRace(upstream) || !ownRace(ours) || !ownRace(upstream+ours) || ownRace("no race") {
		t.Errorf("ownRace misjudges: upstream %v, ours %v", ownRace(upstream), ownRace(ours))
	}
}
