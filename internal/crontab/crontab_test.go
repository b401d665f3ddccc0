package crontab

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseText parses one file's text named "x" into a fresh tab.
func parseText(text string) (*Tab, []string) {
	tab := &Tab{}
	var msgs []string
	for _, err := range tab.parse("x", []byte(text)) {
		msgs = append(msgs, err.Error())
	}
	return tab, msgs
}

func TestBadLines(t *testing.T) {
	for _, c := range []struct {
		text string
		want []string // the errors, in order
		jobs int      // the jobs still loaded
	}{
		{"61 * * * * cmd\n0 * * * * ok", []string{`x:1: bad schedule "61 * * * *": end of range (61) above maximum (59): 61`}, 1},
		{"# c\n\n0 * * * 8 cmd", []string{`x:3: bad schedule "0 * * * 8": end of range (8) above maximum (6): 8`}, 0},
		{"@reboot /usr/bin/warm-cache", []string{`x:1: bad schedule "@reboot": @reboot is not supported: the agent fires scheduled slots only (start such a command at boot, from a systemd unit)`}, 0},
		{"@every 500ms cmd", []string{`x:1: bad schedule "@every 500ms": @every 500ms: want a whole number of seconds, at least 1s (for example 90s, 5m, 1h30m)`}, 0},
		{"0 0 30 2 * cmd", []string{`x:1: bad schedule "0 0 30 2 *": never due: no month it names has such a day`}, 0},
		{"0 * * * *", []string{`x:1: no command after the schedule "0 * * * *"`}, 0},
		{"0 * * *\t \r", []string{`x:1: incomplete line "0 * * *\t ": want a schedule (five fields or an @ descriptor) and a command`}, 0},
		{"@hourly", []string{`x:1: no command after the schedule "@hourly"`}, 0},
		{"backup at night", []string{`x:1: not a job line, a NAME=value line or a comment: "backup at night"`}, 0},
		{"0 30 1 * * * /usr/bin/x", []string{`x:1: six fields in "0 30 1 * * * /usr/bin/x"? hacron reads five (minute hour day month weekday), without seconds or years`}, 0},
		{"0 * * * * %only input", []string{`x:1: empty command: the first unescaped % of "%only input" starts the job's input`}, 0},
		{`FOO="bar`, []string{`x:1: FOO="bar: the value starts with " but does not end with it`}, 0},
		{"TZ=Europe/London 30 1 * * * cmd\n@hourly x", []string{`x:1: TZ=Europe/London 30 1 * * * cmd: a zone has no blanks (a job's own zone is written CRON_TZ=Zone before its schedule)`,
			`x:2: job not loaded: the TZ= line above it (line 1) is bad`}, 0},
		{"0 * * * * a\x00b", []string{`x:1: control character '\x00' in the line`}, 0},
		{"@\r0 x\n# hacron: name=a\n@daily \x1b[2J", []string{`x:1: control character '\r' in the line`, `x:3: control character '\x1b' in the line`}, 0},
		{"CRON_TZ=Europe/Lndon 0 * * * * cmd", []string{`x:1: bad schedule "CRON_TZ=Europe/Lndon 0 * * * *": unknown time zone "Europe/Lndon"`}, 0},
		// A bad environment line: the jobs below it, not above, wait for
		// the name to be set again; a job with its own zone does not need
		// the file's CRON_TZ.
		{"0 1 * * * before\nCRON_TZ=Mars/Olympus\n0 2 * * * below\nCRON_TZ=UTC 0 3 * * * own\nCRON_TZ=UTC\n0 4 * * * after", []string{
			`x:2: CRON_TZ=Mars/Olympus: unknown time zone "Mars/Olympus"`,
			`x:3: job not loaded: the CRON_TZ= line above it (line 2) is bad`}, 3},
		{"PATH=\"/usr/bin\n@hourly a\nCRON_TZ=Nowhere\nCRON_TZ=UTC @daily b\nPATH=/bin\n@hourly c\nCRON_TZ=UTC\n@hourly d", []string{
			`x:1: PATH="/usr/bin: the value starts with " but does not end with it`,
			`x:2: job not loaded: the PATH= line above it (line 1) is bad`,
			`x:3: CRON_TZ=Nowhere: unknown time zone "Nowhere"`,
			`x:4: job not loaded: the PATH= line above it (line 1) is bad`,
			`x:6: job not loaded: the CRON_TZ= line above it (line 3) is bad`}, 1},
		// Options: a bad one keeps its job out.
		{"# hacron: no-overlapp\n0 * * * * cmd", []string{
			`x:1: unknown option "no-overlapp" (want name, timeout, no-overlap, kill-grace, nice, catch-up, jitter or on-failure)`,
			`x:2: job not loaded: its options on line 1 are bad`}, 0},
		{"# hacron: name=a\n# hacron: timeout=1m nice=20\n0 * * * * cmd", []string{
			`x:2: nice=20: want -20..19`, `x:3: job not loaded: its options on line 2 are bad`}, 0},
		{"# hacron: timeout=1m\n# hacron: timeout=2m\n0 * * * * cmd", []string{
			`x:2: option timeout given twice`, `x:3: job not loaded: its options on line 2 are bad`}, 0},
		{"# hacron: timeout=5\n0 * * * * cmd", []string{`x:1: timeout=5: want a duration of 0 or more, such as 90s, 5m or 1h30m`, `x:2: job not loaded: its options on line 1 are bad`}, 0},
		{"# hacron: jitter=-1s\n0 * * * * cmd", []string{`x:1: jitter=-1s: want a duration of 0 or more, such as 90s, 5m or 1h30m`, `x:2: job not loaded: its options on line 1 are bad`}, 0},
		{"# hacron: no-overlap=yes\n0 * * * * cmd", []string{`x:1: no-overlap takes no value`, `x:2: job not loaded: its options on line 1 are bad`}, 0},
		{"# hacron: timeout\n0 * * * * cmd", []string{`x:1: option timeout wants a value (timeout=...)`, `x:2: job not loaded: its options on line 1 are bad`}, 0},
		{"# hacron: name=..\n0 * * * * cmd", []string{`x:1: bad job name "..": want 1-128 of A-Z a-z 0-9 . _ -, not only dots`, `x:2: job not loaded: its options on line 1 are bad`}, 0},
		{"# hacron: name=a/b\n0 * * * * cmd", []string{`x:1: bad job name "a/b": want 1-128 of A-Z a-z 0-9 . _ -, not only dots`, `x:2: job not loaded: its options on line 1 are bad`}, 0},
		{"# hacron: name=" + strings.Repeat("a", 129) + "\n0 * * * * cmd", []string{`x:1: bad job name "` + strings.Repeat("a", 129) + `": want 1-128 of A-Z a-z 0-9 . _ -, not only dots`, `x:2: job not loaded: its options on line 1 are bad`}, 0},
		{"# hacron: on-failure='notify x\n0 * * * * cmd", []string{`x:1: on-failure='notify x: no closing '`, `x:2: job not loaded: its options on line 1 are bad`}, 0},
		{"# hacron: on-failure=\"a\"b\n0 * * * * cmd", []string{`x:1: on-failure: a blank must follow the closing "`, `x:2: job not loaded: its options on line 1 are bad`}, 0},
		{"# hacron: on-failure=''\n0 * * * * cmd", []string{`x:1: on-failure wants a command`, `x:2: job not loaded: its options on line 1 are bad`}, 0},
		// Options must be directly above their job.
		{"# hacron: name=a\n\n0 * * * * cmd", []string{`x:1: "# hacron:" options not directly followed by a job line`}, 1},
		{"# hacron: name=a\n# what it does\n0 * * * * cmd", []string{`x:1: "# hacron:" options not directly followed by a job line`}, 1},
		{"# hacron: name=a\nFOO=1\n0 * * * * cmd", []string{`x:1: "# hacron:" options not directly followed by a job line`}, 1},
		{"0 * * * * cmd\n# hacron: name=a\n# hacron: timeout=1m", []string{`x:2: "# hacron:" options not directly followed by a job line`}, 1},
		// Names are unique: the second job is not loaded.
		{"# hacron: name=a\n0 * * * * one\n# hacron: name=a\n5 * * * * two", []string{`x:4: job name "a" already used at x:2 (give one of them a name= option)`}, 1},
		{"0 * * * * /bin/same\n0 * * * * /bin/same", []string{`x:2: job name "same-774c79c5" already used at x:1 (give one of them a name= option)`}, 1},
	} {
		tab, got := parseText(c.text)
		if !reflect.DeepEqual(got, c.want) || len(tab.Jobs) != c.jobs {
			t.Errorf("%q:\n got %d jobs, %q\nwant %d jobs, %q", c.text, len(tab.Jobs), got, c.jobs, c.want)
		}
	}
}

