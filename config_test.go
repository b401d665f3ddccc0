package main

import (
	"os"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// parseWithConfig parses args as hacron does, with text as the config file
// above lower's text (the rcron drop-in's layering when lower is given).
func parseWithConfig(t *testing.T, text, lower string, args ...string) (*cli, error) {
	t.Helper()
	cfg := newConfig("hacron.conf")
	if err := cfg.parse(strings.NewReader(text)); err != nil {
		return nil, err
	}
	if lower != "" {
		rc := newConfig("rcron.conf")
		if err := rc.parse(strings.NewReader(lower)); err != nil {
			return nil, err
		}
		cfg.over(rc)
	}
	var c cli
	parser, err := kong.New(&c, kong.Vars{"version": "test", "default_config": defaultConfigPath, "rcron_config": rcronDefaultConfig},
		kong.Resolvers(cfg.resolver()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = parser.Parse(args)
	return &c, err
}

// unsetenv removes a variable for the test (t.Setenv restores it after).
func unsetenv(t *testing.T, name string) {
	t.Setenv(name, "")
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

func TestConfigBooleans(t *testing.T) {
	for _, env := range []string{"HACRON_ZK_WORLD_READ", "HACRON_SYSLOG"} {
		unsetenv(t, env)
	}
	for word, want := range configBools {
		for _, w := range []string{word, strings.ToUpper(word)} {
			c, err := parseWithConfig(t, "zk_world_read = "+w+"\n", "", "status")
			if err != nil {
				t.Fatalf("zk_world_read = %s: %v", w, err)
			}
			if c.ZKWorldRead != want {
				t.Errorf("zk_world_read = %s: %v, want %v", w, c.ZKWorldRead, want)
			}
		}
	}
	if _, err := parseWithConfig(t, "syslog = enabled\n", "", "status"); err == nil ||
		!strings.Contains(err.Error(), "true/false, yes/no, on/off or 1/0") {
		t.Errorf("syslog = enabled: %v", err)
	}
}

// TestConfigLayers: hacron.conf above rcron.conf, key by key; the
// environment above both.
func TestConfigLayers(t *testing.T) {
	for _, env := range []string{"HACRON_CLUSTER", "HACRON_ZK", "HACRON_SOCKET"} {
		unsetenv(t, env)
	}
	rcron := "cluster_name = nightly\nzk = rcron-zk:2181\ndefault_state = active\nstate_file = /var/run/rcron/state\n"
	c, err := parseWithConfig(t, "cluster = billing\n", rcron, "status")
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster != "billing" || c.ZK != "rcron-zk:2181" || c.Socket != "/run/hacron/billing.sock" {
		t.Errorf("hacron.conf over rcron.conf: cluster %q zk %q socket %q", c.Cluster, c.ZK, c.Socket)
	}
	c, err = parseWithConfig(t, "zk = hacron-zk:2181\n", rcron, "status")
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster != "nightly" || c.ZK != "hacron-zk:2181" {
		t.Errorf("no cluster in hacron.conf: cluster %q zk %q, want nightly from rcron.conf", c.Cluster, c.ZK)
	}
	t.Setenv("HACRON_CLUSTER", "from-env")
	c, err = parseWithConfig(t, "cluster = billing\n", rcron, "status")
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster != "from-env" {
		t.Errorf("the environment over both files: cluster %q", c.Cluster)
	}
}

func TestConfigText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"billing", "billing"},
		{"billing # prod", "billing"},
		{"billing\t# prod", "billing"},
		{"bill#ing", "bill#ing"},
		{"# nothing", ""},
		{`"a # b"`, "a # b"},
		{`"a # b"  # c`, "a # b"},
		{`'x'`, "x"},
		{`"x'`, `"x'`},
		{`"a"b"`, `a"b`},
		{`"a" # "b"`, `a" # "b`},
		{`"unclosed # c`, `"unclosed`},
	} {
		if got := configText(tc.in); got != tc.want {
			t.Errorf("configText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestJobNames: names made only of dots are refused; a non-root user's
// prefix is joined with a character no user or job name contains.
func TestJobNames(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "...", "a/b", "a:b", strings.Repeat("x", 129)} {
		if err := checkJobName(bad); err == nil {
			t.Errorf("job name %q accepted", bad)
		}
	}
	for _, good := range []string{"a", ".a", "a..", "backup-1a2b3c4d", strings.Repeat("x", 128)} {
		if err := checkJobName(good); err != nil {
			t.Errorf("job name %q: %v", good, err)
		}
	}
	if validName(jobUserSep, maxJobName) || validUserPart(jobUserSep) {
		t.Fatalf("the separator %q fits a job or a user name", jobUserSep)
	}
	if n, err := jobName("backup", 0); err != nil || n != "backup" {
		t.Errorf("root's job: %q %v", n, err)
	}
	// A 128-character name is a job's own; the user's prefix comes on top.
	long := strings.Repeat("x", 128)
	n, err := jobName(long, 65534)
	if err != nil || n != userName(65534)+":"+long {
		t.Errorf("a user's long job: %q %v", n, err)
	}
	for _, u := range []string{"alice", "alice.bob", "ALICE@AD.EXAMPLE", `DOMAIN\alice`, "65534"} {
		if !validUserPart(u) {
			t.Errorf("user name %q refused", u)
		}
	}
	for _, u := range []string{"", "a/b", "a:b", "a\nb", "a\x7fb", "\xff", strings.Repeat("u", 65)} {
		if validUserPart(u) {
			t.Errorf("user name %q accepted", u)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"backup", "backup"},
		{"alice:backup", "alice:backup"},
	} {
		if got, err := statusJobName(tc.in, 0); err != nil || got != tc.want {
			t.Errorf("status --job %s: %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"..", ":backup", "alice:..", "a/b:c"} {
		if _, err := statusJobName(bad, 0); err == nil {
			t.Errorf("status --job %s accepted", bad)
		}
	}
}
