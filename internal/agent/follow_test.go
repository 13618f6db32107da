package agent

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/watch"
)

// eventSource is a fakeSource that reports process changes, as the BPF
// source does.
type eventSource struct {
	*fakeSource
	events chan struct{}
	mu     sync.Mutex
	pids   []int
	ok     bool
}

func (e *eventSource) ProcessEvents() <-chan struct{} { return e.events }

func (e *eventSource) ProcessChanges(buf []int) ([]int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := append(buf[:0], e.pids...)
	e.pids = nil
	return out, e.ok
}

// followScanner records what it was told before each scan.
type followScanner struct {
	lockedScanner
	mu          sync.Mutex
	told        []string
	invalidated int
}

func (f *followScanner) Changed(pids []int, complete bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.told = append(f.told, fmt.Sprint(pids, complete))
}

func (f *followScanner) Invalidate() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidated++
}

// TestProcessChangesReachTheScanner: a process event makes the agent take
// the changed PIDs from the source and give them to the scanner before it
// scans; the scanner is not invalidated (its scan rereads those PIDs only).
func TestProcessChangesReachTheScanner(t *testing.T) {
	proc := t.TempDir()
	environ(t, proc, 10, "PATH=/bin")
	sc := &followScanner{lockedScanner: lockedScanner{groups: map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}},
	}}}
	res := fakeResolver{byPath: map[string]watch.Container{"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1}}}
	var es *eventSource
	h := startAgent(t, []string{"--rescan", "1h"}, proc, sc, res, func(a *Agent) {
		es = &eventSource{fakeSource: a.Source.(*fakeSource), events: make(chan struct{}, 1), ok: true}
		a.Source = es
	})
	<-h.src.updated
	es.mu.Lock()
	es.pids = []int{11, 12}
	es.mu.Unlock()
	es.events <- struct{}{}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		sc.mu.Lock()
		told := slices.Clone(sc.told)
		inv := sc.invalidated
		sc.mu.Unlock()
		if slices.Contains(told, "[11 12] true") {
			if inv != 0 {
				t.Errorf("the scanner was invalidated %d times though it was told the changes", inv)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scanner was told %q, want [11 12] true", told)
		}
	}
	h.stop()
}
