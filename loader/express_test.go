//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
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
	s := newSource(t, Options{NoKernelSend: true})
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

// kernelSource is a running source watching tg, whose program sends armed
// levels itself, with Plans over a recording sender. On an attach point
// that does not send it checks that the source says so and returns nils;
// on tp_btf without the kfuncs it skips (fails in CI).
func kernelSource(t *testing.T, tg watch.Target) (*running, *express.Plans, *recordingSender) {
	s := newSource(t, Options{})
	if ok, why := s.KernelSends(); !ok {
		s.Close()
		if s.Attach() != LruvecBTF {
			// By design: only tp_btf follows the working set itself
			// (the VM's 6.1 kernel attaches fexit). The feature is
			// off and says why; the test ends there (nil).
			if !strings.Contains(why, string(s.Attach())) {
				t.Fatalf("kernel sends off on %s for another reason: %s", s.Attach(), why)
			}
			t.Logf("kernel sends off on %s, as designed: %s", s.Attach(), why)
			return nil, nil, nil
		}
		// tp_btf without the kfuncs: off by design before Linux 6.13
		// (bpf_send_signal_task), a failure after.
		if v := kernelVersion(t); strings.Contains(why, "kfunc") && (v[0] < 6 || v[0] == 6 && v[1] < 13) {
			t.Logf("kernel sends off on Linux %d.%d, as designed: %s", v[0], v[1], why)
			return nil, nil, nil
		}
		labtest.SkipOrFail(t, "no kernel sends here: %s", why)
	}
	snd := &recordingSender{PidfdSender: signals.PidfdSender{Proc: "/proc"}}
	plans := express.New(snd)
	s.SetExpress(plans)
	r := run(t, s)
	s.Update([]watch.Target{tg})
	r.wait(t, 0, 2*time.Second, "after Update", func(rd watch.Reading) bool { return rd.ID == tg.ID })
	return r, plans, snd
}

// kernelVersion is the running kernel's major and minor version.
func kernelVersion(t *testing.T) [2]int {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var v [2]int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &v[0], &v[1]); err != nil {
		t.Fatalf("kernel release %q: %v", unix.ByteSliceToString(u.Release[:]), err)
	}
	return v
}

// winch is a plan that sends SIGWINCH to targets on entering each level
// whose threshold is not 0.
func winch(m watch.Metric, warn, crit uint64, targets ...express.Target) *express.Plan {
	p := &express.Plan{Metric: m}
	for l, th := range map[watch.Level]uint64{watch.Warning: warn, watch.Critical: crit} {
		if th != 0 {
			p.Levels[l] = &express.Level{Threshold: th, Signal: unix.SIGWINCH, Targets: targets}
		}
	}
	return p
}

