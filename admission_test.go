package main

// Unit tests of the admission's pure parts: no ZooKeeper.

import (
	"errors"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

func TestAdmissionOutcome(t *testing.T) {
	adm := admission{root: "/hacron/c", job: "j", slot: "s", claim: true, noOverlap: true}
	ok := []zk.MultiResponse{{}, {String: "/hacron/c/jobs/j/runs/s"}, {String: "/hacron/c/jobs/j/running"}}
	for _, c := range []struct {
		name   string
		res    []zk.MultiResponse
		err    error
		record string
		skip   string
		fails  bool
	}{
		{"admitted", ok, nil, "/hacron/c/jobs/j/runs/s", "", false},
		{"not active before the write", nil, errNotActive, "", skipPassive, false},
		{"holder's node gone", []zk.MultiResponse{{Error: zk.ErrNoNode}}, errLeadership, "", skipPassive, false},
		{"slot taken", []zk.MultiResponse{{}, {Error: zk.ErrNodeExists}, {Error: zk.ErrAPIError}}, zk.ErrNodeExists, "", skipSlot, false},
		{"running elsewhere", []zk.MultiResponse{{}, {}, {Error: zk.ErrNodeExists}}, zk.ErrNodeExists, "", skipRunning, false},
		{"no answer", nil, errOutcomeUnknown, "", "", true},
		{"refused", []zk.MultiResponse{{}, {Error: zk.ErrNoAuth}}, zk.ErrNoAuth, "", "", true},
	} {
		record, skip, err := adm.outcome(c.res, c.err)
		if record != c.record || skip != c.skip || (err != nil) != c.fails {
			t.Errorf("%s: got %q, %q, %v; want %q, %q, fails=%v", c.name, record, skip, err, c.record, c.skip, c.fails)
		}
	}
}

func TestAdmissionOps(t *testing.T) {
	adm := admission{root: "/ch/hacron/c", job: "j", slot: "2026-01-01T00:00:00Z", name: "r-0123", noOverlap: true,
		rec: runRecord{Job: "j", Node: "n1", PGID: 42}}
	ops := adm.ops()
	if len(ops) != 2 {
		t.Fatalf("%d ops, want record and marker", len(ops))
	}
	rec, marker := ops[0].(*zk.CreateRequest), ops[1].(*zk.CreateRequest)
	if rec.Path != "/ch/hacron/c/jobs/j/runs/r-0123" || rec.Flags != zk.FlagPersistent {
		t.Errorf("record without claim: %s flags %d", rec.Path, rec.Flags)
	}
	if marker.Path != "/ch/hacron/c/jobs/j/running" || marker.Flags != zk.FlagEphemeral {
		t.Errorf("marker: %s flags %d", marker.Path, marker.Flags)
	}
	if string(marker.Data) != `{"record":"/ch/hacron/c/jobs/j/runs/r-0123","node":"n1","pgid":42}` {
		t.Errorf("marker data %s", marker.Data)
	}
	adm.claim, adm.noOverlap = true, false
	ops = adm.ops()
	if p := ops[0].(*zk.CreateRequest).Path; len(ops) != 1 || p != "/ch/hacron/c/jobs/j/runs/2026-01-01T00:00:00Z" {
		t.Errorf("claimed record: %d ops, %s", len(ops), p)
	}
}

func TestNewsFor(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d1, d2 := t0.Add(5*time.Second), t0.Add(7*time.Second)
	first := leaseNews{kind: newsRenewed, deadline: d1}
	active := standing{State: stateActive, Token: 7, Deadline: d1}
	for _, c := range []struct {
		name string
		st   standing
		last leaseNews
		want leaseNews
		news bool
	}{
		{"nothing new", active, first, leaseNews{}, false},
		{"renewed", standing{State: stateActive, Token: 7, Deadline: d2}, first, leaseNews{kind: newsRenewed, deadline: d2}, true},
		{"disconnected: the deadline stands", standing{State: stateSuspended, Reason: reasonDisconnected, Token: 7, Deadline: d1}, first,
			leaseNews{kind: newsSuspended, deadline: d1, why: "disconnected from ZooKeeper"}, true},
		{"still disconnected", standing{State: stateSuspended, Reason: reasonDisconnected, Token: 7, Deadline: d1},
			leaseNews{kind: newsSuspended, deadline: d1}, leaseNews{}, false},
		{"lapsed while connected is not a loss", standing{State: stateSuspended, Reason: reasonLapsed, Token: 7, Deadline: d1}, first,
			leaseNews{kind: newsSuspended, deadline: d1, why: reasonLapsed.String()}, true},
		{"reconnected and renewed", standing{State: stateActive, Token: 7, Deadline: d2}, leaseNews{kind: newsSuspended, deadline: d1},
			leaseNews{kind: newsRenewed, deadline: d2}, true},
		{"lost", standing{State: stateLost, Reason: reasonNodeGone}, first, leaseNews{kind: newsLost, why: "lost: our election node is gone"}, true},
		{"passive", standing{State: statePassive, Reason: reasonReleased}, first, leaseNews{kind: newsLost, why: "passive: released"}, true},
		{"a new token", standing{State: stateActive, Token: 9, Deadline: d2}, first, leaseNews{kind: newsLost, why: "active: " + reasonStarting.String()}, true},
		{"a deadline never moves back", standing{State: stateSuspended, Reason: reasonDisconnected, Token: 7, Deadline: t0}, first,
			leaseNews{kind: newsSuspended, deadline: d1, why: "disconnected from ZooKeeper"}, true},
	} {
		got, news := newsFor(c.st, 7, c.last)
		if news != c.news || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", c.name, got, news, c.want, c.news)
		}
	}
}

