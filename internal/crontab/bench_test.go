package crontab

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A crontab of 1,000 jobs, the size the agent is measured with.
func BenchmarkParse1000(b *testing.B) {
	var text strings.Builder
	text.WriteString("MAILTO=ops@example.com\nCRON_TZ=Europe/London\n")
	for i := range 1000 {
		fmt.Fprintf(&text, "# hacron: timeout=1h jitter=30s\n%d %d * * * /usr/local/bin/job-%d --flag %%input\n", i%60, i%24, i)
	}
	data := []byte(text.String())
	b.ReportAllocs()
	for b.Loop() {
		tab := &Tab{}
		if errs := tab.parse("x", data); errs != nil || len(tab.Jobs) != 1000 {
			b.Fatal(errs)
		}
	}
}

func BenchmarkNextPrev(b *testing.B) {
	lon := mustZone(b, "Europe/London")
	for _, spec := range []string{"30 1 * * *", "*/15 * * * *", "0 0 29 2 *", "@every 90s"} {
		s, err := ParseSchedule(spec, lon)
		if err != nil {
			b.Fatal(err)
		}
		t := time.Date(2024, 10, 27, 1, 30, 0, 0, time.UTC)
		b.Run(spec+"/Next", func(b *testing.B) {
			for b.Loop() {
				s.Next(t)
			}
		})
		b.Run(spec+"/Prev", func(b *testing.B) {
			for b.Loop() {
				s.Prev(t)
			}
		})
	}
}
