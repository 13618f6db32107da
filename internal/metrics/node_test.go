package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/watch"
)

// The node agent: each container's series carry its own pod and namespace,
// containers of the same name in two pods never share a series, and a
// container that goes away takes its gauges at once and its counters after
// Retain, without touching its namesake in the other pod.
func TestNodeSeriesPerPod(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	m := New(Options{Pod: "oomhero-node-x7", PodNamespace: "oomhero-system", NoProcessCollectors: true, Retain: time.Minute, Now: clk.now})
	a := watch.Target{Container: watch.Container{ID: 1, Name: "app", Namespace: "shop", Pod: "web-1", Limit: 100}, Warn: 75, Crit: 90}
	b := watch.Target{Container: watch.Container{ID: 2, Name: "app", Namespace: "blog", Pod: "web-1", Limit: 200}, Warn: 150, Crit: 180}
	m.SetWatched([]watch.Target{a, b})
	m.Observe(a, watch.Reading{ID: 1, Usage: 80, Limit: 100}, watch.Warning)
	m.Observe(b, watch.Reading{ID: 2, Usage: 10, Limit: 200}, watch.OK)
	m.Signal(a, watch.Warning, ResultSent)
	m.OOMKill(b)
	got := scrape(t, m)
	want(t, got, "oomhero_level{container=app,namespace=shop,pod=web-1}", 1)
	want(t, got, "oomhero_level{container=app,namespace=blog,pod=web-1}", 0)
	want(t, got, "oomhero_memory_limit_bytes{container=app,namespace=blog,pod=web-1}", 200)
	want(t, got, "oomhero_threshold_bytes{container=app,level=critical,namespace=shop,pod=web-1}", 90)
	want(t, got, "oomhero_signals_total{container=app,level=warning,namespace=shop,pod=web-1,result=sent}", 1)
	want(t, got, "oomhero_oom_kills_total{container=app,namespace=blog,pod=web-1}", 1)
	for k := range got {
		if strings.Contains(k, "oomhero-node-x7") || strings.Contains(k, "oomhero-system") {
			t.Errorf("a node's container series carries the agent's own pod: %s", k)
		}
	}

	m.Forget(a) // shop/web-1 app went away
	m.SetWatched([]watch.Target{b})
	got = scrape(t, m)
	for k := range got {
		if strings.Contains(k, "namespace=shop") && !strings.HasPrefix(k, "oomhero_signals_total") {
			t.Errorf("series %s left after its container went away", k)
		}
	}
	want(t, got, "oomhero_level{container=app,namespace=blog,pod=web-1}", 0)
	clk.t = clk.t.Add(time.Minute)
	m.ScanDone()
	got = scrape(t, m)
	for k := range got {
		if strings.Contains(k, "namespace=shop") {
			t.Errorf("series %s left after Retain", k)
		}
	}
	want(t, got, "oomhero_oom_kills_total{container=app,namespace=blog,pod=web-1}", 1)
	want(t, got, "oomhero_watched_containers{}", 1)
}

// The sidecar: a target that names no pod gets oomhero's own pod and
// namespace (POD_NAME, POD_NAMESPACE).
func TestSidecarSeriesGetOwnPod(t *testing.T) {
	m := New(Options{Pod: "shop-5d8f9", PodNamespace: "shop", NoProcessCollectors: true})
	tg := watch.Target{Container: watch.Container{ID: 1, Name: "java", Limit: 100}, Warn: 75, Crit: 90}
	m.Observe(tg, watch.Reading{ID: 1, Usage: 10, Limit: 100}, watch.OK)
	m.Signal(tg, watch.Warning, ResultDryRun)
	got := scrape(t, m)
	want(t, got, "oomhero_level{container=java,namespace=shop,pod=shop-5d8f9}", 0)
	want(t, got, "oomhero_signals_total{container=java,level=warning,namespace=shop,pod=shop-5d8f9,result=dry_run}", 1)
}
