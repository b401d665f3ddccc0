package crontab

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// A Schedule is a job's slots: the instants it is due, the same on every
// node that reads the same line (given the same time zone data). The zero
// Schedule has no slots.
//
// Five-field schedules and descriptors are read by robfig/cron; the slots
// are computed here, because robfig/cron's own stepping skips a 01:30 job on
// the day the clock springs forward, runs it twice on the day the clock
// falls back, and reads a schedule without a zone in whatever zone the time
// it is given carries. The rules, for a zone with daylight saving:
//
//   - A schedule that names every hour (its hour field is "*" or 0-23)
//     follows real time: each of its wall-clock times is a slot each time the
//     clock reads it, and none when the clock skips it. "*/15 * * * *" stays
//     15 minutes apart across both changes.
//   - Any other schedule is a set of wall-clock times, each due the first
//     moment the clock reads it or a later time: a time the clock skips is due
//     at the moment of the jump, and a time the clock reads twice is due the
//     first time only. "30 1 * * *" in Europe/London runs at 02:00 BST on the
//     day the clock springs forward and at 01:30 BST (not again at 01:30 GMT)
//     on the day it falls back.
//
// Several wall-clock times due at the same moment are one slot.
type Schedule struct {
	every time.Duration // @every: slots at the multiples of every since the Unix epoch
	// The minutes, hours, days of the month, months and weekdays of a
	// five-field schedule, as bit sets (robfig/cron's, bit n for value n).
	minute, hour, dom, month, dow uint64
	domOrDow                      bool // both day fields restricted: either one matching is enough (cron's rule)
	realTime                      bool // every hour: slots follow real time (see above)
	loc                           *time.Location
}

// MaxSlots caps Between: a catch-up window or a count of missed slots never
// needs more, and a window of a minutely job over a long outage stays cheap.
const MaxSlots = 10000

// minEvery is the shortest @every interval: slots are named to the second.
const minEvery = time.Second

// maxShift bounds how far a wall clock can be from UTC, and so how far a
// zone change can move it: more than any offset in the time zone database
// (the largest are under 16 hours either way).
const maxShift = 48 * time.Hour

// searchYears bounds the search for a matching date: the Gregorian calendar
// repeats every 400 years (weekdays included), so a date not found in that
// span is never found.
const searchYears = 401

// ParseSchedule reads a schedule: five fields (minute hour day-of-month month
// day-of-week), a descriptor (@yearly @annually @monthly @weekly @daily
// @midnight @hourly), or @every D, optionally preceded by CRON_TZ=Zone (or
// TZ=Zone). Without a zone the schedule is read in loc (time.Local when
// nil). @every D is anchored to the Unix epoch: its slots are the multiples
// of D since 1970-01-01T00:00:00Z, so every node agrees on them; D is a whole
// number of seconds, at least 1s.
func ParseSchedule(spec string, loc *time.Location) (Schedule, error) {
	if loc == nil {
		loc = time.Local
	}
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		prefix, rest := cutField(spec)
		_, zone, _ := strings.Cut(prefix, "=")
		l, err := loadZone(zone)
		if err != nil {
			return Schedule{}, err
		}
		if rest == "" {
			return Schedule{}, fmt.Errorf("nothing after %s", prefix)
		}
		loc, spec = l, rest
	}
	if spec == "" {
		return Schedule{}, errors.New("empty schedule")
	}
	fields := strings.Fields(spec)
	switch fields[0] {
	case "@every":
		if len(fields) != 2 {
			return Schedule{}, errors.New("want @every DURATION, for example @every 5m")
		}
		d, err := time.ParseDuration(fields[1])
		if err != nil || d < minEvery || d%time.Second != 0 {
			return Schedule{}, fmt.Errorf("@every %s: want a whole number of seconds, at least 1s (for example 90s, 5m, 1h30m)", fields[1])
		}
		return Schedule{every: d, loc: loc}, nil
	case "@reboot":
		return Schedule{}, errors.New("@reboot is not supported: the agent fires scheduled slots only (start such a command at boot, from a systemd unit)")
	}
	parsed, err := cron.ParseStandard(spec)
	if err != nil {
		return Schedule{}, err
	}
	ss, ok := parsed.(*cron.SpecSchedule)
	if !ok || ss.Second != 1 {
		// ParseStandard gives five-field schedules with second 0 for all
		// but @every, which is handled above.
		return Schedule{}, fmt.Errorf("unsupported schedule %q", spec)
	}
	const star = 1 << 63 // robfig/cron marks a field that starts with * or ?
	s := Schedule{
		minute:   ss.Minute &^ star,
		hour:     ss.Hour &^ star,
		dom:      ss.Dom &^ star,
		month:    ss.Month &^ star,
		dow:      ss.Dow &^ star,
		domOrDow: ss.Dom&star == 0 && ss.Dow&star == 0,
		loc:      loc,
	}
	s.realTime = s.hour == 1<<24-1
	if s.nextWall(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return Schedule{}, errors.New("never due: no month it names has such a day")
	}
	return s, nil
}

