package main

// The config file: rcron.conf's shape (`key = value`, separator [\t =]+,
// `#` and `;` comment lines, optional quotes, a trailing `# comment`), so
// an rcron.conf is accepted as it is.
//
// Precedence for every key: flag > environment > hacron.conf > rcron.conf
// > default. Only the rcron drop-in reads an rcron.conf, below hacron's
// own file: hacron.conf says where ZooKeeper, the cluster and the socket
// are (the agent reads nothing else), and rcron.conf fills in what it does
// not set.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
)

const defaultConfigPath = "/etc/hacron/hacron.conf"

// configKeys maps each config key to the flag it sets. rcron's own keys
// keep their meaning.
var configKeys = map[string]string{
	"zk":              "zk",
	"cluster":         "cluster",
	"cluster_name":    "cluster", // rcron
	"node":            "node",
	"session_timeout": "session-timeout",
	"socket":          "socket",
	"socket_group":    "socket-group",
	"mode":            "direct",
	"zk_auth_file":    "zk-auth-file",
	"zk_world_read":   "zk-world-read",
	"zk_tls_ca":       "zk-tls-ca",
	"zk_tls_cert":     "zk-tls-cert",
	"zk_tls_key":      "zk-tls-key",
	"log_level":       "log-level",
	"log_format":      "log-format",
	"syslog":          "syslog",
	"syslog_facility": "syslog-facility", // rcron
	"syslog_level":    "syslog-level",    // rcron
	"state_file":      "state-file",      // rcron
	"nice_level":      "nice",            // rcron
	"pid_file":        "pid-file",
	"kill_grace":      "kill-grace",
	"history":         "history",
	"crontab":         "crontab",
	"default_state":   "", // rcron; accepted, never acted on
}

type configValue struct {
	path  string
	key   string
	value string
	line  int
}

// where names the line a value came from, for messages.
func (v configValue) where() string { return fmt.Sprintf("%s:%d", v.path, v.line) }

type config struct {
	path   string
	values map[string]configValue // by flag name
	// defaultState is rcron's default_state line, if any. hacron has no
	// state to fall back to: it is accepted and never acted on.
	defaultState *configValue
}

// configError is a bad config file or value: printed as it is, without
// the flag kong would put in front of it.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

func newConfig(path string) *config {
	return &config{path: path, values: map[string]configValue{}}
}

// loadConfig reads path. A missing file is fine only when nobody named it.
func loadConfig(path string, named bool) (*config, error) {
	c := newConfig(path)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !named {
			return c, nil
		}
		return nil, &configError{fmt.Errorf("config: %w", err)}
	}
	defer func() { _ = f.Close() }() // only read: closing it loses nothing
	if err := c.parse(f); err != nil {
		return nil, &configError{err}
	}
	return c, nil
}

// over puts c above lower: lower's values count only for the keys c does
// not set.
func (c *config) over(lower *config) {
	for flag, v := range lower.values {
		if _, ok := c.values[flag]; !ok {
			c.values[flag] = v
		}
	}
	if c.defaultState == nil {
		c.defaultState = lower.defaultState
	}
}

// ignoredActive is the `default_state = active` line that hacron accepts
// and ignores (the agent and hacron check say so), if there is one.
func (c *config) ignoredActive() (configValue, bool) {
	if c.defaultState != nil && c.defaultState.value == "active" {
		return *c.defaultState, true
	}
	return configValue{}, false
}

// parse reads config lines from r.
func (c *config) parse(r io.Reader) error {
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		if err := c.parseLine(sc.Text(), n); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("config %s: %w", c.path, err)
	}
	return nil
}

func (c *config) parseLine(raw string, n int) error {
	line := strings.TrimSpace(raw)
	if line == "" || line[0] == '#' || line[0] == ';' {
		return nil
	}
	key, value := line, ""
	if i := strings.IndexAny(line, " \t="); i >= 0 {
		key = line[:i]
		value = configText(strings.TrimLeft(line[i:], " \t="))
	}
	flag, ok := configKeys[key]
	if !ok {
		return fmt.Errorf("config %s:%d: unknown key %q", c.path, n, key)
	}
	v := configValue{path: c.path, key: key, value: value, line: n}
	switch key {
	case "default_state":
		if value != "active" && value != "passive" {
			return fmt.Errorf("config %s:%d: default_state must be active or passive, not %q", c.path, n, value)
		}
		c.defaultState = &v
		return nil
	case "mode":
		switch value {
		case "direct":
			v.value = "true"
		case "agent":
			v.value = "false"
		default:
			return fmt.Errorf("config %s:%d: mode must be agent or direct, not %q", c.path, n, value)
		}
	}
	c.values[flag] = v
	return nil
}

// configText is a value as written after its key: a quoted value is what
// is between its quotes (the last matching quote that only blanks or a
// comment follow); otherwise a `#` that starts a word begins a comment.
func configText(v string) string {
	if v != "" && (v[0] == '"' || v[0] == '\'') {
		for i := len(v) - 1; i > 0; i-- {
			if v[i] != v[0] {
				continue
			}
			rest := strings.TrimLeft(v[i+1:], " \t")
			if rest == "" || (rest[0] == '#' && len(rest) < len(v[i+1:])) {
				return v[1:i]
			}
		}
	}
	for i := range len(v) {
		if v[i] == '#' && (i == 0 || v[i-1] == ' ' || v[i-1] == '\t') {
			return strings.TrimRight(v[:i], " \t")
		}
	}
	return v
}

// resolver feeds config values to kong for flags that neither the command
// line nor the environment set (kong itself would let a resolver override
// the environment).
func (c *config) resolver() kong.Resolver {
	return kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		for _, env := range flag.Envs {
			if _, ok := os.LookupEnv(env); ok {
				return nil, nil
			}
		}
		v, ok := c.values[flag.Name]
		if !ok {
			return nil, nil
		}
		value, err := checkValue(flag, v.value)
		if err != nil {
			return nil, &configError{fmt.Errorf("config %s: %s: %w", v.where(), v.key, err)}
		}
		return value, nil
	})
}

// configBools are the words a boolean config value may be.
var configBools = map[string]bool{
	"true": true, "yes": true, "on": true, "1": true,
	"false": false, "no": false, "off": false, "0": false,
}

// checkValue parses a config value the way its flag will, so that a bad
// value is reported with its file and line rather than as a flag, and
// returns what kong is to parse.
func checkValue(flag *kong.Flag, v string) (any, error) {
	t := flag.Target.Type()
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		if _, err := time.ParseDuration(v); err != nil {
			if _, nerr := strconv.ParseFloat(v, 64); nerr == nil {
				return nil, withHint(fmt.Errorf("%s has no unit", v), fmt.Sprintf("write %ss (units: ms, s, m, h)", v))
			}
			return nil, fmt.Errorf("bad value %q: want a duration such as 10s, 500ms or 5m", v)
		}
	case t.Kind() == reflect.Int:
		if _, err := strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("bad value %q: want a whole number", v)
		}
	case t.Kind() == reflect.Bool:
		b, ok := configBools[strings.ToLower(v)]
		if !ok {
			return nil, fmt.Errorf("bad value %q: want true/false, yes/no, on/off or 1/0", v)
		}
		return b, nil
	}
	return v, nil
}

// configPath finds --config before kong runs: the file must be read before
// the flags it provides are resolved.
func configPath(args []string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v, true
		}
		if a == "--config" && i+1 < len(args) {
			return args[i+1], true
		}
	}
	if v, ok := os.LookupEnv("HACRON_CONFIG"); ok && v != "" {
		return v, true
	}
	return defaultConfigPath, false
}
