// Package crontab reads the crontab that hacron's agent fires by itself: a
// file, or a directory of files like /etc/cron.d without the user field,
// with hacron's per-job options in "# hacron:" comment lines that a plain
// cron ignores. It also computes schedules' slots (the instants a job is
// due, the same on every node), their jitter and catch-up windows.
//
// Nothing here reads a clock or ZooKeeper: the agent asks, with the time it
// has, which slots are due. docs/crontab.md describes the format for the
// people who write it.
package crontab

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A Tab is what a crontab path holds: its jobs in file and line order.
type Tab struct {
	Jobs []*Job
	// Files are the files read, in order: what a reload watches.
	Files []string
	// Ignored are the directory's entries that cron.d's naming rule skips
	// (a dot, a "~" or any character other than A-Z a-z 0-9 _ -), dotfiles
	// left out: a "backup.cron" that never runs deserves a notice.
	Ignored []string

	byName map[string]*Job
}

// A Job is one crontab line with its options.
type Job struct {
	File string
	Line int
	Name string
	// Spec is the schedule as written, with its CRON_TZ= prefix if it has
	// one; Schedule is what it means, in Location.
	Spec     string
	Schedule Schedule
	Location *time.Location
	// Command is for /bin/sh -c: the text before the first unescaped %,
	// with \% turned into %. Stdin is the rest, each unescaped % a newline,
	// ending in one (cron's rule); "" when the line has no % part.
	Command string
	Stdin   string
	// Env is the file's NAME=value lines above the job, in order (a name
	// set twice keeps its first place and its last value).
	Env []string
	// MailTo is the last MAILTO= above the job. MailToSet tells an empty
	// MAILTO="" (cron's "mail nothing") from no MAILTO line at all.
	MailTo    string
	MailToSet bool

	// The "# hacron:" options; zero values when not given.
	Timeout   time.Duration
	NoOverlap bool
	KillGrace *time.Duration
	Nice      *int
	CatchUp   time.Duration
	Jitter    time.Duration
	OnFailure string
}

// ZonedSpec is the job's schedule as text that means the same wherever it
// is read again (hacron records it in the job's node, where status and the
// missed-slot count read it): the zone a file's CRON_TZ line gave it is
// written in front. A schedule in the agent's local zone stays as written.
func (j *Job) ZonedSpec() string {
	if strings.HasPrefix(j.Spec, "CRON_TZ=") || strings.HasPrefix(j.Spec, "TZ=") || j.Location == nil || j.Location == time.Local {
		return j.Spec
	}
	return "CRON_TZ=" + j.Location.String() + " " + j.Spec
}

// A LineError is a problem with one line of a crontab, or with a whole
// file or directory when Line is 0. Its text is one line: file:line: what.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Err.Error()
	}
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// Load reads a crontab file, or the files of a directory whose names
// cron.d would run (A-Z a-z 0-9 _ - only), in name order. Every good line
// is loaded; each bad line, and each file that cannot be read, is one
// *LineError. A file (or directory) writable by group or others, or owned
// by a user other than root and this process's, is refused: its lines
// would run as the agent's user.
func Load(p string) (*Tab, []error) {
	tab := &Tab{}
	fi, err := os.Stat(p)
	if err != nil {
		return tab, []error{fileError(p, err)}
	}
	if !fi.IsDir() {
		return tab, tab.readFile(p)
	}
	if err := checkOwner(fi); err != nil {
		return tab, []error{&LineError{File: p, Err: err}}
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return tab, []error{fileError(p, err)}
	}
	var errs []error
	for _, e := range entries {
		name, full := e.Name(), filepath.Join(p, e.Name())
		if !cronDName(name) {
			if !strings.HasPrefix(name, ".") && !e.IsDir() {
				tab.Ignored = append(tab.Ignored, full)
			}
			continue
		}
		// Subdirectories and other non-files are passed over, as cron does.
		if fi, err := os.Stat(full); err == nil && !fi.Mode().IsRegular() {
			continue
		}
		errs = append(errs, tab.readFile(full)...)
	}
	return tab, errs
}

// cronDName is run-parts' naming rule, which cron.d follows: it leaves out
// editors' backups and package managers' leftovers (x~, x.dpkg-old).
func cronDName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (tab *Tab) readFile(file string) []error {
	f, err := os.Open(file)
	if err != nil {
		return []error{fileError(file, err)}
	}
	defer func() { _ = f.Close() }() // read only
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	} else if err == nil {
		err = checkOwner(fi)
	}
	if err != nil {
		return []error{&LineError{File: file, Err: err}}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return []error{fileError(file, err)}
	}
	tab.Files = append(tab.Files, file)
	return tab.parse(file, data)
}

// fileError drops the path an *os.PathError repeats.
func fileError(file string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &LineError{File: file, Err: err}
}

