package metrics

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oomhero/oomhero/internal/heartbeat"
	"github.com/oomhero/oomhero/internal/safename"
)

// Liveness: /healthz fails while a watched component has made no progress
// for longer than its limit, so a liveness probe restarts a stuck sidecar
// (a discovery scan blocked in a read of a hostile FIFO, a source that no
// longer turns).

type liveness struct {
	mu    sync.Mutex
	comps []component
}

type component struct {
	name  string
	p     heartbeat.Progress
	limit time.Duration
}

// LivenessLimit is the bound cmd/oomhero gives every watched component:
// three periods of the slowest loop that must turn (rescan, poll interval,
// BPF heartbeat), and at least 10 s, so a loaded node does not restart a
// healthy sidecar.
func LivenessLimit(periods ...time.Duration) time.Duration {
	limit := 10 * time.Second
	for _, p := range periods {
		limit = max(limit, 3*p)
	}
	return limit
}

// Watch adds a component to the liveness check: /healthz answers 503 once
// p.SinceProgress() exceeds limit, naming the component, and
// oomhero_progress_age_seconds{component=name} exports the age. Watching a
// name again replaces it.
func (m *Metrics) Watch(name string, p heartbeat.Progress, limit time.Duration) {
	name = safename.Clean(name)
	m.live.mu.Lock()
	defer m.live.mu.Unlock()
	c := component{name: name, p: p, limit: limit}
	for i := range m.live.comps {
		if m.live.comps[i].name == name {
			m.live.comps[i] = c
			return
		}
	}
	m.live.comps = append(m.live.comps, c)
}

// Stalled returns why oomhero is not alive ("" when it is): each component
// past its limit, with how long it made no progress.
func (m *Metrics) Stalled() string {
	m.live.mu.Lock()
	defer m.live.mu.Unlock()
	var why []string
	for _, c := range m.live.comps {
		if age := c.p.SinceProgress(); age > c.limit {
			why = append(why, fmt.Sprintf("%s made no progress for %s (limit %s)",
				c.name, age.Round(time.Millisecond), c.limit))
		}
	}
	return strings.Join(why, "; ")
}

// ages feeds oomhero_progress_age_seconds.
func (m *Metrics) ages(ch chan<- prometheus.Metric) {
	m.live.mu.Lock()
	defer m.live.mu.Unlock()
	for _, c := range m.live.comps {
		ch <- prometheus.MustNewConstMetric(m.ageDesc, prometheus.GaugeValue, c.p.SinceProgress().Seconds(), c.name)
	}
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