func TestJobLines(t *testing.T) {
	lon := mustZone(t, "Europe/London")
	kolkata := mustZone(t, "Asia/Kolkata")
	grace, nice := 3*time.Second, -5
	tab, errs := parseText(`# A comment, then the environment.
SHELL=/bin/bash
PATH = /usr/local/bin:/usr/bin:/bin
GREETING="hello world"
EMPTY=''
MAILTO=ops@example.com

  */5 * * * *	/usr/local/bin/sync-invoices --quiet
CRON_TZ=Europe/London
# hacron: name=nightly-backup timeout=2h no-overlap kill-grace=3s
# hacron: nice=-5 catch-up=6h jitter=10m on-failure="notify-send 'backup failed'"
30 1 * * * /usr/bin/backup.sh --full
CRON_TZ=Asia/Kolkata @daily report
MAILTO=""
PATH=/bin
0 9 * * 1-5 mail -s "10\% off" ops%Hello,%%The report.%
@every 90s echo a\\%b\%c % x \% y
`)
	if errs != nil {
		t.Fatalf("errors: %q", errs)
	}
	env := []string{"SHELL=/bin/bash", "PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello world", "EMPTY=", "MAILTO=ops@example.com"}
	env2 := append(env[:len(env):len(env)], "CRON_TZ=Europe/London")
	env3 := []string{"SHELL=/bin/bash", "PATH=/bin", "GREETING=hello world", "EMPTY=", "MAILTO=", "CRON_TZ=Europe/London"}
	want := []*Job{
		{Line: 8, Name: "sync-invoices-" + hash8("*/5 * * * *", "/usr/local/bin/sync-invoices --quiet"), Spec: "*/5 * * * *", Location: time.Local,
			Command: "/usr/local/bin/sync-invoices --quiet", Env: env, MailTo: "ops@example.com", MailToSet: true},
		{Line: 12, Name: "nightly-backup", Spec: "30 1 * * *", Location: lon, Command: "/usr/bin/backup.sh --full", Env: env2,
			MailTo: "ops@example.com", MailToSet: true, Timeout: 2 * time.Hour, NoOverlap: true, KillGrace: &grace, Nice: &nice,
			CatchUp: 6 * time.Hour, Jitter: 10 * time.Minute, OnFailure: "notify-send 'backup failed'"},
		{Line: 13, Name: "report-" + hash8("CRON_TZ=Asia/Kolkata @daily", "report"), Spec: "CRON_TZ=Asia/Kolkata @daily", Location: kolkata,
			Command: "report", Env: env2, MailTo: "ops@example.com", MailToSet: true},
		{Line: 16, Name: "mail-" + hash8("0 9 * * 1-5", `mail -s "10\% off" ops%Hello,%%The report.%`), Spec: "0 9 * * 1-5", Location: lon,
			Command: `mail -s "10% off" ops`, Stdin: "Hello,\n\nThe report.\n", Env: env3, MailToSet: true},
		{Line: 17, Name: "echo-" + hash8("@every 90s", `echo a\\%b\%c % x \% y`), Spec: "@every 90s", Location: lon,
			Command: `echo a\\`, Stdin: "b%c \n x % y\n", Env: env3, MailToSet: true},
	}
	if len(tab.Jobs) != len(want) {
		t.Fatalf("%d jobs, want %d", len(tab.Jobs), len(want))
	}
	for i, w := range want {
		g := *tab.Jobs[i]
		if g.Location.String() != w.Location.String() {
			t.Errorf("line %d: zone %v, want %v", w.Line, g.Location, w.Location)
		}
		if g.Schedule.Next(time.Unix(0, 0)).IsZero() {
			t.Errorf("line %d: no schedule", w.Line)
		}
		w.File = "x"
		g.Schedule, g.Location, w.Location = Schedule{}, nil, nil
		if !reflect.DeepEqual(&g, w) {
			t.Errorf("line %d:\n got %+v\nwant %+v", w.Line, g, *w)
		}
	}
}

