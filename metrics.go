package main

// Prometheus metrics of the agent (--metrics-listen).

import (
	"net"
	"net/http"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reg         *prometheus.Registry
	active      prometheus.Gauge
	transitions *prometheus.CounterVec
	runs        *prometheus.CounterVec
	runDuration *prometheus.HistogramVec
	admission   prometheus.Histogram
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

func newMetrics(a *agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hacron_active", Help: "1 while this node is active (lowest election node and a valid lease).",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hacron_state_transitions_total", Help: "Election state changes, by new state and reason.",
		}, []string{"to", "reason"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hacron_runs_total", Help: "Runs admitted by this agent that ended, by job and result.",
		}, []string{"job", "result"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hacron_run_duration_seconds", Help: "Duration of runs admitted by this agent.",
			Buckets: prometheus.ExponentialBuckets(0.1, 4, 10),
		}, []string{"job"}),
		admission: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hacron_admission_seconds", Help: "Time of the admission write (one ZooKeeper Multi).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	zkState := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hacron_zk_session_state", Help: "3 session, 2 connected without a session, 1 connecting, 0 disconnected, -1 expired.",
	}, func() float64 { return zkStateValue(a.zc.snapshot()) })
	lease := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hacron_lease_remaining_seconds", Help: "Time left on this node's lease; 0 when it holds none.",
	}, func() float64 {
		st := a.el.Status()
		if !st.active(time.Now()) {
			return 0
		}
		return time.Until(st.Deadline).Seconds()
	})
	m.reg.MustRegister(m.active, m.transitions, m.runs, m.runDuration, m.admission, zkState, lease)
	return m
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
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	// Serve returns when the agent closes ln; an accept error before that
	// stops the metrics, which the next scrape shows as a target down.
	go func() { _ = srv.Serve(ln) }()
	return ln, nil
}
