package main

// What keeps a crontab line's start cheap (docs/performance.md) must not
// change what it does.

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// validName accepts exactly what the contract's patterns accept.
func TestValidName(t *testing.T) {
	for _, c := range []struct {
		max     int
		pattern string
	}{
		{maxClusterName, `^[A-Za-z0-9._-]{1,64}$`},
		{maxJobName, `^[A-Za-z0-9._-]{1,128}$`},
	} {
		re := regexp.MustCompile(c.pattern)
		for _, s := range []string{
			"", "a", "A.z_0-9", strings.Repeat("x", c.max), strings.Repeat("x", c.max+1),
			"a b", "a/b", "é", "a\n", "..", "-", "a\x00", "backup-1a2b3c4d", "root.nightly",
		} {
			if got, want := validName(s, c.max), re.MatchString(s); got != want {
				t.Errorf("validName(%q, %d) = %v, the pattern says %v", s, c.max, got, want)
			}
		}
	}
}

// A run line parsed with the run grammar alone comes out as the whole
// grammar parses it; what the run grammar refuses goes to the whole one.
func TestRunGrammarMatchesWhole(t *testing.T) {
	t.Setenv("HACRON_CONFIG", "")
	cfg := &config{path: "test.conf", values: map[string]configValue{"history": {key: "history", value: "7", line: 1}}}
	for _, args := range [][]string{
		{"run", "--", "/bin/true"},
		{"--cluster", "c1", "run", "--name", "n", "--timeout", "5s", "--", "sh", "-c", "exit 3"},
		{"run", "--socket", "/x.sock", "--no-overlap", "--wait", "1m", "--slot", "s1", "--", "true", "--help"},
		{"--direct", "run", "--schedule", "*/5 * * * *", "--nice", "10", "--", "run"},
		{"run", "true"},
	} {
		if !runOnly(args) {
			t.Errorf("%q: not parsed with the run grammar", args)
			continue
		}
		var whole cli
		wctx, err := parseWith(&whole, args, cfg)
		if err != nil {
			t.Fatalf("%q: whole grammar: %v", args, err)
		}
		kctx, g, err := parseArgs(args, cfg)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if kctx.Command() != wctx.Command() {
			t.Errorf("%q: command %q, the whole grammar says %q", args, kctx.Command(), wctx.Command())
		}
		if !reflect.DeepEqual(*g, whole.globals) {
			t.Errorf("%q: globals\n%+v\nthe whole grammar:\n%+v", args, *g, whole.globals)
		}
		run, ok := kctx.Model.Target.Addr().Interface().(*runCLI)
		if !ok {
			t.Fatalf("%q: parsed with %T", args, kctx.Model.Target.Addr().Interface())
		}
		if !reflect.DeepEqual(run.Run, whole.Run) {
			t.Errorf("%q: run\n%+v\nthe whole grammar:\n%+v", args, run.Run, whole.Run)
		}
	}
	for _, args := range [][]string{
		{"--help", "run"}, {"run", "-h", "--", "x"}, {"state"}, {"status", "--", "run"},
	} {
		if runOnly(args) {
			t.Errorf("%q: parsed with the run grammar", args)
		}
	}
	// "run" as a flag's value: the run grammar refuses the line, the whole
	// grammar takes it.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "run", "state"}, "state"},
		{[]string{"--node", "run", "resign", "--hold", "1s"}, "resign"},
		{[]string{"agent", "--node", "run"}, "agent"},
	} {
		kctx, _, err := parseArgs(c.args, cfg)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if got := kctx.Command(); got != c.want {
			t.Errorf("%q: command %q, want %q", c.args, got, c.want)
		}
	}
}
