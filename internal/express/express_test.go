package express

import (
	"errors"
	"sync"
	"testing"
	"time"

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

// fakeKernel is a Kernel whose levels the test drives.
type fakeKernel struct {
	armed     map[uint64]*Plan
	taken     map[watch.Level]bool // the kernel holds these levels
	collected []Collected
}

func (k *fakeKernel) Arm(id uint64, p *Plan) { k.armed[id] = p }
func (k *fakeKernel) Take(id uint64, l watch.Level) bool {
	return !k.taken[l]
}
func (k *fakeKernel) Collect(id uint64) []Collected {
	c := k.collected
	k.collected = nil
	return c
}

// TestKernelSendsBookedOnce: what the kernel sent is booked with the next
// reading (Kernel, its time) and never sent again from user space; a
// target the kernel could not send stays armed for user space; a level the
// kernel holds (busy, or taken before user space could) is not sent by
// user space; disarming reaches the kernel.
func TestKernelSendsBookedOnce(t *testing.T) {
	s := &fakeSender{}
	k := &fakeKernel{armed: map[uint64]*Plan{}, taken: map[watch.Level]bool{}}
	p := New(s)
	p.SetKernel(k)
	p.Arm(1, plan(600, 900, 7, 8))
	if k.armed[1] == nil {
		t.Fatal("the plan did not reach the kernel")
	}
	at := time.Unix(100, 0)
	// The kernel sent the warning to 7, not to 8 (its checks refused),
	// and is sending the critical now.
	k.collected = []Collected{
		{Level: watch.Warning, Signal: unix.SIGUSR1, Sent: []Target{{PID: 7, Want: signals.Expect{Start: 70}}}, At: at},
		{Level: watch.Critical, Busy: true},
	}
	rd := watch.Reading{ID: 1, Usage: 950}
	p.Fire(&rd)
	if len(rd.Sent) != 2 || !rd.Sent[0].Kernel || rd.Sent[0].PID != 7 || !rd.Sent[0].At.Equal(at) ||
		rd.Sent[1].Kernel || rd.Sent[1].PID != 8 || rd.Sent[1].Level != watch.Warning {
		t.Fatalf("sent %+v: want the kernel's warning to 7, then user space's to 8, no critical (busy)", rd.Sent)
	}
	if len(s.calls) != 1 || s.calls[0].pid != 8 {
		t.Fatalf("user-space sends %v, want one to 8", s.calls)
	}
	// The critical: the kernel took it (Take refuses) and has not said
	// what it sent yet: user space sends nothing.
	k.taken[watch.Critical] = true
	rd = watch.Reading{ID: 1, Usage: 960}
	p.Fire(&rd)
	if len(rd.Sent) != 0 || len(s.calls) != 1 {
		t.Fatalf("a level the kernel holds was sent from user space: %+v", rd.Sent)
	}
	// Then it did: booked, and the plan is spent.
	k.collected = []Collected{{Level: watch.Critical, Signal: unix.SIGUSR2, At: at,
		Sent: []Target{{PID: 7, Want: signals.Expect{Start: 70}}, {PID: 8, Want: signals.Expect{Start: 80}}}}}
	rd = watch.Reading{ID: 1, Usage: 970}
	p.Fire(&rd)
	if len(rd.Sent) != 2 || !rd.Sent[0].Kernel || !rd.Sent[1].Kernel || rd.Sent[0].Signal != int(unix.SIGUSR2) {
		t.Fatalf("sent %+v: want the kernel's two criticals", rd.Sent)
	}
	if l := p.Armed(1); l[watch.Warning] != nil || l[watch.Critical] != nil {
		t.Fatalf("still armed: %+v", l)
	}
	p.Arm(1, nil)
	if k.armed[1] != nil {
		t.Fatal("disarming did not reach the kernel")
	}
}
