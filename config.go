package main

// The config file: rcron.conf's shape (`key = value`, separator [\t =]+,
// `#` and `;` comment lines, optional quotes), so an rcron.conf is accepted
// as it is. Precedence: flag > environment > config file > default.

import (
	"bufio"
	"bytes"
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
	"default_state":   "", // rcron; only "passive" is accepted
}

type configValue struct {
	key   string
	value string
	line  int
}

type config struct {
	path   string
	values map[string]configValue // by flag name
}

// loadConfig reads path. A missing file is fine only when nobody named it.
func loadConfig(path string, named bool) (*config, error) {
	c := &config{path: path, values: map[string]configValue{}}
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !named {
			return c, nil
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, c.parse(bytes.NewReader(b))
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
		value = strings.TrimLeft(line[i:], " \t=")
	}
	if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
		value = value[1 : len(value)-1]
	}
	flag, ok := configKeys[key]
	if !ok {
		return fmt.Errorf("config %s:%d: unknown key %q", c.path, n, key)
	}
	switch key {
	case "default_state":
		if value != "passive" {
			return withHint(fmt.Errorf("config %s:%d: default_state = %s is refused: hacron fails closed", c.path, n, value),
				"a node is active only while it holds the ZooKeeper lock; remove the line or set default_state = passive")
		}
		return nil
	case "mode":
		switch value {
		case "direct":
			value = "true"
		case "agent":
			value = "false"
		default:
			return fmt.Errorf("config %s:%d: mode must be agent or direct, not %q", c.path, n, value)
		}
	}
	c.values[flag] = configValue{key: key, value: value, line: n}
	return nil
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
		if err := checkValue(flag, v.value); err != nil {
			return nil, fmt.Errorf("config %s:%d: %s: %w", c.path, v.line, v.key, err)
		}
		return v.value, nil
	})
}

// checkValue parses a config value the way its flag will, so that a bad
// value is reported with its file and line rather than as a flag.
func checkValue(flag *kong.Flag, v string) error {
	t := flag.Target.Type()
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var err error
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		_, err = time.ParseDuration(v)
	case t.Kind() == reflect.Int:
		_, err = strconv.Atoi(v)
	case t.Kind() == reflect.Bool:
		_, err = strconv.ParseBool(v)
	}
	if err != nil {
		return fmt.Errorf("bad value %q", v)
	}
	return nil
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
