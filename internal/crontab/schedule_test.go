package crontab

import (
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("time zone data: %v", err)
	}
	return l
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func keys(ts []time.Time) string {
	var b []string
	for _, t := range ts {
		b = append(b, SlotKey(t))
	}
	return strings.Join(b, " ")
}

// Europe/London in 2024: the clock springs forward on 31 March at 01:00 GMT
// (01:00Z) to 02:00 BST, and falls back on 27 October at 02:00 BST (01:00Z)
// to 01:00 GMT. 01:30 local does not exist on the first day and happens
// twice on the second.
func TestDaylightSaving(t *testing.T) {
	lon := mustZone(t, "Europe/London")
	for _, c := range []struct {
		spec, from, to, want string
	}{
		// A fixed time the clock skips runs once, at the jump (02:00 BST).
		{"30 1 * * *", "2024-03-30T00:00:00Z", "2024-04-01T12:00:00Z",
			"2024-03-30T01:30:00Z 2024-03-31T01:00:00Z 2024-04-01T00:30:00Z"},
		// A fixed time the clock reads twice runs once, the first time
		// (01:30 BST), not again at 01:30 GMT.
		{"30 1 * * *", "2024-10-26T00:00:00Z", "2024-10-28T12:00:00Z",
			"2024-10-26T00:30:00Z 2024-10-27T00:30:00Z 2024-10-28T01:30:00Z"},
		// 01:00 is skipped as well: due at the jump, the same instant as
		// 02:00 BST, so "0 1,2" runs once there.
		{"0 1 * * *", "2024-03-30T23:00:00Z", "2024-03-31T23:00:00Z", "2024-03-31T01:00:00Z"},
		{"0 1,2 * * *", "2024-03-30T23:00:00Z", "2024-03-31T23:00:00Z", "2024-03-31T01:00:00Z"},
		{"0 1,2 * * *", "2024-10-26T23:00:00Z", "2024-10-27T23:00:00Z", "2024-10-27T00:00:00Z 2024-10-27T02:00:00Z"},
		// A minutely window at a fixed hour: all of the skipped hour at the
		// jump, once; the repeated hour the first time only.
		{"*/20 1 * * *", "2024-03-30T23:00:00Z", "2024-03-31T23:00:00Z", "2024-03-31T01:00:00Z"},
		{"*/20 1 * * *", "2024-10-26T23:00:00Z", "2024-10-27T23:00:00Z",
			"2024-10-27T00:00:00Z 2024-10-27T00:20:00Z 2024-10-27T00:40:00Z"},
		// Every hour: real time, 15 minutes apart through both changes.
		{"*/15 * * * *", "2024-03-31T00:20:00Z", "2024-03-31T01:20:00Z",
			"2024-03-31T00:30:00Z 2024-03-31T00:45:00Z 2024-03-31T01:00:00Z 2024-03-31T01:15:00Z"},
		{"*/15 * * * *", "2024-10-26T23:50:00Z", "2024-10-27T01:20:00Z",
			"2024-10-27T00:00:00Z 2024-10-27T00:15:00Z 2024-10-27T00:30:00Z 2024-10-27T00:45:00Z " +
				"2024-10-27T01:00:00Z 2024-10-27T01:15:00Z"},
		{"@hourly", "2024-03-30T23:30:00Z", "2024-03-31T02:30:00Z",
			"2024-03-31T00:00:00Z 2024-03-31T01:00:00Z 2024-03-31T02:00:00Z"},
		{"@hourly", "2024-10-26T22:30:00Z", "2024-10-27T02:30:00Z",
			"2024-10-26T23:00:00Z 2024-10-27T00:00:00Z 2024-10-27T01:00:00Z 2024-10-27T02:00:00Z"},
		// 01:30 in every hour's schedule: skipped in March (an hour after
		// 00:30 GMT comes 02:30 BST), twice in October (an hour apart).
		{"30 * * * *", "2024-03-31T00:00:00Z", "2024-03-31T02:00:00Z", "2024-03-31T00:30:00Z 2024-03-31T01:30:00Z"},
		{"30 * * * *", "2024-10-26T23:45:00Z", "2024-10-27T02:00:00Z",
			"2024-10-27T00:30:00Z 2024-10-27T01:30:00Z"},
		// Midnight is not near either change.
		{"@daily", "2024-10-26T00:00:00Z", "2024-10-28T12:00:00Z", "2024-10-26T23:00:00Z 2024-10-28T00:00:00Z"},
	} {
		s, err := ParseSchedule(c.spec, lon)
		if err != nil {
			t.Fatalf("%q: %v", c.spec, err)
		}
		from, to := utc(c.from), utc(c.to)
		if got := keys(s.Between(from, to)); got != c.want {
			t.Errorf("%q in (%s, %s]:\n got %s\nwant %s", c.spec, c.from, c.to, got, c.want)
		}
		var walked []time.Time
		for n := s.Next(from); !n.After(to); n = s.Next(n) {
			walked = append(walked, n)
		}
		if got := keys(walked); got != c.want {
			t.Errorf("%q walking Next from %s:\n got %s\nwant %s", c.spec, c.from, got, c.want)
		}
	}

	// Every two hours is not every hour: in Europe/Paris, whose clock skips
	// 02:00-02:59 CET and shows 02:00-02:59 twice, 02:00 runs at the jump
	// (03:00 CEST), and once in October.
	paris := mustZone(t, "Europe/Paris")
	s, _ := ParseSchedule("0 */2 * * *", paris)
	if got := keys(s.Between(utc("2024-03-30T22:30:00Z"), utc("2024-03-31T02:30:00Z"))); got != "2024-03-30T23:00:00Z 2024-03-31T01:00:00Z 2024-03-31T02:00:00Z" {
		t.Errorf("0 */2 in Paris, March: %s", got)
	}
	if got := keys(s.Between(utc("2024-10-26T21:30:00Z"), utc("2024-10-27T03:30:00Z"))); got != "2024-10-26T22:00:00Z 2024-10-27T00:00:00Z 2024-10-27T03:00:00Z" {
		t.Errorf("0 */2 in Paris, October: %s", got)
	}

	// In the repeated hour, a fixed-time job's latest slot is the first
	// 01:30, and its next is tomorrow's.
	s, _ = ParseSchedule("30 1 * * *", lon)
	for _, at := range []string{"2024-10-27T00:30:00Z", "2024-10-27T01:00:00Z", "2024-10-27T01:30:00Z", "2024-10-27T01:59:00Z"} {
		if got := SlotKey(s.Prev(utc(at))); got != "2024-10-27T00:30:00Z" {
			t.Errorf("Prev(%s) = %s, want 2024-10-27T00:30:00Z", at, got)
		}
		if got := SlotKey(s.Next(utc(at))); got != "2024-10-28T01:30:00Z" {
			t.Errorf("Next(%s) = %s, want 2024-10-28T01:30:00Z", at, got)
		}
	}
	// A CRON_TZ prefix wins over the zone the schedule is read in.
	s, _ = ParseSchedule("CRON_TZ=Europe/London 30 1 * * *", time.UTC)
	if got := SlotKey(s.Next(utc("2024-03-31T00:00:00Z"))); got != "2024-03-31T01:00:00Z" || s.Location().String() != "Europe/London" {
		t.Errorf("CRON_TZ prefix: Next = %s in %v", got, s.Location())
	}
}

