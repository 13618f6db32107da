//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/watch"
)

// Event kinds, as in memwatch.c.
const (
	kindUp       = 1
	kindDown     = 2
	kindProgress = 3
	kindPoke     = 4
)

// Origins of the readings a Source delivers.
const (
	OriginBPF    = "bpf"    // caused by a BPF event
	OriginResync = "resync" // a target was (re)configured or records were lost
	OriginPoll   = "poll"   // periodic read while at or above a threshold
)

// Source is the BPF implementation of watch.Source. Create it with New; Run
// it once. Update is safe to call from any goroutine, before or during Run.
type Source struct {
	opts     Options
	l        *loaded
	ring     *ringbuf.Reader
	watched  *ebpf.Map
	filter   *ebpf.Map // 64 words of a bitmap of watched cgroup ids
	lost     *ebpf.Map // entry 0: records the program could not submit
	bits     [64]uint64
	pageSize uint64

	mu         sync.Mutex
	pending    []watch.Target
	hasPending bool
	wake       chan struct{}

	running   atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// Owned by Run.
	targets  map[uint64]*target
	lostSeen uint64
	// resyncs counts resynchronizations after lost records (for tests).
	resyncs atomic.Uint64
	// lostTotal mirrors the program's lost counter for Lost.
	lostTotal atomic.Uint64
	// onEvent, when set before Run, sees every record (for tests).
	onEvent func(memwatchEvent)
}

type target struct {
	t      watch.Target
	r      *cgroup.Reader
	lo     uint64 // lower threshold, bytes of usage
	above  bool   // last known usage >= lo
	last   time.Time
	broken error // last read error, until the next Update
}

// New loads and attaches the BPF program at the first attach point that
// works. The error wraps watch.ErrUnavailable when BPF cannot work on this
// host (no kernel BTF, no privilege, no attach point); any other error is
// inconclusive. The caller must Run or Close the Source.
func New(opts Options) (*Source, error) {
	opts = opts.withDefaults()
	if err := rlimit.RemoveMemlock(); err != nil {
		// Only kernels before 5.11 need it; loading says if it mattered.
		opts.Logger.Debug("cannot raise RLIMIT_MEMLOCK", "err", err)
	}
	l, err := probe(opts.Attach, opts.RingSize)
	if err != nil {
		return nil, err
	}
	s := &Source{
		opts:     opts,
		l:        l,
		watched:  l.coll.Maps[memwatchMapWatched],
		filter:   l.coll.Maps[memwatchMapFilter],
		lost:     l.coll.Maps[memwatchMapLost],
		pageSize: uint64(os.Getpagesize()),
		wake:     make(chan struct{}, 1),
		targets:  map[uint64]*target{},
	}
	if s.watched == nil || s.filter == nil || s.lost == nil {
		l.close()
		return nil, errors.New("bpf object lacks one of its maps")
	}
	if s.ring, err = ringbuf.NewReader(l.coll.Maps[memwatchMapEvents]); err != nil {
		l.close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return s, nil
}

// Name returns "bpf " and the attach point.
func (s *Source) Name() string { return "bpf " + string(s.l.attach) }

// Attach returns the attach point in use.
func (s *Source) Attach() AttachPoint { return s.l.attach }

// Lost returns how many ring-buffer records the program could not submit
// since New, as of the last check (every record batch and every poll tick
// while running). Each loss causes a resync of every target from cgroupfs.
// It is safe to call concurrently with Run.
func (s *Source) Lost() uint64 { return s.lostTotal.Load() }

// ProgramStats returns how many times the program ran and for how long in
// total. Both stay zero unless run-time statistics are enabled
// (sysctl kernel.bpf_stats_enabled=1 or ebpf.EnableStats).
func (s *Source) ProgramStats() (runs uint64, total time.Duration, err error) {
	st, err := s.l.prog.Stats()
	if err != nil {
		return 0, 0, fmt.Errorf("program stats: %w", err)
	}
	return st.RunCount, st.Runtime, nil
}

// Close detaches the program and releases every map, link and file
// descriptor. Run calls it on return; call it only for a Source that was
// never run. It is safe to call more than once.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = errors.Join(s.ring.Close(), s.l.close())
	})
	return s.closeErr
}

