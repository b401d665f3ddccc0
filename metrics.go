package main

// Prometheus metrics of the agent (--metrics-listen), written here in the
// text exposition format (version 0.0.4) that every Prometheus scrapes.
// Nine metrics need no client library: Prometheus' own pulls in protobuf,
// expvar and procfs, whose package initialisation every `hacron run` paid
// although only the agent serves metrics (docs/performance.md).

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

type metrics struct {
	active      *value
	transitions *vec[value]
	runs        *vec[value]
	runDuration *vec[histogram]
	admission   *histogram
	firingDelay *histogram
	missed      atomic.Pointer[[]sample] // hacron_job_missed_slots, set whole by setMissed
	families    []family                 // sorted by name
}

// zkStateValue gives hacron_zk_session_state its values: 3 session, 2
// connected without a session yet, 1 connecting, 0 disconnected, -1
// expired.
func zkStateValue(s session) float64 {
	switch {
	case s.Usable():
		return 3
	case s.State == zk.StateConnected || s.State == zk.StateHasSession:
		return 2
	case s.State == zk.StateConnecting:
		return 1
	case s.State == zk.StateExpired:
		return -1
	}
	return 0
}

// newMetrics makes the agent's metrics. They read the election's standing
// and the ZooKeeper session through the functions given, and nothing else
// of the agent.
func newMetrics(standingNow func() standing, sessionNow func() session, noSessionSince func() time.Time) *metrics {
	m := &metrics{
		active:      &value{},
		transitions: newVec(func() *value { return &value{} }, "to", "reason"),
		runs:        newVec(func() *value { return &value{} }, "job", "result"),
		runDuration: newVec(func() *histogram { return newHistogram(exponentialBuckets(0.1, 4, 10)) }, "job"),
		admission:   newHistogram(exponentialBuckets(0.0005, 2, 14)),
		firingDelay: newHistogram(exponentialBuckets(0.001, 2, 14)),
	}
	one := func(f func() float64) func() []sample {
		return func() []sample { return []sample{{value: f()}} }
	}
	m.families = []family{
		{"hacron_active", "gauge", "1 while this node is active (lowest election node and a valid lease).", one(m.active.get)},
		{"hacron_state_transitions_total", "counter", "Election state changes, by new state and reason.", counters(m.transitions)},
		{"hacron_runs_total", "counter", "Runs admitted by this agent that ended, by job and result.", counters(m.runs)},
		{"hacron_run_duration_seconds", "histogram", "Duration of runs admitted by this agent.", histograms(m.runDuration)},
		{"hacron_admission_seconds", "histogram", "Time of the admission write (one ZooKeeper Multi).", func() []sample { return m.admission.samples(nil) }},
		{"hacron_firing_delay_seconds", "histogram", "How late the agent's crontab started a job: from its firing time (slot and jitter) to the go-ahead to its first process.",
			func() []sample { return m.firingDelay.samples(nil) }},
		{"hacron_zk_session_state", "gauge", "3 session, 2 connected without a session, 1 connecting, 0 disconnected, -1 expired.",
			one(func() float64 { return zkStateValue(sessionNow()) })},
		{"hacron_zk_no_session_seconds", "gauge", "How long this agent has been without a usable ZooKeeper session (runs are skipped meanwhile); 0 with one.",
			one(func() float64 {
				if since := noSessionSince(); !since.IsZero() {
					return time.Since(since).Seconds()
				}
				return 0
			})},
		{"hacron_job_missed_slots", "gauge", "Slots of the job's schedule in the last 24 h that nobody ran; counted about once a minute by the active agent only.",
			func() []sample {
				if p := m.missed.Load(); p != nil {
					return *p
				}
				return nil
			}},
		{"hacron_lease_remaining_seconds", "gauge", "Time left on this node's lease; 0 when it holds none.", one(func() float64 {
			st := standingNow()
			if !st.active(time.Now()) {
				return 0
			}
			return time.Until(st.Deadline).Seconds()
		})},
	}
	slices.SortFunc(m.families, func(x, y family) int { return strings.Compare(x.name, y.name) })
	return m
}

