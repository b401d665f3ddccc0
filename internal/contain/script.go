package contain

import (
	"fmt"
	"strings"
)

// KillScript is a POSIX shell script that ends the run from another
// process: in direct mode no agent is left to end a run whose wrapper was
// killed, so the wrapper's watchdog runs this when the wrapper disappears
// without saying so. With a cgroup it ends the cgroup (which holds the
// whole group too), waits until it is empty and removes it, giving up
// after about ten seconds; without one it sends SIGKILL to the process
// group.
func (r *Run) KillScript() string {
	if r.cg == nil {
		if r.group == nil {
			return ":"
		}
		return fmt.Sprintf("kill -9 -%d 2>/dev/null", r.group.pgid)
	}
	var b strings.Builder
	// Lists below are one path or pid a line; a path may hold spaces.
	b.WriteString("IFS='\n'\n")
	fmt.Fprintf(&b, "cg=%s\n", shellQuote(r.cg.path))
	// The cgroup's directories, children first, for the removal; and the
	// processes of the cgroup and of its descendants.
	b.WriteString(`subs() { for d in "$1"/*/; do [ -d "$d" ] && subs "${d%/}"; done; echo "$1"; }
procs() { for d in $(subs "$1"); do cat "$d/cgroup.procs"; done; }
`)
	if r.cg.kind == Cgroup2 {
		b.WriteString("echo 1 >\"$cg/cgroup.kill\"\n")
	} else {
		// Frozen, nothing forks or exits while its pids are read and
		// killed; SIGKILL takes effect at the thaw.
		b.WriteString(`n=0
while [ -n "$(procs "$cg" 2>/dev/null)" ] && [ $n -lt 10 ]; do
	echo FROZEN >"$cg/freezer.state"
	i=0
	while [ "$(cat "$cg/freezer.state")" != FROZEN ] && [ $i -lt 100 ]; do sleep 0.01; i=$((i+1)); done
	kill -9 $(procs "$cg") 2>/dev/null
	echo THAWED >"$cg/freezer.state"
	n=$((n+1))
done
`)
	}
	b.WriteString(`i=0
while [ -d "$cg" ] && [ $i -lt 1000 ]; do
	for d in $(subs "$cg"); do rmdir "$d" 2>/dev/null; done
	[ -d "$cg" ] && sleep 0.01
	i=$((i+1))
done
`)
	return b.String()
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
