// Package contain keeps every process of a run in hacron's hands, so that
// a run is over only when all of its processes are gone.
//
// A job's processes are held three ways, strongest first:
//
//   - A cgroup of the run's own (Cgroup), where this process is root and a
//     cgroup hierarchy is writable. A process cannot leave it by setsid or a
//     double fork, and it is ended as a whole without a window for a fork to
//     escape: cgroup v2 writes cgroup.kill; a v1 freezer cgroup is frozen,
//     every task gets SIGKILL, and it is thawed.
//   - The job's process group (Group), always. A job that calls setsid or
//     setpgid leaves it.
//   - Process identity (Proc): a pidfd where the kernel has them (Linux
//     5.3+), else the pid checked against its start time, so that a pid or a
//     group number that was given to another process meanwhile is never
//     signalled.
//
// # Which hierarchy
//
// Detect prefers cgroup v2 and falls back to a v1 freezer hierarchy, then
// to the process group alone. Either hierarchy is used only after a trial
// that does what a run does (make a cgroup below this process's own, move
// a process in, kill it, remove the cgroup): a mounted hierarchy can still
// be read-only, lack cgroup.kill (Linux before 5.14), or refuse the move
// (a cgroup namespace, a delegation boundary).
//
// On a hybrid machine (v1 controllers, and the unified hierarchy mounted
// beside them, usually at /sys/fs/cgroup/unified) v2 is chosen when its
// trial passes: cgroup.kill is a core file of every non-root v2 cgroup, so
// it works even when no controller is attached to the unified hierarchy,
// and it ends a cgroup in one step, where the freezer needs a round of
// freeze, kill and thaw that a task in uninterruptible sleep can stall.
// When the unified hierarchy fails its trial, the freezer is used.
//
// # Layout
//
// A run's cgroup is <own cgroup>/hacron/<scope>/<run>, where own cgroup is
// the cgroup of the process that creates it (the agent, or the wrapper in
// direct mode). The scope directories stay (one per scope); every run's
// directory is removed when the run ends. An agent that starts finds the
// runs a previous agent of its node left behind under its scope, and in
// the run-state files it keeps for each run (RunState), and ends them
// before it joins the election (EndPrevious).
package contain
