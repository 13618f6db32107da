package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/agent"
	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/events"
	"github.com/oomhero/oomhero/internal/metrics"
	"github.com/oomhero/oomhero/internal/watch"
)

type oneGroup struct{ g *discover.Group }

func (s oneGroup) Scan() (map[string]*discover.Group, error) {
	return map[string]*discover.Group{s.g.Path: s.g}, nil
}

type oneContainer struct{ c watch.Container }

func (r oneContainer) Resolve(g *discover.Group) (watch.Container, error) {
	c := r.c
	c.PIDs = g.PIDs()
	return c, nil
}

// feedSource hands the agent the readings the test feeds it.
type feedSource struct{ feed chan watch.Reading }

func (f *feedSource) Name() string          { return "feed" }
func (f *feedSource) Update([]watch.Target) {}
func (f *feedSource) Run(ctx context.Context, out chan<- watch.Reading) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-f.feed:
			select {
			case out <- r:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

type countSender struct{ n atomic.Int64 }

func (s *countSender) Send(int, uint64, unix.Signal) error { s.n.Add(1); return nil }

// TestHangingAPIServerNeverHoldsUpTheLoop wires the agent to Kubernetes
// Events as serve does, against an API server that accepts the access
// review and then never answers an event. A thousand level changes go
// through the agent's loop at full speed, every rise is signalled, and the
// events that cannot be posted are dropped and counted.
func TestHangingAPIServerNeverHoldsUpTheLoop(t *testing.T) {
	hang := make(chan struct{})
	var hung atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
			json.NewEncoder(w).Encode(map[string]any{"status": map[string]any{"allowed": true}})
			return
		}
		hung.Add(1)
		select { // every event POST hangs
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang) // before Close, which waits for the handlers

	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	rec := events.New(events.Config{Server: srv.URL, TokenFile: token, Namespace: "shop", Pod: "p", PodUID: "u",
		Client: srv.Client(), Logger: log, MinInterval: time.Nanosecond, Burst: 1 << 20, Every: time.Nanosecond})
	m := metrics.New(metrics.Options{NoProcessCollectors: true})
	m.CountEvents(rec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rec.Run(ctx)
	for deadline := time.Now().Add(10 * time.Second); !rec.Enabled(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("events not on after 10 s")
		}
	}

	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "10"), 0o755); err != nil {
		t.Fatal(err)
	}
	handlers := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	if err := os.WriteFile(filepath.Join(proc, "10", "status"), []byte(fmt.Sprintf("Name:\tapp\nSigCgt:\t%016x\n", handlers)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]string{"--repeat", "once", "--hysteresis", "0"}, func(string) (string, bool) { return "", false }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Proc = proc
	src := &feedSource{feed: make(chan watch.Reading)}
	snd := &countSender{}
	a := &agent.Agent{
		Config:   cfg,
		Log:      slog.New(slog.DiscardHandler),
		Scanner:  oneGroup{&discover.Group{Path: "/app", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}}},
		Resolver: oneContainer{watch.Container{ID: 1, Name: "app", Path: "/app", Limit: 1000, Version: watch.V1}},
		Source:   src,
		Sender:   snd,
		Observer: agent.Observers{&metricsObserver{m: m}, &eventsObserver{rec: rec}},
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	const rises = 1000
	start := time.Now()
	for i := range 2 * rises {
		usage := uint64(10) // ok
		if i%2 == 1 {
			usage = 950 // critical: one event per rise
		}
		select {
		case src.feed <- watch.Reading{ID: 1, Usage: usage, Limit: 1000, Time: time.Now()}:
		case <-time.After(5 * time.Second):
			t.Fatalf("the agent took no reading for 5 s after %d: its loop waits on the API server", i)
		}
	}
	took := time.Since(start)
	t.Logf("%d readings, %d level rises through the loop in %v with every event POST hanging", 2*rises, rises, took)
	for deadline := time.Now().Add(10 * time.Second); snd.n.Load() < 2*rises; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d signals sent, want %d (a warning and a critical per rise)", snd.n.Load(), 2*rises)
		}
	}
	if took > 5*time.Second {
		t.Errorf("the loop took %v for %d readings", took, 2*rises)
	}
	if hung.Load() == 0 {
		t.Error("no event reached the hanging server")
	}
	if d := rec.Dropped(); d < rises-100 {
		t.Errorf("Dropped = %d, want about %d (the queue holds 64)", d, rises)
	}
	got := scrape(t, m)
	if got[`oomhero_events_dropped_total{reason="queue_full"}`] != float64(rec.Dropped()) {
		t.Errorf("oomhero_events_dropped_total{reason=queue_full} = %v, want %d", got[`oomhero_events_dropped_total{reason="queue_full"}`], rec.Dropped())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("agent: %v", err)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// scrape returns the value of every series of m's /metrics by its text
// name with labels.
func scrape(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := map[string]float64{}
	for _, line := range bytes.Split(rec.Body.Bytes(), []byte("\n")) {
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		i := bytes.LastIndexByte(line, ' ')
		var v float64
		fmt.Sscan(string(line[i+1:]), &v)
		out[string(line[:i])] = v
	}
	return out
}
