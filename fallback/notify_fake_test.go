package fallback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

// fakeKernel stands for the kernel's threshold notification on a fake v1
// tree: registrations hand out eventfds the test signals itself.
type fakeKernel struct {
	mu    sync.Mutex
	fds   []int
	at    []uint64
	err   error
	asked chan struct{}
	gate  chan struct{} // when set, each registration waits for a value on it
}

func (k *fakeKernel) register(_ watch.CgroupDir, at uint64) (*cgroup.UsageEvent, error) {
	defer func() {
		select {
		case k.asked <- struct{}{}:
		default:
		}
	}()
	if k.gate != nil {
		select {
		case <-k.gate:
		case <-time.After(5 * time.Second): // a test gone wrong must not hang Run
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.at = append(k.at, at)
	if k.err != nil {
		return nil, k.err
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	k.fds = append(k.fds, fd)
	return cgroup.NewUsageEvent(fd, at/uint64(os.Getpagesize())*uint64(os.Getpagesize()), "fake"), nil
}

// signal is the kernel's crossing signal on the latest registration.
func (k *fakeKernel) signal(t *testing.T) {
	t.Helper()
	k.mu.Lock()
	fd := k.fds[len(k.fds)-1]
	k.mu.Unlock()
	if _, err := unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
}

func (k *fakeKernel) registrations() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.at)
}

func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// writeUsage writes the usage file in place, always the same width: a
// truncate and write (os.WriteFile) let the source read it empty between
// the two, which a cgroup file never is.
func writeUsage(t *testing.T, dir string, usage uint64) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "memory.usage_in_bytes"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(fmt.Appendf(nil, "%020d\n", usage), 0); err != nil {
		t.Fatal(err)
	}
}

