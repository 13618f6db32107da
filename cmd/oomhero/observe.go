package main

import (
	"github.com/oomhero/oomhero/internal/agent"
	"github.com/oomhero/oomhero/internal/metrics"
	"github.com/oomhero/oomhero/internal/watch"
)

// metricsObserver feeds the Prometheus metrics from the agent.
type metricsObserver struct {
	agent.NopObserver
	m       *metrics.Metrics
	scanned bool
}

func (o *metricsObserver) Scanned(ts []watch.Target) {
	o.m.SetWatched(ts)
	o.m.ScanDone()
}

func (o *metricsObserver) Reading(t watch.Target, rd watch.Reading, l watch.Level) {
	o.m.Observe(t, rd, l)
}

func (o *metricsObserver) Signal(t watch.Target, l watch.Level, _ int, result string) {
	switch result {
	case "sent":
		o.m.Signal(t.Name, l, metrics.ResultSent)
	case "error":
		o.m.Signal(t.Name, l, metrics.ResultError)
	}
}

func (o *metricsObserver) NoTarget(t watch.Target, l watch.Level) {
	o.m.Signal(t.Name, l, metrics.ResultNoTarget)
}

func (o *metricsObserver) OOMKill(t watch.Target, kills uint64, _ string) {
	for range kills {
		o.m.OOMKill(t.Name)
	}
}

func (o *metricsObserver) Forget(t watch.Target) { o.m.Forget(t.Name) }