// hash8 is the suffix of a default name, computed the way
// docs/crontab.md states it.
func hash8(spec, command string) string {
	sum := sha256.Sum256([]byte(spec + "\x00" + command))
	return hex.EncodeToString(sum[:])[:8]
}

// Default names: the same for the same line on every node and in every
// version (they name the job in ZooKeeper), different for lines that
// differ in schedule or command.
func TestDefaultNames(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"0 * * * * /bin/same", "same-774c79c5"},
		{"*/5 * * * * /usr/local/bin/sync-invoices --quiet", "sync-invoices-eb62f5d7"},
		{"@hourly   cd /srv && ./run.sh", "cd-a823bf42"},
		{"@daily \"/opt/my app/run\" x", "my-ceec5d56"},
		{"0 * * * * [ -x /x ] && /x", "_-8ed8d1d1"},
		{"0 * * * * " + strings.Repeat("y", 200), strings.Repeat("y", 119) + "-98182bff"},
	} {
		tab, errs := parseText(c.line)
		if errs != nil || len(tab.Jobs) != 1 || tab.Jobs[0].Name != c.want {
			t.Errorf("%q: %q, want %s", c.line, jobNames(tab), c.want)
		}
		if n := tab.Jobs[0].Name; !validName(n) {
			t.Errorf("%q: invalid default name %q", c.line, n)
		}
	}
	tab, errs := parseText("0 * * * * /bin/job\n5 * * * * /bin/job\n0 * * * * /bin/job -v\n0 * * * 1 /bin/job\nCRON_TZ=UTC 0 * * * * /bin/job")
	if errs != nil {
		t.Errorf("lines differing in schedule or command collide: %q", errs)
	}
	seen := map[string]bool{}
	for _, j := range tab.Jobs {
		if seen[j.Name] || !strings.HasPrefix(j.Name, "job-") {
			t.Errorf("name %q", j.Name)
		}
		seen[j.Name] = true
	}
}