// fakeV1 runs a Source on a fake v1 tree with the fake kernel; interval
// 20 ms, so quietEvery is 200 ms.
func fakeV1(t *testing.T, k *fakeKernel, usage uint64) (s *Source, dir string, tg watch.Target, out chan watch.Reading, stop func()) {
	t.Cleanup(safefs.AllowAnyFilesystem())
	dir = t.TempDir()
	writeUsage(t, dir, usage)
	if err := os.WriteFile(filepath.Join(dir, "memory.stat"), []byte("total_inactive_file 0\ntotal_rss 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const limit = 256 << 20
	s = New(20*time.Millisecond, 2*time.Millisecond)
	s.register, s.lag = k.register, 128*4096
	tg = watch.Target{Container: watch.Container{ID: 7, Dir: watch.CgroupDir{Root: dir}, Version: watch.V1, Limit: limit},
		Warn: limit * 65 / 100, Crit: limit * 90 / 100, Metric: watch.WorkingSet}
	ctx, cancel := context.WithCancel(context.Background())
	out = make(chan watch.Reading, 1024)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	s.Update([]watch.Target{tg})
	return s, dir, tg, out, func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func waitAsked(t *testing.T, k *fakeKernel, n int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); k.registrations() < n; {
		select {
		case <-k.asked:
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d registrations asked for, want %d", k.registrations(), n)
		}
	}
}

func TestNotifyFakeKernel(t *testing.T) {
	k := &fakeKernel{asked: make(chan struct{}, 1)}
	s, dir, tg, out, stop := fakeV1(t, k, 10<<20)
	waitAsked(t, k, 1)
	wantAt := tg.Warn - (2*s.lag + tg.Limit/32)
	if k.at[0] != wantAt {
		t.Errorf("armed at %d, want %d (warning less twice the lag and limit/32)", k.at[0], wantAt)
	}
	time.Sleep(100 * time.Millisecond)
	if n := readsOver(s, time.Second); n > 7 {
		t.Fatalf("quiet: %d reads in 1 s, want at most 7 (one every 200 ms)", n)
	}

	// Usage jumps over the warning threshold and the kernel signals: a
	// reading at once, not at the next quiet poll.
	for len(out) > 0 {
		<-out
	}
	writeUsage(t, dir, tg.Warn+(1<<20))
	t0 := time.Now()
	k.signal(t)
	waitFor(t, out, tg.ID, time.Second, "usage over the warning threshold", func(r watch.Reading) bool { return r.Usage > tg.Warn })
	if d := time.Since(t0); d > 100*time.Millisecond {
		t.Errorf("reading %v after the signal, want well under quietEvery (200 ms)", d)
	}

	// Back down without the kernel's down signal: the kernel still holds
	// usage above, it would not signal the next rise: polled every
	// interval.
	writeUsage(t, dir, 10<<20)
	// The fall is seen at the next quiet poll (up to quietEvery, later
	// on a loaded machine); from then on the polls are every interval.
	waitFor(t, out, tg.ID, 2*time.Second, "usage back below the warning threshold", func(r watch.Reading) bool { return r.Usage < tg.Warn })
	if n := readsOver(s, 400*time.Millisecond); n < 10 {
		t.Fatalf("below, kernel not agreeing: %d reads in 400 ms, want polls every 20 ms", n)
	}
	k.signal(t) // the down crossing
	time.Sleep(300 * time.Millisecond)
	if n := readsOver(s, time.Second); n > 7 {
		t.Fatalf("quiet again: %d reads in 1 s, want at most 7", n)
	}

	// New thresholds: armed again, the old eventfd closed.
	old := k.fds[0]
	tg2 := tg
	tg2.Warn = tg.Warn - 16<<20
	s.Update([]watch.Target{tg2})
	waitAsked(t, k, 2)
	time.Sleep(50 * time.Millisecond)
	k.mu.Lock()
	if k.fds[1] != old && isOpen(old) {
		t.Errorf("eventfd %d of the old thresholds still open", old)
	}
	if k.at[1] != tg2.Warn-(2*s.lag+tg.Limit/32) {
		t.Errorf("armed again at %d", k.at[1])
	}
	last := k.fds[1]
	k.mu.Unlock()
	stop()
	if isOpen(last) {
		t.Errorf("eventfd %d open after Run returned", last)
	}
}

// A registration answered while usage is already above the armed threshold
// (the kernel signals nothing then: its side is unknown) is not trusted:
// closed, the container polled, and asked again once far below.
func TestNotifyFakeRegisteredAbove(t *testing.T) {
	k := &fakeKernel{asked: make(chan struct{}, 1), gate: make(chan struct{})}
	s, dir, tg, _, stop := fakeV1(t, k, 10<<20)
	defer stop()
	time.Sleep(100 * time.Millisecond) // asked: the registration waits at the gate
	writeUsage(t, dir, tg.Warn-(1<<20))
	k.gate <- struct{}{}
	waitAsked(t, k, 1)
	time.Sleep(100 * time.Millisecond)
	if n := readsOver(s, 400*time.Millisecond); n < 10 {
		t.Fatalf("above the armed threshold: %d reads in 400 ms, want polls every 20 ms", n)
	}
	k.mu.Lock()
	first := k.fds[0]
	k.mu.Unlock()
	if isOpen(first) {
		t.Errorf("eventfd %d registered while above is still open", first)
	}
	writeUsage(t, dir, 10<<20)
	time.Sleep(100 * time.Millisecond)
	k.gate <- struct{}{}
	waitAsked(t, k, 2)
	time.Sleep(300 * time.Millisecond)
	if n := readsOver(s, time.Second); n > 7 {
		t.Fatalf("quiet after the second registration: %d reads in 1 s, want at most 7", n)
	}
}

// Where the kernel refuses (read-only cgroupfs, v2, PREEMPT_RT) the
// container is polled every interval, and asked once only.
func TestNotifyFakeRefused(t *testing.T) {
	k := &fakeKernel{asked: make(chan struct{}, 1), err: fmt.Errorf("fake: %w", cgroup.ErrNoNotify)}
	s, _, _, _, stop := fakeV1(t, k, 10<<20)
	defer stop()
	waitAsked(t, k, 1)
	if n := readsOver(s, 400*time.Millisecond); n < 10 {
		t.Fatalf("refused: %d reads in 400 ms, want polls every 20 ms", n)
	}
	if n := k.registrations(); n != 1 {
		t.Fatalf("%d registrations asked for, want 1", n)
	}
	if !errors.Is(k.err, cgroup.ErrNoNotify) {
		t.Fatal("fake error")
	}
}
