//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
	"github.com/oomhero/oomhero/internal/watch"
	"github.com/oomhero/oomhero/loader/lead"
)

// Environment:
//
//	CI=true                      missing root/BPF/cgroups fails instead of skipping
//	OOMHERO_CGROUPFS             where cgroupfs is mounted (default /sys/fs/cgroup)
//	OOMHERO_EXPECT_ATTACH        attach point that probing must choose
//	OOMHERO_CACHE_DIR            disk-backed directory for page cache (default t.TempDir())
func TestMain(m *testing.M) {
	lab.MaybeLeaker()
	lead.MaybeChild()
	maybeNSChild()
	os.Exit(m.Run())
}

func newSource(t *testing.T, o Options) *Source {
	t.Helper()
	labtest.Root(t)
	s, err := New(o)
	if errors.Is(err, watch.ErrUnavailable) {
		labtest.SkipOrFail(t, "bpf unavailable: %v", err)
	}
	if err != nil {
		t.Fatalf("inconclusive: %v", err)
	}
	t.Logf("attach point: %s", s.Attach())
	return s
}

// running is a Source running in the background with its readings recorded.
type running struct {
	s      watch.Source
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	all    []watch.Reading
	recvAt []uint64 // CLOCK_MONOTONIC ns at which each reading arrived
	notify chan struct{}
}

func run(t *testing.T, s watch.Source) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, cancel: cancel, done: make(chan error, 1), notify: make(chan struct{}, 1)}
	out := make(chan watch.Reading)
	go func() { r.done <- s.Run(ctx, out) }()
	go func() {
		for {
			select {
			case rd := <-out:
				at := monoNow()
				r.mu.Lock()
				r.all = append(r.all, rd)
				r.recvAt = append(r.recvAt, at)
				r.mu.Unlock()
				select {
				case r.notify <- struct{}{}:
				default:
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(5 * time.Second):
		t.Error("Run did not return 5s after cancel")
	}
}

func (r *running) readings() []watch.Reading {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]watch.Reading(nil), r.all...)
}

// wait returns the first reading from index `from` on that satisfies ok.
func (r *running) wait(t *testing.T, from int, d time.Duration, what string, ok func(watch.Reading) bool) (watch.Reading, int) {
	t.Helper()
	deadline := time.After(d)
	for {
		all := r.readings()
		for i := from; i < len(all); i++ {
			if ok(all[i]) {
				return all[i], i
			}
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("no reading %s within %s (%d readings)", what, d, len(all)-from)
		}
	}
}

func TestProbeOutcomes(t *testing.T) {
	labtest.Root(t)
	for _, a := range AttachPoints {
		s, err := New(Options{Attach: []AttachPoint{a}})
		switch {
		case err == nil:
			t.Logf("%s: loads and attaches", a)
			if s.Attach() != a || s.Name() != "bpf "+string(a) {
				t.Errorf("Attach() = %q, Name() = %q", s.Attach(), s.Name())
			}
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		case errors.Is(err, watch.ErrUnavailable):
			t.Logf("%s: unavailable: %v", a, err)
		default:
			t.Errorf("%s: inconclusive error: %v", a, err)
		}
	}
	s := newSource(t, Options{})
	defer s.Close()
	if want := os.Getenv("OOMHERO_EXPECT_ATTACH"); want != "" && string(s.Attach()) != want {
		t.Errorf("probing chose %s, want %s", s.Attach(), want)
	}
	if _, err := New(Options{Attach: []AttachPoint{"kprobe/nothing"}}); err == nil || errors.Is(err, watch.ErrUnavailable) {
		t.Errorf("unknown attach point: error %v, want an inconclusive error", err)
	}
}

// available returns the attach points that load here.
func available(t *testing.T) []AttachPoint {
	labtest.Root(t)
	var got []AttachPoint
	for _, a := range AttachPoints {
		s, err := New(Options{Attach: []AttachPoint{a}})
		if err != nil {
			t.Logf("%s: %v", a, err)
			continue
		}
		s.Close()
		got = append(got, a)
	}
	if len(got) == 0 {
		labtest.SkipOrFail(t, "no attach point loads here")
	}
	return got
}

