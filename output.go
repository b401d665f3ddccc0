package main

// A run's output as its record keeps it (output_tail): the end of it, as
// text that is safe to store and to print.

import (
	"strings"
	"unicode/utf8"
)

// maxOutputTail is how much of a run's output its record keeps, in bytes.
const maxOutputTail = 4096

// outputTail is what a run record keeps of a job's output b: its last
// maxOutputTail bytes, starting at a character, as cleanOutput makes them,
// and at most maxOutputTail bytes long.
func outputTail(b []byte) string {
	if len(b) > maxOutputTail {
		b = b[len(b)-maxOutputTail:]
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	s := cleanOutput(string(b))
	if cut := len(s) - maxOutputTail; cut > 0 {
		// Cleaning made it longer (a byte that is not UTF-8 becomes a
		// three-byte U+FFFD): drop whole characters from the front.
		for !utf8.RuneStart(s[cut]) {
			cut++
		}
		s = s[cut:]
	}
	return s
}

// cleanOutput makes output text that is safe to store and to print on a
// terminal: bytes that are not UTF-8, and control characters other than
// newline and tab (escape sequences, carriage returns, C1 controls), become
// U+FFFD. Text it made comes out unchanged.
func cleanOutput(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			return utf8.RuneError
		}
		return r // strings.Map already gives U+FFFD for bytes that are not UTF-8
	}, s)
}
