package fallback

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

// These tests need no root: the poll schedule is pure arithmetic on the
// monotonic clock, and the cgroup files are plain files in a temp dir.

const ms = time.Millisecond

func TestGrid(t *testing.T) {
	s := New(100*ms, 2*ms)
	for _, c := range []struct{ now, want time.Duration }{
		{0, 100 * ms},
		{2 * ms, 100 * ms},
		{79 * ms, 100 * ms},
		{80 * ms, 200 * ms}, // inside the batching window of 100 ms: the next point
		{100 * ms, 200 * ms},
		{250 * ms, 300 * ms},
		{time.Hour + 90*ms, time.Hour + 200*ms},
	} {
		got := s.grid(c.now)
		if got != c.want {
			t.Errorf("grid(%v) = %v, want %v", c.now, got, c.want)
		}
		if got-c.now <= s.batch() {
			t.Errorf("grid(%v) = %v lies in the batching window: the poll would be due again at once", c.now, got)
		}
	}
}

func TestDueAndWake(t *testing.T) {
	s := New(100*ms, 2*ms)
	type p struct {
		next    time.Duration
		relaxed bool
	}
	for _, c := range []struct {
		name  string
		now   time.Duration
		polls []p
		due   []int // indexes into polls
		wake  time.Duration
	}{
		{name: "nothing watched: wake quietEvery (ten intervals) later", now: 500 * ms, wake: 1500 * ms},
		{name: "new target: at once", now: 500 * ms, polls: []p{{next: 0}}, due: []int{0}, wake: 500 * ms},
		{name: "tight poll not yet due", now: 500 * ms, polls: []p{{next: 503 * ms}}, wake: 503 * ms},
		{name: "tight poll due", now: 503 * ms, polls: []p{{next: 503 * ms}}, due: []int{0}, wake: 503 * ms},
		{name: "relaxed polls within the batch join", now: 590 * ms,
			polls: []p{{next: 600 * ms, relaxed: true}, {next: 600 * ms}, {next: 700 * ms, relaxed: true}},
			due:   []int{0}, wake: 600 * ms},
		{name: "overdue (the loop was busy): due, wake at once", now: 900 * ms,
			polls: []p{{next: 600 * ms, relaxed: true}}, due: []int{0}, wake: 900 * ms},
		{name: "far future poll: still wake within quietEvery", now: 0,
			polls: []p{{next: time.Hour}}, wake: time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			polls := map[uint64]*polled{}
			for i, x := range c.polls {
				polls[uint64(i)] = &polled{Target: watch.Target{Container: watch.Container{ID: uint64(i)}}, next: x.next, relaxed: x.relaxed}
			}
			var got []int
			for _, d := range s.due(polls, c.now, nil) {
				got = append(got, int(d.ID))
			}
			slices.Sort(got)
			if !slices.Equal(got, c.due) {
				t.Errorf("due = %v, want %v", got, c.due)
			}
			if w := s.wake(polls, c.now); w != c.wake {
				t.Errorf("wake = %v, want %v", w, c.wake)
			}
		})
	}
}

func TestNextInterval(t *testing.T) {
	s := New(100*ms, 2*ms)
	tg := watch.Target{Container: watch.Container{Limit: 1000}, Warn: 750, Crit: 900, Metric: watch.WorkingSet}
	for _, c := range []struct {
		name  string
		p     polled
		now   time.Duration
		value uint64
		want  time.Duration
	}{
		{name: "first poll: at the shortest interval", p: polled{}, value: 100, want: 2 * ms},
		{name: "flat: the full interval", p: polled{seen: true, lastTime: 0, lastUsage: 100}, now: 100 * ms, value: 100, want: 100 * ms},
		// 100 bytes in 10 ms = 10 kB/s; 150 bytes to the warning: 15 ms, a third is 5 ms.
		{name: "growing toward warning", p: polled{seen: true, lastTime: 0, lastUsage: 500}, now: 10 * ms, value: 600, want: 5 * ms},
		{name: "growing fast: not below the shortest", p: polled{seen: true, lastTime: 0, lastUsage: 100}, now: 1 * ms, value: 740, want: 2 * ms},
		{name: "between warning and critical: toward critical", p: polled{seen: true, lastTime: 0, lastUsage: 700}, now: 10 * ms, value: 800, want: 3333333},
		{name: "above critical: nothing left to warn of", p: polled{seen: true, lastTime: 0, lastUsage: 800}, now: 10 * ms, value: 950, want: 100 * ms},
		{name: "shrinking: the full interval", p: polled{seen: true, lastTime: 0, lastUsage: 700}, now: 10 * ms, value: 600, want: 100 * ms},
		// A burst long ago: the held rate decayed to almost nothing. The
		// estimate is beyond any time.Duration; it must not wrap around
		// to the shortest interval.
		{name: "rate decayed for 18 s: the full interval", p: polled{seen: true, lastTime: 0, lastUsage: 100, rate: 1e6}, now: 18 * time.Second, value: 100, want: 100 * ms},
		{name: "rate decayed to a denormal: the full interval", p: polled{seen: true, lastTime: 0, lastUsage: 100, rate: 5e-324}, now: 100 * ms, value: 100, want: 100 * ms},
		{name: "rate decayed for minutes: the full interval", p: polled{seen: true, lastTime: 0, lastUsage: 100, rate: 1e9}, now: 5 * time.Minute, value: 100, want: 100 * ms},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			p.Target = tg
			if got := s.nextInterval(&p, c.now, c.value, c.value, false); got != c.want {
				t.Errorf("nextInterval = %v, want %v", got, c.want)
			}
		})
	}
}