// checkOwner refuses what someone other than root and this process's user
// could have written, as cron does for /etc/cron.d.
func checkOwner(fi os.FileInfo) error {
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("writable by group or others (mode %04o): not loaded", fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, neither root nor this process's user: not loaded", st.Uid)
	}
	return nil
}

// fileState is what a file's lines set for the job lines below them.
type fileState struct {
	env       []string
	mailTo    string
	mailToSet bool
	loc       *time.Location // CRON_TZ, time.Local without one
	// bad holds the names whose latest NAME=value line is bad, with its
	// line: the jobs below it would run differently than written, so they
	// are not loaded until the name is set again.
	bad map[string]int

	opts      options // the "# hacron:" lines waiting for their job
	optsLine  int     // the first of them, 0 when none
	optsError int     // the first of them with an error, 0 when none
}

// envLine splits cron's NAME=value (blanks around "=" allowed; the names
// are those a shell can use). Written out rather than a regular
// expression: every hacron command links this package, and a crontab line
// is simple enough.
func envLine(line string) (name, value string, ok bool) {
	i := 0
	for i < len(line) && (line[i] == '_' || line[i] >= 'A' && line[i] <= 'Z' || line[i] >= 'a' && line[i] <= 'z' || i > 0 && line[i] >= '0' && line[i] <= '9') {
		i++
	}
	if i == 0 {
		return "", "", false
	}
	rest := strings.TrimLeft(line[i:], " \t")
	if !strings.HasPrefix(rest, "=") {
		return "", "", false
	}
	return line[:i], strings.TrimLeft(rest[1:], " \t"), true
}

// optionsLine returns what follows "# hacron:" in a comment hacron reads.
func optionsLine(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "#")
	if !ok {
		return "", false
	}
	return strings.CutPrefix(strings.TrimLeft(rest, " \t"), "hacron:")
}

// parse adds one file's jobs to the tab; the errors are in line order.
func (tab *Tab) parse(file string, data []byte) []error {
	var errs []error
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &LineError{File: file, Line: line, Err: fmt.Errorf(format, args...)})
	}
	st := &fileState{loc: time.Local}
	dangling := func() {
		if st.optsLine != 0 {
			fail(st.optsLine, `"# hacron:" options not directly followed by a job line`)
			st.opts, st.optsLine, st.optsError = options{}, 0, 0
		}
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, raw := range lines {
		n := i + 1
		line := strings.TrimLeft(strings.TrimSuffix(raw, "\r"), " \t")
		if c := strings.IndexFunc(line, control); c >= 0 {
			// Reported as it is, options above it included.
			st.opts, st.optsLine, st.optsError = options{}, 0, 0
			fail(n, "control character %q in the line", line[c])
			continue
		}
		if opts, ok := optionsLine(line); ok {
			if st.optsLine == 0 {
				st.optsLine = n
			}
			if err := st.opts.parse(opts); err != nil {
				fail(n, "%v", err)
				if st.optsError == 0 {
					st.optsError = n
				}
			}
			continue
		}
		if strings.TrimSpace(line) == "" || line[0] == '#' {
			dangling()
			continue
		}
		if name, value, ok := envLine(line); ok && !zonePrefix(name, line) {
			dangling()
			delete(st.bad, name)
			if err := st.setEnv(name, strings.TrimRight(value, " \t")); err != nil {
				fail(n, "%v", err)
				if st.bad == nil {
					st.bad = map[string]int{}
				}
				st.bad[name] = n
			}
			continue
		}
		j, err := st.job(file, n, line)
		opts, optsError := st.opts, st.optsError
		st.opts, st.optsLine, st.optsError = options{}, 0, 0
		switch {
		case err != nil:
			fail(n, "%v", err)
			continue
		case optsError != 0:
			fail(n, "job not loaded: its options on line %d are bad", optsError)
			continue
		}
		opts.apply(j)
		if other := tab.byName[j.Name]; other != nil {
			fail(n, "job name %q already used at %s:%d (give one of them a name= option)", j.Name, other.File, other.Line)
			continue
		}
		if tab.byName == nil {
			tab.byName = map[string]*Job{}
		}
		tab.byName[j.Name] = j
		tab.Jobs = append(tab.Jobs, j)
	}
	dangling()
	return errs
}

