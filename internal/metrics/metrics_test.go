package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/oomhero/oomhero/internal/watch"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// scrape parses /metrics and returns "name{labels} value" per sample, so a
// test can ask for exact series.
func scrape(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	code, body := get(t, m.Handler(), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics status %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case s.Gauge != nil:
				out[key] = s.GetGauge().GetValue()
			case s.Counter != nil:
				out[key] = s.GetCounter().GetValue()
			}
		}
	}
	return out
}

func want(t *testing.T, got map[string]float64, key string, v float64) {
	t.Helper()
	g, ok := got[key]
	if !ok {
		t.Errorf("missing series %s", key)
		return
	}
	if g != v {
		t.Errorf("%s = %v, want %v", key, g, v)
	}
}

func TestObserveAndCounters(t *testing.T) {
	m := New(Options{Pod: "oomhero", NoProcessCollectors: true})
	tg := watch.Target{Container: watch.Container{Name: "bloat", Limit: 100 << 20}, Warn: 75 << 20, Crit: 90 << 20}
	m.SetWatched([]watch.Target{tg})
	m.Observe(tg, watch.Reading{Usage: 95 << 20, InactiveFile: 3 << 20, Limit: 100 << 20}, watch.Critical)
	m.Signal(tgt("bloat"), watch.Warning, ResultSent)
	m.Signal(tgt("bloat"), watch.Critical, ResultSent)
	m.Signal(tgt("bloat"), watch.Critical, ResultSent)
	m.Signal(tgt("bloat"), watch.Critical, ResultNoTarget)
	m.OOMKill(tgt("bloat"))
	m.LostEvents(3)
	m.LostEvents(4)
	m.SetSource("bpf tp_btf/mod_memcg_lruvec_state")

	got := scrape(t, m)
	const c = "container=bloat,namespace=,pod=oomhero"
	want(t, got, "oomhero_memory_usage_bytes{"+c+"}", 95<<20)
	want(t, got, "oomhero_memory_working_set_bytes{"+c+"}", 92<<20)
	want(t, got, "oomhero_memory_limit_bytes{"+c+"}", 100<<20)
	want(t, got, "oomhero_level{"+c+"}", 2)
	want(t, got, "oomhero_threshold_bytes{container=bloat,level=warning,namespace=,pod=oomhero}", 75<<20)
	want(t, got, "oomhero_threshold_bytes{container=bloat,level=critical,namespace=,pod=oomhero}", 90<<20)
	want(t, got, "oomhero_signals_total{container=bloat,level=warning,namespace=,pod=oomhero,result=sent}", 1)
	want(t, got, "oomhero_signals_total{container=bloat,level=critical,namespace=,pod=oomhero,result=sent}", 2)
	want(t, got, "oomhero_signals_total{container=bloat,level=critical,namespace=,pod=oomhero,result=no_target}", 1)
	want(t, got, "oomhero_oom_kills_total{"+c+"}", 1)
	want(t, got, "oomhero_lost_events_total{}", 7)
	want(t, got, "oomhero_watched_containers{}", 1)
	want(t, got, "oomhero_source_info{attach=tp_btf/mod_memcg_lruvec_state,source=bpf}", 1)

	// Falling back replaces the source series instead of adding one.
	m.SetSource("cgroupfs")
	got = scrape(t, m)
	want(t, got, "oomhero_source_info{attach=,source=cgroupfs}", 1)
	if _, ok := got["oomhero_source_info{attach=tp_btf/mod_memcg_lruvec_state,source=bpf}"]; ok {
		t.Error("old source series still exported after SetSource")
	}

}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestForgetKeepsCountersForRetain(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	m := New(Options{Pod: "p", NoProcessCollectors: true, Retain: time.Minute, Now: clk.now})
	for _, name := range []string{"gone", "back"} {
		tg := watch.Target{Container: watch.Container{Name: name, Limit: 100}, Warn: 75, Crit: 90}
		m.SetWatched([]watch.Target{tg})
		m.Observe(tg, watch.Reading{Usage: 99, Limit: 100}, watch.Critical)
		m.Signal(tgt(name), watch.Critical, ResultSent)
		m.OOMKill(tgt(name))
	}
	m.Forget(tgt("gone"))
	m.Forget(tgt("back"))
	got := scrape(t, m)
	for k := range got {
		if strings.Contains(k, "container=gone") && !strings.HasPrefix(k, "oomhero_signals_total") && !strings.HasPrefix(k, "oomhero_oom_kills_total") {
			t.Errorf("gauge %s left after Forget", k)
		}
	}
	want(t, got, "oomhero_oom_kills_total{container=gone,namespace=,pod=p}", 1)
	want(t, got, "oomhero_signals_total{container=gone,level=critical,namespace=,pod=p,result=sent}", 1)

	// "back" is watched again (a restarted container keeping its name).
	tg := watch.Target{Container: watch.Container{Name: "back", Limit: 100}}
	m.Observe(tg, watch.Reading{Usage: 10, Limit: 100}, watch.OK)
	clk.t = clk.t.Add(time.Minute)
	m.ScanDone()
	got = scrape(t, m)
	for k := range got {
		if strings.Contains(k, "container=gone") {
			t.Errorf("series %s left after Retain", k)
		}
	}
	want(t, got, "oomhero_oom_kills_total{container=back,namespace=,pod=p}", 1)
	want(t, got, "oomhero_last_scan_timestamp_seconds{}", 1060)
}

