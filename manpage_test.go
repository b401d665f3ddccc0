package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"hacron/internal/completion"
	"hacron/internal/manpage"
)

// The man pages and the shell completions are generated from the same
// kong model that parses the command line, and checked in under dist/ for
// make deb: these tests fail when a flag changes without them. `make man`
// (go test -run 'TestManPage|TestCompletion' -update) rewrites them.

// model is hacron's kong model as run builds it.
func model(t *testing.T) *kong.Application {
	t.Helper()
	var c cli
	parser, err := newParser(&c)
	if err != nil {
		t.Fatal(err)
	}
	return parser.Model
}

// golden compares a generated file with the one checked in, or rewrites
// it under -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (make man writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the command line model gives: run make man\n%s", path, firstDiff(want, got))
	}
}

// firstDiff shows the first line where two texts part.
func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  checked in: %q\n  generated:  %q", i+1, wl, gl)
		}
	}
	return ""
}

func TestManPage(t *testing.T) {
	app := model(t)
	golden(t, "dist/man/hacron.1", hacronPage(t, app))
	golden(t, "dist/man/hacron.conf.5", confPage(t, app))
}

// configKeysOf is the config keys that set each flag.
func configKeysOf() map[string][]string {
	keys := map[string][]string{}
	for k, flag := range configKeys {
		if flag != "" {
			keys[flag] = append(keys[flag], k)
		}
	}
	for _, ks := range keys {
		sort.Strings(ks)
	}
	return keys
}

// configNote says which config keys set a flag.
func configNote(keys map[string][]string) func(*kong.Flag) string {
	return func(f *kong.Flag) string {
		ks := keys[f.Name]
		switch {
		case f.Name == "direct":
			return "Config key: `mode = direct`."
		case len(ks) == 0:
			return ""
		case len(ks) == 1:
			return "Config key: `" + ks[0] + "`."
		}
		return "Config keys: `" + strings.Join(ks, "`, `") + "`."
	}
}