// Update replaces the watched targets. Run applies it: it writes the
// thresholds into the BPF map and delivers a reading of each new or changed
// target.
func (s *Source) Update(targets []watch.Target) {
	s.mu.Lock()
	s.pending = slices.Clone(targets)
	s.hasPending = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers readings until ctx ends, then releases everything. It returns
// nil when ctx ended.
func (s *Source) Run(ctx context.Context, out chan<- watch.Reading) (err error) {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("bpf source: Run called twice")
	}
	if s.opts.Realtime {
		// Events are handled at SCHED_FIFO too; the thread goes back to
		// SCHED_OTHER before the caller's goroutine may use it again.
		runtime.LockOSThread()
		if err := setPolicy(unix.SCHED_FIFO, 1); err != nil {
			runtime.UnlockOSThread()
			s.opts.Logger.Warn("cannot make the bpf source real-time (needs CAP_SYS_NICE), staying SCHED_OTHER", "err", err)
		} else {
			defer func() {
				if setPolicy(0 /* SCHED_OTHER */, 0) == nil {
					runtime.UnlockOSThread()
				}
			}()
		}
	}
	recs := make(chan memwatchEvent, 4096)
	readErr := make(chan error, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		readErr <- s.readRing(recs, done)
	}()
	defer func() {
		close(done)
		s.ring.Close() // interrupts the reader
		wg.Wait()
		for _, t := range s.targets {
			t.r.Close()
		}
		s.targets = map[uint64]*target{}
		if cerr := s.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bpf source: close: %w", cerr)
		}
	}()

	tickEvery := s.opts.PollInterval
	if s.l.attach.SeesFrees() {
		tickEvery = min(s.opts.Heartbeat, s.opts.PollInterval)
	}
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()

	if err := s.apply(ctx, out); err != nil {
		return ctxNil(ctx, err)
	}
	batch := map[uint64]memwatchEvent{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return fmt.Errorf("bpf source: read ring buffer: %w", err)
		case <-s.wake:
			if err := s.apply(ctx, out); err != nil {
				return ctxNil(ctx, err)
			}
		case <-tick.C:
			if err := s.checkLost(ctx, out); err != nil {
				return ctxNil(ctx, err)
			}
			if err := s.poll(ctx, out); err != nil {
				return ctxNil(ctx, err)
			}
		case ev := <-recs:
			// Coalesce what is already queued: one cgroupfs read per
			// container, latency counted from its oldest event.
			clear(batch)
			if s.onEvent != nil {
				s.onEvent(ev)
			}
			batch[ev.CgroupId] = ev
		drain:
			for {
				select {
				case ev := <-recs:
					if s.onEvent != nil {
						s.onEvent(ev)
					}
					if old, ok := batch[ev.CgroupId]; ok && old.TsNs < ev.TsNs {
						ev.TsNs = old.TsNs
					}
					batch[ev.CgroupId] = ev
				default:
					break drain
				}
			}
			if err := s.checkLost(ctx, out); err != nil {
				return ctxNil(ctx, err)
			}
			for id, ev := range batch {
				t := s.targets[id]
				if t == nil || t.broken != nil {
					continue
				}
				if err := s.deliver(ctx, out, t, OriginBPF, ev.TsNs); err != nil {
					return ctxNil(ctx, err)
				}
			}
		}
	}
}