// setMissed replaces every series of hacron_job_missed_slots with counts
// (job to missed slots); nil leaves none.
func (m *metrics) setMissed(counts map[string]int) {
	ss := make([]sample, 0, len(counts))
	for job, n := range counts {
		ss = append(ss, sample{labels: []string{"job", job}, value: float64(n)})
	}
	slices.SortFunc(ss, func(x, y sample) int { return strings.Compare(x.labels[1], y.labels[1]) })
	m.missed.Store(&ss)
}

// missedEvery is how often the active agent counts missed slots for its
// metric: each count reads every job's node and a scheduled job's records.
const missedEvery = time.Minute

// missedReaders is how many jobs the agent reads at once: go-zk pipelines
// concurrent requests on its one connection.
const missedReaders = 8

// watchMissed keeps hacron_job_missed_slots while el is active: counted
// when it becomes active and then about once a minute, for the jobs under
// root (chroot-relative). A passive agent exports none, so that the series
// of a cluster come from one node.
func (m *metrics) watchMissed(ctx context.Context, el *election, zc *zkClient, root string, log *slog.Logger) {
	feed := el.subscribe()
	defer el.unsubscribe(feed)
	tick := time.NewTicker(missedEvery / 4)
	defer tick.Stop()
	var last time.Time // of the last count while active; zero when passive
	kinds := &missedKinds{jobs: map[string]map[string]bool{}}
	for {
		now := time.Now()
		switch {
		case !el.Status().active(now):
			if !last.IsZero() {
				m.setMissed(nil)
				last = time.Time{}
			}
		case last.IsZero() || now.Sub(last) >= missedEvery:
			if s := zc.snapshot(); s.Usable() {
				counts, err := countMissed(ctx, s.Conn, zc.abs(root), now, kinds)
				if err != nil {
					log.Debug("counting missed slots", "err", err)
				} else {
					m.setMissed(counts)
				}
				last = now
			}
		}
		select {
		case <-feed.C():
			feed.next()
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// observe follows the election for the state metrics.
func (m *metrics) observe(feed *standingFeed, done <-chan struct{}) {
	last := roleState(-1)
	for {
		for _, st := range feed.next() {
			// The feed repeats a state on every renewal; count changes.
			if st.State != last {
				m.transitions.WithLabelValues(st.State.String(), st.Reason.code()).Inc()
				last = st.State
			}
			if st.active(time.Now()) {
				m.active.Set(1)
			} else {
				m.active.Set(0)
			}
		}
		select {
		case <-feed.C():
		case <-done:
			return
		}
	}
}

// serve answers /metrics on addr until the listener is closed.
func (m *metrics) serve(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(m.exposition()) // a scraper that hung up asks again
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	// Returns once the agent closes ln; metrics are never a reason for
	// the agent to stop.
	go func() { _ = srv.Serve(ln) }()
	return ln, nil
}

// family is one metric of the exposition; a family without samples (a
// vector nobody has used yet) is left out, as Prometheus' clients do.
type family struct {
	name, kind, help string
	samples          func() []sample
}

// sample is one line: the family's name plus suffix, label pairs (name,
// value, name, value, ...), the value.
type sample struct {
	suffix string
	labels []string
	value  float64
}

// exposition writes every family: # HELP, # TYPE, then its samples.
func (m *metrics) exposition() []byte {
	var b bytes.Buffer
	helpEscaper := strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper := strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	for _, f := range m.families {
		ss := f.samples()
		if len(ss) == 0 {
			continue
		}
		b.WriteString("# HELP " + f.name + " " + helpEscaper.Replace(f.help) + "\n")
		b.WriteString("# TYPE " + f.name + " " + f.kind + "\n")
		for _, s := range ss {
			b.WriteString(f.name + s.suffix)
			sep := "{"
			for i := 0; i < len(s.labels); i += 2 {
				b.WriteString(sep + s.labels[i] + `="` + labelEscaper.Replace(s.labels[i+1]) + `"`)
				sep = ","
			}
			if len(s.labels) > 0 {
				b.WriteByte('}')
			}
			b.WriteString(" " + formatFloat(s.value) + "\n")
		}
	}
	return b.Bytes()
}

// formatFloat writes a value as Prometheus' text format does.
func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// value is a gauge or a counter: a float64 updated atomically.
type value struct{ bits atomic.Uint64 }

func (v *value) Set(f float64) { v.bits.Store(math.Float64bits(f)) }
func (v *value) get() float64  { return math.Float64frombits(v.bits.Load()) }

func (v *value) Inc() {
	for {
		old := v.bits.Load()
		if v.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+1)) {
			return
		}
	}
}

// histogram counts observations in buckets by upper bound (le).
type histogram struct {
	mu     sync.Mutex
	upper  []float64
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	count  uint64
}

func newHistogram(upper []float64) *histogram {
	return &histogram{upper: upper, counts: make([]uint64, len(upper)+1)}
}

// exponentialBuckets are count upper bounds from start, each factor times
// the one before.
func exponentialBuckets(start, factor float64, count int) []float64 {
	b := make([]float64, count)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}

func (h *histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.upper, v) // the first bound >= v
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[i]++
	h.sum += v
	h.count++
}