// commandNotes say what a command does beyond its one-line help, as the
// code does it.
var commandNotes = map[string][]string{
	"run": {
		"The job runs only if this node is active: the admission is one ZooKeeper write that only the holder of the lock can pass, and the job runs under a lease that ends, with the job's whole process group, before any other node can become active. On any other node `hacron run` prints nothing and exits 0 (or `--skip-exit`), so cron sends no mail.",
		"The job is executed directly (no shell: use `sh -c '...'` for shell syntax), in its own process group, with stdin, stdout and stderr inherited. TERM, INT, HUP, QUIT, USR1 and USR2 sent to `hacron run` are forwarded to the group. When the lease ends the group gets SIGTERM, then SIGKILL after the kill grace, and the run exits 123.",
		"Slot claims: the run's record is named after its slot and created in the admission, so a slot runs once in the whole cluster. Claims are on in direct mode always, and in agent mode whenever `--wait`, `--slot` or `--schedule` is given; without them the active node runs every invocation. The default slot is the invocation time truncated to the minute (UTC); with `--schedule` it is the schedule's latest time not after now.",
		"A non-root user's jobs are named `<user>:<job>` in ZooKeeper (`:` is in neither a user name nor a job name), so one user cannot claim or block another user's slots.",
		"A disconnect from ZooKeeper stops admissions but does not end a running job: it ends at its lease deadline unless a renewal moves it. When the job's main process exits, what it left behind is ended before `hacron run` exits; where hacron runs as root with a writable cgroup hierarchy, every run has a cgroup of its own, so a process that left the group (setsid, a double fork) is ended too. The agent's answer is due within `--wait` + 10 s, else exit 125 and nothing runs.",
	},
	"agent": {
		"The agent takes part in the cluster's leader election: the agent with the lowest election node leads, and is active while its lease is valid. It renews the lease with a quorum write every fifth of the granted session timeout T; a lease lasts T/2 from the moment its renewal was sent. It serves `hacron run`, `state` and `resign` on the socket (mode 0660).",
		"SIGTERM or SIGINT stop it cleanly: no new job, running jobs end as on a lease loss, its election node is deleted and the session closed (the standby is active within milliseconds), `passive` is written to the state file, exit 0.",
		"A second agent for the same pid file exits 0 at once, silently. ZooKeeper unreachable is no reason to exit: the agent writes `passive` to the state file first, stays up answering unknown, skips runs with a logged reason, and joins when ZooKeeper answers. It exits 125 only when it cannot start: a bad configuration, a cluster of the other mode, a cluster node owned by other credentials.",
		"SIGHUP re-reads the configuration: log level and format, syslog settings and history change live; other changed settings are named in a warning (they need a restart). It never steps down for it. A detached agent logs to syslog when /dev/log exists, else to `--log-file` (default /var/log/hacron/<cluster>.log). Before it joins the election, it ends the runs a previous agent of this node left running and completes their records as `unknown`.",
		"With `--crontab` the active agent fires that crontab's jobs itself (see THE AGENT'S CRONTAB below); SIGHUP and any change to its files reload it.",
	},
	"state": {
		"For unknown (agent unreachable, no ZooKeeper session) nothing is printed on stdout and the reason goes to stderr: unknown never counts as active. In direct mode the answer comes from ZooKeeper: active while this node holds some job's lock.",
	},
	"resign": {
		"Waits until the agent has ended its running jobs (they exit 123) and deleted its election node, then exits 0. `--drain D` first stops admitting and lets running jobs end by themselves for up to D. `--hold 0` rejoins at once. A resign during a hold replaces the hold and says so. On a passive node it takes the node out of the queue for the hold. Only root and the agent's own user may ask.",
	},
	"rejoin": {
		"Ends the hold of an earlier `hacron resign`: the agent joins the election again, behind the other candidates. Without a hold to end it exits 125 saying so. Only root and the agent's own user may ask.",
	},
	"status": {
		"Read from ZooKeeper, so it works from any host: the cluster's mode, the agents in the election (the lowest is shown as active; whether its lease is still valid only `hacron state` on that node can tell), the fencing token, and every job's newest run records with their commands. `--job` shows one job, `--last N` at most N runs per job. A cluster that does not exist exits 1.",
		"Missed slots: a job whose schedule hacron knows (run with `--schedule`, or from the agent's crontab) has it recorded in ZooKeeper by the node that runs it. A slot of that schedule in the last 24 hours, since the schedule was recorded, went unrun when it has no run record, or one with result `missed`; a slot counts once a minute has passed, or the next slot has come if that is sooner. Records pruned by `--history` cannot be told from missed slots, so slots older than a job's oldest record are not judged. The table of scheduled jobs shows how many slots each missed and the newest; `--json` gives each such job `schedule`, `since` and `missed` (slot keys, newest first).",
	},
	"logs": {
		"Prints, from any host, what the run record keeps of a run's output (`output_tail`: the last 4096 bytes, with control characters other than newline and tab, and bytes that are not UTF-8, as U+FFFD): of the job's newest run that has any, or of the run of `--slot`. Nothing else is printed. The agent records it for the runs it starts from its crontab; `hacron run` leaves its job's output to cron. A missing job, slot or output exits 1 with one line saying which.",
	},
	"check": {
		"Validates the config file, connects, and prints the granted session timeout, the lease and kill-grace arithmetic, the cluster's mode and members, whether ZooKeeper auth and TLS are in use, and what the local agent says. Warnings (such as no ZooKeeper auth) do not fail it.",
		"`--missed` checks only the cluster's jobs with a schedule: one line for each job with a slot of the last 24 hours that went unrun (or whose recorded schedule cannot be read), and exit 1; nothing and exit 0 when every slot ran. See `hacron status` for what counts as missed.",
	},
}

