package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"

	"hacron/internal/wire"
)

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustSchedule(t testing.TB, spec string) interface{ Next(time.Time) time.Time } {
	t.Helper()
	s, err := parseSchedule(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The slots a question judges, and which of them went unrun.
func TestMissedSlots(t *testing.T) {
	const (
		ok     = resultOK
		missed = resultMissed
	)
	for _, c := range []struct {
		name, spec, since, now string
		runs                   map[string]string
		want                   []string
	}{
		{
			name: "daily, unrun", spec: "0 2 * * *", since: "2026-11-01T00:00:00Z", now: "2026-11-25T10:00:00Z",
			want: []string{"2026-11-25T02:00:00Z"},
		},
		{
			name: "daily, run", spec: "0 2 * * *", since: "2026-11-01T00:00:00Z", now: "2026-11-25T10:00:00Z",
			runs: map[string]string{"2026-11-25T02:00:00Z": ok, "2026-11-24T02:00:00Z": ok},
		},
		{
			// A run that failed, was lost or is still going ran: only a
			// catch-up's missed record says otherwise.
			name: "every result but missed counts as run", spec: "0 * * * *", since: "2026-11-25T06:59:00Z", now: "2026-11-25T10:30:00Z",
			runs: map[string]string{"2026-11-25T07:00:00Z": resultFailed, "2026-11-25T08:00:00Z": "", "2026-11-25T09:00:00Z": missed, "2026-11-25T10:00:00Z": resultLost},
			want: []string{"2026-11-25T09:00:00Z"},
		},
		{
			// The run that recorded the schedule claimed 10:05 at 10:06:30:
			// slots before it are not the alarm's.
			name: "new job", spec: "*/5 * * * *", since: "2026-11-25T10:06:30.123Z", now: "2026-11-25T10:21:00Z",
			runs: map[string]string{"2026-11-25T10:05:00Z": ok, "2026-11-25T10:15:00Z": ok},
			want: []string{"2026-11-25T10:20:00Z", "2026-11-25T10:10:00Z"},
		},
		{
			name: "within the margin", spec: "*/5 * * * *", since: "2026-11-25T09:00:00Z", now: "2026-11-25T10:05:59Z",
			runs: map[string]string{"2026-11-25T09:55:00Z": ok, "2026-11-25T10:00:00Z": ok},
		},
		{
			name: "the margin over", spec: "*/5 * * * *", since: "2026-11-25T09:00:00Z", now: "2026-11-25T10:06:00Z",
			runs: map[string]string{"2026-11-25T09:55:00Z": ok, "2026-11-25T10:00:00Z": ok},
			want: []string{"2026-11-25T10:05:00Z"},
		},
		{
			// A slot of @every 1s is judged when the next slot comes.
			name: "every second", spec: "@every 1s", since: "2026-11-25T10:00:00Z", now: "2026-11-25T10:00:05.500Z",
			runs: map[string]string{
				"2026-11-25T10:00:00Z": ok, "2026-11-25T10:00:01Z": ok, "2026-11-25T10:00:03Z": missed,
				"2026-11-25T10:00:05Z": ok, // not judged yet either way
			},
			want: []string{"2026-11-25T10:00:04Z", "2026-11-25T10:00:03Z", "2026-11-25T10:00:02Z"},
		},
		{
			name: "every minute, epoch-anchored", spec: "@every 1m", since: "2026-11-25T09:59:30Z", now: "2026-11-25T10:03:10Z",
			runs: map[string]string{"2026-11-25T10:00:00Z": ok, "2026-11-25T10:02:00Z": ok},
			want: []string{"2026-11-25T10:01:00Z"},
		},
		{
			// Only the last day.
			name: "window", spec: "0 2 * * *", since: "2026-11-01T00:00:00Z", now: "2026-11-25T01:00:00Z",
			want: []string{"2026-11-24T02:00:00Z"},
		},
		{
			// history 20, hourly: the records of 00:00 to 03:00 were
			// pruned; they are not judged. 10:00 is missing.
			name: "pruned records", spec: "0 * * * *", since: "2026-11-01T00:00:00Z", now: "2026-11-25T23:30:00Z",
			runs: func() map[string]string {
				m := map[string]string{}
				for h := 4; h <= 23; h++ {
					if h != 10 {
						m[time.Date(2026, 11, 25, h, 0, 0, 0, time.UTC).Format(time.RFC3339)] = ok
					}
				}
				return m
			}(),
			want: []string{"2026-11-25T10:00:00Z"},
		},
		{
			name: "other records ignored", spec: "0 2 * * *", since: "2026-11-01T00:00:00Z", now: "2026-11-25T10:00:00Z",
			runs: map[string]string{"r-0123456789abcdef": ok, "nightly": ok, "2026-11-25T02:00:00.5Z": ok},
			want: []string{"2026-11-25T02:00:00Z"},
		},
		{
			name: "CRON_TZ", spec: "CRON_TZ=Europe/Paris 0 2 * * *", since: "2026-11-01T00:00:00Z", now: "2026-11-25T10:00:00Z",
			want: []string{"2026-11-25T01:00:00Z"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, capped := missedSlots(mustSchedule(t, c.spec), mustTime(t, c.since), mustTime(t, c.now), c.runs)
			if capped {
				t.Errorf("capped")
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("missed %q, want %q", got, c.want)
			}
		})
	}
}

// A schedule with more slots in the day than the cap: about the newest
// maxSlotScan are examined, and the answer says it was capped.
func TestMissedSlotsCapped(t *testing.T) {
	now := mustTime(t, "2026-11-25T10:00:00Z").Add(300 * time.Millisecond)
	sched := mustSchedule(t, "@every 1s")
	runs := map[string]string{"2026-11-24T10:00:05Z": resultOK}
	t0 := time.Now()
	got, capped := missedSlots(sched, now.Add(-48*time.Hour), now, runs)
	t.Logf("a day of @every 1s: %d slots reported in %v", len(got), time.Since(t0))
	if !capped {
		t.Errorf("not capped")
	}
	if len(got) < maxSlotScan-2 || len(got) > maxSlotScan {
		t.Errorf("%d missed slots, want about %d", len(got), maxSlotScan)
	}
	if len(got) > 0 && (got[0] != "2026-11-25T09:59:59Z" || !slices.IsSortedFunc(got, func(a, b string) int { return strings.Compare(b, a) })) {
		t.Errorf("missed slots from %s on, want newest first from 2026-11-25T09:59:59Z", got[0])
	}
	// Under the cap, nothing is cut.
	got, capped = missedSlots(sched, now.Truncate(time.Second).Add(-time.Duration(maxSlotScan-10)*time.Second), now, nil)
	if capped || len(got) != maxSlotScan-10 {
		t.Errorf("%d slots, capped %v; want %d, not capped", len(got), capped, maxSlotScan-10)
	}
}

// @every counts from the Unix epoch: every question, on every node, gets
// the same slots, and scheduleSlot the same slot.
func TestEveryAnchoredToEpoch(t *testing.T) {
	s := mustSchedule(t, "@every 7s")
	for _, at := range []string{"2026-11-25T10:00:00Z", "2026-11-25T10:00:03Z"} {
		next := s.Next(mustTime(t, at))
		if next.Unix()%7 != 0 || !next.After(mustTime(t, at)) || next.Sub(mustTime(t, at)) > 7*time.Second {
			t.Errorf("@every 7s after %s: %v", at, next)
		}
	}
	a, err := scheduleSlot("@every 5m", mustTime(t, "2026-11-25T10:07:12Z"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := scheduleSlot("@every 5m", mustTime(t, "2026-11-25T10:09:59Z"))
	if a != "2026-11-25T10:05:00Z" || b != a {
		t.Errorf("@every 5m slots %s and %s, want 2026-11-25T10:05:00Z twice", a, b)
	}
}

func TestCheckSchedule(t *testing.T) {
	for _, ok := range []string{"*/5 * * * *", "@daily", "@every 90s", "CRON_TZ=Europe/Paris 0 2 * * *"} {
		if err := checkSchedule(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"* * * *", "@sometimes", "CRON_TZ=Nowhere/City * * * * *", "* * * * * " + strings.Repeat("x", maxScheduleLen)} {
		if err := checkSchedule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A job node's data is hacron's JSON, or no schedule at all.
func TestJobInfoDecode(t *testing.T) {
	info := jobInfo{Schedule: "0 2 * * *", Since: "2026-11-25T10:00:00.000Z"}
	if got := decodeJobInfo(info.encode()); got != info {
		t.Errorf("round trip: %+v", got)
	}
	for _, data := range [][]byte{nil, []byte("x"), []byte(`{"schedule":1}`), []byte(`{"schedule":"` + strings.Repeat("*", maxJobData) + `"}`)} {
		if got := decodeJobInfo(data); got != (jobInfo{}) {
			t.Errorf("%.40q: %+v, want no schedule", data, got)
		}
	}
	if (jobInfo{}).encode() != nil {
		t.Errorf("no schedule is no data")
	}
}

// An unparsable schedule in the job node cannot be judged: said, not
// guessed.
func TestJudgeJobBadSchedule(t *testing.T) {
	j := judgeJob(jobInfo{Schedule: "every now and then", Since: "2026-11-25T10:00:00Z"}, nil, time.Now())
	if j.err == nil || j.missed != nil {
		t.Errorf("judged %+v", j)
	}
	runs := map[string]string{"2026-11-25T02:00:00Z": missedRecord("j", "node-a", "2026-11-25T02:00:00Z", 7, time.Now()).Result}
	j = judgeJob(jobInfo{Schedule: "0 2 * * *", Since: "garbage"}, runs, mustTime(t, "2026-11-25T10:00:00Z"))
	if j.err != nil || !slices.Equal(j.missed, []string{"2026-11-25T02:00:00Z"}) {
		t.Errorf("judged %+v, want the slot with a missed record", j)
	}
}

// What an agent older than the schedule field answers is recognised, so
// the wrapper asks again without it.
func TestRefusedSchedule(t *testing.T) {
	var old struct {
		V  int    `json:"v"`
		Op string `json:"op"`
	}
	err := wire.Decode([]byte(`{"v":1,"op":"run","schedule":"* * * * *"}`), &old)
	if err == nil {
		t.Fatal("an old agent's decoder accepted the schedule field")
	}
	if !refusedSchedule(errors.New("bad request: " + err.Error())) {
		t.Errorf("%v not recognised", err)
	}
	if refusedSchedule(errors.New("no ZooKeeper session")) || refusedSchedule(nil) {
		t.Errorf("other errors recognised")
	}
}

func TestOutputTail(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"short", []byte("hello\n"), "hello\n"},
		{"empty", nil, ""},
		{"controls", []byte("\x1b[31mred\x1b[0m\r\n\ttab\x7f\u0085\n"), "\ufffd[31mred\ufffd[0m\ufffd\n\ttab\ufffd\ufffd\n"},
		{"not UTF-8", []byte("a\xffb\xc3"), "a\ufffdb\ufffd"},
		{"long", []byte(strings.Repeat("x", 10) + strings.Repeat("y", maxOutputTail)), strings.Repeat("y", maxOutputTail)},
		// The cut falls inside a two-byte character: the tail starts at
		// the next one.
		{"cut in a character", []byte(strings.Repeat("é", maxOutputTail/2) + "a"), strings.Repeat("é", maxOutputTail/2-1) + "a"},
		// Cleaning makes each byte three: still at most maxOutputTail.
		{"binary", []byte(strings.Repeat("\xff", 2*maxOutputTail)), strings.Repeat("\ufffd", maxOutputTail/3)},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := outputTail(c.in)
			if got != c.want {
				t.Errorf("outputTail = %.60q (%d bytes), want %.60q (%d bytes)", got, len(got), c.want, len(c.want))
			}
			if len(got) > maxOutputTail || !utf8.ValidString(got) || cleanOutput(got) != got {
				t.Errorf("tail of %d bytes, valid %v, clean %v", len(got), utf8.ValidString(got), cleanOutput(got) == got)
			}
		})
	}
}

// The largest record hacron writes (every name at its longest, cmd and
// output tail of characters JSON escapes as six bytes) stays within what
// readers accept; more than that is refused.
func TestRunRecordWorstCaseFits(t *testing.T) {
	code := 255
	user := strings.Repeat("\U0001F600", 64)
	esc := strings.Repeat("<", 2*maxOutputTail)
	r := runRecord{
		Job: user + jobUserSep + strings.Repeat("x", maxJobName), Node: strings.Repeat("<", 255), Slot: strings.Repeat("<", 128),
		Start: jsonTime(time.Now()), End: jsonTime(time.Now()), ExitCode: &code, Result: resultTimeout, Token: 1 << 62,
		UID: 1 << 31, User: user, Cmd: recordCmd([]string{"sh", "-c", strings.Repeat("\x01", 4*maxRecordCmd)}), PGID: 1 << 22,
		Containment: "cgroup2", OutputTail: outputTail([]byte(esc)),
	}
	data := r.encode()
	t.Logf("worst-case record: %d bytes of %d", len(data), maxRecordData)
	if len(data) > maxRecordData {
		t.Fatalf("a record of %d bytes, readers accept %d", len(data), maxRecordData)
	}
	back, err := decodeRunRecord(data)
	if err != nil || back.OutputTail != r.OutputTail || back.Cmd != r.Cmd {
		t.Errorf("round trip: %v", err)
	}
	padded := append(data[:len(data)-1:len(data)-1], []byte(strings.Repeat(" ", maxRecordData-len(data)+1)+"}")...)
	if _, err := decodeRunRecord(padded); err == nil {
		t.Errorf("a record of %d bytes accepted", len(padded))
	}
}

// testJobs writes jobs into a cluster's ZooKeeper nodes as hacron and the
// scheduler would: the schedule in the job node, run records by name.
type testJobs struct {
	t    testing.TB
	zc   *zkClient
	root string
}

func newTestJobs(t testing.TB, connect, cluster string) *testJobs {
	t.Helper()
	zc, err := dialZK(context.Background(), zkConfig{Connect: connect, SessionTimeout: 10 * time.Second, ConnectTimeout: 10 * time.Second,
		ClusterRoot: "/hacron/" + cluster}, discardLogger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zc.Close)
	return &testJobs{t: t, zc: zc, root: "/hacron/" + cluster}
}

func (j *testJobs) job(job string, info jobInfo, records map[string]runRecord) {
	j.t.Helper()
	conn := j.zc.snapshot().Conn
	if err := j.zc.ensurePath(conn, jobPath(j.root, job)+"/runs"); err != nil {
		j.t.Fatal(err)
	}
	if _, err := conn.Set(jobPath(j.root, job), info.encode(), -1); err != nil {
		j.t.Fatal(err)
	}
	// In the order of the names: creation order is the records' order.
	for _, name := range slices.Sorted(maps.Keys(records)) {
		if _, err := conn.Create(jobPath(j.root, job)+"/runs/"+name, records[name].encode(), 0, j.zc.acl); err != nil {
			j.t.Fatal(err)
		}
	}
}

func (j *testJobs) info(job string) (jobInfo, bool) {
	j.t.Helper()
	data, _, err := j.zc.snapshot().Conn.Get(jobPath(j.root, job))
	if errors.Is(err, zk.ErrNoNode) {
		return jobInfo{}, false
	}
	if err != nil {
		j.t.Fatal(err)
	}
	return decodeJobInfo(data), true
}

// ranRecord is a completed run's record.
func ranRecord(job, slot, result string) runRecord {
	code := 0
	now := jsonTime(time.Now())
	return runRecord{Job: job, Node: "node-a", Slot: slot, Start: now, End: now, ExitCode: &code, Result: result, Token: 1}
}

// hacronCmd runs the real binary to its end: exit code, stdout, stderr.
func hacronCmd(t testing.TB, env []string, args ...string) (int, string, string) {
	t.Helper()
	p := startProc(t, "hacron "+strings.Join(args, " "), env, args...)
	code := p.wait(30 * time.Second)
	return code, p.outText(), p.errText()
}

// Slots nobody ran show in hacron status (text and JSON), fail hacron
// check --missed, and are counted on the active agent's /metrics; a job
// whose every slot ran passes.
func TestIntegration_MissedSlotsAlarm(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	env := append(hacronEnv(t, zkS.ConnectString(), cluster), "COLUMNS=200")
	jobs := newTestJobs(t, zkS.ConnectString(), cluster)

	// Slots at whole hours one to five hours ago: whenever the test runs,
	// all of them are judged, and the next slot is hours away.
	top := time.Now().UTC().Truncate(time.Hour)
	hour := func(k int) time.Time { return top.Add(-time.Duration(k) * time.Hour) }
	key := func(t time.Time) string { return t.Format(time.RFC3339) }
	gappy := fmt.Sprintf("CRON_TZ=UTC 0 %d,%d,%d,%d,%d * * *", hour(1).Hour(), hour(2).Hour(), hour(3).Hour(), hour(4).Hour(), hour(5).Hour())
	jobs.job("gappy", jobInfo{Schedule: gappy, Since: jsonTime(hour(6))}, map[string]runRecord{
		key(hour(5)): ranRecord("gappy", key(hour(5)), resultOK),
		key(hour(3)): missedRecord("gappy", "node-a", key(hour(3)), 1, hour(3).Add(time.Minute)),
		key(hour(2)): ranRecord("gappy", key(hour(2)), resultFailed),
	})
	wantGappy := []string{key(hour(1)), key(hour(3)), key(hour(4))}
	allrun := fmt.Sprintf("CRON_TZ=UTC 30 %d,%d * * *", hour(2).Hour(), hour(3).Hour())
	allrunRecords := map[string]runRecord{
		key(hour(3).Add(30 * time.Minute)): ranRecord("allrun", key(hour(3).Add(30*time.Minute)), resultOK),
		key(hour(2).Add(30 * time.Minute)): ranRecord("allrun", key(hour(2).Add(30*time.Minute)), resultTimeout),
	}
	jobs.job("allrun", jobInfo{Schedule: allrun, Since: jsonTime(hour(4))}, allrunRecords)
	jobs.job("plain", jobInfo{}, map[string]runRecord{"r-0123456789abcdef": ranRecord("plain", "x", resultOK)})
	jobs.job("garbled", jobInfo{Schedule: "now and then", Since: jsonTime(hour(4))}, nil)

	code, out, errText := hacronCmd(t, env, "status", "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d: %s", code, errText)
	}
	var doc statusDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	byJob := map[string]jobRuns{}
	for _, j := range doc.Jobs {
		byJob[j.Job] = j
	}
	if j := byJob["gappy"]; !slices.Equal(j.Missed, wantGappy) || j.Schedule != gappy || j.Since != jsonTime(hour(6)) {
		t.Errorf("gappy: schedule %q since %q missed %q; want %q, %q, %q", j.Schedule, j.Since, j.Missed, gappy, jsonTime(hour(6)), wantGappy)
	}
	if j := byJob["allrun"]; j.Missed == nil || len(j.Missed) != 0 {
		t.Errorf("allrun: missed %#v, want []", j.Missed)
	}
	for _, want := range []string{`"job": "allrun",\s*"schedule": "[^"]+",\s*"since": "[^"]+",\s*"missed": \[\],`, `"job": "plain",\s*"runs"`, `"job": "garbled",\s*"schedule": "now and then",\s*"since": "[^"]+",\s*"runs"`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("status --json lacks %s", want)
		}
	}

	code, out, _ = hacronCmd(t, env, "status")
	for _, want := range []string{
		`(?m)^JOB +MISSED +NEWEST MISSED +SCHEDULE$`,
		`(?m)^gappy +3 +` + key(hour(1)) + ` +` + regexp.QuoteMeta(gappy) + `$`,
		`(?m)^allrun +0 +` + regexp.QuoteMeta(allrun) + `$`,
		`(?m)^garbled +\? +the schedule does not parse +now and then$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("status lacks %s", want)
		}
	}
	if code != 0 || regexp.MustCompile(`(?m)^plain +[0-9?]`).MatchString(out) {
		t.Errorf("status: exit %d, or a schedule line for plain:\n%s", code, out)
	}

	code, out, errText = hacronCmd(t, env, "check", "--missed")
	wantOut := "gappy: 3 missed slot(s) in the last 24h, newest " + key(hour(1)) + " (schedule " + gappy + ")\n" +
		"garbled: cannot be judged: schedule \"now and then\" in the job node: " +
		func() string { _, err := parseSchedule("now and then"); return err.Error() }() + "\n"
	if code != 1 || out != wantOut || errText != "hacron: error: 2 job(s) with missed slots\n" {
		t.Errorf("check --missed: exit %d\nstdout %q\nstderr %q\nwant exit 1, stdout %q", code, out, errText, wantOut)
	}

	// A cluster whose every slot ran: exit 0, silent.
	cluster2 := clusterName(t)
	newTestJobs(t, zkS.ConnectString(), cluster2).job("allrun", jobInfo{Schedule: allrun, Since: jsonTime(hour(4))}, allrunRecords)
	if code, out, errText := hacronCmd(t, env, "check", "--missed", "--cluster", cluster2); code != 0 || out != "" || errText != "" {
		t.Errorf("check --missed of a cluster without missed slots: exit %d, stdout %q, stderr %q", code, out, errText)
	}
	if code, _, errText := hacronCmd(t, env, "check", "--missed", "--cluster", cluster2+"-nosuch"); code != 1 || !strings.HasPrefix(errText, "hacron: error: no cluster ") {
		t.Errorf("check --missed of no cluster: exit %d, stderr %q", code, errText)
	}

	// The active agent counts them as soon as it is active; a passive one
	// exports no series.
	addr := freePort(t)
	sock := filepath.Join(t.TempDir(), "m.sock")
	a := &agentProc{proc: startProc(t, "agent node-a", env, "agent", "--node", "node-a", "--socket", sock, "--metrics-listen", addr), node: "node-a", socket: sock, env: env}
	a.waitState("active", 20*time.Second)
	addrB := freePort(t)
	sockB := filepath.Join(t.TempDir(), "b.sock")
	b := &agentProc{proc: startProc(t, "agent node-b", env, "agent", "--node", "node-b", "--socket", sockB, "--metrics-listen", addrB), node: "node-b", socket: sockB, env: env}
	b.waitState("passive", 20*time.Second)
	var text string
	waitFor(t, 20*time.Second, "the missed-slot metric", func() bool {
		text = scrape(t, addr)
		return strings.Contains(text, `hacron_job_missed_slots{job="gappy"} 3`+"\n")
	})
	for _, want := range []string{
		`(?m)^# TYPE hacron_job_missed_slots gauge$`,
		`(?m)^hacron_job_missed_slots\{job="allrun"\} 0$`,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(text, `job="plain"`) || strings.Contains(text, `job="garbled"`) {
		t.Errorf("a series for a job without a readable schedule:\n%s", text)
	}
	if bText := scrape(t, addrB); strings.Contains(bText, "hacron_job_missed_slots") {
		t.Errorf("the passive agent exports missed slots:\n%s", bText)
	}

	// hacron run --schedule: the agent that runs the job records its
	// schedule in the job node, since when; a new schedule replaces it,
	// a run without one clears it. A passive node that skips records
	// nothing.
	if code := a.run("--name", "sched", "--schedule", "*/5 * * * *", "--", "true").wait(20 * time.Second); code != 0 {
		t.Fatalf("run --schedule: exit %d", code)
	}
	first, ok := jobs.info("sched")
	if !ok || first.Schedule != "*/5 * * * *" || mustTime(t, first.Since).Before(time.Now().Add(-time.Minute)) {
		t.Errorf("job node after run --schedule: %+v (exists %v)", first, ok)
	}
	a.run("--name", "sched", "--schedule", "*/5 * * * *", "--", "true").wait(20 * time.Second)
	if again, _ := jobs.info("sched"); again != first {
		t.Errorf("the same schedule again moved the job node: %+v, was %+v", again, first)
	}
	if code := a.run("--name", "sched", "--schedule", "@hourly", "--", "true").wait(20 * time.Second); code != 0 {
		t.Fatalf("run --schedule @hourly: exit %d", code)
	}
	if changed, _ := jobs.info("sched"); changed.Schedule != "@hourly" || changed.Since == first.Since {
		t.Errorf("job node after a new schedule: %+v, was %+v", changed, first)
	}
	if code := a.run("--name", "sched", "--slot", "by-hand", "--", "true").wait(20 * time.Second); code != 0 {
		t.Fatalf("run without --schedule: exit %d", code)
	}
	if cleared, _ := jobs.info("sched"); cleared != (jobInfo{}) {
		t.Errorf("job node after a run without a schedule: %+v", cleared)
	}
	if code := b.run("--name", "elsewhere", "--schedule", "*/5 * * * *", "--", "true").wait(20 * time.Second); code != 0 {
		t.Fatalf("run on the passive node: exit %d", code)
	}
	if info, ok := jobs.info("elsewhere"); ok {
		t.Errorf("the passive node made the job node: %+v", info)
	}
	for _, p := range []*agentProc{b, a} {
		p.signal(syscall.SIGTERM)
		if code := p.wait(20 * time.Second); code != 0 {
			t.Errorf("%s: exit %d", p.node, code)
		}
	}
}

func scrape(t testing.TB, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// hacron logs prints a record's output_tail as stored, from the newest run
// that has one or from --slot, and exits 1 naming what is missing.
func TestIntegration_Logs(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	env := hacronEnv(t, zkS.ConnectString(), cluster)
	jobs := newTestJobs(t, zkS.ConnectString(), cluster)
	withTail := func(r runRecord, tail string) runRecord {
		r.OutputTail = tail
		return r
	}
	first := outputTail([]byte(strings.Repeat("x", 5000) + "\nfirst run: ok\n"))
	jobs.job("j", jobInfo{}, map[string]runRecord{
		"2026-11-25T01:00:00Z": withTail(ranRecord("j", "2026-11-25T01:00:00Z", resultOK), first),
		// Written by a hostile hand, not by outputTail: cleaned on print.
		"2026-11-25T02:00:00Z": withTail(ranRecord("j", "2026-11-25T02:00:00Z", resultFailed), "second\x1b]0;owned\x07 run"),
		"2026-11-25T03:00:00Z": {Job: "j", Node: "node-a", Slot: "2026-11-25T03:00:00Z", Start: jsonTime(time.Now()), Token: 1},
	})
	jobs.job("quiet", jobInfo{}, map[string]runRecord{"s": ranRecord("quiet", "s", resultOK)})
	jobs.job("alice:j", jobInfo{}, map[string]runRecord{"s": withTail(ranRecord("alice:j", "s", resultOK), "alice's\n")})

	for _, c := range []struct {
		args             []string
		code             int
		stdout, stderr   string
		stderrStartsWith bool
	}{
		{args: []string{"logs", "j"}, stdout: "second\ufffd]0;owned\ufffd run"},
		{args: []string{"logs", "j", "--slot", "2026-11-25T01:00:00Z"}, stdout: first},
		{args: []string{"logs", "alice:j"}, stdout: "alice's\n"},
		{args: []string{"logs", "j", "--slot", "2026-11-25T03:00:00Z"}, code: 1,
			stderr: "hacron: error: the run of job j in slot 2026-11-25T03:00:00Z has no output recorded\nhacron: hint: " + noOutputHint + "\n"},
		{args: []string{"logs", "j", "--slot", "2026-11-25T04:00:00Z"}, code: 1, stderr: "hacron: error: no run of job j in slot 2026-11-25T04:00:00Z\n"},
		{args: []string{"logs", "quiet"}, code: 1, stderr: "hacron: error: no run of job quiet has output recorded\nhacron: hint: " + noOutputHint + "\n"},
		{args: []string{"logs", "nosuch"}, code: 1, stderr: "hacron: error: no job nosuch in cluster " + cluster + "\n"},
		{args: []string{"logs", "nosuch", "--slot", "s"}, code: 1, stderr: "hacron: error: no job nosuch in cluster " + cluster + "\n"},
		{args: []string{"logs", "j", "--cluster", cluster + "-nosuch"}, code: 1, stderr: "hacron: error: no cluster " + cluster + "-nosuch\n", stderrStartsWith: true},
		{args: []string{"logs", "j", "--slot", "a/b"}, code: 125, stderr: "hacron: error: logs: bad slot", stderrStartsWith: true},
		{args: []string{"logs", ".."}, code: 125, stderr: "hacron: error: ", stderrStartsWith: true},
	} {
		code, out, errText := hacronCmd(t, env, c.args...)
		okErr := errText == c.stderr || c.stderrStartsWith && strings.HasPrefix(errText, c.stderr)
		if code != c.code || out != c.stdout || !okErr {
			t.Errorf("hacron %s: exit %d, stdout %.80q, stderr %q; want exit %d, stdout %.80q, stderr %q",
				strings.Join(c.args, " "), code, out, errText, c.code, c.stdout, c.stderr)
		}
	}
}

// The agent's count follows the records from one count to the next while
// reading only new ones: a record created, one deleted, a schedule removed.
func TestIntegration_CountMissedFollowsRecords(t *testing.T) {
	t.Parallel()
	zkS := sharedZK(t)
	cluster := clusterName(t)
	jobs := newTestJobs(t, zkS.ConnectString(), cluster)
	top := time.Now().UTC().Truncate(time.Hour)
	slot := func(k int) string { return top.Add(-time.Duration(k) * time.Hour).Format(time.RFC3339) }
	spec := fmt.Sprintf("CRON_TZ=UTC 0 %d,%d,%d * * *", top.Add(-time.Hour).Hour(), top.Add(-2*time.Hour).Hour(), top.Add(-3*time.Hour).Hour())
	jobs.job("j", jobInfo{Schedule: spec, Since: jsonTime(top.Add(-4 * time.Hour))}, nil)
	jobs.job("other", jobInfo{}, nil)
	conn := jobs.zc.snapshot().Conn
	runs := jobs.zc.abs(jobPath(jobs.root, "j")) + "/runs/"
	kinds := &missedKinds{jobs: map[string]map[string]bool{}}
	count := func() map[string]int {
		t.Helper()
		c, err := countMissed(context.Background(), conn, jobs.zc.abs(jobs.root), time.Now(), kinds)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	create := func(name string, r runRecord) {
		t.Helper()
		if _, err := conn.Create(runs+name, r.encode(), 0, jobs.zc.acl); err != nil {
			t.Fatal(err)
		}
	}
	if c := count(); !maps.Equal(c, map[string]int{"j": 3}) {
		t.Errorf("no records: %v, want j: 3", c)
	}
	create(slot(3), ranRecord("j", slot(3), resultOK))
	create(slot(2), missedRecord("j", "node-a", slot(2), 1, time.Now()))
	create(slot(1), ranRecord("j", slot(1), resultOK))
	if c := count(); !maps.Equal(c, map[string]int{"j": 1}) {
		t.Errorf("two slots run, one recorded missed: %v, want j: 1", c)
	}
	if err := conn.Delete(runs+slot(1), -1); err != nil {
		t.Fatal(err)
	}
	if c := count(); !maps.Equal(c, map[string]int{"j": 2}) {
		t.Errorf("a record deleted: %v, want j: 2", c)
	}
	if _, err := conn.Set(jobs.zc.abs(jobPath(jobs.root, "j")), nil, -1); err != nil {
		t.Fatal(err)
	}
	if c := count(); len(c) != 0 || len(kinds.jobs) != 0 {
		t.Errorf("no schedule left: counts %v, remembered %v", c, kinds.jobs)
	}
}

// A wrapper that asks an agent older than the schedule field and the run's
// first step (which refuses fields it does not know, as every agent does)
// asks again the old way, without it, and the run goes on as that agent
// decides.
func TestAdmitAgentOlderAgent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "old.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The run request as agents before the field decode it.
	type oldRequest struct {
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
	}
	seen := make(chan string, 2)
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadBytes('\n')
			seen <- string(line)
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			var req oldRequest
			rep := wire.Reply{V: wire.Version, Skip: skipPassive}
			if err := dec.Decode(&req); err != nil {
				rep = wire.Reply{V: wire.Version, Error: "bad request: bad message: " + err.Error(), Code: exitUsage}
			}
			wire.Write(c, rep)
			c.Close()
		}
	}()
	groups := 0
	startGroup := func() (int, error) { groups++; return 4242, nil }
	_, skip, err := admitAgent(context.Background(), sock, runRequest{job: "j", slot: "s", schedule: "*/5 * * * *", claim: true}, []string{"true"}, startGroup)
	if err != nil || skip != skipPassive {
		t.Fatalf("against an older agent: skip %q, err %v; want the agent's skip", skip, err)
	}
	if first, again := <-seen, <-seen; !strings.Contains(first, `"schedule":"*/5 * * * *"`) || strings.Contains(again, "schedule") ||
		!strings.Contains(again, `"op":"run"`) || !strings.Contains(again, `"pgid":4242`) || groups != 1 {
		t.Errorf("requests %s and %s (%d groups made): want the schedule, then a run with the group and no schedule", first, again, groups)
	}
}
