package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitUsage is hacron's code for its own failures, usage errors included
// (kong's default for those would be 80).
const exitUsage = 125

// globals are the options every command takes (hacron.md, "Commands").
type globals struct {
	Config         string        `name:"config" placeholder:"FILE" env:"HACRON_CONFIG" help:"Config file (default ${default_config}; a missing default file is fine)."`
	ZK             string        `name:"zk" placeholder:"HOSTS" env:"HACRON_ZK" default:"127.0.0.1:2181" help:"ZooKeeper servers, h1:2181,h2:2181[/chroot]."`
	Cluster        string        `name:"cluster" placeholder:"NAME" env:"HACRON_CLUSTER" default:"default" help:"Cluster name."`
	Node           string        `name:"node" placeholder:"ID" env:"HACRON_NODE" help:"This node's id (default: the host name)."`
	SessionTimeout time.Duration `name:"session-timeout" placeholder:"D" env:"HACRON_SESSION_TIMEOUT" default:"10s" help:"ZooKeeper session timeout to ask for."`
	Socket         string        `name:"socket" placeholder:"PATH" env:"HACRON_SOCKET" help:"Agent socket (default /run/hacron/<cluster>.sock)."`
	SocketGroup    string        `name:"socket-group" placeholder:"GROUP" env:"HACRON_SOCKET_GROUP" help:"Group allowed to use the agent socket (mode 0660; default: the agent's own group)."`
	Direct         bool          `name:"direct" env:"HACRON_DIRECT" help:"Direct mode: no agent, a ZooKeeper session per run."`
	ZKAuthFile     string        `name:"zk-auth-file" placeholder:"FILE" env:"HACRON_ZK_AUTH_FILE" help:"Digest credentials user:password (mode 0600)."`
	ZKWorldRead    bool          `name:"zk-world-read" env:"HACRON_ZK_WORLD_READ" help:"With --zk-auth-file: let anyone read hacron's nodes (monitoring)."`
	ZKTLSCA        string        `name:"zk-tls-ca" placeholder:"FILE" env:"HACRON_ZK_TLS_CA" help:"CA certificate for ZooKeeper TLS."`
	ZKTLSCert      string        `name:"zk-tls-cert" placeholder:"FILE" env:"HACRON_ZK_TLS_CERT" help:"Client certificate for ZooKeeper TLS."`
	ZKTLSKey       string        `name:"zk-tls-key" placeholder:"FILE" env:"HACRON_ZK_TLS_KEY" help:"Client key for ZooKeeper TLS."`
	LogLevel       string        `name:"log-level" placeholder:"LEVEL" env:"HACRON_LOG_LEVEL" enum:"debug,info,warn,error," default:"" help:"debug, info, warn or error (default: info; warn for run)."`
	LogFormat      string        `name:"log-format" placeholder:"FORMAT" env:"HACRON_LOG_FORMAT" enum:"text,json" default:"text" help:"text or json."`
	History        int           `name:"history" placeholder:"N" env:"HACRON_HISTORY" default:"20" help:"Run records kept per job."`
	Syslog         bool          `name:"syslog" env:"HACRON_SYSLOG" help:"Log to syslog instead of stderr."`
	SyslogFacility string        `name:"syslog-facility" placeholder:"FACILITY" env:"HACRON_LOG_SYSLOG_FACILITY" default:"LOG_CRON" help:"Syslog facility (rcron's syslog_facility)."`
	SyslogLevel    string        `name:"syslog-level" placeholder:"LEVEL" env:"HACRON_LOG_SYSLOG_LEVEL" default:"LOG_INFO" help:"Lowest syslog priority logged (rcron's syslog_level)."`
}

// Names the contract allows: 1 to maxClusterName (maxJobName) of
// A-Z a-z 0-9 . _ -.
const (
	maxClusterName = 64
	maxJobName     = 128
)

// validName checks a name by hand: the equivalent regular expressions,
// compiled at start-up, cost every run more than the rest of its parsing.
func validName(s string, max int) bool {
	if len(s) < 1 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// AfterApply fills in the defaults that depend on other options and checks
// the names.
func (g *globals) AfterApply() error {
	if !validName(g.Cluster, maxClusterName) {
		return fmt.Errorf("bad cluster name %q: want 1-64 of A-Z a-z 0-9 . _ -", g.Cluster)
	}
	if g.Node == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node id: %w", err)
		}
		g.Node = h
	}
	if g.Socket == "" {
		g.Socket = "/run/hacron/" + g.Cluster + ".sock"
	}
	if g.SessionTimeout <= 0 {
		return fmt.Errorf("--session-timeout must be positive")
	}
	if g.History < 1 {
		return fmt.Errorf("--history must be at least 1")
	}
	return nil
}

// zkConfig is the ZooKeeper connection these options describe.
func (g *globals) zkConfig() zkConfig {
	return zkConfig{
		Connect:        g.ZK,
		SessionTimeout: g.SessionTimeout,
		ConnectTimeout: g.SessionTimeout,
		AuthFile:       g.ZKAuthFile,
		WorldRead:      g.ZKWorldRead,
		TLSCA:          g.ZKTLSCA,
		TLSCert:        g.ZKTLSCert,
		TLSKey:         g.ZKTLSKey,
	}
}

// jobName is the job's name in ZooKeeper: a non-root user's jobs carry the
// user's name, so that one user cannot claim or block another's slots.
func jobName(job string, uid int) (string, error) {
	if uid != 0 {
		job = userName(uid) + "." + job
	}
	if !validName(job, maxJobName) {
		return "", fmt.Errorf("bad job name %q: want 1-128 of A-Z a-z 0-9 . _ - (a non-root user's name is its prefix)", job)
	}
	return job, nil
}