// self is this test process as a target: it catches sig (os/signal), so
// the signal's arrival is seen on the returned channel.
func self(t *testing.T, sig unix.Signal) (express.Target, chan os.Signal) {
	got := make(chan os.Signal, 4)
	signal.Notify(got, sig)
	t.Cleanup(func() { signal.Stop(got) })
	start, err := signals.StartTime("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	h, err := signals.ReadHandlers("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return express.Target{PID: os.Getpid(), Want: signals.Expect{Start: start, Name: h.Name, Handler: true}}, got
}

// TestKernelSendOnCrossing: on a real cgroup, the levels armed in the
// kernel are sent by the program on the crossing pages (the warning, then
// the critical, once each, no user-space send), the signal arrives, and
// the reading that follows books them (Kernel, before the reading).
func TestKernelSendOnCrossing(t *testing.T) {
	t.Run("own slot", func(t *testing.T) { kernelSendOnCrossing(t, 0) })
	// The slots before the cgroup's are held by others (cgroups whose ids
	// have the same low bits): the program finds its slot, the last one
	// it may be, further on.
	t.Run("eighth slot", func(t *testing.T) { kernelSendOnCrossing(t, sendProbe-1) })
}

func kernelSendOnCrossing(t *testing.T, held uint64) {
	c := labtest.Cgroup(t, 256*lab.MiB)
	leaker := labtest.Leaker(t, c)
	warn, crit := uint64(100*lab.MiB), uint64(160*lab.MiB)
	r, plans, snd := kernelSource(t, c.Target(warn, crit, watch.Usage))
	if r == nil {
		return
	}
	ks := r.s.(*Source).ks
	ks.mu.Lock()
	for p := range held {
		i, ok := ks.place(c.ID + (p+1)*sendSlots)
		if !ok || i != uint32((c.ID+p)&(sendSlots-1)) {
			t.Fatalf("the %d-th other cgroup with these low bits: slot %d, %v", p+1, i, ok)
		}
	}
	ks.mu.Unlock()
	me, got := self(t, unix.SIGWINCH)
	plans.Arm(c.ID, winch(watch.Usage, warn, crit, me))
	ks.mu.Lock()
	if i, ok := ks.index[c.ID]; !ok || i != uint32((c.ID+held)&(sendSlots-1)) {
		t.Fatalf("cgroup %d in slot %d (%v), want %d", c.ID, i, ok, (c.ID+held)&(sendSlots-1))
	}
	ks.mu.Unlock()
	n := len(r.readings())

	for step, want := range []watch.Level{watch.Warning, watch.Critical} {
		size := []uint64{120 * lab.MiB, 60 * lab.MiB}[step]
		if err := leaker.Anon(size, 400*lab.MiB); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: no SIGWINCH within 2 s of the crossing", want)
		}
		rd, i := r.wait(t, n, 2*time.Second, want.String()+" booked", func(rd watch.Reading) bool { return len(rd.Sent) > 0 })
		n = i + 1
		if len(rd.Sent) != 1 || !rd.Sent[0].Kernel || rd.Sent[0].Level != want || rd.Sent[0].PID != os.Getpid() || rd.Sent[0].Err != nil {
			t.Fatalf("reading booked %+v, want one kernel send of %s to %d", rd.Sent, want, os.Getpid())
		}
		if ahead := rd.Time.Sub(rd.Sent[0].At); ahead < 0 {
			t.Errorf("%s: the kernel's send is dated %s after the reading that booked it", want, -ahead)
		} else {
			t.Logf("%s: sent by the program %s before the reading that booked it (%s)", want, ahead, rd.Origin)
		}
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case <-got:
		t.Error("a third SIGWINCH: a level went twice")
	default:
	}
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if snd.calls != 0 {
		t.Errorf("%d user-space sends, want none (the kernel sent both levels)", snd.calls)
	}
}

// TestKernelSendRefuses: the program leaves alone a target that is not
// what was vetted — another start time (a recycled PID), another command,
// no handler for the signal — and user space, which takes the level over,
// finds the same (its checked send refuses too): nothing is sent.
func TestKernelSendRefuses(t *testing.T) {
	c := labtest.Cgroup(t, 256*lab.MiB)
	leaker := labtest.Leaker(t, c)
	warn, crit := uint64(100*lab.MiB), uint64(200*lab.MiB)
	r, plans, snd := kernelSource(t, c.Target(warn, crit, watch.Usage))
	if r == nil {
		return
	}
	me, got := self(t, unix.SIGWINCH)
	restart, rename := me, me
	restart.Want.Start++
	rename.Want.Name = "not-" + me.Want.Name
	// sleep(1) does not catch SIGWINCH (ignored by default: harmless if
	// it went).
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	var sstart uint64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		h, err := signals.ReadHandlers("/proc", sleeper.Process.Pid)
		if err == nil && h.Name == "sleep" {
			if signals.Handles(h.Caught, unix.SIGWINCH) {
				t.Skipf("sleep catches SIGWINCH here (SigCgt %x)", h.Caught)
			}
			sstart, _ = signals.StartTime("/proc", sleeper.Process.Pid)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep not exec'ed after 5 s: %v", err)
		}
	}
	noHandler := express.Target{PID: sleeper.Process.Pid, Want: signals.Expect{Start: sstart, Name: "sleep", Handler: true}}
	plans.Arm(c.ID, winch(watch.Usage, warn, 0, restart, rename, noHandler))
	n := len(r.readings())
	if err := leaker.Anon(120*lab.MiB, 400*lab.MiB); err != nil {
		t.Fatal(err)
	}
	rd, _ := r.wait(t, n, 2*time.Second, "warning", func(rd watch.Reading) bool { return len(rd.Sent) > 0 })
	for _, sent := range rd.Sent {
		if sent.Kernel || sent.Err == nil {
			t.Errorf("sent %+v: want every target refused", sent)
		}
	}
	select {
	case <-got:
		t.Error("SIGWINCH arrived for targets that are not what was vetted")
	case <-time.After(300 * time.Millisecond):
	}
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if snd.calls != 3 {
		t.Errorf("%d user-space sends, want 3 (each refused)", snd.calls)
	}
}