// fakeClock runs on a monotonic time the test advances and a wall time the
// test steps independently. Its single timer fires when the test says so;
// the test waits for each Reset (a new arming) before it fires, so no fire
// is lost to the drain in Reset.
type fakeClock struct {
	mu       sync.Mutex
	mono     time.Duration
	offset   time.Duration // wall = base + mono + offset
	base     time.Time
	stamps   []time.Duration // mono at every Now call (one per reading)
	c        chan time.Time
	deadline time.Duration // of the last Reset
	seq      int           // Resets so far
}

func newFakeClock() *fakeClock {
	return &fakeClock{base: time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), c: make(chan time.Time, 1)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stamps = append(f.stamps, f.mono)
	return f.base.Add(f.mono + f.offset).Round(0) // no monotonic reading: wall only
}
func (f *fakeClock) Mono() time.Duration          { f.mu.Lock(); defer f.mu.Unlock(); return f.mono }
func (f *fakeClock) NewTimer(time.Duration) Timer { return f }
func (f *fakeClock) C() <-chan time.Time          { return f.c }
func (f *fakeClock) Stop()                        {}
func (f *fakeClock) Reset(d time.Duration) {
	select { // no stale value after Reset, as time.Timer
	case <-f.c:
	default:
	}
	f.mu.Lock()
	f.deadline, f.seq = f.mono+d, f.seq+1
	f.mu.Unlock()
}

// armed waits until the loop armed its timer more than seen times and
// returns the count and the deadline.
func (f *fakeClock) armed(t *testing.T, seen int) (int, time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Microsecond) {
		f.mu.Lock()
		seq, at := f.seq, f.deadline
		f.mu.Unlock()
		if seq > seen {
			return seq, at
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poll loop armed no timer for 10 s (after %d)", seen)
		}
	}
}

func (f *fakeClock) stamped() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.stamps) }

// fire moves the monotonic clock to at (never back) and fires the timer.
func (f *fakeClock) fire(at time.Duration) {
	f.mu.Lock()
	f.mono = max(f.mono, at)
	f.mu.Unlock()
	select {
	case f.c <- time.Time{}:
	default:
	}
}

func (f *fakeClock) stepWall(d time.Duration) {
	f.mu.Lock()
	f.offset += d
	f.mu.Unlock()
}

// start runs s on clk with target tg: it waits for the loop to arm its
// timer with nothing to poll, then hands it the target (polled at once),
// so the test drives every later turn. It returns the arming count.
func start(t *testing.T, s *Source, clk *fakeClock, tg watch.Target, out chan watch.Reading) (context.CancelFunc, chan error, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	seq, _ := clk.armed(t, 0)
	s.Update([]watch.Target{tg})
	seq, _ = clk.armed(t, seq) // the Update taken, the first poll done
	return cancel, done, seq
}