func ctxNil(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// readRing forwards ring-buffer records until the reader is closed.
func (s *Source) readRing(recs chan<- memwatchEvent, done <-chan struct{}) error {
	if s.opts.Realtime {
		// The thread dies with the goroutine (never unlocked), so no other
		// goroutine ever runs at this priority.
		runtime.LockOSThread()
		if err := setPolicy(unix.SCHED_FIFO, 1); err != nil {
			s.opts.Logger.Warn("cannot make the ring buffer reader real-time (needs CAP_SYS_NICE), staying SCHED_OTHER", "err", err)
		}
	}
	var rec ringbuf.Record
	for {
		if err := s.ring.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
		b := rec.RawSample
		if len(b) < 40 {
			continue
		}
		ev := memwatchEvent{
			CgroupId: binary.NativeEndian.Uint64(b[0:]),
			TsNs:     binary.NativeEndian.Uint64(b[8:]),
			Usage:    binary.NativeEndian.Uint64(b[16:]),
			Max:      binary.NativeEndian.Uint64(b[24:]),
			Level:    binary.NativeEndian.Uint32(b[32:]),
			Kind:     binary.NativeEndian.Uint32(b[36:]),
		}
		select {
		case recs <- ev:
		case <-done:
			return nil
		}
	}
}

// setPolicy sets the scheduling policy of the calling thread.
func setPolicy(policy, prio uint32) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy, Priority: prio}
	return unix.SchedSetAttr(0, &attr, 0)
}

// monoNow returns CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
func monoNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}

