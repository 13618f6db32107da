package metrics

import "github.com/prometheus/client_golang/prometheus"

const dropHelp = "Kubernetes Events dropped, by reason: queue_full (the API server is slow or unreachable), api_error (it refused the event or did not answer in time)."

// EventCounter is what the Kubernetes Event recorder (events.Recorder)
// counts.
type EventCounter interface {
	// Posted is how many events the API server accepted.
	Posted() uint64
	// Dropped is how many events were dropped because the queue was full
	// (the API server is slow or unreachable).
	Dropped() uint64
	// Failed is how many events the API server refused or did not answer
	// in time.
	Failed() uint64
}

// CountEvents exports the recorder's counters as oomhero_events_posted_total
// and oomhero_events_dropped_total{reason="queue_full"|"api_error"}. Call it
// once, when Kubernetes Events are on.
func (m *Metrics) CountEvents(ec EventCounter) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: m.ns, Name: "events_posted_total",
			Help: "Kubernetes Events the API server accepted.",
		}, func() float64 { return float64(ec.Posted()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: m.ns, Name: "events_dropped_total",
			Help:        dropHelp,
			ConstLabels: prometheus.Labels{"reason": "queue_full"},
		}, func() float64 { return float64(ec.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: m.ns, Name: "events_dropped_total",
			Help:        dropHelp,
			ConstLabels: prometheus.Labels{"reason": "api_error"},
		}, func() float64 { return float64(ec.Failed()) }),
	)
}
