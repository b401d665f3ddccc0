package main

import (
	"strings"
	"testing"
	"time"
)

// The exposition as Prometheus' text format 0.0.4 wants it: families by
// name with # HELP and # TYPE, unused vectors left out, labels sorted by
// name with le last, series sorted by label values, cumulative buckets
// ending in +Inf, escaped label values and help.
func TestMetricsExposition(t *testing.T) {
	m := &metrics{}
	g := &value{}
	c := newVec(func() *value { return &value{} }, "to", "reason")
	unused := newVec(func() *value { return &value{} }, "job")
	h := newVec(func() *histogram { return newHistogram(exponentialBuckets(1, 2, 3)) }, "job")
	m.families = []family{
		{"b_total", "counter", "Counts, by to\nand reason \\.", counters(c)},
		{"a", "gauge", "A gauge.", func() []sample { return []sample{{value: g.get()}} }},
		{"c_unused_total", "counter", "Never used.", counters(unused)},
		{"d_seconds", "histogram", "Durations.", histograms(h)},
	}
	g.Set(-1.5)
	c.WithLabelValues("passive", "x").Inc()
	c.WithLabelValues("active", `q"b\n`+"\n").Inc()
	c.WithLabelValues("passive", "x").Inc()
	for _, v := range []float64{0.5, 1, 3, 100} {
		h.WithLabelValues("j").Observe(v)
	}
	// The order of families comes from newMetrics' sort; here they are
	// written in the order given.
	got := string(m.exposition())
	want := `# HELP b_total Counts, by to\nand reason \\.
# TYPE b_total counter
b_total{reason="q\"b\\n\n",to="active"} 1
b_total{reason="x",to="passive"} 2
# HELP a A gauge.
# TYPE a gauge
a -1.5
# HELP d_seconds Durations.
# TYPE d_seconds histogram
d_seconds_bucket{job="j",le="1"} 2
d_seconds_bucket{job="j",le="2"} 2
d_seconds_bucket{job="j",le="4"} 3
d_seconds_bucket{job="j",le="+Inf"} 4
d_seconds_sum{job="j"} 104.5
d_seconds_count{job="j"} 4
`
	if got != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", got, want)
	}
}

// The agent's own families come out sorted by name, as before the move
// away from Prometheus' client library.
func TestMetricsFamiliesSorted(t *testing.T) {
	m := newMetrics(func() standing { return standing{} }, func() session { return session{} }, func() time.Time { return time.Time{} })
	var names []string
	for _, f := range m.families {
		names = append(names, f.name)
	}
	want := "hacron_active hacron_admission_seconds hacron_firing_delay_seconds hacron_job_missed_slots hacron_lease_remaining_seconds hacron_run_duration_seconds hacron_runs_total hacron_state_transitions_total hacron_zk_no_session_seconds hacron_zk_session_state"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("families %s, want %s", got, want)
	}
}
