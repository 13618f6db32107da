//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/express"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// heapSends is a kernelSends over plain memory: the test plays the program.
func heapSends(metrics map[uint64]watch.Metric) *kernelSends {
	return &kernelSends{mem: make([]byte, sendSlots*unsafe.Sizeof(memwatchSendSlot{})), page: 4096, ns: 7,
		metric: metrics, owner: map[uint32]uint64{}, index: map[uint64]uint32{}, armed: map[uint64]*[2]*express.Level{}}
}

func sendPlan(m watch.Metric, targets ...express.Target) *express.Plan {
	p := &express.Plan{Metric: m}
	p.Levels[watch.Warning] = &express.Level{Threshold: 100 << 20, Signal: unix.SIGUSR1, Targets: targets}
	p.Levels[watch.Critical] = &express.Level{Threshold: 150<<20 + 1, Signal: unix.SIGUSR2, Targets: targets}
	return p
}

// TestKernelSendsSlots: what Arm writes for the program, the token's
// life (armed, taken by the program, done, collected; or taken back by
// user space), one slot per cgroup, and what is never armed in the kernel.
func TestKernelSendsSlots(t *testing.T) {
	const a, b = 1, 1 + sendSlots // the same low bits
	k := heapSends(map[uint64]watch.Metric{a: watch.WorkingSet, b: watch.Usage, 500: watch.RSS, 501: watch.Usage})
	tg := express.Target{PID: 42, Want: signals.Expect{Start: 900, Name: "java", Handler: true}}
	k.Arm(a, sendPlan(watch.WorkingSet, tg))
	s := k.slot(a)
	w, c := &s.Lv[0], &s.Lv[1]
	if s.Id != a || s.Ns != 7 || w.State != sendArmed || c.State != sendArmed {
		t.Fatalf("armed slot: id %d ns %d states %d %d", s.Id, s.Ns, w.State, c.State)
	}
	if w.Sig != uint32(unix.SIGUSR1) || w.N != 1 || w.Threshold != 100<<20/4096 || c.Threshold != 150<<20/4096+1 ||
		w.Flags != sendGateFile || w.T[0].Pid != 42 || w.T[0].Start != 900 || w.T[0].Flags != sendHandler|sendComm ||
		string(unsafe.Slice((*byte)(unsafe.Pointer(&w.T[0].Comm[0])), 5)) != "java\x00" {
		t.Fatalf("warning level: %+v", *w)
	}
	// The program takes the warning: user space may not send it.
	atomic.CompareAndSwapUint32(&w.State, sendArmed, sendTaken)
	if k.Take(a, watch.Warning) {
		t.Fatal("Take of a level the program holds")
	}
	if got := k.Collect(a); len(got) != 1 || !got[0].Busy || got[0].Level != watch.Warning {
		t.Fatalf("collect while the program sends: %+v", got)
	}
	w.Sent, w.AtNs = 1, monoNow()
	atomic.StoreUint32(&w.State, sendDone)
	got := k.Collect(a)
	if len(got) != 1 || got[0].Busy || len(got[0].Sent) != 1 || got[0].Sent[0].PID != 42 || got[0].Signal != unix.SIGUSR1 {
		t.Fatalf("collect after the program's send: %+v", got)
	}
	if w.State != sendIdle || len(k.Collect(a)) != 0 {
		t.Fatalf("collected twice, or not idle (%d)", w.State)
	}
	// User space takes the critical back before it sends it.
	if !k.Take(a, watch.Critical) || c.State != sendIdle {
		t.Fatalf("Take of an armed level: state %d", c.State)
	}
	// Another cgroup with the same low bits takes the next free slot, while
	// a keeps its own; so do the next six; the eighth finds its eight
	// slots held and is left to user space.
	k.Arm(b, sendPlan(watch.Usage, tg))
	sb := k.slot(a + 1)
	if s.Id != a || sb.Id != b || sb.Lv[0].State != sendArmed || sb.Lv[0].Flags != 0 {
		t.Fatalf("b's plan: slot %d id %d, next slot id %d state %d flags %d", a, s.Id, sb.Id, sb.Lv[0].State, sb.Lv[0].Flags)
	}
	for n := uint64(2); n <= sendProbe; n++ {
		id := a + n*sendSlots
		k.metric[id] = watch.Usage
		k.Arm(id, sendPlan(watch.Usage, tg))
		if n < sendProbe {
			if got := k.slot(uint32(a + n)); got.Id != id || got.Lv[1].State != sendArmed {
				t.Fatalf("cgroup %d (%d-th with these low bits): slot %d holds id %d state %d", id, n+1, a+n, got.Id, got.Lv[1].State)
			}
			continue
		}
		if _, ok := k.index[id]; ok || !k.Take(id, watch.Warning) || len(k.Collect(id)) != 0 {
			t.Fatalf("cgroup %d placed in the kernel although its %d slots are held", id, sendProbe)
		}
	}
	// a's disarm frees its slot (the id goes: the program's search for
	// another cgroup does not stop there) and leaves b's levels alone.
	k.Arm(a, nil)
	if s.Id != 0 || sb.Id != b || sb.Lv[0].State != sendArmed || !k.Take(a, watch.Warning) || sb.Lv[0].State != sendArmed {
		t.Fatalf("after a's disarm: slot ids %d, %d; b's warning state %d", s.Id, sb.Id, sb.Lv[0].State)
	}
	// The one left out gets the freed slot at its next plan.
	last := uint64(a + sendProbe*sendSlots)
	k.Arm(last, sendPlan(watch.Usage, tg))
	if s.Id != last || s.Lv[0].State != sendArmed {
		t.Fatalf("freed slot: id %d state %d, want %d armed", s.Id, s.Lv[0].State, last)
	}
	// Never in the kernel: the rss metric, five targets, a command /proc
	// escapes, a plan for another metric than the target's.
	k.Arm(500, sendPlan(watch.RSS, tg))
	many := sendPlan(watch.Usage, tg, tg, tg, tg, tg)
	odd := sendPlan(watch.Usage, express.Target{PID: 5, Want: signals.Expect{Name: `a\nb`}})
	for _, p := range []*express.Plan{many, odd, sendPlan(watch.WorkingSet, tg)} {
		k.Arm(501, p)
		if st := k.slot(501).Lv[0].State; st != sendIdle {
			t.Errorf("plan %+v armed in the kernel", p.Levels[watch.Warning])
		}
	}
	if k.slot(500).Lv[0].State != sendIdle {
		t.Error("an rss plan armed in the kernel")
	}
}

