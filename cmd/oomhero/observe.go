package main

import (
	"fmt"

	"github.com/oomhero/oomhero/internal/agent"
	"github.com/oomhero/oomhero/internal/events"
	"github.com/oomhero/oomhero/internal/heartbeat"
	"github.com/oomhero/oomhero/internal/metrics"
	"github.com/oomhero/oomhero/internal/watch"
)

// metricsObserver feeds the Prometheus metrics from the agent.
type metricsObserver struct {
	agent.NopObserver
	m *metrics.Metrics
	// loop, when not nil, beats after every finished discovery scan: scans
	// run from the agent's main loop once a --rescan period, so the beats
	// stop when the loop is stuck anywhere (a scan blocked in a read of a
	// hostile FIFO, a delivery, a reading) or scans keep failing.
	loop *heartbeat.Heart
	// lost, when not nil, tells how many events the source lost so far.
	lost     func() uint64
	lostSeen uint64
}

// lostCounter is implemented by sources that can lose events (BPF).
type lostCounter interface{ Lost() uint64 }

func (o *metricsObserver) Scanned(ts []watch.Target) {
	o.loop.Beat()
	o.m.SetWatched(ts)
	o.m.ScanDone()
	if o.lost != nil {
		if n := o.lost(); n > o.lostSeen {
			o.m.LostEvents(n - o.lostSeen)
			o.lostSeen = n
		}
	}
}

func (o *metricsObserver) Reading(t watch.Target, rd watch.Reading, l watch.Level) {
	o.m.Observe(t, rd, l)
}

func (o *metricsObserver) Signal(t watch.Target, l watch.Level, _ int, result string) {
	switch result {
	case "sent":
		o.m.Signal(t, l, metrics.ResultSent)
	case "error":
		o.m.Signal(t, l, metrics.ResultError)
	case "refused":
		o.m.Signal(t, l, metrics.ResultRefused)
	case "dry_run":
		o.m.Signal(t, l, metrics.ResultDryRun)
	}
}

func (o *metricsObserver) Notification(t watch.Target, l watch.Level, result string) {
	o.m.Notification(t, l, result)
}

func (o *metricsObserver) NoTarget(t watch.Target, l watch.Level) {
	o.m.Signal(t, l, metrics.ResultNoTarget)
}

func (o *metricsObserver) OOMKill(t watch.Target, kills uint64, _ string) {
	for range kills {
		o.m.OOMKill(t)
	}
}

func (o *metricsObserver) Forget(t watch.Target) { o.m.Forget(t) }

// eventsObserver posts Kubernetes Events on level rises and OOM kills.
type eventsObserver struct {
	agent.NopObserver
	rec *events.Recorder
	// node: events go to the watched container's own pod (node mode);
	// otherwise to oomhero's own pod (the sidecar's pod is the
	// container's).
	node bool
}

func (o *eventsObserver) emit(kind events.Kind, t watch.Target, message string) {
	if o.node {
		o.rec.EmitFor(kind, events.Pod{Namespace: t.Namespace, Name: t.Pod, UID: t.PodUID}, t.Name, message)
		return
	}
	o.rec.Emit(kind, t.Name, message)
}

func (o *eventsObserver) LevelChanged(t watch.Target, from, to watch.Level, rd watch.Reading) {
	if to <= from {
		return
	}
	kind := events.Warning
	if to == watch.Critical {
		kind = events.Critical
	}
	v := rd.Value(t.Metric)
	o.emit(kind, t, fmt.Sprintf("memory (%s) at %.1f%% of the limit: %d of %d bytes",
		t.Metric, float64(v)/float64(max(t.Limit, 1))*100, v, t.Limit))
}

func (o *eventsObserver) OOMKill(t watch.Target, _ uint64, message string) {
	o.emit(events.OOMKill, t, message)
}
