package main

import (
	"strings"
	"testing"

	"github.com/oomhero/oomhero/internal/metrics"
	"github.com/oomhero/oomhero/internal/notify"
	"github.com/oomhero/oomhero/internal/watch"
)

// TestDryRunCounted: the agent's dry-run results become
// oomhero_signals_total{result="dry_run"} and
// oomhero_notifications_total{result="dry_run"}; an excluded container,
// never given to the observer, has no series.
func TestDryRunCounted(t *testing.T) {
	m := metrics.New(metrics.Options{Pod: "p", NoProcessCollectors: true})
	o := &metricsObserver{m: m}
	tg := watch.Target{Container: watch.Container{Name: "bloat", Limit: 1000}, Warn: 650, Crit: 900}
	o.Signal(tg, watch.Warning, 12, "dry_run")
	o.Signal(tg, watch.Critical, 12, "dry_run")
	o.Signal(tg, watch.Critical, 12, "dry_run")
	o.Notification(tg, watch.Critical, notify.DryRun)
	got := scrape(t, m)
	for series, want := range map[string]float64{
		`oomhero_signals_total{container="bloat",level="warning",namespace="",pod="p",result="dry_run"}`:        1,
		`oomhero_signals_total{container="bloat",level="critical",namespace="",pod="p",result="dry_run"}`:       2,
		`oomhero_notifications_total{container="bloat",level="critical",namespace="",pod="p",result="dry_run"}`: 1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	for series := range got {
		if strings.Contains(series, `result="sent"`) || strings.Contains(series, "canary") {
			t.Errorf("unexpected series %s", series)
		}
	}
}
