// Command hacron makes cron jobs highly available with ZooKeeper: every
// node carries the same crontab, and `hacron run -- job` runs the job only
// on the node that holds the cluster's lock, under a lease that ends before
// any other node can take over. docs/contract.md says what it promises.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/alecthomas/kong"
)

// version is set at build time with -ldflags "-X main.version=..." (make
// does); otherwise run fills it in from the build info.
var version = "dev"

// buildVersion is the version of a binary built without -ldflags: the
// module version (`go install` of a release, or what `go build` derived
// from the checkout's tags and commit), or else the commit itself (+dirty
// with uncommitted changes). run calls it
// once, and only for such builds: nothing at package init.
func buildVersion(bi *debug.BuildInfo) string {
	if bi == nil {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

// exitUsage is hacron's code for its own failures, usage errors included
// (kong's default for those would be 80).
const exitUsage = 125

// globals are the options every command takes (docs/contract.md, "Global
// options").
type globals struct {
	Config         string        `name:"config" placeholder:"FILE" env:"HACRON_CONFIG" help:"Config file (default: ${default_config}; a missing default file is fine)."`
	ZK             string        `name:"zk" placeholder:"HOSTS" env:"HACRON_ZK" default:"127.0.0.1:2181" help:"ZooKeeper servers, h1:2181,h2:2181[/chroot] (default: ${default})."`
	Cluster        string        `name:"cluster" placeholder:"NAME" env:"HACRON_CLUSTER" default:"default" help:"Cluster name (default: ${default})."`
	Node           string        `name:"node" placeholder:"ID" env:"HACRON_NODE" help:"This node's id (default: the host name)."`
	SessionTimeout time.Duration `name:"session-timeout" placeholder:"D" env:"HACRON_SESSION_TIMEOUT" default:"10s" help:"ZooKeeper session timeout to ask for (default: ${default})."`
	Socket         string        `name:"socket" placeholder:"PATH" env:"HACRON_SOCKET" help:"Agent socket (default: /run/hacron/<cluster>.sock)."`
	SocketGroup    string        `name:"socket-group" placeholder:"GROUP" env:"HACRON_SOCKET_GROUP" help:"Group allowed to use the agent socket (mode 0660; default: the agent's own group)."`
	Direct         bool          `name:"direct" env:"HACRON_DIRECT" help:"Direct mode: no agent, a ZooKeeper session per run (default: agent mode)."`
	ZKAuthFile     string        `name:"zk-auth-file" placeholder:"FILE" env:"HACRON_ZK_AUTH_FILE" help:"Digest credentials user:password (mode 0600; default: none)."`
	ZKWorldRead    bool          `name:"zk-world-read" env:"HACRON_ZK_WORLD_READ" help:"With --zk-auth-file: let anyone read hacron's nodes (monitoring)."`
	ZKTLSCA        string        `name:"zk-tls-ca" placeholder:"FILE" env:"HACRON_ZK_TLS_CA" help:"CA certificate for ZooKeeper TLS (default: plain TCP)."`
	ZKTLSCert      string        `name:"zk-tls-cert" placeholder:"FILE" env:"HACRON_ZK_TLS_CERT" help:"Client certificate for ZooKeeper TLS."`
	ZKTLSKey       string        `name:"zk-tls-key" placeholder:"FILE" env:"HACRON_ZK_TLS_KEY" help:"Client key for ZooKeeper TLS."`
	LogLevel       string        `name:"log-level" placeholder:"LEVEL" env:"HACRON_LOG_LEVEL" enum:"debug,info,warn,error," default:"" help:"debug, info, warn or error (default: info; warn for run)."`
	LogFormat      string        `name:"log-format" placeholder:"FORMAT" env:"HACRON_LOG_FORMAT" enum:"text,json" default:"text" help:"text or json (default: ${default})."`
	History        int           `name:"history" placeholder:"N" env:"HACRON_HISTORY" default:"20" help:"Run records kept per job (default: ${default})."`
	Syslog         bool          `name:"syslog" env:"HACRON_SYSLOG" help:"Log to syslog instead of stderr."`
	SyslogFacility string        `name:"syslog-facility" placeholder:"FACILITY" env:"HACRON_SYSLOG_FACILITY" default:"LOG_CRON" help:"Syslog facility, rcron's syslog_facility (default: ${default})."`
	SyslogLevel    string        `name:"syslog-level" placeholder:"LEVEL" env:"HACRON_SYSLOG_LEVEL" default:"LOG_INFO" help:"Lowest syslog priority logged, rcron's syslog_level (default: ${default})."`
}

// Names the contract allows: 1 to maxClusterName (maxJobName) of
// A-Z a-z 0-9 . _ -.
const (
	maxClusterName = 64
	maxJobName     = 128
)

// validName checks a name by hand: the equivalent regular expressions,
// compiled at start-up, cost every run more than the rest of its parsing.
func validName(s string, maxLen int) bool {
	if len(s) < 1 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// onlyDots: "." and ".." are not node names ZooKeeper takes, and a name of
// dots alone says nothing; both are refused up front.
func onlyDots(s string) bool { return strings.Trim(s, ".") == "" }

// AfterApply fills in the defaults that depend on other options and checks
// the names.
func (g *globals) AfterApply() error {
	if !validName(g.Cluster, maxClusterName) || onlyDots(g.Cluster) {
		return fmt.Errorf("bad cluster name %q: want 1-64 of A-Z a-z 0-9 . _ -, not only dots", g.Cluster)
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
		ClusterRoot:    g.clusterRoot(),
		TLSCA:          g.ZKTLSCA,
		TLSCert:        g.ZKTLSCert,
		TLSKey:         g.ZKTLSKey,
	}
}

// checkJobName checks a job name as given (--name, --job).
func checkJobName(job string) error {
	if !validName(job, maxJobName) || onlyDots(job) {
		return fmt.Errorf("bad job name %q: want 1-128 of A-Z a-z 0-9 . _ -, not only dots", job)
	}
	return nil
}

// jobUserSep joins a non-root user's name to the job's in ZooKeeper. No job
// name contains it, and no user name can (it separates the fields of
// /etc/passwd), so two users' jobs never share a name: alice's "bob.x" is
// alice:bob.x, alice.bob's "x" is alice.bob:x.
const jobUserSep = ":"

// validUserPart says whether a user name may prefix a job name: 1 to 64
// characters of anything a ZooKeeper node name takes, except "/" and the
// separator. An invalid UTF-8 byte reads as U+FFFD, which is refused with
// ZooKeeper's own range. Checked by hand: a regular expression would be
// compiled at every start of every `hacron run`.
func validUserPart(s string) bool {
	n := 0
	for _, r := range s {
		n++
		switch {
		case r == '/' || r == ':',
			r <= 0x1f, r >= 0x7f && r <= 0x9f,
			r >= 0xd800 && r <= 0xf8ff, r >= 0xfff0 && r <= 0xffff:
			return false
		}
	}
	return n >= 1 && n <= 64
}

// jobName is the job's name in ZooKeeper: a non-root user's jobs carry the
// user's name, so that one user cannot claim or block another's slots. The
// 128-character limit is the job's own; the prefix comes on top.
func jobName(job string, uid int) (string, error) {
	if err := checkJobName(job); err != nil {
		return "", err
	}
	if uid == 0 {
		return job, nil
	}
	user := userName(uid)
	if !validUserPart(user) {
		return "", fmt.Errorf("user name %q cannot prefix a job name: 1-64 characters, no / or : or control characters", user)
	}
	return user + jobUserSep + job, nil
}

// clusterRoot is where everything of the cluster lives in ZooKeeper.
func (g *globals) clusterRoot() string { return "/hacron/" + g.Cluster }

type cli struct {
	runCLI

	Agent  agentCmd  `cmd:"" help:"Join the election and serve the local socket."`
	State  stateCmd  `cmd:"" help:"Print active or passive (exit 0 active, 1 passive, 2 unknown)."`
	Resign resignCmd `cmd:"" help:"Ask the local agent to step down and stay out of the election for a while."`
	Rejoin rejoinCmd `cmd:"" help:"End a resign's hold early: the local agent joins the election again."`
	Status statusCmd `cmd:"" help:"Show the cluster: members, the active node, the fencing token, recent runs, missed slots."`
	Logs   logsCmd   `cmd:"" help:"Print the output a job's newest run left in its record (or the run of --slot)."`
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

// rcronNice is rcron's default nice_level.
const rcronNice = "19"

// rcronMain is the drop-in for rcron (a symlink named rcron): the call
// form `rcron [--conf FILE] command [args]`, the args joined with spaces
// and run by /bin/sh -c as rcron did; but the job's real exit status, and
// fail closed. hacron's own config comes first (it says where ZooKeeper,
// the cluster and the agent's socket are, as for the agent), the rcron.conf
// below it, and rcron's default nice level below both.
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
	clearEmptyEnv()
	rc, err := loadConfig(conf, named)
	if err != nil {
		printError(os.Stderr, err)
		return exitUsage
	}
	if _, ok := rc.values["nice"]; !ok {
		rc.values["nice"] = configValue{path: "rcron's default", key: "nice_level", value: rcronNice}
	}
	return runWith([]string{"run", "--", "/bin/sh", "-c", strings.Join(args, " ")}, rc)
}

// newParser is hacron's command line model: run parses with it, and the
// man page and the shell completions are generated from it.
func newParser(grammar any, options ...kong.Option) (*kong.Kong, error) {
	return kong.New(grammar, append([]kong.Option{
		kong.Name("hacron"),
		kong.Description("Highly available cron jobs with ZooKeeper: a job runs only on the node that holds the lock."),
		kong.Vars{"version": version, "default_config": defaultConfigPath, "rcron_config": rcronDefaultConfig},
	}, options...)...)
}

// clearEmptyEnv makes an empty HACRON_* variable count as unset
// (`HACRON_DIRECT= hacron ...` in a script), not as a value to parse.
func clearEmptyEnv() {
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "HACRON_") && v == "" {
			_ = os.Unsetenv(k) // fails only for a name with "=": k has none
		}
	}
}

// run parses and runs one command and returns the exit code.
func run(args []string) int {
	if version == "dev" {
		bi, _ := debug.ReadBuildInfo() // nil without build info
		version = buildVersion(bi)
	}
	clearEmptyEnv()
	return runWith(args, nil)
}

// runWith runs a command with hacron's config file above lower (nil: none).
func runWith(args []string, lower *config) int {
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
	if lower != nil {
		cfg.over(lower)
	}
	kctx, g, err := parseArgs(args, cfg)
	if err != nil {
		if ce := (*configError)(nil); errors.As(err, &ce) {
			printError(os.Stderr, ce)
		} else {
			printError(os.Stderr, withHint(err, "see 'hacron --help'"))
		}
		return failCode
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	kctx.Bind(cfg)
	kctx.Bind(reloadFunc(func() (*cli, error) { return reparse(args, lower) }))
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

// reloadFunc parses the command line again with the configuration files as
// they are now: the agent's SIGHUP.
type reloadFunc func() (*cli, error)

// reparse reads the configuration and parses args without running
// anything.
func reparse(args []string, lower *config) (*cli, error) {
	path, named := configPath(args)
	cfg, err := loadConfig(path, named)
	if err != nil {
		return nil, err
	}
	if lower != nil {
		cfg.over(lower)
	}
	var c cli
	parser, err := newParser(&c, kong.Resolvers(cfg.resolver()), kong.Exit(func(int) {}))
	if err != nil {
		return nil, err
	}
	if _, err := parser.Parse(args); err != nil {
		return nil, err
	}
	return &c, nil
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
	parser, err := newParser(grammar, kong.Resolvers(cfg.resolver()), kong.Exit(func(code int) { os.Exit(code) }))
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

// maxRecordCmd bounds the command kept in a run record: a long `sh -c`
// script must not push the record past what readers accept (maxRecordData),
// even with every byte escaped in JSON.
const maxRecordCmd = 2048

// recordCmd is a run record's cmd: the command line as logged, cut on a
// character boundary after maxRecordCmd bytes.
func recordCmd(argv []string) string {
	s := joinArgs(argv)
	if len(s) <= maxRecordCmd {
		return s
	}
	cut := maxRecordCmd
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
