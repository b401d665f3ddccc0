package crontab

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The parser takes any bytes: it never panics, every error names the file
// and a line of it in one line of text, and every job it loads has a valid
// name and a schedule that moves forward.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"", "\n\n", "# comment\n", "@hourly cmd\n", "*/5 * * * * /usr/bin/x --y\n",
		"CRON_TZ=Europe/London\n30 1 * * * backup\n",
		"CRON_TZ=America/New_York 0 9 * * 1-5 report %a%b\\%c\n",
		"MAILTO=\"\"\nFOO = 'bar baz'\n@every 90s echo\n",
		"# hacron: name=x timeout=1m no-overlap kill-grace=2s nice=5 catch-up=1h jitter=30s on-failure=\"a b\"\n@daily cmd\n",
		"# hacron: bogus\n0 * * * * cmd\n", "# hacron: name=a\n", "61 * * * * x\n", "@reboot x\n", "@every 1ms x\n",
		"0 0 30 2 * x\n", "0 30 1 * * * x\n", "TZ=UTC 0 * * * * x\n", "CRON_TZ= 0 * * * * x\n", "FOO=\"x\n",
		"0 * * * * %\n", "0-59/0 * * * * x\n", "*/ * * * * x\n", "1-2-3 * * * * x\n", "0 0 ? * ? x\r\n",
		"# hacron: on-failure='\n@hourly x", "\x00", "0 * * * * a\x00", "jan * * * * x\n", "0 0 * jan-dec sun-sat x\n",
		"# hacron: name=a\n0 * * * * a\n# hacron: name=a\n0 * * * * b\n", "@\r0 x\n",
	} {
		f.Add([]byte(seed))
	}
	start := time.Date(2024, 10, 27, 0, 59, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		tab := &Tab{}
		errs := tab.parse("f", data)
		lines := strings.Count(string(data), "\n") + 1
		for _, err := range errs {
			var le *LineError
			if !errors.As(err, &le) || le.File != "f" || le.Line < 1 || le.Line > lines {
				t.Fatalf("error without a line of f: %#v", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, fmt.Sprintf("f:%d: ", le.Line)) || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error text %q", msg)
			}
		}
		for _, j := range tab.Jobs {
			if !validName(j.Name) || j.Line < 1 || j.Line > lines || j.Command == "" || strings.Contains(j.Command, "\x00") {
				t.Fatalf("job %+v", j)
			}
			if n := j.Schedule.Next(start); !n.After(start) {
				t.Fatalf("%q: Next(%s) = %s", j.Spec, start, n)
			}
			if p := j.Schedule.Prev(start); p.IsZero() || p.After(start) {
				t.Fatalf("%q: Prev(%s) = %s", j.Spec, start, p)
			}
		}
	})
}