func hacronPage(t *testing.T, app *kong.Application) []byte {
	keys := configKeysOf()
	note := configNote(keys)
	p := manpage.New("hacron", "1", "User Commands")
	p.Section("name")
	p.Raw(`hacron \- highly available cron jobs with ZooKeeper`)
	p.Section("synopsis")
	for i, c := range manpage.Commands(app.Node) {
		if i > 0 {
			p.Raw(".br")
		}
		p.Raw(manpage.Synopsis(c))
	}
	p.Raw(".br\n" + `\fBrcron\fR [\fB\-\-conf\fR \fIFILE\fR] \fICOMMAND\fR [\fIARG\fR ...]`)

	p.Section("description")
	p.Para(app.Help)
	p.Para("Every server carries the same crontab, and each line runs its job through `hacron run -- COMMAND`. The job runs only on the active node, the one that holds the cluster's lock in ZooKeeper; the others skip it silently. Two nodes never run jobs as active at the same time: every job start is one linearizable ZooKeeper write that only the lock holder can pass, and every job runs under a lease that ends, with the job's whole process group, before any other node can become active. When the active node dies, hangs or is cut off, a standby takes over within the session timeout plus one second.")
	p.Para("In agent mode (the default) `hacron agent` runs on every node and holds the election; `hacron run` asks the local agent over a unix socket. In direct mode (`--direct`, config `mode = direct`) there is no daemon: each run opens its own ZooKeeper session and takes a lock of the job's own. A cluster uses one mode, recorded in ZooKeeper; the other mode is refused.")
	p.Para("hacron's own errors are one line `hacron: error: ...` on stderr, sometimes followed by `hacron: hint: ...` lines. Without a ZooKeeper quorum no node is active: hacron fails closed.")

	p.Section("global flags")
	p.Para("Every command takes these. Each is also an environment variable and, where named, a key of hacron.conf(5); a flag wins over the environment, the environment over the config file, the config file over the default. An empty `HACRON_*` variable counts as unset.")
	p.Flags(app.Flags, note)

	p.Section("commands")
	for _, c := range manpage.Commands(app.Node) {
		p.Subsection("hacron " + c.Name)
		p.Raw(".PP\n" + manpage.Synopsis(c))
		p.Para(c.Help)
		if c.Detail != "" {
			p.Para(c.Detail)
		}
		notes, ok := commandNotes[c.Name]
		if !ok {
			t.Errorf("command %s has no notes for the man page: add them to commandNotes", c.Name)
		}
		for _, n := range notes {
			p.Para(n)
		}
		p.Flags(c.Flags, note)
		for _, a := range c.Positional {
			p.Item("`"+strings.ToUpper(a.Name)+"`", a.Help)
		}
	}
	for name := range commandNotes {
		if !slices.ContainsFunc(manpage.Commands(app.Node), func(c *kong.Node) bool { return c.Name == name }) {
			t.Errorf("commandNotes has %s, which is no command", name)
		}
	}

	p.Section("exit status")
	p.Subsection("hacron run")
	p.Item("the job's", "The job ran and exited by itself.")
	p.Item("128+N", "The job died of signal N that hacron did not send.")
	p.Item("0, or `--skip-exit`", "Skipped: not active, the slot already taken, or still running elsewhere with `--no-overlap`.")
	p.Item(fmt.Sprint(exitLost), "The job was terminated because this node lost leadership during the run.")
	p.Item(fmt.Sprint(exitTimeout), "The job was terminated by `--timeout`.")
	p.Item(fmt.Sprint(exitUsage), "hacron itself failed: a usage or config error, the agent unreachable, ZooKeeper unreachable in direct mode, the admission's outcome unknown, a `--kill-grace` the lease cannot honour.")
	p.Item(fmt.Sprint(exitNotExec), "COMMAND was found but is not executable.")
	p.Item(fmt.Sprint(exitNotFound), "COMMAND was not found.")
	p.Subsection("hacron state")
	p.Item(fmt.Sprint(stateActiveExit), "Active.")
	p.Item(fmt.Sprint(statePassiveExit), "Passive.")
	p.Item(fmt.Sprint(stateUnknownExit), "Unknown: the agent unreachable, no ZooKeeper session.")
	p.Subsection("hacron check")
	p.Item("0", "The setup is sound (warnings may have been printed); with `--missed`, no job missed a slot.")
	p.Item(fmt.Sprint(exitCheckFailed), "Something is wrong: the list says what; with `--missed`, a job missed a slot.")
	p.Subsection("hacron status, hacron logs")
	p.Item(fmt.Sprint(exitNoSuch), "The cluster, the job, the slot's run or (logs) its output does not exist.")
	p.Subsection("other commands")
	p.Item("0", "Done; for `hacron agent`, a clean stop, or another agent already running.")
	p.Item(fmt.Sprint(exitUsage), "Failed: a usage or config error, the agent or ZooKeeper unreachable.")

	p.Section("environment")
	for _, f := range app.Flags {
		for _, e := range f.Envs {
			p.Item("`"+e+"`", "Sets `--"+f.Name+"`.")
		}
	}
	p.Para("The job gets these, beside its inherited environment:")
	p.Item("`HACRON_CLUSTER`, `HACRON_NODE`", "The cluster and this node.")
	p.Item("`HACRON_JOB`", "The job's name in ZooKeeper.")
	p.Item("`HACRON_SLOT`", "The run's slot.")
	p.Item("`HACRON_FENCING_TOKEN`", "The czxid of the lock holder's election node, in decimal: it only grows, cluster-wide. Give it to any storage that can fence writes with it.")

	p.Section("files")
	p.Item("`"+defaultConfigPath+"`", "The config file, see hacron.conf(5). A missing default file is fine; a missing file named by `--config` is an error.")
	p.Item("`/run/hacron/CLUSTER.sock`", "The agent's socket.")
	p.Item("`/run/hacron/CLUSTER.pid`", "The agent's pid file, locked while it runs.")
	p.Item("`"+rcronDefaultConfig+"`", "Read when hacron is invoked as `rcron`.")
	p.Item("`hacron-agent.service`", "The systemd unit that runs the agent.")

	p.Section("rcron")
	p.Para("Invoked as `rcron` (a symlink to hacron, package hacron-rcron), hacron takes rcron's call form `rcron [--conf FILE] COMMAND [ARG ...]`: it reads `" + rcronDefaultConfig + "` (or FILE, or `HACRON_CONFIG`), joins the arguments with spaces and runs them with `/bin/sh -c` at rcron's `nice_level` (19 unless the file sets it), under `hacron run`'s rules: the job's own exit status, and fail closed. rcron's own usage error exits 1.")

	p.Section("the agent's crontab")
	p.Para("`hacron agent --crontab PATH` (config key `crontab`) fires a crontab on the active node, with no system cron: PATH is a file, or a directory read like /etc/cron.d (names of `A-Z a-z 0-9 _ -` only), in crontab(5)'s format without the user field. Files writable by group or others, or owned by anyone but root and the agent's user, are refused. Every agent reads the same crontab and computes the same slots; only the active agent fires, each firing one admission that claims its slot (the time, in UTC, to the second), so a slot runs at most once in the cluster.")
	p.Para("Lines: blank and `#` comments; `NAME=value` environment lines (quotes allowed) for the job lines below them in the file, `MAILTO` and `CRON_TZ=Zone` among them; jobs: five fields (minute hour day-of-month month day-of-week) or `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`, `@every D` (D whole seconds, slots at the multiples of D since the Unix epoch), optionally preceded by `CRON_TZ=Zone`, then the command, run by `/bin/sh -c`, cron's `%` rule included. `@reboot` is refused.")
	p.Para("Options go on a comment line right above the job, which a plain cron ignores: `# hacron: name=NAME timeout=D no-overlap kill-grace=D nice=N catch-up=D jitter=D on-failure=CMD` (values may be quoted). Without `name=`, the job is named after its command's first word and a hash of the line's schedule and command.")
	p.Item("`catch-up=D`", "When a node becomes active, the newest slot within D (and after the job was first seen) that nobody ran runs once; older ones get a record with result `missed`.")
	p.Item("`jitter=D`", "Each slot's run is delayed by a hash of job and slot modulo D: the same on every node, so a failover keeps slot and delay.")
	p.Item("`on-failure=CMD`", "Run when a run ends failed, killed (by a signal hacron did not send), lost or timed out, on the node that ran it, with the run's variables, `HACRON_RESULT` and `HACRON_EXIT_CODE`.")
	p.Para("A job's output goes to the agent's log, a line per entry with the job's name; its last 4 KiB into the run record, for `hacron logs`; with `MAILTO` and /usr/sbin/sendmail, to mail. A bad line is logged as `file:line: what` and left out; every other line keeps firing; `hacron check --crontab PATH` reports the same. Daylight saving: a schedule whose hour field is `*` follows real time; any other runs a time the clock skips at the jump, and a time the clock shows twice once. Schedules without `CRON_TZ` use the agent's zone: give every node the same one.")

	p.Section("examples")
	p.Para("The same crontab on every node:")
	p.Example(
		"15 2 * * *  hacron run -- /usr/local/bin/backup --full",
		"*/5 * * * * hacron run --schedule '*/5 * * * *' --wait 50s -- /usr/local/bin/sync",
		"0 * * * *   hacron run --no-overlap --timeout 50m -- /usr/local/bin/reindex",
	)
	p.Para("The agent's own crontab, /etc/hacron/cron.d/billing:")
	p.Example(
		"CRON_TZ=Europe/London",
		"MAILTO=ops@example.com",
		"# hacron: name=invoices catch-up=6h jitter=5m on-failure='page-oncall invoices'",
		"30 1 * * *  /usr/local/bin/invoices",
	)
	p.Para("Scripts and people:")
	p.Example(
		"hacron state && echo this node runs the jobs",
		"hacron resign --hold 5m",
		"hacron status --json",
		"hacron check --missed || echo a job missed a slot",
		"hacron logs backup",
	)

	p.Section("see also")
	p.Raw(`\fBhacron.conf\fR(5), \fBcrontab\fR(5), \fBcron\fR(8), \fBsystemctl\fR(1)`)
	p.Para("The documents in /usr/share/doc/hacron: the contract, the ZooKeeper rules, the failure table and operations.")
	return p.Bytes()
}

