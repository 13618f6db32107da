package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/fallback"
	"github.com/oomhero/oomhero/internal/agent"
	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/heartbeat"
	"github.com/oomhero/oomhero/internal/metrics"
)

// fifoScanner's scans read a FIFO, as an unhardened read of a hostile
// container's fake cgroup.procs would: the open blocks in the kernel until
// a writer comes.
type fifoScanner struct{ path string }

func (s fifoScanner) Scan() (map[string]*discover.Group, error) {
	if _, err := os.ReadFile(s.path); err != nil {
		return nil, err
	}
	return map[string]*discover.Group{}, nil
}

// TestStuckScanTurnsHealthzRed: the agent's discovery scan hangs in a read;
// /healthz, wired as serve wires it (metricsObserver beats after each scan),
// fails within the limit and names the agent, and recovers once the read
// returns.
func TestStuckScanTurnsHealthzRed(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "cgroup.procs")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]string{"--rescan", "20ms", "--source", "cgroupfs"}, func(string) (string, bool) { return "", false }, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{NoProcessCollectors: true})
	loop := heartbeat.New(nil)
	const limit = 300 * time.Millisecond
	m.Watch("agent", loop, limit)
	src := fallback.New(cfg.Interval, cfg.MinInterval)
	// The poller turns at least every 10 intervals (fallback quietEvery),
	// and serve gives it at least 10 s (livenessLimit): the source must
	// stay green while the agent's scan hangs.
	m.Watch("source", src, 10*time.Second)
	a := &agent.Agent{
		Config:   cfg,
		Log:      slog.New(slog.DiscardHandler),
		Scanner:  fifoScanner{fifo},
		Source:   src,
		Observer: agent.Observers{&metricsObserver{m: m, loop: loop}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	h := m.Handler()
	healthz := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code, rec.Body.String()
	}

	start := time.Now()
	for {
		code, body := healthz()
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "agent made no progress") || strings.Contains(body, "source") {
				t.Errorf("/healthz = %q, want the agent named, not the source (it still polls)", body)
			}
			t.Logf("/healthz red %v after the scan hung: %q", time.Since(start).Round(time.Millisecond), body)
			break
		}
		if time.Since(start) > 10*limit {
			t.Fatalf("/healthz still %d %q %v after the scan hung", code, body, time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A writer comes: the read returns, scans go on, /healthz recovers.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	fed := make(chan struct{})
	defer close(fed)
	go func() { // later scans block again: feed them until the agent stopped
		for {
			select {
			case <-fed:
				return
			default:
			}
			if w, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				w.Close()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if code, _ := healthz(); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			code, body := healthz()
			t.Fatalf("/healthz = %d %q 5 s after the read returned", code, body)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agent: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("agent did not stop")
	}
}