// control is a character no crontab line has: it would garble the line in
// an error message or a log, or cut the command short (NUL).
func control(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// zonePrefix tells a job line that starts with its own zone
// ("CRON_TZ=Europe/London 30 1 * * * cmd") from a CRON_TZ= line: a zone
// name has no blanks.
func zonePrefix(name, line string) bool {
	if name != "CRON_TZ" || !strings.HasPrefix(line, "CRON_TZ=") {
		return false
	}
	_, rest := cutField(line)
	return rest != ""
}

// setEnv applies a NAME=value line. Quotes around the whole value are
// removed, as cron does; nothing inside them is special.
func (st *fileState) setEnv(name, value string) error {
	if value != "" && (value[0] == '"' || value[0] == '\'') {
		q := value[0]
		if len(value) < 2 || value[len(value)-1] != q {
			return fmt.Errorf("%s=%s: the value starts with %c but does not end with it", name, value, q)
		}
		value = value[1 : len(value)-1]
	}
	switch name {
	case "CRON_TZ":
		if value == "" {
			st.loc = time.Local
			break
		}
		l, err := loadZone(value)
		if err != nil {
			return fmt.Errorf("CRON_TZ=%s: %w", value, err)
		}
		st.loc = l
	case "MAILTO":
		st.mailTo, st.mailToSet = value, true
	case "TZ":
		if strings.ContainsAny(value, " \t") {
			return fmt.Errorf("TZ=%s: a zone has no blanks (a job's own zone is written CRON_TZ=Zone before its schedule)", value)
		}
	}
	for i, kv := range st.env {
		if strings.HasPrefix(kv, name+"=") {
			st.env[i] = name + "=" + value
			return nil
		}
	}
	st.env = append(st.env, name+"="+value)
	return nil
}

// job reads a job line: [CRON_TZ=Zone] schedule command.
func (st *fileState) job(file string, n int, line string) (*Job, error) {
	rest, fields, zoned := line, 5, false
	if strings.HasPrefix(rest, "CRON_TZ=") {
		_, rest = cutField(rest)
		zoned = true
	} else if c := line[0]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' {
		return nil, fmt.Errorf("not a job line, a NAME=value line or a comment: %q", clip(line))
	}
	if strings.HasPrefix(rest, "@") {
		fields = 1
		if f, _ := cutField(rest); f == "@every" {
			fields = 2
		}
	}
	for i := 0; i < fields; i++ {
		if rest == "" {
			return nil, fmt.Errorf("incomplete line %q: want a schedule (five fields or an @ descriptor) and a command", clip(line))
		}
		_, rest = cutField(rest)
	}
	spec := strings.TrimRight(line[:len(line)-len(rest)], " \t")
	if rest == "" {
		return nil, fmt.Errorf("no command after the schedule %q", spec)
	}
	if fields == 5 {
		if first, _ := cutField(rest); cronField(first) {
			return nil, fmt.Errorf("six fields in %q? hacron reads five (minute hour day month weekday), without seconds or years", clip(line))
		}
	}
	badName, badLine := "", 0
	for name, l := range st.bad {
		if (name != "CRON_TZ" || !zoned) && (badLine == 0 || l < badLine) {
			badName, badLine = name, l
		}
	}
	if badLine != 0 {
		return nil, fmt.Errorf("job not loaded: the %s= line above it (line %d) is bad", badName, badLine)
	}
	sched, err := ParseSchedule(spec, st.loc)
	if err != nil {
		return nil, fmt.Errorf("bad schedule %q: %w", spec, err)
	}
	command, stdin := splitPercent(rest)
	if strings.TrimSpace(command) == "" {
		return nil, fmt.Errorf("empty command: the first unescaped %% of %q starts the job's input", clip(rest))
	}
	return &Job{
		File:      file,
		Line:      n,
		Name:      defaultName(spec, rest, command),
		Spec:      spec,
		Schedule:  sched,
		Location:  sched.Location(),
		Command:   command,
		Stdin:     stdin,
		Env:       append([]string(nil), st.env...),
		MailTo:    st.mailTo,
		MailToSet: st.mailToSet,
	}, nil
}

// cronField says whether a word looks like a schedule field, not a
// command: what a sixth field (seconds, or a year) leaves at the start of
// the command.
func cronField(w string) bool {
	if w == "" || !(w[0] >= '0' && w[0] <= '9' || w[0] == '*' || w[0] == '?') {
		return false
	}
	return strings.Trim(w, "0123456789*?,/-") == ""
}

// splitPercent is cron's % rule: the command ends at the first unescaped %;
// the rest is the job's input, each unescaped % a newline, ending in one.
// \% is a literal % in both parts; any other backslash stays as written.
func splitPercent(s string) (command, stdin string) {
	var b strings.Builder
	inInput := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == '%':
			b.WriteByte('%')
			i++
		case c == '\\' && i+1 < len(s):
			b.WriteByte(c)
			b.WriteByte(s[i+1])
			i++
		case c == '%' && !inInput:
			command, inInput = b.String(), true
			b.Reset()
		case c == '%':
			b.WriteByte('\n')
		default:
			b.WriteByte(c)
		}
	}
	if !inInput {
		return b.String(), ""
	}
	stdin = b.String()
	if stdin != "" && !strings.HasSuffix(stdin, "\n") {
		stdin += "\n"
	}
	return command, stdin
}

