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
	"strings"
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
	if h, ok := err.(*hintError); ok { //nolint:errorlint // one node of the walk
		out = append(out, h.hints...)
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