// TestKernelSendLeavesNearLimitCacheToUserSpace: with the working set as
// the metric, a level entered far from the limit goes from the kernel, and
// one entered within an eighth of the limit while a sixteenth of it or more
// is file cache goes from user space (where a reading in flux is reread).
func TestKernelSendLeavesNearLimitCacheToUserSpace(t *testing.T) {
	dir := cacheDir(t)
	limit := uint64(128 * lab.MiB)
	c := labtest.Cgroup(t, limit)
	leaker := labtest.Leaker(t, c)
	// 40 MiB of file cache (inactive: read once), then anonymous memory:
	// the working set reaches 50 MiB with usage near 90 MiB (far from
	// the limit), and 80 MiB with usage near 120 MiB (over 7/8 of it).
	if err := leaker.Cache(filepath.Join(dir, "cache"), 40*lab.MiB); err != nil {
		t.Fatal(err)
	}
	warn, crit := uint64(50*lab.MiB), uint64(80*lab.MiB)
	r, plans, snd := kernelSource(t, c.Target(warn, crit, watch.WorkingSet))
	if r == nil {
		return
	}
	first := r.readings()[0]
	if first.InactiveFile+first.ActiveFile < limit/16 || first.WorkingSet() >= warn/2 {
		t.Fatalf("setup: file %d MiB, working set %d MiB: want at least %d MiB of file and a working set under %d MiB",
			(first.InactiveFile+first.ActiveFile)/lab.MiB, first.WorkingSet()/lab.MiB, limit/16/lab.MiB, warn/2/lab.MiB)
	}
	me, got := self(t, unix.SIGWINCH)
	plans.Arm(c.ID, winch(watch.WorkingSet, warn, crit, me))
	n := len(r.readings())
	var sent []watch.Sent
	for step, size := range []uint64{50 * lab.MiB, 35 * lab.MiB} {
		if err := leaker.Anon(size, 400*lab.MiB); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(2 * time.Second):
			t.Fatalf("step %d: no SIGWINCH within 2 s", step+1)
		}
		rd, i := r.wait(t, n, 2*time.Second, "booked", func(rd watch.Reading) bool { return len(rd.Sent) > 0 })
		n = i + 1
		sent = append(sent, rd.Sent...)
		t.Logf("step %d: %s: usage %d MiB, working set %d MiB, file %d MiB: sent %+v", step+1, rd.Origin,
			rd.Usage/lab.MiB, rd.WorkingSet()/lab.MiB, (rd.InactiveFile+rd.ActiveFile)/lab.MiB, rd.Sent)
	}
	if len(sent) != 2 || sent[0].Level != watch.Warning || !sent[0].Kernel || sent[1].Level != watch.Critical || sent[1].Kernel || sent[1].Err != nil {
		t.Fatalf("sent %+v: want the warning from the kernel, the critical from user space", sent)
	}
	snd.mu.Lock()
	defer snd.mu.Unlock()
	if snd.calls != 1 {
		t.Errorf("%d user-space sends, want 1 (the critical)", snd.calls)
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