// robfig/cron, which the rules above replace, skips the 01:30 job in March
// and runs it twice in October: kept as a test so that the reason for the
// replacement stays checked.
func TestRobfigDaylightSaving(t *testing.T) {
	r, err := cron.ParseStandard("CRON_TZ=Europe/London 30 1 * * *")
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Next(utc("2024-03-31T00:00:00Z")); SlotKey(n) != "2024-04-01T00:30:00Z" {
		t.Errorf("robfig/cron spring: %s", SlotKey(n))
	}
	first := r.Next(utc("2024-10-27T00:00:00Z"))
	if second := r.Next(first); SlotKey(first) != "2024-10-27T00:30:00Z" || SlotKey(second) != "2024-10-27T01:30:00Z" {
		t.Errorf("robfig/cron autumn: %s %s", SlotKey(first), SlotKey(second))
	}
}

func TestEveryAnchored(t *testing.T) {
	for _, spec := range []string{"@every 7m", "@every 1h30m", "@every 1s", "@every 86400s", "CRON_TZ=Asia/Kolkata @every 45m"} {
		s, err := ParseSchedule(spec, time.Local)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		fields := strings.Fields(spec)
		d, _ := time.ParseDuration(fields[len(fields)-1])
		// Two nodes asking at different moments agree on the slots.
		a := s.Between(utc("2025-06-01T10:00:00Z"), utc("2025-06-04T13:00:00Z"))
		b := s.Between(utc("2025-06-01T10:00:00Z").Add(1234567*time.Microsecond), utc("2025-06-04T13:00:00Z"))
		if len(a) < 2 || len(b) < len(a)-1 || keys(a[1:]) != keys(b[len(b)-len(a)+1:]) {
			t.Errorf("%q: slots depend on the start: %v vs %v", spec, len(a), len(b))
		}
		for _, x := range a {
			if x.Unix()%int64(d/time.Second) != 0 || x.Nanosecond() != 0 {
				t.Errorf("%q: slot %s is not a multiple of %v since the epoch", spec, SlotKey(x), d)
			}
		}
		now := utc("2025-06-01T12:34:56Z").Add(789 * time.Millisecond)
		p, n := s.Prev(now), s.Next(now)
		if p.After(now) || !n.After(now) || n.Sub(p) != d || n.Unix()%int64(d/time.Second) != 0 {
			t.Errorf("%q around %s: prev %s next %s", spec, now, p, n)
		}
		if s.Prev(p) != p || s.Next(p) != n {
			t.Errorf("%q: a slot is its own Prev, and its Next is the next one", spec)
		}
	}
	// Before the epoch the multiples continue.
	s, _ := ParseSchedule("@every 7s", time.UTC)
	if got := s.Prev(time.Unix(-1, 0)); got.Unix() != -7 {
		t.Errorf("Prev before the epoch = %d, want -7", got.Unix())
	}
}