// rcronKeys are the keys rcron.conf has too.
var rcronKeys = map[string]bool{
	"cluster_name": true, "syslog_facility": true, "syslog_level": true,
	"state_file": true, "nice_level": true, "default_state": true,
}

func confPage(t *testing.T, app *kong.Application) []byte {
	p := manpage.New("hacron.conf", "5", "File Formats")
	p.Section("name")
	p.Raw(`hacron.conf \- configuration file of hacron`)
	p.Section("synopsis")
	p.Raw(defaultConfigPath)
	p.Section("description")
	p.Para("hacron(1) reads its settings from this file, from `HACRON_*` environment variables and from flags; a flag wins over the environment, the environment over this file, this file over the default. `--config FILE` or `HACRON_CONFIG` names another file; a missing default file is fine, a missing named file is an error.")
	p.Para("The file has rcron.conf's shape, so an rcron.conf is accepted as it is: one `key = value` per line (key and value separated by any run of spaces, tabs and `=`), lines starting with `#` or `;` are comments, and a value may be quoted with single or double quotes. An unknown key, or a value that does not parse, is an error naming the file and the line.")
	p.Section("keys")
	names := make([]string, 0, len(configKeys))
	for k := range configKeys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		flagName := configKeys[k]
		var term, text string
		switch k {
		case "mode":
			term, text = "`mode` = agent|direct", "`agent` (the default): `hacron run` asks the local agent. `direct`: no agent, each run takes a lock of the job's own; the same as `--direct`."
		case "default_state":
			term, text = "`default_state` = passive", "rcron's fallback state. Only `passive` is accepted, and it changes nothing: hacron is active only while it holds the ZooKeeper lock. `active` is refused, because a node that cannot reach ZooKeeper must not run jobs."
		default:
			f, at := manpage.FindFlag(app.Node, flagName)
			if f == nil {
				t.Errorf("config key %s sets --%s, which is no flag: describe it in confPage", k, flagName)
				continue
			}
			term = "`" + k + "`"
			if !f.IsBool() {
				term += " = " + f.FormatPlaceHolder()
			} else {
				term += " = true|false"
			}
			text = strings.TrimSuffix(strings.TrimSpace(f.Help), ".") + "."
			where := "`--" + f.Name + "`"
			if at.Type == kong.CommandNode {
				where += " of `hacron " + at.Name + "`"
			}
			text += " The same as " + where + "."
			if f.HasDefault && f.Default != "" {
				text += " Default: `" + f.Default + "`."
			}
		}
		if rcronKeys[k] {
			text += " An rcron.conf key, with rcron's meaning."
		}
		p.Item(term, text)
	}
	p.Section("example")
	p.Example(
		"# /etc/hacron/hacron.conf",
		"zk = zk1:2181,zk2:2181,zk3:2181/ops",
		"cluster = billing",
		"session_timeout = 10s",
		"syslog = true",
		"syslog_facility = LOG_CRON",
	)
	p.Section("files")
	p.Item("`"+defaultConfigPath+"`", "The default config file.")
	p.Item("`"+rcronDefaultConfig+"`", "The config file when hacron is invoked as `rcron`.")
	p.Section("see also")
	p.Raw(`\fBhacron\fR(1)`)
	return p.Bytes()
}

func TestCompletion(t *testing.T) {
	app := model(t)
	golden(t, "dist/completion/hacron.bash", completion.Bash(app))
	golden(t, "dist/completion/_hacron", completion.Zsh(app))
	golden(t, "dist/completion/hacron.fish", completion.Fish(app))
}

// TestGeneratorsNotLinked: the man page and completion generators, and the
// packaging and lint tools, stay out of the hacron binary.
func TestGeneratorsNotLinked(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"hacron/internal/manpage", "hacron/internal/completion", "github.com/goreleaser/", "github.com/golangci/"} {
			if strings.HasPrefix(pkg, banned) {
				t.Errorf("hacron links %s", pkg)
			}
		}
	}
}