// loadZone is time.LoadLocation without its reading of "" as UTC: an empty
// CRON_TZ is a mistake, not a choice.
func loadZone(name string) (*time.Location, error) {
	if name == "" {
		return nil, errors.New("empty time zone")
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	return l, nil
}

// Location is the zone the schedule is read in.
func (s Schedule) Location() *time.Location { return s.loc }

// Next is the first slot strictly after t, in the schedule's zone; the zero
// time when there is none.
func (s Schedule) Next(t time.Time) time.Time {
	switch {
	case s.every > 0:
		k := floorDiv(t.Unix(), int64(s.every/time.Second))
		return time.Unix((k+1)*int64(s.every/time.Second), 0).In(s.loc)
	case s.loc == nil:
		return time.Time{}
	case s.realTime:
		u, w := t, wall(t, s.loc)
		for {
			_, end, off := zoneAt(u, s.loc)
			n := s.nextWall(w)
			if n.IsZero() {
				return time.Time{}
			}
			// A wall time of this zone period is a slot only if the
			// period still runs then; else look in the next period.
			if slot := n.Add(-off); end.IsZero() || slot.Before(end) {
				return slot.In(s.loc)
			}
			u, w = end, wall(end, s.loc).Add(-time.Nanosecond)
		}
	default:
		n := s.nextWall(highWater(t, s.loc))
		if n.IsZero() {
			return time.Time{}
		}
		return firstReach(n, s.loc).In(s.loc)
	}
}

// Prev is the latest slot at or before t, in the schedule's zone; the zero
// time when there is none. It costs about what Next does.
func (s Schedule) Prev(t time.Time) time.Time {
	switch {
	case s.every > 0:
		k := floorDiv(t.Unix(), int64(s.every/time.Second))
		return time.Unix(k*int64(s.every/time.Second), 0).In(s.loc)
	case s.loc == nil:
		return time.Time{}
	case s.realTime:
		u := t
		for {
			start, _, off := zoneAt(u, s.loc)
			p := s.prevWall(wall(u, s.loc))
			if p.IsZero() {
				return time.Time{}
			}
			if slot := p.Add(-off); start.IsZero() || !slot.Before(start) {
				return slot.In(s.loc)
			}
			u = start.Add(-time.Nanosecond)
		}
	default:
		p := s.prevWall(highWater(t, s.loc))
		if p.IsZero() {
			return time.Time{}
		}
		return firstReach(p, s.loc).In(s.loc)
	}
}

// Between is the slots in (from, to], ascending: the newest MaxSlots of
// them when there are more, so a result of MaxSlots slots may be cut.
func (s Schedule) Between(from, to time.Time) []time.Time {
	var out []time.Time
	for t := s.Prev(to); !t.IsZero() && t.After(from) && len(out) < MaxSlots; t = s.Prev(t.Add(-time.Nanosecond)) {
		out = append(out, t)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// SlotKey names a slot: its instant in UTC, RFC 3339, to the second - the
// format of hacron run --schedule's slots.
func SlotKey(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Jitter is the delay of a job's run for one slot: a hash of the job's name
// and the slot, modulo d, in whole milliseconds, so every node computes the
// same delay and a failover keeps it. 0 when d is under a millisecond.
func Jitter(job string, slot time.Time, d time.Duration) time.Duration {
	ms := uint64(d / time.Millisecond)
	if d <= 0 || ms == 0 {
		return 0
	}
	sum := sha256.Sum256([]byte(job + "\x00" + SlotKey(slot)))
	return time.Duration(binary.BigEndian.Uint64(sum[:8])%ms) * time.Millisecond
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// Wall-clock times are coded as time.Time values in UTC, so that their
// arithmetic knows no daylight saving: wall(u, loc) is what a clock in loc
// reads at the instant u.
func wall(u time.Time, loc *time.Location) time.Time {
	_, off := u.In(loc).Zone()
	return u.UTC().Add(time.Duration(off) * time.Second)
}

// zoneAt is the zone period of loc that holds the instant u: its start and
// end (zero when unbounded) and its offset from UTC.
func zoneAt(u time.Time, loc *time.Location) (start, end time.Time, off time.Duration) {
	lt := u.In(loc)
	_, secs := lt.Zone()
	start, end = lt.ZoneBounds()
	return start, end, time.Duration(secs) * time.Second
}

// highWater is the latest wall-clock time read in loc at or before the
// instant t: the reading at t, or, in the hour after the clock was set
// back, the reading just before it was.
func highWater(t time.Time, loc *time.Location) time.Time {
	m, u := wall(t, loc), t
	for {
		start, _, _ := zoneAt(u, loc)
		if start.IsZero() || t.Sub(start) > maxShift {
			return m
		}
		u = start.Add(-time.Nanosecond)
		if w := wall(u, loc); w.After(m) {
			m = w
		}
	}
}

// firstReach is the first instant at which a clock in loc reads the
// wall-clock time w or a later one: the instant it reads w, the moment of
// the jump when it skips w, the first of the two when it reads w twice.
func firstReach(w time.Time, loc *time.Location) time.Time {
	// maxShift before w the clock surely read less than w.
	u := w.Add(-maxShift)
	for {
		_, end, off := zoneAt(u, loc)
		if !u.Add(off).Before(w) {
			return u // the clock jumped over w at u, the start of a period
		}
		if at := w.Add(-off); end.IsZero() || at.Before(end) {
			return at
		}
		u = end
	}
}

// The wall-clock search: nextWall is the first matching wall-clock time
// after w, prevWall the latest at or before w; the zero time when none
// exists (a day that no month has).

func (s Schedule) nextWall(w time.Time) time.Time {
	t := w.Truncate(time.Minute).Add(time.Minute)
	y, mo, d := t.Date()
	h, mi := t.Hour(), t.Minute()
	for limit := y + searchYears; y <= limit; {
		if s.month&(1<<uint(mo)) != 0 {
			for n := daysIn(y, mo); d <= n; d++ {
				if s.dayMatches(y, mo, d) {
					if hh, mm, ok := s.nextInDay(h, mi); ok {
						return time.Date(y, mo, d, hh, mm, 0, 0, time.UTC)
					}
				}
				h, mi = 0, 0
			}
		}
		if mo++; mo > time.December {
			mo, y = time.January, y+1
		}
		d, h, mi = 1, 0, 0
	}
	return time.Time{}
}

func (s Schedule) prevWall(w time.Time) time.Time {
	t := w.Truncate(time.Minute)
	y, mo, d := t.Date()
	h, mi := t.Hour(), t.Minute()
	for limit := y - searchYears; y >= limit; {
		if s.month&(1<<uint(mo)) != 0 {
			for ; d >= 1; d-- {
				if s.dayMatches(y, mo, d) {
					if hh, mm, ok := s.prevInDay(h, mi); ok {
						return time.Date(y, mo, d, hh, mm, 0, 0, time.UTC)
					}
				}
				h, mi = 23, 59
			}
		}
		if mo--; mo < time.January {
			mo, y = time.December, y-1
		}
		d, h, mi = daysIn(y, mo), 23, 59
	}
	return time.Time{}
}

// nextInDay is the first matching hour and minute at or after h:mi.
func (s Schedule) nextInDay(h, mi int) (int, int, bool) {
	for ; h < 24; h++ {
		if s.hour&(1<<uint(h)) != 0 {
			if m := s.minute >> uint(mi) << uint(mi); m != 0 {
				return h, bits.TrailingZeros64(m), true
			}
		}
		mi = 0
	}
	return 0, 0, false
}

// prevInDay is the latest matching hour and minute at or before h:mi.
func (s Schedule) prevInDay(h, mi int) (int, int, bool) {
	for ; h >= 0; h-- {
		if s.hour&(1<<uint(h)) != 0 {
			if m := s.minute & (2<<uint(mi) - 1); m != 0 {
				return h, bits.Len64(m) - 1, true
			}
		}
		mi = 59
	}
	return 0, 0, false
}

// dayMatches is cron's rule: when both the day of the month and the day of
// the week are restricted, either matching is enough; else both must.
func (s Schedule) dayMatches(y int, mo time.Month, d int) bool {
	domOK := s.dom&(1<<uint(d)) != 0
	dowOK := s.dow&(1<<uint(time.Date(y, mo, d, 0, 0, 0, 0, time.UTC).Weekday())) != 0
	if s.domOrDow {
		return domOK || dowOK
	}
	return domOK && dowOK
}

func daysIn(y int, mo time.Month) int {
	return time.Date(y, mo+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// cutField splits s at its first run of blanks: the first field and the
// rest, without the blanks between.
func cutField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}