func TestParseScheduleErrors(t *testing.T) {
	for _, c := range []struct{ spec, want string }{
		{"61 * * * *", "end of range (61) above maximum (59): 61"},
		{"* * * *", "expected exactly 5 fields, found 4: [* * * *]"},
		{"0 0 30 2 *", "never due: no month it names has such a day"},
		{"0 0 31 4,6 *", "never due: no month it names has such a day"},
		{"@reboot", "@reboot is not supported: the agent fires scheduled slots only (start such a command at boot, from a systemd unit)"},
		{"@fortnightly", "unrecognized descriptor: @fortnightly"},
		{"@every 500ms", "@every 500ms: want a whole number of seconds, at least 1s (for example 90s, 5m, 1h30m)"},
		{"@every 1500ms", "@every 1500ms: want a whole number of seconds, at least 1s (for example 90s, 5m, 1h30m)"},
		{"@every -1m", "@every -1m: want a whole number of seconds, at least 1s (for example 90s, 5m, 1h30m)"},
		{"@every", "want @every DURATION, for example @every 5m"},
		{"CRON_TZ=Mars/Olympus 0 * * * *", `unknown time zone "Mars/Olympus"`},
		{"CRON_TZ= 0 * * * *", "empty time zone"},
		{"CRON_TZ=UTC", "nothing after CRON_TZ=UTC"},
		{"", "empty schedule"},
	} {
		if _, err := ParseSchedule(c.spec, time.UTC); err == nil || err.Error() != c.want {
			t.Errorf("ParseSchedule(%q) = %v, want %q", c.spec, err, c.want)
		}
	}
	for _, spec := range []string{"0 0 29 2 *", "TZ=America/New_York 0 9 * * 1-5", "@annually", "@midnight", "0 0 31 * *", "0 0 30 2 1"} {
		if _, err := ParseSchedule(spec, nil); err != nil {
			t.Errorf("ParseSchedule(%q): %v", spec, err)
		}
	}
}

func TestZeroSchedule(t *testing.T) {
	var s Schedule
	now := time.Now()
	if !s.Next(now).IsZero() || !s.Prev(now).IsZero() || s.Between(now.Add(-time.Hour), now) != nil {
		t.Error("the zero Schedule has slots")
	}
}

func TestBetweenCap(t *testing.T) {
	s, _ := ParseSchedule("@every 1s", time.UTC)
	to := utc("2025-01-02T00:00:00Z")
	got := s.Between(to.Add(-24*time.Hour), to)
	if len(got) != MaxSlots || !got[len(got)-1].Equal(to) || !got[0].Equal(to.Add(-(MaxSlots-1)*time.Second)) {
		t.Errorf("Between over a day of @every 1s: %d slots, %s .. %s", len(got), SlotKey(got[0]), SlotKey(got[len(got)-1]))
	}
	if got := s.Between(to, to); got != nil {
		t.Errorf("an empty window has slots: %v", got)
	}
	// The catch-up window of a job: (now-d, now].
	d, _ := ParseSchedule("0 3 * * *", time.UTC)
	now := utc("2025-01-10T03:00:00Z")
	if got := keys(d.Between(now.Add(-48*time.Hour), now)); got != "2025-01-09T03:00:00Z 2025-01-10T03:00:00Z" {
		t.Errorf("catch-up window: %s", got)
	}
}

