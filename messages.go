package main

// Every message hacron prints for a person goes through this file.
//
// Rules: an error is exactly one line "hacron: error: <what went wrong>",
// lowercase, no trailing period, optionally followed by "hacron: hint: <what
// to do>" lines. Nothing else is printed for an error. A skipped run prints
// nothing at all: cron mails any output.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/go-zookeeper/zk"
)

// hintError attaches advice for the operator to an error.
type hintError struct {
	err   error
	hints []string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// withHint adds "hacron: hint:" lines to err.
func withHint(err error, hints ...string) error {
	return &hintError{err: err, hints: hints}
}

// exitError carries the exit code hacron must end with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

// withExit makes err end the program with code.
func withExit(code int, err error) error {
	return &exitError{code: code, err: err}
}

// exitCodeOf returns the code an error asks for, or def.
func exitCodeOf(err error, def int) int {
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return def
}

// printError writes err as hacron's one error line plus its hints.
func printError(w io.Writer, err error) {
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ")
	msg = strings.TrimSuffix(msg, ".")
	fmt.Fprintf(w, "hacron: error: %s\n", msg)
	for _, hint := range hintsOf(err) {
		fmt.Fprintf(w, "hacron: hint: %s\n", hint)
	}
}

// hintsOf collects the hints anywhere in err's tree, outermost first. It
// walks the tree itself (errors.As would stop at the first hint), hence the
// type assertions on each node.
func hintsOf(err error) []string {
	var out []string
	switch h := err.(type) { //nolint:errorlint // one node of the walk
	case *hintError:
		out = append(out, h.hints...)
	case interface{ Hints() []string }:
		out = append(out, h.Hints()...)
	}
	switch u := err.(type) { //nolint:errorlint // one node of the walk
	case interface{ Unwrap() error }:
		if inner := u.Unwrap(); inner != nil {
			out = append(out, hintsOf(inner)...)
		}
	case interface{ Unwrap() []error }:
		for _, inner := range u.Unwrap() {
			out = append(out, hintsOf(inner)...)
		}
	}
	return out
}

// socketDeniedHints explain a refused connection to the agent's socket
// (mode 0660): the group it is for, which socket_group sets, and the
// caller's own groups, so the fix is plain.
func socketDeniedHints(path string) []string {
	group := "unknown"
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			group = groupName(st.Gid)
		}
	}
	me := userName(os.Getuid())
	var mine []string
	gids, _ := os.Getgroups()
	for _, gid := range append([]int{os.Getgid()}, gids...) {
		if n := groupName(uint32(gid)); !slices.Contains(mine, n) {
			mine = append(mine, n)
		}
	}
	return []string{
		fmt.Sprintf("the socket is for group %s (socket_group in hacron.conf); %s is in: %s", group, me, strings.Join(mine, ", ")),
		fmt.Sprintf("add %s to group %s and log in again, or set socket_group to one of those groups and restart the agent", me, group),
	}
}

// groupName is a group's name, or its number when it has none.
func groupName(gid uint32) string {
	id := strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(id); err == nil {
		return g.Name
	}
	return id
}

// noAuth turns ZooKeeper's NoAuth ("zk: not authenticated", all go-zk says,
// although it means a refusal by a node's ACL) into a line that names the
// request and the node whose ACL refused it (for a create: the parent), with
// what to do. Other errors come back unchanged.
func noAuth(err error, request, node string) error {
	if !errors.Is(err, zk.ErrNoAuth) {
		return err
	}
	return withHint(fmt.Errorf("%s: %w: the ACL of %s refuses this client", request, err, node),
		"a missing or wrong --zk-auth-file, or the node belongs to other credentials: 'hacron check' shows the ACLs of the cluster's node and of the nodes above it")
}
