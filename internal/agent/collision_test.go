package agent

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/watch"
)

// TestCgroupIDCollisionKeepsTheWatchedContainer: two groups resolve to the
// same cgroup id (a v1 and a v2 hierarchy numbering inodes alike, or a
// hostile view leading into another container's cgroup). The container
// watched first keeps its readings and signals; the newcomer is refused
// with one log line, scan after scan.
func TestCgroupIDCollisionKeepsTheWatchedContainer(t *testing.T) {
	cfg, err := config.Parse([]string{"--cooldown", "1h", "--targets", "all"}, func(string) (string, bool) { return "", false }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rescan = 5 * time.Millisecond
	groups := map[string]*discover.Group{
		"/victim":  {Path: "/victim", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "victim"}}},
		"/hostile": {Path: "/hostile", Version: watch.V2, Procs: []discover.Process{{PID: 20, Comm: "hostile"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		"/victim":  {ID: 7, Name: "victim", Path: "/victim", Limit: 1000, Version: watch.V1},
		"/hostile": {ID: 7, Name: "hostile", Path: "/hostile", Limit: 1000, Version: watch.V2},
	}}
	// Whichever the map order, the first resolved wins; make it the
	// victim by scanning it alone first.
	scan := &stagedScanner{mu: make(chan struct{}, 1), first: map[string]*discover.Group{"/victim": groups["/victim"]}, rest: groups}
	src := &fakeSource{updated: make(chan []watch.Target, 16), feed: make(chan watch.Reading)}
	snd := &fakeSender{}
	logs := &syncBuf{}
	a := &Agent{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Scanner: scan,
		Resolver: res, Source: src, Sender: snd, Self: 99}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	if ts := <-src.updated; len(ts) != 1 || ts[0].Path != "/victim" {
		t.Fatalf("targets %+v", ts)
	}
	for deadline := time.Now().Add(5 * time.Second); scan.count() < 5; {
		if time.Now().After(deadline) {
			t.Fatal("rescans did not happen")
		}
		time.Sleep(time.Millisecond)
	}
	src.feed <- watch.Reading{ID: 7, Usage: 950, Limit: 1000, Time: time.Now()}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "signal sent"); {
		if time.Now().After(deadline) {
			t.Fatalf("no signal:\n%s", logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	out := logs.String()
	if n := strings.Count(out, `msg="container not watched" container=hostile cgroup=/hostile reason="cgroup id 7 is already watched as container victim (cgroup /victim)"`); n != 1 {
		t.Errorf("refusal logged %d times, want once\n%s", n, out)
	}
	for _, s := range snd.take() {
		if s.pid != 10 {
			t.Errorf("signal to pid %d: the newcomer took over the victim's cgroup id", s.pid)
		}
	}
	if strings.Contains(out, "container gone") {
		t.Errorf("the victim was forgotten\n%s", out)
	}
}

// stagedScanner returns first on the first scan, rest afterwards.
type stagedScanner struct {
	first, rest map[string]*discover.Group
	scans       int
	mu          chan struct{}
}

func (s *stagedScanner) Scan() (map[string]*discover.Group, error) {
	s.lock()
	defer s.unlock()
	s.scans++
	if s.scans == 1 {
		return s.first, nil
	}
	return s.rest, nil
}

func (s *stagedScanner) lock()   { s.mu <- struct{}{} }
func (s *stagedScanner) unlock() { <-s.mu }
func (s *stagedScanner) count() int {
	s.lock()
	defer s.unlock()
	return s.scans
}