func TestReadiness(t *testing.T) {
	m := New(Options{NoProcessCollectors: true})
	h := m.Handler()
	if code, body := get(t, h, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "scan") {
		t.Errorf("/readyz before scan = %d %q, want 503 naming the scan", code, body)
	}
	m.ScanDone()
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "source") {
		t.Errorf("/readyz before source = %d %q, want 503 naming the source", code, body)
	}
	m.SetSource("cgroupfs")
	if code, body := get(t, h, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz when ready = %d %q", code, body)
	}
	if !m.Ready() {
		t.Error("Ready() = false after ScanDone and SetSource")
	}
	if code, _ := get(t, h, "/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing = %d, want 404", code)
	}
}

func TestProcessCollectors(t *testing.T) {
	got := scrape(t, New(Options{}))
	if v := got["process_resident_memory_bytes{}"]; v <= 0 {
		t.Errorf("process_resident_memory_bytes = %v, want > 0", v)
	}
	if _, ok := got["go_goroutines{}"]; !ok {
		t.Error("go_goroutines missing")
	}
}

func TestServeStopsWithContext(t *testing.T) {
	m := New(Options{NoProcessCollectors: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatalf("get /healthz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("/healthz over TCP = %d %q", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Error("server still answers after Serve returned")
	}
}

func TestListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	m := New(Options{NoProcessCollectors: true})
	err = m.ListenAndServe(context.Background(), ln.Addr().String())
	var op *net.OpError
	if !errors.As(err, &op) || !strings.Contains(err.Error(), "listen on") {
		t.Errorf("ListenAndServe on a taken port = %v, want a wrapped *net.OpError", err)
	}
}

// tgt is a target of oomhero's own pod named name (the sidecar's).
func tgt(name string) watch.Target { return watch.Target{Container: watch.Container{Name: name}} }

// TestSetWatchedAfterForget: SetWatched skips a target whose thresholds and
// limit did not change, but a target forgotten and passed again (same
// figures) gets its gauges back, and a changed threshold shows at once.
func TestSetWatchedAfterForget(t *testing.T) {
	m := New(Options{Pod: "p", NoProcessCollectors: true})
	tg := watch.Target{Container: watch.Container{Name: "app", Limit: 100}, Warn: 75, Crit: 90}
	m.SetWatched([]watch.Target{tg})
	m.SetWatched([]watch.Target{tg})
	want(t, scrape(t, m), "oomhero_threshold_bytes{container=app,level=warning,namespace=,pod=p}", 75)
	m.Forget(tg)
	if got := scrape(t, m); got["oomhero_threshold_bytes{container=app,level=warning,namespace=,pod=p}"] != 0 {
		t.Fatalf("threshold left after Forget: %v", got)
	}
	m.SetWatched([]watch.Target{tg})
	got := scrape(t, m)
	want(t, got, "oomhero_threshold_bytes{container=app,level=warning,namespace=,pod=p}", 75)
	want(t, got, "oomhero_memory_limit_bytes{container=app,namespace=,pod=p}", 100)
	tg.Warn = 80
	m.SetWatched([]watch.Target{tg})
	want(t, scrape(t, m), "oomhero_threshold_bytes{container=app,level=warning,namespace=,pod=p}", 80)
}
