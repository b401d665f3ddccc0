package wire

import (
	"bufio"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestReadAndDecode(t *testing.T) {
	for _, c := range []struct {
		in   string
		fail string
	}{
		{`{"v":1,"op":"state"}` + "\n", ""},
		{`{"v":1,"op":"run","job":"j","slot":"s","schedule":"*/5 * * * *"}` + "\n", ""},
		{`{"v":2,"op":"state"}` + "\n", "protocol version 2"},
		{`{"v":1,"op":"state","extra":1}` + "\n", "unknown field"},
		{`{"v":1,"op":"state"} {"v":1}` + "\n", "trailing data"},
		{`{"v":1,"op":"st`, "unexpected EOF"},
		{"", "EOF"},
		{`{"v":1,"op":"` + strings.Repeat("x", MaxMessage) + `"}` + "\n", "too long"},
	} {
		var req Request
		err := Read(bufio.NewReaderSize(strings.NewReader(c.in), 4096), &req)
		switch {
		case c.fail == "" && err != nil:
			t.Errorf("%.40q: %v", c.in, err)
		case c.fail != "" && (err == nil || !strings.Contains(err.Error(), c.fail)):
			t.Errorf("%.40q: error %v, want %q", c.in, err, c.fail)
		}
	}
	var rep Reply
	if err := Decode([]byte(`{"v":1,"error":"x","hint":"a; b","hints":["c"]}`), &rep); err != nil || rep.Hint != "a; b" || len(rep.Hints) != 1 {
		t.Errorf("a reply with both hint forms: %+v, %v", rep, err)
	}
	if !errors.Is(Read(bufio.NewReaderSize(strings.NewReader(strings.Repeat("x", MaxMessage+1)), 16), &rep), ErrTooLong) {
		t.Errorf("an over-long line must be refused as too long")
	}
}

func TestMonotonicDeadlines(t *testing.T) {
	d := time.Now().Add(1500 * time.Millisecond)
	back := FromMono(MonoDeadline(d))
	if diff := back.Sub(d); diff < -5*time.Millisecond || diff > 5*time.Millisecond {
		t.Errorf("deadline through CLOCK_MONOTONIC moved by %v", diff)
	}
	if MonoNow() <= 0 {
		t.Errorf("CLOCK_MONOTONIC reads %d", MonoNow())
	}
}