// deliver reads t from cgroupfs and sends the reading. kernelTs, when not
// zero, is the time of the kernel event that caused it.
func (s *Source) deliver(ctx context.Context, out chan<- watch.Reading, t *target, origin string, kernelTs uint64) error {
	rd, err := t.r.Read()
	if err != nil {
		t.broken = err
		s.opts.Logger.Warn("cannot read cgroup, not reporting it until the next update",
			"cgroup", t.r.Dir(), "err", err)
		return nil
	}
	rd.ID = t.t.ID
	rd.Origin = origin
	t.above = rd.Usage >= t.lo
	if kernelTs != 0 {
		if now := monoNow(); now > kernelTs {
			rd.Latency = time.Duration(now - kernelTs)
		}
	}
	t.last = time.Now()
	select {
	case out <- rd:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkLost resyncs every target from cgroupfs when the program dropped
// records since the last check.
func (s *Source) checkLost(ctx context.Context, out chan<- watch.Reading) error {
	var lost uint64
	if err := s.lost.Lookup(uint32(0), &lost); err != nil {
		return fmt.Errorf("bpf source: read lost counter: %w", err)
	}
	if lost == s.lostSeen {
		return nil
	}
	s.opts.Logger.Debug("ring buffer records lost, resyncing from cgroupfs", "lost", lost-s.lostSeen)
	s.lostSeen = lost
	s.lostTotal.Store(lost)
	s.resyncs.Add(1)
	for _, t := range s.targets {
		if t.broken != nil {
			continue
		}
		if err := s.deliver(ctx, out, t, OriginResync, 0); err != nil {
			return err
		}
	}
	return nil
}

// poll reads the targets at or above their lower threshold that had no
// reading for the poll interval (charge-only attach points) or the heartbeat.
func (s *Source) poll(ctx context.Context, out chan<- watch.Reading) error {
	every := s.opts.Heartbeat
	if !s.l.attach.SeesFrees() {
		every = s.opts.PollInterval
	}
	now := time.Now()
	for _, t := range s.targets {
		if !t.above || t.broken != nil || now.Sub(t.last) < every-every/4 {
			continue
		}
		if err := s.deliver(ctx, out, t, OriginPoll, 0); err != nil {
			return err
		}
	}
	return nil
}

// thresholds returns the lower and upper thresholds of t in bytes of usage.
func thresholds(t watch.Target) (lo, hi uint64) {
	lo, hi = t.Warn, t.Crit
	switch {
	case lo == 0 && hi == 0:
		return math.MaxUint64, math.MaxUint64
	case lo == 0:
		lo = hi
	case hi == 0:
		hi = lo
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi
}

func (s *Source) pages(bytes uint64) uint64 {
	if bytes == math.MaxUint64 {
		return math.MaxUint64
	}
	return (bytes + s.pageSize - 1) / s.pageSize
}

func sameConfig(a, b watch.Target) bool {
	return a.Warn == b.Warn && a.Crit == b.Crit && a.Limit == b.Limit &&
		a.Dir == b.Dir && a.Version == b.Version && a.Metric == b.Metric
}

// apply installs the pending targets.
func (s *Source) apply(ctx context.Context, out chan<- watch.Reading) error {
	s.mu.Lock()
	pending, has := s.pending, s.hasPending
	s.pending, s.hasPending = nil, false
	s.mu.Unlock()
	if !has {
		return nil
	}
	want := make(map[uint64]watch.Target, len(pending))
	for _, t := range pending {
		want[t.ID] = t
	}
	var fresh []*target
	for id, nt := range want {
		old := s.targets[id]
		if old != nil && sameConfig(old.t, nt) && old.broken == nil {
			old.t = nt
			continue
		}
		if old != nil {
			old.r.Close()
			delete(s.targets, id)
		}
		r, err := cgroup.NewReader(nt.Dir, nt.Version, nt.Limit)
		if err != nil {
			s.opts.Logger.Warn("cannot open cgroup, not watching it", "cgroup", nt.Dir, "err", err)
			continue
		}
		t := &target{t: nt, r: r}
		rd, err := r.Read()
		if err != nil {
			r.Close()
			s.opts.Logger.Warn("cannot read cgroup, not watching it", "cgroup", nt.Dir, "err", err)
			continue
		}
		lo, hi := thresholds(nt)
		t.lo = lo
		limit := nt.Limit
		if limit == 0 {
			limit = rd.Limit
		}
		if limit == 0 || limit == math.MaxUint64 {
			limit = hi
		}
		st := memwatchWatchState{
			Lo:        s.pages(lo),
			Hi:        s.pages(hi),
			Step:      max(1, uint64(float64(limit)*s.opts.ProgressStep)/s.pageSize),
			GapNs:     uint64(s.opts.ProgressGap),
			LastPages: rd.Usage / s.pageSize,
			LastNs:    monoNow(),
		}
		switch {
		case rd.Usage >= hi:
			st.Level = 2
		case rd.Usage >= lo:
			st.Level = 1
		}
		if err := s.watched.Put(nt.ID, st); err != nil {
			r.Close()
			return fmt.Errorf("bpf source: watch cgroup %d: %w", nt.ID, err)
		}
		s.targets[nt.ID] = t
		fresh = append(fresh, t)
	}
	for id, t := range s.targets {
		if _, ok := want[id]; !ok {
			t.r.Close()
			delete(s.targets, id)
		}
	}
	var bits [64]uint64
	for id := range s.targets {
		bits[(id>>6)&63] |= 1 << (id & 63)
	}
	for i, w := range bits {
		if w == s.bits[i] {
			continue
		}
		if err := s.filter.Put(uint32(i), w); err != nil {
			return fmt.Errorf("bpf source: set filter: %w", err)
		}
		s.bits[i] = w
	}
	// Delete map entries of removed targets after the filter no longer
	// lets them through.
	var keys []uint64
	var k uint64
	var v memwatchWatchState
	it := s.watched.Iterate()
	for it.Next(&k, &v) {
		if _, ok := s.targets[k]; !ok {
			keys = append(keys, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("bpf source: list watched cgroups: %w", err)
	}
	for _, k := range keys {
		if err := s.watched.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("bpf source: unwatch cgroup %d: %w", k, err)
		}
	}
	for _, t := range fresh {
		if err := s.deliver(ctx, out, t, OriginResync, 0); err != nil {
			return err
		}
	}
	return nil
}

var _ watch.Source = (*Source)(nil)