// defaultName is <first word's base name>-<8 hex of sha256(spec NUL
// command)>, spec and command as written: the same on every node with the
// same line, and different for lines that differ in either.
func defaultName(spec, raw, command string) string {
	sum := sha256.Sum256([]byte(spec + "\x00" + raw))
	first, _ := cutField(strings.TrimSpace(command))
	base := []byte(path.Base(first))
	for i, c := range base {
		if !nameByte(c) {
			base[i] = '_'
		}
	}
	if len(base) > maxName-9 {
		base = base[:maxName-9]
	}
	return string(base) + "-" + hex.EncodeToString(sum[:4])
}

// maxName is hacron's longest job name.
const maxName = 128

// validName is hacron's rule for job names.
func validName(s string) bool {
	if len(s) < 1 || len(s) > maxName || strings.Trim(s, ".") == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// clip shortens a line quoted in an error.
func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// options are a job's "# hacron:" settings; set records which were given,
// so that one given twice is an error.
type options struct {
	set       map[string]bool
	name      string
	timeout   time.Duration
	noOverlap bool
	killGrace *time.Duration
	nice      *int
	catchUp   time.Duration
	jitter    time.Duration
	onFailure string
}

const optionKeys = "name, timeout, no-overlap, kill-grace, nice, catch-up, jitter or on-failure"

var optionKey = map[string]bool{"name": true, "timeout": true, "no-overlap": true, "kill-grace": true,
	"nice": true, "catch-up": true, "jitter": true, "on-failure": true}

// parse reads one options line's "key=value key ..." into o. Values may be
// quoted with "..." or '...' (nothing inside is special), so that they can
// hold blanks.
func (o *options) parse(s string) error {
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil
		}
		end := strings.IndexAny(s, " \t=")
		if end < 0 {
			end = len(s)
		}
		key, value, hasValue := s[:end], "", false
		s = s[end:]
		if strings.HasPrefix(s, "=") {
			hasValue = true
			s = s[1:]
			if s != "" && (s[0] == '"' || s[0] == '\'') {
				q := s[0]
				end := strings.IndexByte(s[1:], q)
				if end < 0 {
					return fmt.Errorf("%s=%s: no closing %c", key, s, q)
				}
				value, s = s[1:1+end], s[2+end:]
				if s != "" && s[0] != ' ' && s[0] != '\t' {
					return fmt.Errorf("%s: a blank must follow the closing %c", key, q)
				}
			} else {
				value, s = cutField(s)
			}
		}
		if err := o.set1(key, value, hasValue); err != nil {
			return err
		}
	}
}

func (o *options) set1(key, value string, hasValue bool) error {
	if o.set == nil {
		o.set = map[string]bool{}
	}
	if !optionKey[key] {
		return fmt.Errorf("unknown option %q (want %s)", key, optionKeys)
	}
	if o.set[key] {
		return fmt.Errorf("option %s given twice", key)
	}
	o.set[key] = true
	if key == "no-overlap" {
		if hasValue {
			return errors.New("no-overlap takes no value")
		}
		o.noOverlap = true
		return nil
	}
	if !hasValue {
		return fmt.Errorf("option %s wants a value (%s=...)", key, key)
	}
	switch key {
	case "name":
		if !validName(value) {
			return fmt.Errorf("bad job name %q: want 1-128 of A-Z a-z 0-9 . _ -, not only dots", value)
		}
		o.name = value
	case "nice":
		v, err := strconv.Atoi(value)
		if err != nil || v < -20 || v > 19 {
			return fmt.Errorf("nice=%s: want -20..19", value)
		}
		o.nice = &v
	case "on-failure":
		if strings.TrimSpace(value) == "" {
			return errors.New("on-failure wants a command")
		}
		o.onFailure = value
	default:
		d, err := time.ParseDuration(value)
		if err != nil || d < 0 {
			return fmt.Errorf("%s=%s: want a duration of 0 or more, such as 90s, 5m or 1h30m", key, value)
		}
		switch key {
		case "timeout":
			o.timeout = d
		case "kill-grace":
			o.killGrace = &d
		case "catch-up":
			o.catchUp = d
		case "jitter":
			o.jitter = d
		}
	}
	return nil
}

func (o options) apply(j *Job) {
	if o.name != "" {
		j.Name = o.name
	}
	j.Timeout, j.NoOverlap, j.KillGrace, j.Nice = o.timeout, o.noOverlap, o.killGrace, o.nice
	j.CatchUp, j.Jitter, j.OnFailure = o.catchUp, o.jitter, o.onFailure
}