func TestJitter(t *testing.T) {
	slot := utc("2025-03-01T04:00:00Z")
	if Jitter("backup", slot, 0) != 0 || Jitter("backup", slot, -time.Second) != 0 || Jitter("backup", slot, 999*time.Microsecond) != 0 {
		t.Error("jitter without a positive max")
	}
	// Golden: every node, every version computes this delay.
	if got := Jitter("backup", slot, time.Hour); got != goldenJitter {
		t.Errorf("Jitter(backup, %s, 1h) = %v, want %v", SlotKey(slot), got, goldenJitter)
	}
	// The slot's zone does not matter, only its instant.
	if Jitter("backup", slot.In(mustZone(t, "Asia/Tokyo")), time.Hour) != goldenJitter {
		t.Error("jitter depends on the slot's zone")
	}
	seen := map[time.Duration]bool{}
	for i := range 2000 {
		s := slot.Add(time.Duration(i) * time.Minute)
		for _, max := range []time.Duration{time.Millisecond, 1500 * time.Millisecond, 10 * time.Second, 24 * time.Hour} {
			j := Jitter("job", s, max)
			if j < 0 || j >= max || j%time.Millisecond != 0 || j != Jitter("job", s, max) {
				t.Fatalf("Jitter(job, %s, %v) = %v", SlotKey(s), max, j)
			}
		}
		seen[Jitter("job", s, 10*time.Second)/time.Second] = true
	}
	if len(seen) != 10 {
		t.Errorf("jitter over 2000 slots fills %d of 10 seconds", len(seen))
	}
	if Jitter("a", slot, time.Hour) == Jitter("b", slot, time.Hour) && Jitter("a", slot.Add(time.Minute), time.Hour) == Jitter("b", slot.Add(time.Minute), time.Hour) {
		t.Error("two jobs get the same delays")
	}
}

const goldenJitter = 49*time.Minute + 14259*time.Millisecond

// The slots of random schedules in zones with daylight saving (one of them
// with half-hour changes, one that skipped a whole day, one whose
// changes were at midnight), near their changes, against a brute force
// that steps minute by minute and follows the rules as stated.
func TestSlotsBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 1))
	zones := []string{"Europe/London", "America/New_York", "Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Apia", "Asia/Kolkata", "UTC"}
	cases := 150
	if testing.Short() {
		cases = 20
	}
	for i := range cases {
		loc := mustZone(t, zones[i%len(zones)])
		changes := zoneChanges(loc, utc("2009-01-01T00:00:00Z"), utc("2030-01-01T00:00:00Z"))
		var from time.Time
		if len(changes) == 0 {
			from = utc("2010-01-01T00:00:00Z").Add(time.Duration(rng.Int64N(int64(20 * 365 * 24 * time.Hour))))
		} else {
			from = changes[rng.IntN(len(changes))].Add(-time.Duration(rng.Int64N(int64(40 * time.Hour))))
		}
		from = from.Add(time.Duration(rng.IntN(60)) * time.Second)
		to := from.Add(50 * time.Hour)
		spec := randomSpec(rng)
		s, err := ParseSchedule(spec, loc)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		brute := bruteSlots(t, spec, loc, from, to)
		want := keys(brute)
		if got := keys(s.Between(from, to)); got != want {
			t.Fatalf("%q in %s, (%s, %s]:\nBetween %s\n  brute %s", spec, loc, from.UTC(), to.UTC(), got, want)
		}
		var walked []time.Time
		for n := s.Next(from); !n.IsZero() && !n.After(to); n = s.Next(n) {
			walked = append(walked, n)
		}
		if got := keys(walked); got != want {
			t.Fatalf("%q in %s, walking Next from %s:\n   Next %s\n  brute %s", spec, loc, from.UTC(), got, want)
		}
		// Asked from anywhere, the hour after a change included.
		for range 40 {
			at := from.Add(time.Hour + time.Duration(rng.Int64N(int64(48*time.Hour))))
			if c := changes; len(c) > 0 && rng.IntN(2) == 0 {
				at = c[rng.IntN(len(c))].Add(time.Duration(rng.IntN(7200)-3600) * time.Second)
				if at.Before(from.Add(time.Hour)) || at.After(to.Add(-time.Hour)) {
					continue
				}
			}
			i := sort.Search(len(brute), func(i int) bool { return brute[i].After(at) })
			if n := s.Next(at); i < len(brute) && !n.Equal(brute[i]) || i == len(brute) && !n.IsZero() && !n.After(to) {
				t.Fatalf("%q in %s: Next(%s) = %s; brute: %s", spec, loc, at.UTC(), SlotKey(n), keys(brute[max(i-1, 0):min(i+1, len(brute))]))
			}
			if p := s.Prev(at); i > 0 && !p.Equal(brute[i-1]) || i == 0 && p.After(from) {
				t.Fatalf("%q in %s: Prev(%s) = %s; brute: %s", spec, loc, at.UTC(), SlotKey(p), keys(brute[max(i-1, 0):min(i+1, len(brute))]))
			}
		}
	}
}