func jobNames(tab *Tab) []string {
	var out []string
	for _, j := range tab.Jobs {
		out = append(out, j.Name)
	}
	return out
}

func TestOptionsQuoting(t *testing.T) {
	for _, c := range []struct{ line, onFailure, name string }{
		{`#hacron: on-failure="logger -t cron 'it failed'" name=q`, "logger -t cron 'it failed'", "q"},
		{`#   hacron:   on-failure='echo "x  y"'   name=q`, `echo "x  y"`, "q"},
		{"# hacron:\ton-failure=/usr/bin/alert\tname=a.b_c-1", "/usr/bin/alert", "a.b_c-1"},
		{`# hacron: on-failure="" name=x`, "", ""},
	} {
		tab, errs := parseText(c.line + "\n0 * * * * cmd")
		switch {
		case c.name == "":
			if len(errs) == 0 {
				t.Errorf("%q: no error", c.line)
			}
		case errs != nil || len(tab.Jobs) != 1:
			t.Errorf("%q: %q", c.line, errs)
		case tab.Jobs[0].OnFailure != c.onFailure || tab.Jobs[0].Name != c.name:
			t.Errorf("%q: on-failure %q name %q", c.line, tab.Jobs[0].OnFailure, tab.Jobs[0].Name)
		}
	}
	// Zero durations are allowed and mean "none"; an options line that only
	// says hacron: is a (dangling-checked) empty set.
	tab, errs := parseText("# hacron: timeout=0 catch-up=0s jitter=0 kill-grace=0s nice=0\n# hacron:\n@hourly cmd")
	if errs != nil || tab.Jobs[0].KillGrace == nil || *tab.Jobs[0].KillGrace != 0 || *tab.Jobs[0].Nice != 0 {
		t.Errorf("zero options: %q %+v", errs, tab.Jobs)
	}
}