func TestStandingHolds(t *testing.T) {
	now := time.Unix(1000, 0)
	later := now.Add(time.Second)
	for _, c := range []struct {
		st             standing
		active, holds7 bool
	}{
		{standing{State: stateActive, Token: 7, Deadline: later}, true, true},
		{standing{State: stateActive, Token: 7, Deadline: now}, false, false},
		{standing{State: stateSuspended, Token: 7, Deadline: later}, false, true},
		{standing{State: stateSuspended, Token: 8, Deadline: later}, false, false},
		{standing{State: stateLost, Token: 7, Deadline: later}, false, false},
		{standing{State: statePassive}, false, false},
	} {
		if got := c.st.active(now); got != c.active {
			t.Errorf("%+v: active %v", c.st, got)
		}
		if got := c.st.holds(7, now); got != c.holds7 {
			t.Errorf("%+v: holds(7) %v", c.st, got)
		}
	}
}

func TestReasonsHaveTextAndCode(t *testing.T) {
	codes := map[string]bool{}
	for r := reasonStarting; r <= reasonError; r++ {
		if r.String() == "unknown" || r.code() == "other" || codes[r.code()] {
			t.Errorf("reason %d: text %q, code %q (codes must be distinct)", r, r.String(), r.code())
		}
		codes[r.code()] = true
	}
	if reason(200).code() != "other" {
		t.Errorf("an unknown reason must map to other")
	}
}

func TestParseCandidates(t *testing.T) {
	g := "0123456789abcdef0123456789abcdef"
	kids := []string{
		"_c_" + g + "-n_0000000010",
		"_c_" + g + "-n_0000000002",
		"_c_" + g + "-n_2147483648", // past 2^31: compared as numbers
		"_c_" + g + "-n_000000001",  // 9 digits: not ours
		"_c_" + g[:31] + "X-n_0000000003",
		"lock-0000000001",
		"_c_" + g + "-n_0000000005",
	}
	got := parseCandidates(kids, map[string]bool{"_c_" + g + "-n_0000000005": true})
	var seqs []int64
	for _, c := range got {
		seqs = append(seqs, c.seq)
		if c.guid != g {
			t.Errorf("guid %q", c.guid)
		}
	}
	if want := []int64{2, 10, 2147483648}; !equalInts(seqs, want) {
		t.Errorf("order %v, want %v", seqs, want)
	}
	// Sorting by whole name would put ...10 before ...2 only with
	// different widths; with hacron's fixed width it is the number that
	// counts, also across a guid that sorts the other way.
	other := "ffffffffffffffffffffffffffffffff"
	got = parseCandidates([]string{"_c_" + other + "-n_0000000001", "_c_" + g + "-n_0000000002"}, nil)
	if got[0].guid != other {
		t.Errorf("order by sequence, not by name: %+v", got)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRenewalResult(t *testing.T) {
	for _, c := range []struct {
		err  error
		same bool
		want string
	}{
		{nil, true, "renewed"},
		{nil, false, "session gone"},
		{zk.ErrSessionExpired, true, "session gone"},
		{zk.ErrNoNode, true, "node gone"},
		{zk.ErrConnectionClosed, true, "unknown"},
		{errOutcomeUnknown, true, "unknown"},
		{errors.New("other"), true, "unknown"},
	} {
		got := map[int]string{0: "renewed", 1: "unknown", 2: "node gone", 3: "session gone"}[int(renewalResult(c.err, c.same))]
		if got != c.want {
			t.Errorf("renewalResult(%v, %v) = %s, want %s", c.err, c.same, got, c.want)
		}
	}
}
