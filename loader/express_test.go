//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/express"
	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// recordingSender sends for real and records what it was asked.
type recordingSender struct {
	signals.PidfdSender
	mu    sync.Mutex
	calls int
}

func (r *recordingSender) SendExpected(pid int, want signals.Expect, sig unix.Signal) error {
	r.mu.Lock()
	r.calls++
	r.mu.Unlock()
	return r.PidfdSender.SendExpected(pid, want, sig)
}

// TestExpressFiresOnCrossing: on a real cgroup, the signal armed for the
// warning goes out from the source's reader with the reading that shows
// the crossing (once), through a real pidfd send to the leaker.
func TestExpressFiresOnCrossing(t *testing.T) {
	c := labtest.Cgroup(t, 256*lab.MiB)
	leaker := labtest.Leaker(t, c)
	warn, crit := uint64(100*lab.MiB), uint64(160*lab.MiB)
	start, err := signals.StartTime("/proc", leaker.Pid())
	if err != nil {
		t.Fatal(err)
	}
	snd := &recordingSender{PidfdSender: signals.PidfdSender{Proc: "/proc"}}
	plans := express.New(snd)
	s := newSource(t, Options{})
	s.SetExpress(plans)
	r := run(t, s)
	s.Update([]watch.Target{c.Target(warn, crit, watch.Usage)})
	r.wait(t, 0, 2*time.Second, "after Update", func(rd watch.Reading) bool { return rd.ID == c.ID })
	p := &express.Plan{Metric: watch.Usage}
	// SIGWINCH: ignored by default, the leaker survives it.
	p.Levels[watch.Warning] = &express.Level{Threshold: warn, Signal: unix.SIGWINCH,
		Targets: []express.Target{{PID: leaker.Pid(), Want: signals.Expect{Start: start}}}}
	plans.Arm(c.ID, p)
	n := len(r.readings())

	if err := leaker.Anon(120*lab.MiB, 400*lab.MiB); err != nil {
		t.Fatal(err)
	}
	rd, i := r.wait(t, n, 2*time.Second, "at or above warning", func(rd watch.Reading) bool { return rd.Usage >= warn })
	if len(rd.Sent) != 1 || rd.Sent[0].Err != nil || rd.Sent[0].PID != leaker.Pid() || rd.Sent[0].Level != watch.Warning {
		t.Fatalf("first reading over the warning (%s, usage %d MiB) sent %+v, want one SIGWINCH to %d", rd.Origin, rd.Usage/lab.MiB, rd.Sent, leaker.Pid())
	}
	t.Logf("sent by the %s reader %s after the kernel event (read %s before the send)", rd.Origin, rd.Latency+rd.Sent[0].At.Sub(rd.Time), rd.Sent[0].At.Sub(rd.Time))
	if err := leaker.Anon(20*lab.MiB, 400*lab.MiB); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	for _, later := range r.readings()[i+1:] {
		if len(later.Sent) != 0 {
			t.Errorf("a later reading sent again: %+v", later.Sent)
		}
	}
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if snd.calls != 1 {
		t.Errorf("%d sends, want 1", snd.calls)
	}
}

// TestSlowReadingSplit: a kernel event's reading over a millisecond is
// split, at debug level, into the wait for the ring reader's wake, the time
// from the wake to the read and the read.
func TestSlowReadingSplit(t *testing.T) {
	var b strings.Builder
	s := &Source{opts: Options{Logger: slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))}}
	const dir = "/sys/fs/cgroup/memory/x"
	s.slowReading(dir, 1_000_000, 1_100_000, 1_200_000, 1_500_000) // 500 µs: quiet
	s.slowReading(dir, 1_000_000, 3_500_000, 4_000_000, 4_300_000)
	s.slowReading(dir, 5_000_000, 0, 1_000_000, 9_000_000) // clocks out of order: quiet
	s.slowReading(dir, 1_000_000, 0, 3_000_000, 3_100_000) // no wake time
	out := b.String()
	if strings.Count(out, "slow reading") != 2 ||
		!strings.Contains(out, "event_to_wake=2.5ms wake_to_read=500µs read=300µs") ||
		!strings.Contains(out, "event_to_wake=unknown wake_to_read=2ms read=100µs") {
		t.Fatalf("log:\n%s", out)
	}
}