// clusterRoot is where everything of the cluster lives in ZooKeeper.
func (g *globals) clusterRoot() string { return "/hacron/" + g.Cluster }

type cli struct {
	runCLI

	Agent  agentCmd  `cmd:"" help:"Join the election and serve the local socket."`
	State  stateCmd  `cmd:"" help:"Print active or passive (exit 0 active, 1 passive, 2 unknown)."`
	Resign resignCmd `cmd:"" help:"Ask the local agent to step down and stay out of the election for a while."`
	Status statusCmd `cmd:"" help:"Show the cluster: members, the active node, the fencing token, recent runs."`
	Check  checkCmd  `cmd:"" help:"Check this node's setup: config, ZooKeeper, the lease arithmetic, the cluster."`
}

// runCLI is the grammar of `hacron run` alone (see parseArgs); cli adds
// the other commands to it.
type runCLI struct {
	globals

	Version kong.VersionFlag `help:"Print the version and exit."`

	Run runCmd `cmd:"" help:"Run a job if this node is active; skip it silently otherwise."`
}

func main() {
	if filepath.Base(os.Args[0]) == "rcron" {
		os.Exit(rcronMain(os.Args[1:]))
	}
	os.Exit(run(os.Args[1:]))
}

// rcronDefaultConfig is where rcron reads its configuration.
const rcronDefaultConfig = "/etc/rcron/rcron.conf"

// rcronMain is the drop-in for rcron (a symlink named rcron): the call
// form `rcron [--conf FILE] command [args]`, the args joined with spaces
// and run by /bin/sh -c as rcron did, rcron's config file; but the job's
// real exit status, and fail closed.
func rcronMain(args []string) int {
	conf, named := rcronDefaultConfig, false
	if len(args) >= 1 && args[0] == "--conf" {
		if len(args) < 2 {
			args = nil
		} else {
			conf, named, args = args[1], true, args[2:]
		}
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: rcron [--conf FILE] command [args]")
		return 1 // rcron's own usage error
	}
	if !named {
		if v := os.Getenv("HACRON_CONFIG"); v != "" {
			conf, named = v, true
		}
	}
	hargs := []string{"--config", conf, "run"}
	if cfg, err := loadConfig(conf, named); err == nil {
		if _, ok := cfg.values["nice"]; !ok {
			hargs = append(hargs, "--nice", "19") // rcron's default nice_level
		}
	}
	if !named {
		// A missing /etc/rcron/rcron.conf is fine, as for hacron's own.
		if _, err := os.Stat(conf); err != nil {
			hargs = hargs[2:]
		}
	}
	return run(append(hargs, "--", "/bin/sh", "-c", strings.Join(args, " ")))
}

// run parses and runs one command and returns the exit code.
func run(args []string) int {
	// An empty HACRON_* variable counts as unset (`HACRON_DIRECT= hacron
	// ...` in a script), not as a value to parse.
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "HACRON_") && v == "" {
			os.Unsetenv(k)
		}
	}
	// hacron check reports a bad setup with 1, like any other problem.
	failCode := exitUsage
	if isCheck(args) {
		failCode = exitCheckFailed
	}
	path, named := configPath(args)
	cfg, err := loadConfig(path, named)
	if err != nil {
		printError(os.Stderr, err)
		return failCode
	}
	kctx, g, err := parseArgs(args, cfg)
	if err != nil {
		printError(os.Stderr, withHint(err, "see 'hacron --help'"))
		return failCode
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	err = kctx.Run(g)
	if err != nil {
		if code, ok := isExit(err); ok {
			return code
		}
		printError(os.Stderr, err)
		return exitCodeOf(err, exitUsage)
	}
	return 0
}

// parseArgs parses the command line. A `hacron run` line is parsed with
// the run command's grammar alone: kong builds its model of every command
// on each start, and that model of all commands costs a skipped run more
// than its whole conversation with the agent (docs/performance.md).
// Whatever the run grammar refuses, and any request for help, is parsed
// with the whole grammar, so that help and errors are the same.
func parseArgs(args []string, cfg *config) (*kong.Context, *globals, error) {
	if runOnly(args) {
		var c runCLI
		if kctx, err := parseWith(&c, args, cfg); err == nil {
			return kctx, &c.globals, nil
		}
	}
	var c cli
	kctx, err := parseWith(&c, args, cfg)
	return kctx, &c.globals, err
}

func parseWith(grammar any, args []string, cfg *config) (*kong.Context, error) {
	parser, err := kong.New(grammar,
		kong.Name("hacron"),
		kong.Description("Highly available cron jobs with ZooKeeper: a job runs only on the node that holds the lock."),
		kong.Vars{"version": version, "default_config": defaultConfigPath},
		kong.Resolvers(cfg.resolver()),
		kong.Exit(func(code int) { os.Exit(code) }),
	)
	if err != nil {
		return nil, err
	}
	return parser.Parse(args)
}

// runOnly says whether the run grammar may parse args: they name the run
// command and ask for no help before the job's own arguments.
func runOnly(args []string) bool {
	run := false
	for _, a := range args {
		switch a {
		case "--":
			return run
		case "-h", "--help":
			return false
		case "run":
			run = true
		}
	}
	return run
}

// isCheck says whether the command line is `hacron check`.
func isCheck(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "check":
			return !slices.Contains(args, "run")
		}
	}
	return false
}

// silentExit ends the program with a code and prints nothing: a skipped
// run, or a job's own exit status.
type silentExit int

func (e silentExit) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func isExit(err error) (int, bool) {
	var e silentExit
	if errors.As(err, &e) {
		return int(e), true
	}
	return 0, false
}

// joinArgs shows a command line in logs.
func joinArgs(argv []string) string {
	return strings.Join(argv, " ")
}