func TestCrossingsAndDrops(t *testing.T) {
	for _, a := range available(t) {
		t.Run(strings.Split(string(a), "/")[0], func(t *testing.T) { testCrossingsAndDrops(t, a) })
	}
}

func testCrossingsAndDrops(t *testing.T, a AttachPoint) {
	c := labtest.Cgroup(t, 256*lab.MiB)
	leaker := labtest.Leaker(t, c)
	warn, crit := uint64(100*lab.MiB), uint64(160*lab.MiB)
	s := newSource(t, Options{Attach: []AttachPoint{a}})
	var evMu sync.Mutex
	var events []memwatchEvent
	s.onEvent = func(ev memwatchEvent) {
		evMu.Lock()
		events = append(events, ev)
		evMu.Unlock()
	}
	r := run(t, s)
	s.Update([]watch.Target{c.Target(warn, crit, watch.Usage)})
	first, _ := r.wait(t, 0, 2*time.Second, "after Update", func(rd watch.Reading) bool { return rd.ID == c.ID })
	if first.Origin != OriginResync || first.Usage >= warn || first.Limit != c.Limit {
		t.Fatalf("first reading %+v: want origin resync, usage below %d, limit %d", first, warn, c.Limit)
	}
	n := len(r.readings())

	if err := leaker.Anon(120*lab.MiB, 400*lab.MiB); err != nil {
		t.Fatal(err)
	}
	rd, i := r.wait(t, n, time.Second, "at or above warning", func(rd watch.Reading) bool { return rd.Usage >= warn })
	if rd.Origin != OriginBPF || rd.Latency <= 0 {
		t.Errorf("warning crossing reported by %q, latency %s; want bpf with a latency", rd.Origin, rd.Latency)
	}
	t.Logf("warning crossing: usage %d MiB, latency %s", rd.Usage/lab.MiB, rd.Latency)
	if err := leaker.Anon(60*lab.MiB, 400*lab.MiB); err != nil {
		t.Fatal(err)
	}
	rd, i = r.wait(t, i, time.Second, "at or above critical", func(rd watch.Reading) bool { return rd.Usage >= crit })
	if rd.Origin != OriginBPF {
		t.Errorf("critical crossing reported by %q, want bpf", rd.Origin)
	}
	t.Logf("critical crossing: usage %d MiB, latency %s", rd.Usage/lab.MiB, rd.Latency)

	// Kernel figures equal cgroupfs: the limit exactly, the usage at a
	// crossing within what the leaker added since.
	reader, err := cgroup.NewReader(c.Dir, c.Version, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	now, err := reader.Read()
	if err != nil {
		t.Fatal(err)
	}
	evMu.Lock()
	var ups int
	for _, ev := range events {
		if ev.CgroupId != c.ID {
			t.Errorf("event of cgroup %d, only %d is watched", ev.CgroupId, c.ID)
		}
		if ev.Kind == kindPoke {
			continue
		}
		if got := ev.Max * s.pageSize; got != now.Limit {
			t.Errorf("kernel limit %d, cgroupfs %d", got, now.Limit)
		}
		if ev.Kind == kindUp {
			ups++
			u := ev.Usage * s.pageSize
			lo := map[uint32]uint64{1: warn, 2: crit}[ev.Level]
			if u < lo || u > now.Usage {
				t.Errorf("up to level %d at kernel usage %d: want in [%d, %d] (cgroupfs now)", ev.Level, u, lo, now.Usage)
			}
		}
	}
	evMu.Unlock()
	if a != LruvecTracepoint && ups != 2 {
		t.Errorf("%d up events, want 2", ups)
	}

	// Drops: tp_btf sees the frees; fexit gets them from polling.
	if err := leaker.Free(); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	rd, _ = r.wait(t, i, 2*time.Second, "below warning after free", func(rd watch.Reading) bool { return rd.Usage < warn })
	t.Logf("drop reported by %s after %s (usage %d MiB)", rd.Origin, time.Since(freed), rd.Usage/lab.MiB)
	if a.SeesFrees() && a != LruvecTracepoint && rd.Origin != OriginBPF {
		t.Errorf("drop reported by %q, want bpf on %s", rd.Origin, a)
	}
}

func TestUnwatchedSilent(t *testing.T) {
	watched := labtest.Cgroup(t, 256*lab.MiB)
	other := labtest.Cgroup(t, 256*lab.MiB)
	leaker := labtest.Leaker(t, other)
	s := newSource(t, Options{})
	var evMu sync.Mutex
	var events []memwatchEvent
	s.onEvent = func(ev memwatchEvent) {
		evMu.Lock()
		events = append(events, ev)
		evMu.Unlock()
	}
	r := run(t, s)
	s.Update([]watch.Target{watched.Target(10*lab.MiB, 20*lab.MiB, watch.Usage)})
	r.wait(t, 0, 2*time.Second, "after Update", func(rd watch.Reading) bool { return rd.ID == watched.ID })
	if err := leaker.Anon(200*lab.MiB, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	evMu.Lock()
	defer evMu.Unlock()
	if len(events) != 0 {
		t.Errorf("%d kernel events (first %+v), want none: the leaking cgroup is not watched and the watched one is idle", len(events), events[0])
	}
	for _, rd := range r.readings()[1:] {
		t.Errorf("unexpected reading %+v", rd)
	}
}

func TestLostRecordsResync(t *testing.T) {
	c := labtest.Cgroup(t, 256*lab.MiB)
	leaker := labtest.Leaker(t, c)
	// A one-page ring, a progress event on every page: records must be lost.
	s := newSource(t, Options{RingSize: uint32(os.Getpagesize()), ProgressGap: time.Nanosecond, ProgressStep: 1e-12})
	r := run(t, s)
	s.Update([]watch.Target{c.Target(4*lab.MiB, 200*lab.MiB, watch.Usage)})
	r.wait(t, 0, 2*time.Second, "after Update", func(rd watch.Reading) bool { return rd.ID == c.ID })
	n := len(r.readings())
	if err := leaker.Anon(150*lab.MiB, 0); err != nil {
		t.Fatal(err)
	}
	r.wait(t, n, 2*time.Second, "from a resync after lost records", func(rd watch.Reading) bool { return rd.Origin == OriginResync })
	var lost uint64
	if err := s.lost.Lookup(uint32(0), &lost); err != nil {
		t.Fatal(err)
	}
	if lost == 0 || s.resyncs.Load() == 0 {
		t.Errorf("lost %d records, %d resyncs; want both > 0", lost, s.resyncs.Load())
	}
	// The last reading is the truth after the leak settled.
	time.Sleep(300 * time.Millisecond)
	all := r.readings()
	if last := all[len(all)-1]; last.Usage < 150*lab.MiB {
		t.Errorf("last reading %d MiB, the leaker holds 150 MiB", last.Usage/lab.MiB)
	}
	t.Logf("lost %d records, %d resyncs, %d readings", lost, s.resyncs.Load(), len(all))
}

// TestSettleRead: settleAfter after a target is first seeded, it is read
// once (origin poll) even far below its thresholds, and its kernel offset
// is then the one that read shows: page cache that came after the seed is
// in it. No other poll follows while it stays below.
func TestSettleRead(t *testing.T) {
	dir := t.TempDir()
	limit := uint64(256 * lab.MiB)
	c := labtest.Cgroup(t, limit)
	leaker := labtest.Leaker(t, c)
	s := newSource(t, Options{})
	r := run(t, s)
	s.Update([]watch.Target{c.Target(limit*80/100, limit*90/100, watch.WorkingSet)})
	r.wait(t, 0, 2*time.Second, "after Update", func(rd watch.Reading) bool { return rd.ID == c.ID })
	file := filepath.Join(dir, "settle")
	if err := leaker.Cache(file, 8*lab.MiB); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rd, i := r.wait(t, 0, settleAfter+3*time.Second, "settle read", func(rd watch.Reading) bool {
		return rd.ID == c.ID && rd.Origin == OriginPoll
	})
	t.Logf("settle read %s after the cache write: usage %d, inactive file %d", time.Since(start).Round(time.Millisecond), rd.Usage, rd.InactiveFile)
	if !s.Attach().SeesFrees() {
		return // charge-only attach points poll every PollInterval anyway
	}
	s.tmu.Lock()
	tg := s.targets[c.ID]
	want := s.offsetPages(tg.t, rd)
	got := tg.kOffset
	s.tmu.Unlock()
	if got != want {
		t.Errorf("kernel offset %d pages after the settle read, want %d (the read's)", got, want)
	}
	time.Sleep(2500 * time.Millisecond)
	for _, rd := range r.readings()[i+1:] {
		if rd.ID == c.ID && rd.Origin == OriginPoll {
			t.Errorf("a second poll below the thresholds: %+v", rd)
		}
	}
}

func TestPageCacheNoFloodAnonCaught(t *testing.T) {
	dir := os.Getenv("OOMHERO_CACHE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		labtest.SkipOrFail(t, "%s is not disk-backed: page cache there is not reclaimable (set OOMHERO_CACHE_DIR)", dir)
	}
	limit := uint64(128 * lab.MiB)
	c := labtest.Cgroup(t, limit)
	leaker := labtest.Leaker(t, c)
	warn, crit := limit*75/100, limit*90/100
	s := newSource(t, Options{})
	r := run(t, s)
	s.Update([]watch.Target{c.Target(warn, crit, watch.WorkingSet)})
	r.wait(t, 0, 2*time.Second, "after Update", func(rd watch.Reading) bool { return rd.ID == c.ID })
	n := len(r.readings())

	// 3x the limit of page cache: usage sits at the limit.
	file := filepath.Join(dir, fmt.Sprintf("oomhero-cache-%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(file) })
	start := time.Now()
	if err := leaker.Cache(file, 3*limit); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	took := time.Since(start)
	cache := r.readings()[n:]
	bound := int(took/s.opts.Heartbeat) + int(took/s.opts.ProgressGap)/4 + 8
	if !s.Attach().SeesFrees() {
		bound = int(took/s.opts.PollInterval) + int(took/s.opts.ProgressGap) + 8
	}
	t.Logf("page cache phase: %d readings in %s (bound %d)", len(cache), took.Round(time.Millisecond), bound)
	if len(cache) > bound {
		t.Errorf("%d readings during %s of page cache at the limit, want at most %d", len(cache), took, bound)
	}
	var high uint64
	spiked := -1
	for i, rd := range cache {
		high = max(high, rd.Usage)
		if rd.WorkingSet() >= warn {
			spiked = i
			// Reclaim moves dirty and writeback pages to the active list
			// for a while (seen here: 95 MiB of writeback, 96 MiB active
			// file, 27 MiB inactive at a 128 MiB limit): the working set,
			// as cgroupfs and kubelet count it, does cross. It must come
			// down again, below.
			t.Logf("page cache phase: working set %d MiB >= warning %d MiB (usage %d, inactive file %d) by %s",
				rd.WorkingSet()/lab.MiB, warn/lab.MiB, rd.Usage/lab.MiB, rd.InactiveFile/lab.MiB, rd.Origin)
		}
	}
	// Settled: once cgroupfs says the working set is below warning, so does
	// the source's last reading.
	reader, err := cgroup.NewReader(c.Dir, c.Version, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		now, err := reader.Read()
		if err != nil {
			t.Fatal(err)
		}
		high = max(high, now.Usage)
		if now.WorkingSet() < warn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("page cache phase: working set still %d MiB (inactive file %d MiB) 5 s after the writes", now.WorkingSet()/lab.MiB, now.InactiveFile/lab.MiB)
		}
	}
	if spiked >= 0 {
		r.wait(t, n+spiked+1, 3*time.Second, "with the working set back below warning after the spike", func(rd watch.Reading) bool {
			return rd.WorkingSet() < warn
		})
	}
	if high < warn {
		t.Fatalf("page cache phase: usage peaked at %d MiB, below the %d MiB the test needs", high/lab.MiB, warn/lab.MiB)
	}

	// Anonymous growth on top of the full cache is caught promptly.
	n = len(r.readings())
	if err := leaker.Anon(limit*85/100, 200*lab.MiB); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	rd, _ := r.wait(t, n, 2*time.Second, "with working set at or above warning", func(rd watch.Reading) bool { return rd.WorkingSet() >= warn })
	t.Logf("anon on cache: working set %d MiB by %s, %s after the leaker finished", rd.WorkingSet()/lab.MiB, rd.Origin, rd.Time.Sub(done))
	if late := rd.Time.Sub(done); late > 500*time.Millisecond {
		t.Errorf("working-set crossing reported %s after the leaker finished, want <= 500ms (the 1 s heartbeat must not be what caught it)", late)
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	c := labtest.Cgroup(t, 64*lab.MiB)
	before := countFDs(t)
	s := newSource(t, Options{})
	info, err := s.l.prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	progID, _ := info.ID()
	mapIDs, _ := info.MapIDs()
	linkInfo, err := s.l.link.Info()
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, s)
	s.Update([]watch.Target{c.Target(32*lab.MiB, 48*lab.MiB, watch.Usage)})
	r.wait(t, 0, 2*time.Second, "after Update", func(rd watch.Reading) bool { return rd.ID == c.ID })
	r.stop(t)

	if after := countFDs(t); after != before {
		t.Errorf("%d open fds after Run returned, %d before New", after, before)
	}
	gone := func() error {
		if p, err := ebpf.NewProgramFromID(progID); err == nil {
			p.Close()
			return fmt.Errorf("program %d still loaded", progID)
		}
		for _, id := range mapIDs {
			if m, err := ebpf.NewMapFromID(id); err == nil {
				m.Close()
				return fmt.Errorf("map %d still exists", id)
			}
		}
		_ = linkInfo
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := gone()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestSlotOverflow watches a cgroup whose slot another (lower) id holds, so
// the program finds it through the overflow map, then moves it back.
func TestSlotOverflow(t *testing.T) {
	var c *lab.Cgroup
	for range 1000 {
		c = labtest.Cgroup(t, 256*lab.MiB)
		if c.ID > slotCount {
			break
		}
	}
	if c.ID <= slotCount {
		t.Fatalf("no cgroup id above %d after 1000 cgroups", slotCount)
	}
	idle := labtest.Cgroup(t, 64*lab.MiB)
	leaker := labtest.Leaker(t, c)
	warn, crit := uint64(100*lab.MiB), uint64(160*lab.MiB)
	fake := idle.Target(warn, crit, watch.Usage)
	fake.ID = c.ID - slotCount // same slot, lower: it owns the slot
	s := newSource(t, Options{})
	r := run(t, s)
	s.Update([]watch.Target{fake, c.Target(warn, crit, watch.Usage)})
	r.wait(t, 0, 2*time.Second, "after Update", func(rd watch.Reading) bool { return rd.ID == c.ID })

	for round, what := range []string{"from the overflow map", "from its slot"} {
		n := len(r.readings())
		if err := leaker.Anon(120*lab.MiB, 0); err != nil {
			t.Fatal(err)
		}
		rd, _ := r.wait(t, n, time.Second, "at or above warning "+what, func(rd watch.Reading) bool {
			return rd.ID == c.ID && rd.Usage >= warn && rd.Origin == OriginBPF
		})
		t.Logf("%s: crossing at %d MiB, latency %s", what, rd.Usage/lab.MiB, rd.Latency)
		if err := leaker.Free(); err != nil {
			t.Fatal(err)
		}
		r.wait(t, n, 2*time.Second, "below warning after free", func(rd watch.Reading) bool { return rd.ID == c.ID && rd.Usage < warn })
		if round == 0 {
			s.Update([]watch.Target{c.Target(warn, crit, watch.Usage)})
			r.wait(t, n, 2*time.Second, "after the move", func(rd watch.Reading) bool { return rd.ID == c.ID && rd.Origin == OriginResync })
		}
	}
}

// TestOverflowFullPolled: a cgroup that neither its slot nor the overflow
// map can take is polled from cgroupfs every PollInterval; the source goes
// on, and the cgroup holding the slot is still watched in the kernel.
func TestOverflowFullPolled(t *testing.T) {
	var c *lab.Cgroup
	for range 1000 {
		c = labtest.Cgroup(t, 256*lab.MiB)
		if c.ID > slotCount {
			break
		}
	}
	if c.ID <= slotCount {
		t.Fatalf("no cgroup id above %d after 1000 cgroups", slotCount)
	}
	owner := labtest.Cgroup(t, 256*lab.MiB)
	leaker := labtest.Leaker(t, c)
	warn, crit := uint64(100*lab.MiB), uint64(160*lab.MiB)
	fake := owner.Target(warn, crit, watch.Usage)
	fake.ID = c.ID - slotCount // same slot, lower: it owns the slot
	const every = 50 * time.Millisecond
	s := newSource(t, Options{PollInterval: every})
	s.overflowCap = 0 // the overflow map is full
	r := run(t, s)
	s.Update([]watch.Target{fake, c.Target(warn, crit, watch.Usage)})
	r.wait(t, 0, 2*time.Second, "after Update", func(rd watch.Reading) bool { return rd.ID == c.ID })
	s.tmu.Lock()
	p := s.placed[c.ID]
	s.tmu.Unlock()
	if !p.polled {
		t.Fatalf("cgroup placed %+v, want polled", p)
	}
	n := len(r.readings())
	if err := leaker.Anon(120*lab.MiB, 0); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	rd, _ := r.wait(t, n, 2*time.Second, "at or above warning by polling", func(rd watch.Reading) bool {
		return rd.ID == c.ID && rd.Usage >= warn
	})
	t.Logf("polled cgroup: crossing seen by %q %s after the leaker finished", rd.Origin, time.Since(done))
	if rd.Origin != OriginPoll {
		t.Errorf("crossing of the polled cgroup reported by %q, want poll", rd.Origin)
	}
	// Polled while below its thresholds too: readings keep coming.
	if err := leaker.Free(); err != nil {
		t.Fatal(err)
	}
	r.wait(t, n, 2*time.Second, "below warning after free", func(rd watch.Reading) bool { return rd.ID == c.ID && rd.Usage < warn })
	// Room again: it moves into the overflow map and the kernel watches it.
	s.tmu.Lock()
	s.overflowCap = slotCount
	s.tmu.Unlock()
	n = len(r.readings())
	s.Update([]watch.Target{fake, c.Target(warn+lab.MiB, crit, watch.Usage)})
	r.wait(t, n, 2*time.Second, "after the move", func(rd watch.Reading) bool { return rd.ID == c.ID && rd.Origin == OriginResync })
	n = len(r.readings())
	if err := leaker.Anon(120*lab.MiB, 0); err != nil {
		t.Fatal(err)
	}
	r.wait(t, n, time.Second, "at or above warning from the overflow map", func(rd watch.Reading) bool {
		return rd.ID == c.ID && rd.Usage >= warn && rd.Origin == OriginBPF
	})
}

// TestProcessEvents: a process started in this PID namespace is announced
// on ProcessEvents, and a storm of them at most once a ProcessGap.
func TestProcessEvents(t *testing.T) {
	const gap = 100 * time.Millisecond
	s := newSource(t, Options{ProcessGap: gap})
	ch := s.ProcessEvents()
	if ch == nil {
		labtest.SkipOrFail(t, "no process events on this kernel: %v", s.l.procErr)
	}
	r := run(t, s)
	_ = r
	drain := func(d time.Duration) int {
		n := 0
		for end := time.After(d); ; {
			select {
			case <-ch:
				n++
			case <-end:
				return n
			}
		}
	}
	drain(3 * gap) // whatever ran before
	start := time.Now()
	if err := exec.Command("true").Run(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Logf("process event %s after the process started", time.Since(start))
	case <-time.After(2 * time.Second):
		t.Fatal("no process event within 2s of starting a process")
	}
	drain(3 * gap)
	// A storm: 200 processes in about a second.
	done := make(chan int)
	go func() { done <- drain(1500 * time.Millisecond) }()
	stormStart := time.Now()
	for range 200 {
		if err := exec.Command("true").Run(); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(stormStart)
	n := <-done
	most := int(1500*time.Millisecond/gap) + 2
	t.Logf("storm of 200 processes in %s: %d notifications (at most %d)", took.Round(time.Millisecond), n, most)
	if n == 0 || n > most {
		t.Errorf("%d notifications for a storm of 200 processes, want 1..%d", n, most)
	}
}