// Each file has its own environment and zone.
func TestEnvScopedToFile(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a", "FOO=1\nMAILTO=a@example.com\nCRON_TZ=Europe/London\n# hacron: name=x\n0 1 * * * a\n")
	write(t, dir, "b", "0 1 * * * b\nFOO=2\n0 2 * * * b2\n")
	tab, errs := Load(dir)
	if errs != nil || len(tab.Jobs) != 3 {
		t.Fatalf("%q, %d jobs", errs, len(tab.Jobs))
	}
	a, b, b2 := tab.Jobs[0], tab.Jobs[1], tab.Jobs[2]
	if a.Location.String() != "Europe/London" || b.Location != time.Local || b.MailToSet || b.Env != nil || !reflect.DeepEqual(b2.Env, []string{"FOO=2"}) {
		t.Errorf("file scoping: a %v %q, b %v %q %v, b2 %q", a.Location, a.Env, b.Location, b.Env, b.MailToSet, b2.Env)
	}
	if a.File != filepath.Join(dir, "a") || b.File != filepath.Join(dir, "b") || b2.Line != 3 {
		t.Errorf("positions: %s:%d %s:%d", a.File, a.Line, b.File, b.Line)
	}
	// A name is unique across the files of a directory.
	write(t, dir, "c", "# hacron: name=x\n@daily c\n")
	tab, errs = Load(dir)
	want := filepath.Join(dir, "c") + `:2: job name "x" already used at ` + filepath.Join(dir, "a") + ":5 (give one of them a name= option)"
	if len(errs) != 1 || errs[0].Error() != want || len(tab.Jobs) != 3 {
		t.Errorf("duplicate across files: %q", errs)
	}
}

