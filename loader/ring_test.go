//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/lab/labtest"
)

func newTestRing(t *testing.T) *ring {
	t.Helper()
	labtest.Root(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		labtest.SkipOrFail(t, "cannot create a ring buffer map: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	r, err := newRing(m)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRingAvailableAfterClose: asking what is queued after Close says
// nothing is; the unguarded reader faults the process here (its mapping
// is gone), which is how Run's return crashed a test binary in the VM.
func TestRingAvailableAfterClose(t *testing.T) {
	r := newTestRing(t)
	if n := r.available(); n != 0 {
		t.Fatalf("empty ring: %d bytes available", n)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := r.available(); n != 0 {
		t.Fatalf("closed ring: %d bytes available", n)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestRingCloseWhileAsked: Close from one goroutine while another keeps
// asking (Run's return against the reader's loop); run with -race.
func TestRingCloseWhileAsked(t *testing.T) {
	for range 50 {
		r := newTestRing(t)
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range 10000 {
				r.available()
			}
		}()
		close(start)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
}

// TestMonoNowIsClockMonotonic: monoNow, carried by the Go runtime's clock,
// stays on CLOCK_MONOTONIC (bpf_ktime_get_ns's clock), read by the system
// call before and after it, and does not drift from it.
func TestMonoNowIsClockMonotonic(t *testing.T) {
	clock := func() uint64 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		return uint64(ts.Nano())
	}
	for range 5 {
		before := clock()
		got := monoNow()
		after := clock()
		// The base's own error is half a system call: tens of µs on
		// this host, and it was 50.5 µs once under TCG emulation in the
		// VM. Another clock (boot time, real time) would be seconds off.
		const slack = 1_000_000
		if got+slack < before || got > after+slack {
			t.Fatalf("monoNow %d outside [%d, %d] of clock_gettime(CLOCK_MONOTONIC)", got, before, after)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
