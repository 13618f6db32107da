package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/watch"
)

// TestHostileNamesNeverPanic: a process may name itself "\xff\xfe" (invalid
// UTF-8): client_golang panics on such a label value, and a panic here ended
// oomhero in a restart loop. Every label goes through safename.Clean.
func TestHostileNamesNeverPanic(t *testing.T) {
	for _, name := range []string{"\xff\xfex", "a\nb", "\x1b[31m", strings.Repeat("\xff", 5000), ""} {
		m := New(Options{Pod: "\xfe" + name, NoProcessCollectors: true})
		tg := watch.Target{Container: watch.Container{Name: name, Limit: 100}, Warn: 75, Crit: 90}
		m.SetWatched([]watch.Target{tg})
		m.Observe(tg, watch.Reading{Usage: 95, Limit: 100}, watch.Critical)
		m.Signal(tgt(name), watch.Critical, ResultSent)
		m.Signal(tgt(name), watch.Warning, name)
		m.OOMKill(tgt(name))
		m.SetSource(name + " " + name)
		got := scrape(t, m) // parses: every label is valid UTF-8
		if name == "\xff\xfex" {
			want(t, got, "oomhero_oom_kills_total{container=??x,namespace=,pod=???x}", 1)
			want(t, got, "oomhero_level{container=??x,namespace=,pod=???x}", 2)
		}
		m.Forget(tgt(name))
		for k := range scrape(t, m) {
			if strings.HasPrefix(k, "oomhero_level{") {
				t.Errorf("%q: gauge %s left after Forget of the same raw name", name, k)
			}
		}
	}
}

type age struct{ d atomic.Int64 }

func (a *age) SinceProgress() time.Duration { return time.Duration(a.d.Load()) }

func TestHealthzFailsWhenStalled(t *testing.T) {
	m := New(Options{NoProcessCollectors: true})
	h := m.Handler()
	loop, src := &age{}, &age{}
	m.Watch("agent loop", loop, 10*time.Second)
	m.Watch("source cgroupfs", src, 10*time.Second)

	loop.d.Store(int64(9 * time.Second))
	if code, body := get(t, h, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz within the limit = %d %q", code, body)
	}
	want(t, scrape(t, m), "oomhero_progress_age_seconds{component=agent loop}", 9)

	src.d.Store(int64(10*time.Second + time.Millisecond))
	code, body := get(t, h, "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "source cgroupfs made no progress for 10.001s (limit 10s)") ||
		strings.Contains(body, "agent loop") {
		t.Fatalf("/healthz with a stalled source = %d %q, want 503 naming only the source", code, body)
	}
	loop.d.Store(int64(time.Minute))
	if _, body := get(t, h, "/healthz"); !strings.Contains(body, "agent loop made no progress for 1m0s") {
		t.Fatalf("/healthz = %q, want both named", body)
	}
	// Progress again: alive again.
	loop.d.Store(0)
	src.d.Store(0)
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after progress = %d", code)
	}
}

func TestLivenessLimit(t *testing.T) {
	for _, c := range []struct {
		periods []time.Duration
		want    time.Duration
	}{
		{nil, 10 * time.Second},
		{[]time.Duration{time.Second, 100 * time.Millisecond, time.Second}, 10 * time.Second},
		{[]time.Duration{5 * time.Second, 100 * time.Millisecond}, 15 * time.Second},
		{[]time.Duration{time.Second, time.Minute}, 3 * time.Minute},
	} {
		if got := LivenessLimit(c.periods...); got != c.want {
			t.Errorf("LivenessLimit(%v) = %v, want %v", c.periods, got, c.want)
		}
	}
}

type evCount struct{}

func (evCount) Posted() uint64  { return 3 }
func (evCount) Dropped() uint64 { return 7 }
func (evCount) Failed() uint64  { return 2 }

