package express

import (
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

type call struct {
	pid int
	sig unix.Signal
}

type fakeSender struct {
	mu    sync.Mutex
	calls []call
	fail  map[int]error
}

func (f *fakeSender) SendExpected(pid int, want signals.Expect, sig unix.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{pid, sig})
	return f.fail[pid]
}

func plan(warn, crit uint64, pids ...int) *Plan {
	var tgs []Target
	for _, pid := range pids {
		tgs = append(tgs, Target{PID: pid, Want: signals.Expect{Start: uint64(pid) * 10, Handler: true}})
	}
	p := &Plan{Metric: watch.WorkingSet}
	if warn > 0 {
		p.Levels[watch.Warning] = &Level{Threshold: warn, Signal: unix.SIGUSR1, Targets: tgs}
	}
	if crit > 0 {
		p.Levels[watch.Critical] = &Level{Threshold: crit, Signal: unix.SIGUSR2, Targets: tgs}
	}
	return p
}

func TestFireOncePerLevelInOrder(t *testing.T) {
	s := &fakeSender{fail: map[int]error{8: signals.ErrChanged}}
	p := New(s)
	p.Arm(1, plan(600, 900, 7, 8))

	below := watch.Reading{ID: 1, Usage: 599}
	p.Fire(&below)
	if len(below.Sent) != 0 || len(s.calls) != 0 {
		t.Fatalf("below the warning: sent %v", below.Sent)
	}
	other := watch.Reading{ID: 2, Usage: 5000}
	p.Fire(&other)
	if len(other.Sent) != 0 {
		t.Fatalf("a container without a plan: sent %v", other.Sent)
	}
	// Page cache does not count: the working set is under the threshold.
	cache := watch.Reading{ID: 1, Usage: 700, InactiveFile: 200}
	p.Fire(&cache)
	if len(cache.Sent) != 0 {
		t.Fatalf("working set under the threshold: sent %v", cache.Sent)
	}

	jump := watch.Reading{ID: 1, Usage: 950}
	p.Fire(&jump)
	want := []call{{7, unix.SIGUSR1}, {8, unix.SIGUSR1}, {7, unix.SIGUSR2}, {8, unix.SIGUSR2}}
	if len(s.calls) != len(want) {
		t.Fatalf("calls %v, want %v", s.calls, want)
	}
	for i := range want {
		if s.calls[i] != want[i] {
			t.Fatalf("calls %v, want %v (warning before critical)", s.calls, want)
		}
	}
	if len(jump.Sent) != 4 || jump.Sent[0].Level != watch.Warning || jump.Sent[3].Level != watch.Critical ||
		jump.Sent[0].Start != 70 || jump.Sent[0].At.IsZero() || jump.Sent[1].Err == nil || !errors.Is(jump.Sent[1].Err, signals.ErrChanged) {
		t.Fatalf("sent %+v", jump.Sent)
	}
	again := watch.Reading{ID: 1, Usage: 990}
	p.Fire(&again)
	if len(again.Sent) != 0 || len(s.calls) != 4 {
		t.Fatalf("a level fired twice: %v", again.Sent)
	}
	if l := p.Armed(1); l[watch.Warning] != nil || l[watch.Critical] != nil {
		t.Fatalf("still armed after firing: %v", l)
	}
}

func TestFireHoldAndDisarm(t *testing.T) {
	s := &fakeSender{}
	p := New(s)
	pl := plan(600, 0, 7)
	pl.Hold = func(rd watch.Reading) bool { return rd.Anon == 1 }
	p.Arm(1, pl)
	held := watch.Reading{ID: 1, Usage: 700, Anon: 1}
	p.Fire(&held)
	if len(held.Sent) != 0 {
		t.Fatalf("held reading sent %v", held.Sent)
	}
	bad := watch.Reading{ID: 1, Usage: 700, Err: errors.New("gone")}
	p.Fire(&bad)
	if len(bad.Sent) != 0 {
		t.Fatalf("failed reading sent %v", bad.Sent)
	}
	p.Arm(1, nil)
	rd := watch.Reading{ID: 1, Usage: 700}
	p.Fire(&rd)
	if len(rd.Sent) != 0 || len(s.calls) != 0 {
		t.Fatalf("disarmed plan sent %v", rd.Sent)
	}
	var none *Plans
	none.Fire(&rd) // a source without plans
}
