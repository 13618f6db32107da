package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/watch"
)

type fakeScanner struct{ groups map[string]*discover.Group }

func (f fakeScanner) Scan() (map[string]*discover.Group, error) { return f.groups, nil }

type fakeResolver struct{ byPath map[string]watch.Container }

func (f fakeResolver) Resolve(g *discover.Group) (watch.Container, error) {
	c, ok := f.byPath[g.Path]
	if !ok {
		return watch.Container{Name: "x"}, fmt.Errorf("resolve %s: %w", g.Path, watch.ErrNoLimit)
	}
	c.PIDs = g.PIDs()
	return c, nil
}

type fakeSource struct {
	updated chan []watch.Target
	feed    chan watch.Reading
}

func (f *fakeSource) Name() string                  { return "fake" }
func (f *fakeSource) Update(targets []watch.Target) { f.updated <- targets }
func (f *fakeSource) Run(ctx context.Context, out chan<- watch.Reading) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-f.feed:
			out <- r
		}
	}
}

type sent struct {
	pid int
	sig unix.Signal
}

type fakeSender struct {
	mu   sync.Mutex
	sent []sent
}

func (f *fakeSender) Send(pid int, start uint64, sig unix.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, sent{pid, sig})
	return nil
}

func (f *fakeSender) take() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.sent
	f.sent = nil
	return out
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// status writes a /proc/<pid>/status with the given SigCgt mask.
func status(t *testing.T, proc string, pid int, sigcgt uint64) {
	d := filepath.Join(proc, fmt.Sprint(pid))
	os.MkdirAll(d, 0o755)
	if err := os.WriteFile(filepath.Join(d, "status"), []byte(fmt.Sprintf("Name:\tx\nSigCgt:\t%016x\n", sigcgt)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAgentSignalsOnlyHandlers(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	status(t, proc, 10, usr) // the app: handles both
	status(t, proc, 11, 0)   // a child without handlers: must survive
	status(t, proc, 12, usr) // handles both, but is oomhero itself
	status(t, proc, 20, 0)   // the only process of a second container: no handler
	cfg, err := config.Parse([]string{"--cooldown", "1h"}, func(string) (string, bool) { return "", false }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Proc = proc
	groups := map[string]*discover.Group{
		"/app":  {Path: "/app", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}, {PID: 11, PPID: 10, Comm: "child"}, {PID: 12, PPID: 10, Comm: "oomhero"}}},
		"/bare": {Path: "/bare", Version: watch.V1, Procs: []discover.Process{{PID: 20, Comm: "bare"}}},
		"/free": {Path: "/free", Version: watch.V1, Procs: []discover.Process{{PID: 30, Comm: "free"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		"/app":  {ID: 1, Name: "app", Path: "/app", Limit: 1000, Version: watch.V1},
		"/bare": {ID: 2, Name: "bare", Path: "/bare", Limit: 1000, Version: watch.V1},
	}}
	src := &fakeSource{updated: make(chan []watch.Target, 4), feed: make(chan watch.Reading)}
	snd := &fakeSender{}
	logs := &syncBuf{}
	a := &Agent{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Scanner: fakeScanner{groups},
		Resolver: res, Source: src, Sender: snd, Self: 12}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()

	targets := <-src.updated
	if len(targets) != 2 || targets[0].Warn != 750 || targets[0].Crit != 900 || targets[0].Metric != watch.WorkingSet {
		t.Fatalf("targets %+v", targets)
	}
	feed := func(id uint64, usage, inactive uint64) {
		src.feed <- watch.Reading{ID: id, Usage: usage, InactiveFile: inactive, Limit: 1000, Time: time.Now()}
	}
	// Page cache does not count: usage 990, working set 490.
	feed(1, 990, 500)
	feed(1, 800, 0) // warning
	feed(1, 950, 0) // critical
	feed(2, 950, 0) // warning+critical, nobody can take them
	feed(2, 960, 0) // same episode: said once
	feed(1, 10, 0)  // back to ok
	// Readings are handled in order: once the last one shows, all did.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "from=critical to=ok"); {
		if time.Now().After(deadline) {
			t.Fatalf("last reading not handled:\n%s", logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := snd.take()
	want := []sent{{10, unix.SIGUSR1}, {10, unix.SIGUSR2}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sent %v, want %v (only the process with handlers, never oomhero)", got, want)
	}
	out := logs.String()
	for _, w := range []string{
		`msg="container not watched" container=x cgroup=/free reason="no memory limit"`,
		`msg="level changed" container=app from=ok to=warning percent=80`,
		`msg="signal sent" pid=10 command=app container=app memory_level=critical signal=SIGUSR2`,
		`msg="level changed" container=app from=critical to=ok`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s\n%s", w, out)
		}
	}
	if n := strings.Count(out, `msg="no process can take the signal" container=bare memory_level=warning`); n != 1 {
		t.Errorf("no-target for warning said %d times, want once\n%s", n, out)
	}
	if n := strings.Count(out, `msg="no process can take the signal" container=bare memory_level=critical`); n != 1 {
		t.Errorf("no-target for critical said %d times, want once\n%s", n, out)
	}
}