func TestCountEvents(t *testing.T) {
	m := New(Options{NoProcessCollectors: true})
	m.CountEvents(evCount{})
	got := scrape(t, m)
	want(t, got, "oomhero_events_posted_total{}", 3)
	want(t, got, "oomhero_events_dropped_total{reason=queue_full}", 7)
	want(t, got, "oomhero_events_dropped_total{reason=api_error}", 2)
}

// TestServeRetryingWhilePortTaken: another process holds the port; the
// server retries with a growing back-off and serves once the port is free.
func TestServeRetryingWhilePortTaken(t *testing.T) {
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := squatter.Addr().String()
	m := New(Options{NoProcessCollectors: true})
	var mu sync.Mutex
	var waits []time.Duration
	var errs []error
	listening := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- m.ServeRetrying(ctx, addr, Retry{First: 10 * time.Millisecond, Max: 40 * time.Millisecond,
			Failed: func(err error, in time.Duration) {
				mu.Lock()
				waits, errs = append(waits, in), append(errs, err)
				mu.Unlock()
			},
			Listening: func(a net.Addr) { listening <- a }})
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(waits)
		mu.Unlock()
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d failed attempts in 5 s, want 4", n)
		}
	}
	mu.Lock()
	if waits[0] != 10*time.Millisecond || waits[1] != 20*time.Millisecond || waits[2] != 40*time.Millisecond || waits[3] != 40*time.Millisecond {
		t.Errorf("back-off %v, want 10ms 20ms 40ms 40ms", waits[:4])
	}
	var op *net.OpError
	if !errors.As(errs[0], &op) || !strings.Contains(errs[0].Error(), addr) {
		t.Errorf("error %v: want a *net.OpError naming %s", errs[0], addr)
	}
	mu.Unlock()
	select {
	case err := <-done:
		t.Fatalf("ServeRetrying returned %v while the port was taken", err)
	default:
	}

	squatter.Close()
	select {
	case <-listening:
	case <-time.After(5 * time.Second):
		t.Fatal("not listening 5 s after the port was freed")
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("/healthz = %d %q", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeRetrying = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeRetrying did not return after cancel")
	}
}

func TestServeRetryingStopsWhileWaiting(t *testing.T) {
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	m := New(Options{NoProcessCollectors: true})
	ctx, cancel := context.WithCancel(context.Background())
	failed := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- m.ServeRetrying(ctx, squatter.Addr().String(), Retry{First: time.Hour,
			Failed: func(error, time.Duration) { failed <- struct{}{} }})
	}()
	<-failed
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeRetrying = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeRetrying kept waiting after cancel")
	}
}

// TestConnectionFloodIsBounded: a pod-mate opens hundreds of connections
// and sends nothing. oomhero handles MaxConns of them at once (goroutines
// and memory stay bounded); the rest wait in the kernel's backlog, and
// requests are served again once the flood ends.
func TestConnectionFloodIsBounded(t *testing.T) {
	m := New(Options{NoProcessCollectors: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Serve(ctx, ln)
	if code, _ := httpGet(t, "http://"+addr+"/healthz", time.Second); code != http.StatusOK {
		t.Fatalf("/healthz = %d before the flood", code)
	}
	before := runtime.NumGoroutine()
	var conns []net.Conn
	for range 300 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break // backlog full: fine
		}
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond)
	if grew := runtime.NumGoroutine() - before; grew > 50 {
		t.Errorf("%d idle connections grew goroutines by %d, want at most about MaxConns (%d)", len(conns), grew, MaxConns)
	}
	if code, err := httpGet(t, "http://"+addr+"/healthz", 300*time.Millisecond); err == nil {
		t.Logf("/healthz answered %d during the flood (a slot was free)", code)
	}
	for _, c := range conns {
		c.Close()
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, err := httpGet(t, "http://"+addr+"/healthz", time.Second); err == nil && code == http.StatusOK {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("/healthz after the flood: %d %v", code, err)
		}
	}
}

func httpGet(t *testing.T, url string, timeout time.Duration) (int, error) {
	t.Helper()
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