// In UTC there is nothing to decide: Next is robfig/cron's Next, over any
// distance, and Prev is consistent with it.
func TestSlotsMatchRobfigInUTC(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 2))
	sparse := []string{"0 0 29 2 *", "0 12 31 * *", "0 0 1 1 *", "0 0 13 * 5", "59 23 31 12 *", "0 0 29 2 1", "*/5 4 1-7 * 0"}
	for i := range 3000 {
		spec := randomSpec(rng)
		if i%3 == 0 {
			spec = sparse[rng.IntN(len(sparse))]
		}
		s, err := ParseSchedule(spec, time.UTC)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		r, _ := cron.ParseStandard("CRON_TZ=UTC " + spec)
		now := utc("1990-01-01T00:00:00Z").Add(time.Duration(rng.Int64N(int64(100 * 365 * 24 * time.Hour))))
		if rng.IntN(4) == 0 {
			now = now.Truncate(time.Minute) // on a possible slot
		}
		if want := r.Next(now); !want.IsZero() && !s.Next(now).Equal(want) {
			t.Fatalf("%q: Next(%s) = %s, robfig/cron says %s", spec, now, s.Next(now), want)
		}
		p := s.Prev(now)
		if p.IsZero() || p.After(now) || !r.Next(p.Add(-time.Second)).Equal(p) || !r.Next(p).After(now) {
			t.Fatalf("%q: Prev(%s) = %s: not the latest slot at or before", spec, now, p)
		}
	}
}

// randomSpec draws a five-field schedule or a descriptor, dense enough in
// its hours and days to have slots in a two-day window most of the time.
func randomSpec(rng *rand.Rand) string {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	if rng.IntN(8) == 0 {
		return pick("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly")
	}
	return strings.Join([]string{
		pick("*", "*/15", "0", "30", "5,35", "*/7", "0-10/5", "59", "1-3", "*/30"),
		pick("*", "*", "1", "2", "0-3", "*/2", "1,2", "23", "0", "3", "1-23", "0-23"),
		pick("*", "*", "*", "1-31/2", "15", "25-31", "1"),
		pick("*", "*", "*", "3,10", "3,4,10,11", "1-6", "10-12"),
		pick("*", "*", "*", "0", "1-5", "6", "0,6"),
	}, " ")
}

// zoneChanges lists the instants at which loc's offset changes in [from, to).
func zoneChanges(loc *time.Location, from, to time.Time) []time.Time {
	var out []time.Time
	for t := from; t.Before(to); {
		_, end := t.In(loc).ZoneBounds()
		if end.IsZero() {
			break
		}
		out = append(out, end)
		t = end
	}
	return out
}

// bruteSlots steps minute by minute through (from, to] following the rules
// as docs/crontab.md states them, with robfig/cron (read in UTC, where it
// has no daylight saving to get wrong) as the judge of which wall-clock
// times match.
func bruteSlots(t *testing.T, spec string, loc *time.Location, from, to time.Time) []time.Time {
	t.Helper()
	r, err := cron.ParseStandard("CRON_TZ=UTC " + spec)
	if err != nil {
		t.Fatal(err)
	}
	matches := func(w time.Time) bool { return r.Next(w.Add(-time.Second)).Equal(w) }
	realTime := r.(*cron.SpecSchedule).Hour&(1<<24-1) == 1<<24-1
	clock := func(u time.Time) time.Time {
		l := u.In(loc)
		return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), 0, time.UTC)
	}
	var out []time.Time
	// A day before from, to know the highest reading so far.
	u := from.Add(-26 * time.Hour).Truncate(time.Minute)
	high := clock(u)
	for ; !u.After(to); u = u.Add(time.Minute) {
		w := clock(u)
		due := false
		if realTime {
			due = matches(w)
		} else {
			// The wall-clock times first reached at u.
			for c := high.Add(time.Minute); !c.After(w); c = c.Add(time.Minute) {
				due = due || matches(c)
			}
		}
		if w.After(high) {
			high = w
		}
		if due && u.After(from) {
			out = append(out, u)
		}
	}
	return out
}