func write(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// The test's umask must not make the file group-writable.
	if err := os.Chmod(filepath.Join(dir, name), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"b-c_D9", "a", ".hidden", "x~", "y.dpkg-old", "z.cron", "#e#"} {
		write(t, dir, name, "@hourly "+strings.ReplaceAll(name, "#", "h")+"\n")
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	write(t, outside, "target", "@daily linked\n")
	if err := os.Symlink(filepath.Join(outside, "target"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	tab, errs := Load(dir)
	if errs != nil {
		t.Fatalf("%q", errs)
	}
	var files, ignored []string
	for _, f := range tab.Files {
		files = append(files, filepath.Base(f))
	}
	for _, f := range tab.Ignored {
		ignored = append(ignored, filepath.Base(f))
	}
	if !reflect.DeepEqual(files, []string{"a", "b-c_D9", "link"}) || !reflect.DeepEqual(ignored, []string{"#e#", "x~", "y.dpkg-old", "z.cron"}) {
		t.Errorf("read %q, ignored %q", files, ignored)
	}
	if len(tab.Jobs) != 3 || tab.Jobs[2].Command != "linked" {
		t.Errorf("jobs %q", jobNames(tab))
	}

	// A file others could have written is refused, the rest still load.
	write(t, dir, "g", "@daily g\n")
	if err := os.Chmod(filepath.Join(dir, "g"), 0o664); err != nil {
		t.Fatal(err)
	}
	_, errs = Load(dir)
	if want := filepath.Join(dir, "g") + ": writable by group or others (mode 0664): not loaded"; len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("group-writable: %q", errs)
	}
	var le *LineError
	if !errors.As(errs[0], &le) || le.Line != 0 || le.File != filepath.Join(dir, "g") {
		t.Errorf("not a file-level *LineError: %#v", errs[0])
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	if tab, errs := Load(missing); len(errs) != 1 || errs[0].Error() != missing+": no such file or directory" || len(tab.Jobs) != 0 {
		t.Errorf("missing path: %q", errs)
	}
	// A single file, with good and bad lines.
	write(t, dir, "one", "@hourly a\n61 * * * * b\n@daily c\n")
	tab, errs := Load(filepath.Join(dir, "one"))
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), filepath.Join(dir, "one")+":2: bad schedule") || len(tab.Jobs) != 2 {
		t.Errorf("single file: %q, %d jobs", errs, len(tab.Jobs))
	}
	// An empty directory is an empty crontab.
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if tab, errs := Load(empty); errs != nil || len(tab.Jobs) != 0 {
		t.Errorf("empty directory: %q", errs)
	}
	// A file a non-root user cannot read (root reads anything).
	if os.Geteuid() != 0 {
		write(t, dir, "secret", "@hourly a\n")
		if err := os.Chmod(filepath.Join(dir, "secret"), 0o200); err != nil {
			t.Fatal(err)
		}
		if _, errs := Load(filepath.Join(dir, "secret")); len(errs) != 1 || errs[0].Error() != filepath.Join(dir, "secret")+": permission denied" {
			t.Errorf("unreadable: %q", errs)
		}
	}
}

// Lines end in \n or \r\n; the last line needs no newline.
func TestLineEndings(t *testing.T) {
	tab, errs := parseText("FOO=bar\r\n@hourly a\r\n@daily b")
	if errs != nil || len(tab.Jobs) != 2 || tab.Jobs[0].Command != "a" || tab.Jobs[0].Env[0] != "FOO=bar" || tab.Jobs[1].Line != 3 {
		t.Errorf("%q %+v", errs, tab.Jobs)
	}
}

func TestSplitPercent(t *testing.T) {
	for _, c := range []struct{ in, command, stdin string }{
		{"date +%Y", "date +", "Y\n"},
		{`date +\%Y`, "date +%Y", ""},
		{"cat %", "cat ", ""},
		{"cat %a%b%", "cat ", "a\nb\n"},
		{`cat %a\%b`, "cat ", "a%b\n"},
		{`printf '\n' \\%x`, `printf '\n' \\`, "x\n"},
		{`echo \`, `echo \`, ""},
	} {
		if cmd, in := splitPercent(c.in); cmd != c.command || in != c.stdin {
			t.Errorf("splitPercent(%q) = %q, %q; want %q, %q", c.in, cmd, in, c.command, c.stdin)
		}
	}
}

// A job's schedule recorded with the zone its file gave it means the same
// read back anywhere, whatever the reader's local zone.
func TestZonedSpec(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/tab"
	text := "CRON_TZ=Europe/London\n30 1 * * * a\nCRON_TZ=America/New_York 0 9 * * * b\nCRON_TZ=\n@hourly c\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	tab, errs := Load(path)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	want := []string{"CRON_TZ=Europe/London 30 1 * * *", "CRON_TZ=America/New_York 0 9 * * *", "@hourly"}
	for i, j := range tab.Jobs {
		if got := j.ZonedSpec(); got != want[i] {
			t.Errorf("job %d: ZonedSpec %q, want %q", i, got, want[i])
		}
		again, err := ParseSchedule(j.ZonedSpec(), time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		from := time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC)
		if i < 2 && !again.Next(from).Equal(j.Schedule.Next(from)) {
			t.Errorf("job %d: %q read in UTC gives %v, the job %v", i, j.ZonedSpec(), again.Next(from), j.Schedule.Next(from))
		}
	}
}