func v2Dir(t *testing.T, current, inactiveFile uint64) string {
	t.Helper()
	d := t.TempDir()
	t.Cleanup(safefs.AllowAnyFilesystem()) // a fake cgroup directory in a temporary directory
	for name, data := range map[string]string{
		"memory.current": itoa(current) + "\n",
		"memory.stat":    "anon " + itoa(current-inactiveFile) + "\ninactive_file " + itoa(inactiveFile) + "\n",
	} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func itoa(n uint64) string { return string(appendUint(nil, n)) }

func appendUint(b []byte, n uint64) []byte {
	if n >= 10 {
		b = appendUint(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// TestWallClockStepsMissNoPoll: the wall clock jumps back an hour, then
// forward two, while the poller runs. Polls go on every interval of
// monotonic time; only the readings' stamps show the steps.
func TestWallClockStepsMissNoPoll(t *testing.T) {
	clk := newFakeClock()
	const interval = 100 * ms
	s := NewWithClock(interval, 2*ms, clk)
	// 800 of 1000 bytes, warning at 850: close enough that every poll reads
	// memory.stat and is reported, and flat, so polls are relaxed.
	dir := v2Dir(t, 800, 0)
	out := make(chan watch.Reading, 1024)
	cancel, done, seq := start(t, s, clk, watch.Target{Container: watch.Container{ID: 1, Dir: watch.CgroupDir{Root: dir}, Version: watch.V2, Limit: 1000}, Warn: 850, Crit: 950, Metric: watch.WorkingSet}, out)

	const span = 3 * time.Second
	for steppedBack, steppedFwd := false, false; ; {
		_, at := clk.armed(t, seq-1)
		if at > span {
			break
		}
		if !steppedBack && at >= time.Second {
			clk.stepWall(-time.Hour)
			steppedBack = true
		}
		if !steppedFwd && at >= 2*time.Second {
			clk.stepWall(2 * time.Hour)
			steppedFwd = true
		}
		clk.fire(at)
		seq, _ = clk.armed(t, seq)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(out)
	var walls []time.Time
	for rd := range out {
		if rd.Err != nil {
			t.Fatalf("reading error: %v", rd.Err)
		}
		walls = append(walls, rd.Time)
	}
	clk.mu.Lock()
	stamps := slices.Clone(clk.stamps)
	clk.mu.Unlock()
	if len(stamps) != len(walls) {
		t.Fatalf("%d readings, %d clock reads: the test's bookkeeping is off", len(walls), len(stamps))
	}
	// A first poll at once, one after the shortest interval, then one on
	// every grid point up to the span: never a gap above the interval.
	if len(stamps) != 2+int(span/interval) || stamps[0] != 0 || stamps[1] != 2*ms {
		t.Errorf("%d polls in %v of monotonic time, at %v", len(stamps), span, stamps)
	}
	for i := 1; i < len(stamps); i++ {
		if gap := stamps[i] - stamps[i-1]; gap > interval {
			t.Errorf("poll %d came %v after the previous one (at %v), want at most %v", i, gap, stamps[i], interval)
		}
	}
	// The readings do carry the stepped wall clock.
	var back, fwd bool
	for i := 1; i < len(walls); i++ {
		d := walls[i].Sub(walls[i-1])
		back = back || d < -50*time.Minute
		fwd = fwd || d > 100*time.Minute
	}
	if !back || !fwd {
		t.Errorf("the wall clock steps did not show in the readings (back %v, forward %v)", back, fwd)
	}
}

// TestProgressStopsWhenStuck: the loop beats while it turns; blocked (here:
// nobody takes its readings, as when a read hangs) it does not, and
// SinceProgress grows past any liveness limit.
func TestProgressStopsWhenStuck(t *testing.T) {
	clk := newFakeClock()
	s := NewWithClock(100*ms, 2*ms, clk)
	out := make(chan watch.Reading, 1)
	cancel, _, seq := start(t, s, clk, watch.Target{Container: watch.Container{ID: 1, Dir: watch.CgroupDir{Root: v2Dir(t, 800, 0)}, Version: watch.V2, Limit: 1000}, Warn: 850, Crit: 950}, out)
	defer cancel()
	// The first reading fills out; fire once more: the second poll's
	// reading is stamped (right before its send), and the send blocks.
	_, at := clk.armed(t, seq-1)
	clk.fire(at)
	for deadline := time.Now().Add(10 * time.Second); clk.stamped() < 2; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("no second poll")
		}
	}
	time.Sleep(10 * ms) // let it reach the send
	if d := s.SinceProgress(); d != 0 {
		t.Errorf("SinceProgress right after the last turn = %v, want 0", d)
	}
	clk.fire(clk.Mono() + 30*time.Second)
	time.Sleep(10 * ms)
	if d := s.SinceProgress(); d != 30*time.Second {
		t.Errorf("SinceProgress of a stuck loop = %v, want 30s", d)
	}
	clk.mu.Lock()
	seq = clk.seq // the loop has not armed since it blocked
	clk.mu.Unlock()
	<-out // unblock: the pending reading goes out, the loop arms its timer
	_, at = clk.armed(t, seq)
	clk.fire(at) // and turns
	for deadline := time.Now().Add(5 * time.Second); s.SinceProgress() != 0; time.Sleep(ms) {
		if time.Now().After(deadline) {
			t.Fatal("no beat after the loop was unblocked")
		}
	}
}