// samples are the histogram's lines: cumulative buckets, sum, count.
func (h *histogram) samples(labels []string) []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []sample
	var cum uint64
	for i, c := range h.counts {
		cum += c
		le := math.Inf(1)
		if i < len(h.upper) {
			le = h.upper[i]
		}
		out = append(out, sample{"_bucket", append(slices.Clip(labels), "le", formatFloat(le)), float64(cum)})
	}
	return append(out, sample{"_sum", labels, h.sum}, sample{"_count", labels, float64(h.count)})
}

// vec is a metric with labels: one T per combination of label values.
// Labels are written sorted by name, series sorted by their values.
type vec[T any] struct {
	names  []string // in the order WithLabelValues takes the values
	order  []int    // indexes into names, sorted by name
	newT   func() *T
	mu     sync.Mutex
	series map[string]*labeled[T]
}

type labeled[T any] struct {
	pairs []string // name, value, ... sorted by name
	m     *T
}

func newVec[T any](newT func() *T, names ...string) *vec[T] {
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(i, j int) int { return strings.Compare(names[i], names[j]) })
	return &vec[T]{names: names, order: order, newT: newT, series: map[string]*labeled[T]{}}
}

func (v *vec[T]) WithLabelValues(values ...string) *T {
	key := strings.Join(values, "\xff")
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.series[key]
	if !ok {
		s = &labeled[T]{m: v.newT()}
		for _, i := range v.order {
			s.pairs = append(s.pairs, v.names[i], values[i])
		}
		v.series[key] = s
	}
	return s.m
}

// sorted returns the series in exposition order.
func (v *vec[T]) sorted() []*labeled[T] {
	v.mu.Lock()
	out := make([]*labeled[T], 0, len(v.series))
	for _, s := range v.series {
		out = append(out, s)
	}
	v.mu.Unlock()
	slices.SortFunc(out, func(x, y *labeled[T]) int { return slices.Compare(x.pairs, y.pairs) })
	return out
}

// counters are the samples of a vector of counters.
func counters(v *vec[value]) func() []sample {
	return func() []sample {
		var out []sample
		for _, s := range v.sorted() {
			out = append(out, sample{labels: s.pairs, value: s.m.get()})
		}
		return out
	}
}

// histograms are the samples of a vector of histograms.
func histograms(v *vec[histogram]) func() []sample {
	return func() []sample {
		var out []sample
		for _, s := range v.sorted() {
			out = append(out, s.m.samples(s.pairs)...)
		}
		return out
	}
}
