package fallback

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
	"github.com/oomhero/oomhero/internal/watch"
	"github.com/oomhero/oomhero/loader/lead"
)

// eventfds counts the process's open eventfds.
func eventfds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == "anon_inode:[eventfd]" {
			n++
		}
	}
	return n
}

// readsOver returns how many usage reads s made in d.
func readsOver(s *Source, d time.Duration) uint64 {
	before := s.reads.Load()
	time.Sleep(d)
	return s.reads.Load() - before
}

// TestThresholdNotificationV1 runs the poller on a real cgroup v1 memory
// cgroup with a real process: idle far below its threshold the container is
// quiet (read only every quietEvery, not every interval, once the kernel's
// threshold notification is armed); a jump from idle, paced at 20 and
// 200 MiB/s and unpaced, is reported within the bound from the page that
// made the working set cross (OOMHERO_LEAD_BOUND_CGROUPFS, default 100ms
// for shared CI machines; the figure is logged); after the process exits
// the container is quiet again; and when the container goes, its eventfd
// is closed.
func TestThresholdNotificationV1(t *testing.T) {
	root, v := labtest.Root(t)
	if v != watch.V1 {
		t.Skipf("%s is cgroup v2: it has no usage threshold notification, the poller polls (TestRealCgroup)", root)
	}
	bound := 100 * time.Millisecond
	if e := os.Getenv("OOMHERO_LEAD_BOUND_CGROUPFS"); e != "" {
		d, err := time.ParseDuration(e)
		if err != nil {
			t.Fatalf("OOMHERO_LEAD_BOUND_CGROUPFS=%q: %v", e, err)
		}
		bound = d
	}
	const limit = 256 * lab.MiB
	warn, crit := uint64(limit*65/100), uint64(limit*90/100)
	fds := eventfds(t)
	s := New(100*time.Millisecond, 2*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan watch.Reading, 4096)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	// Readings and when they were received (CLOCK_MONOTONIC, the lead
	// child's clock), while the child grows.
	var mu sync.Mutex
	var got []stamped
	recv := make(chan watch.Reading, 4096)
	go func() {
		for r := range out {
			at := lead.Mono()
			mu.Lock()
			got = append(got, stamped{r, at})
			mu.Unlock()
			select {
			case recv <- r:
			default:
			}
		}
	}()
	first := func(id uint64, from int, ok func(watch.Reading) bool) (stamped, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range got[from:] {
			if g.r.ID == id && g.r.Err == nil && ok(g.r) {
				return g, true
			}
		}
		return stamped{}, false
	}

	var lates []time.Duration
	for _, rate := range []uint64{20 * lab.MiB, 200 * lab.MiB, 0} {
		name := fmt.Sprintf("%d MiB/s", rate/lab.MiB)
		if rate == 0 {
			name = "unpaced"
		}
		c := labtest.Cgroup(t, limit)
		child, err := lead.Start(fmt.Sprint(c.Dir), "memory.usage_in_bytes")
		if err != nil {
			t.Fatal(err)
		}
		s.Update([]watch.Target{c.Target(warn, crit, watch.WorkingSet)})
		waitFor(t, recv, c.ID, 2*time.Second, name+": a first reading", func(watch.Reading) bool { return true })
		// Registration takes an RCU grace period; then one read every
		// quietEvery (1 s) instead of ten a second.
		time.Sleep(1500 * time.Millisecond)
		if n := readsOver(s, 3*time.Second); n > 6 {
			t.Fatalf("%s: idle far below the threshold: %d usage reads in 3 s, want at most 6 (quiet: one a second)", name, n)
		}
		// Up to 40 MiB below the warning threshold, still below the
		// armed one (10 MiB below it here), then the jump.
		if _, err := child.Grow(warn-40*lab.MiB, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if n := readsOver(s, 2*time.Second); n > 4 {
			t.Fatalf("%s: idle 40 MiB below the threshold: %d usage reads in 2 s, want at most 4", name, n)
		}
		u0 := usageOf(t, c)
		mu.Lock()
		from := len(got)
		mu.Unlock()
		t0 := time.Now()
		tr, err := child.Grow(48*lab.MiB, rate)
		if err != nil {
			t.Fatal(err)
		}
		var g stamped
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var ok bool
			if g, ok = first(c.ID, from, func(r watch.Reading) bool { return r.WorkingSet() >= warn }); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no reading with the working set at the warning threshold", name)
			}
		}
		rd := g.r
		crossed, ok := tr.Crossing(rd, warn)
		if rate == 0 {
			// Unpaced, the child reads no usage: the crossing is the
			// page that took usage, from where it was, over the
			// threshold (less the charges the kernel batches).
			i := int((warn + rd.InactiveFile - min(u0, warn)) / uint64(os.Getpagesize()))
			crossed, ok = tr[min(i, len(tr)-1)].At, i < len(tr)
		}
		if !ok {
			t.Fatalf("%s: crossing (working set %d KiB, usage %d KiB, inactive file %d KiB) not within the growth (%d pages, usage %d..%d KiB, %s)",
				name, rd.WorkingSet()>>10, rd.Usage>>10, rd.InactiveFile>>10, len(tr), tr[0].Usage>>10, tr[len(tr)-1].Usage>>10, time.Duration(tr[len(tr)-1].At-tr[0].At))
		}
		// From the page that made the working set cross to the receipt
		// of the reading (CLOCK_MONOTONIC both).
		late := time.Duration(int64(g.at - crossed))
		lates = append(lates, late)
		t.Logf("%s from idle: warning reported %s after the working set crossed (grew 48 MiB in %s)", name, late, time.Since(t0).Round(time.Millisecond))
		if late > bound {
			t.Errorf("%s from idle: warning reported %s after the crossing, want <= %s", name, late, bound)
		}
		child.Stop()
		// The process is gone, usage fell below the armed threshold: the
		// kernel signalled it and the container is quiet again.
		time.Sleep(time.Second)
		if n := readsOver(s, 3*time.Second); n > 6 {
			t.Errorf("%s: after the process exited: %d usage reads in 3 s, want at most 6", name, n)
		}
		s.Update(nil)
		time.Sleep(100 * time.Millisecond)
		if n := eventfds(t); n != fds {
			t.Errorf("%s: %d eventfds open after the container went, want %d", name, n, fds)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := eventfds(t); n != fds {
		t.Errorf("%d eventfds open after Run, want %d", n, fds)
	}
	slices.Sort(lates)
	t.Logf("reaction from idle: %v (load %s)", lates, loadavg())
}

func usageOf(t *testing.T, c *lab.Cgroup) uint64 {
	t.Helper()
	r, err := cgroup.NewReader(c.Dir, c.Version, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	u, err := r.Usage()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

type stamped struct {
	r  watch.Reading
	at uint64 // lead.Mono at receipt
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// ThresholdLag must hold at least one CPU's 128 pages.
func TestThresholdLag(t *testing.T) {
	if l := cgroup.ThresholdLag(); l < 128*uint64(os.Getpagesize()) {
		t.Fatalf("ThresholdLag = %d", l)
	}
}

// TestIdleManyContainers polls 100 idle real memory cgroups (v1 and v2)
// and logs the poller's CPU time (getrusage of the test process) over a
// window (OOMHERO_IDLE_WINDOW, default 5s), with and without threshold
// notifications. It asserts the usage reads: one per container every
// quietEvery where the notification is armed (v1), one every interval
// otherwise.
func TestIdleManyContainers(t *testing.T) {
	_, v := labtest.Root(t)
	window := 5 * time.Second
	if e := os.Getenv("OOMHERO_IDLE_WINDOW"); e != "" {
		d, err := time.ParseDuration(e)
		if err != nil {
			t.Fatalf("OOMHERO_IDLE_WINDOW=%q: %v", e, err)
		}
		window = d
	}
	const n = 100
	const limit = 256 * lab.MiB
	var targets []watch.Target
	for range n {
		c := labtest.Cgroup(t, limit)
		targets = append(targets, c.Target(limit*65/100, limit*90/100, watch.WorkingSet))
	}
	for _, notify := range []bool{false, true} {
		s := New(100*time.Millisecond, 2*time.Millisecond)
		if !notify {
			s.register = nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		out := make(chan watch.Reading, 4*n)
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, out) }()
		go func() {
			for range out {
			}
		}()
		base := eventfds(t)
		s.Update(targets)
		time.Sleep(time.Second)
		if notify && v == watch.V1 {
			// Registrations: an RCU grace period each, one at a time.
			for deadline := time.Now().Add(30 * time.Second); eventfds(t)-base < n; time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d thresholds registered after 30 s", eventfds(t)-base, n)
				}
			}
			time.Sleep(time.Second)
		}
		var r0, r1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &r0)
		reads := readsOver(s, window)
		unix.Getrusage(unix.RUSAGE_SELF, &r1)
		cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		close(out)
		perSec := float64(reads) / window.Seconds()
		t.Logf("%d idle containers (%s), notifications %v: %.0f usage reads/s, CPU %.3f %% of one core (load %s)",
			n, v, notify, perSec, 100*cpu.Seconds()/window.Seconds(), loadavg())
		want := float64(n) / s.interval.Seconds() // polled every interval
		if notify && v == watch.V1 {
			want = float64(n) / s.quietEvery().Seconds()
		}
		if perSec > want*1.3+5 {
			t.Errorf("notifications %v: %.0f usage reads/s, want about %.0f", notify, perSec, want)
		}
	}
}