// TestKernelSendsRearmKeepsLevel: the agent re-arms after every decision;
// re-arming the same sends leaves the level armed throughout (the program,
// here a goroutine watching the token, never finds it idle), while other
// sends replace it.
func TestKernelSendsRearmKeepsLevel(t *testing.T) {
	const id = 9
	k := heapSends(map[uint64]watch.Metric{id: watch.Usage})
	tg := express.Target{PID: 42, Want: signals.Expect{Start: 900, Name: "app", Handler: true}}
	k.Arm(id, sendPlan(watch.Usage, tg))
	w := &k.slot(id).Lv[0]
	stop, idleSeen := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				idleSeen <- n
				return
			default:
			}
			if atomic.LoadUint32(&w.State) != sendArmed {
				n++
			}
		}
	}()
	for range 20000 {
		k.Arm(id, sendPlan(watch.Usage, tg)) // a new plan, the same sends
	}
	close(stop)
	if n := <-idleSeen; n != 0 {
		t.Errorf("the warning level was seen not armed %d times while the same sends were re-armed", n)
	}
	other := tg
	other.PID = 43
	k.Arm(id, sendPlan(watch.Usage, other))
	if w.State != sendArmed || w.T[0].Pid != 43 {
		t.Errorf("other sends: state %d pid %d, want armed for 43", w.State, w.T[0].Pid)
	}
	if got := k.armed[id][0]; got == nil || got.Targets[0].PID != 43 {
		t.Errorf("booked copy of the warning: %+v", got)
	}
}
