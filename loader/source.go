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
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/express"
	"github.com/oomhero/oomhero/internal/heartbeat"
	"github.com/oomhero/oomhero/internal/watch"
)

// Event kinds, as in memwatch.c.
const (
	kindUp       = 1
	kindDown     = 2
	kindProgress = 3
	kindPoke     = 4
	kindProc     = 5
)

// Origins of the readings a Source delivers.
const (
	OriginBPF    = "bpf"    // caused by a BPF event
	OriginResync = "resync" // a target was (re)configured or records were lost
	OriginPoll   = "poll"   // periodic read while at or above a threshold, or the settle read (settleAfter)
)

// Source is the BPF implementation of watch.Source. Create it with New; Run
// it once. Update is safe to call from any goroutine, before or during Run.
type Source struct {
	opts     Options
	l        *loaded
	ring     *ring
	express  *express.Plans // nil: none
	ks       *kernelSends   // nil: the program does not send
	slots    *ebpf.Map      // watched cgroups by the low bits of their id
	overflow *ebpf.Map      // watched cgroups whose slot is taken, by id
	lost     *ebpf.Map      // entry 0: records the program could not submit
	pageSize uint64

	wokeAt  uint64 // when the ring reader read the batch being handled (CLOCK_MONOTONIC ns); under tmu
	sendWhy string // why the program does not send armed levels itself

	mu         sync.Mutex
	pending    []watch.Target
	hasPending bool
	wake       chan struct{}

	running   atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// tmu guards what follows: Run's loop and the ring reader share it.
	tmu      sync.Mutex
	targets  map[uint64]*target
	placed   map[uint64]placement
	lostSeen uint64
	// overflowCap is how many cgroups the overflow map takes (tests lower
	// it to make the map full).
	overflowCap int
	// resyncs counts resynchronizations after lost records (for tests).
	resyncs atomic.Uint64
	// lostTotal mirrors the program's lost counter for Lost.
	lostTotal atomic.Uint64
	// onEvent, when set before Run, sees every memory record, on the
	// ring reader's goroutine (for tests).
	onEvent func(memwatchEvent)
	// heart beats on every turn of Run's loop (liveness, progress.go).
	heart heartbeat.Heart

	// Process events (nil procCh: the programs are not attached).
	procs   *ebpf.Map
	changed *ebpf.Map
	procCfg memwatchProcWatch
	// changedLost is lost[1] (PIDs `changed` could not take) as of the
	// last ProcessChanges.
	changedLost uint64
	procCh      chan struct{}
	procMu      sync.Mutex
	procLast    time.Time
	procTimer   *time.Timer
	// takeMu keeps Close from closing the maps under a ProcessChanges
	// (the agent may call it while its context ends and Run closes);
	// mapsClosed is set under it.
	takeMu     sync.Mutex
	mapsClosed bool
}

type target struct {
	t      watch.Target
	r      *cgroup.Reader
	lo     uint64 // lower threshold, bytes of the metric
	above  bool   // last known metric (usage on fexit) >= lo
	last   time.Time
	broken error // last read error, until the next Update
	polled bool  // not in the kernel's maps (they are full): read every PollInterval

	// The kernel's view, as of the last seed or event: the level it last
	// reported and the offset (pages of usage that are not the metric) it
	// was seeded with.
	kLevel  uint32
	kOffset int64
	// notYet counts consecutive kernel crossings a confirming read did not
	// confirm; past maxNotYet the state is no longer seeded again for them
	// (progress events and polls take over) until kernel and read agree.
	notYet int
	// added is when the target was first seeded; settled tells whether
	// the settle read (settleAfter) was done.
	added   time.Time
	settled bool
}

// settleAfter is how long after a target's first seed it is read and, if
// its offset moved, seeded again, once. The first seed comes right after
// the container started, when its processes' page-cache and LRU updates
// are still in the kernel's per-CPU counters: memory.stat is flushed only
// past a batch of updates per CPU or by the kernel's periodic flush every
// 2 s (mm/memcontrol.c, FLUSH_TIME), so the inactive-file figure the
// offset is seeded from could be off by hundreds of KiB, and the program
// carries the error (it follows the changes, not the figure) until a
// crossing reseeds it: a warning that came 10 ms late at 20 MiB/s in one
// run in five of the node benchmark.
const settleAfter = 3 * time.Second

// maxNotYet bounds the re-arms a target gets for crossings the confirming
// read does not confirm: at most this many records per crossing, never one
// per page for ever.
const maxNotYet = 32

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
	// The kernel's BTF (several MiB, parsed and mmapped from
	// /sys/kernel/btf/vmlinux by btf.LoadKernelSpec) is garbage now; its
	// mapping goes with a cleanup after a collection. An idle sidecar may not
	// collect for minutes: release it now (RSS).
	releaseMemory()
	s := &Source{
		opts:     opts,
		l:        l,
		slots:    l.coll.Maps[memwatchMapSlots],
		overflow: l.coll.Maps[memwatchMapOverflow],
		lost:     l.coll.Maps[memwatchMapLost],
		pageSize: uint64(os.Getpagesize()),
		wake:     make(chan struct{}, 1),
		targets:  map[uint64]*target{},
		placed:   map[uint64]placement{},

		overflowCap: slotCount,
	}
	if s.slots == nil || s.overflow == nil || s.lost == nil {
		l.close()
		return nil, errors.New("bpf object lacks one of its maps")
	}
	if s.ring, err = newRing(l.coll.Maps[memwatchMapEvents]); err != nil {
		l.close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	if err := s.watchProcs(); err != nil {
		opts.Logger.Info("no process events from BPF, processes are rescanned periodically", "reason", err)
	}
	switch {
	case opts.NoKernelSend:
		s.sendWhy = "off (--kernel-send=false)"
	case l.sendErr != nil:
		s.sendWhy = l.sendErr.Error()
	default:
		if s.ks, err = newKernelSends(l.coll.Maps[memwatchMapSends], s.pageSize); err != nil {
			s.sendWhy = err.Error()
		}
	}
	return s, nil
}

// watchProcs arms the process-event programs for this process's PID
// namespace (the one --proc shows) and those below it.
func (s *Source) watchProcs() error {
	if s.l.procErr != nil {
		return s.l.procErr
	}
	s.procs, s.changed = s.l.coll.Maps[memwatchMapProcs], s.l.coll.Maps[memwatchMapChanged]
	if s.procs == nil || s.changed == nil {
		return errors.New("bpf object lacks the procs or changed map")
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return fmt.Errorf("own PID namespace: %w", err)
	}
	s.procCfg = memwatchProcWatch{Ino: st.Ino}
	if err := s.procs.Put(uint32(0), s.procCfg); err != nil {
		return fmt.Errorf("arm process events: %w", err)
	}
	s.procCh = make(chan struct{}, 1)
	return nil
}

// ProcessChanges takes the PIDs (in oomhero's PID namespace) of the
// processes that forked, exec'ed or exited since the last call, into buf.
// complete is false when the kernel could not record some (its map was
// full, or it could not be read): the caller must then look at every
// process. It is safe to call concurrently with Run; the caller calls it
// after a notification on ProcessEvents, which clears the kernel's pending
// flag first, so a change recorded after the take brings another
// notification.
func (s *Source) ProcessChanges(buf []int) (pids []int, complete bool) {
	pids = buf[:0]
	s.takeMu.Lock()
	defer s.takeMu.Unlock()
	if s.changed == nil || s.mapsClosed {
		return pids, false
	}
	complete = true
	var lost uint64
	if err := s.lost.Lookup(uint32(1), &lost); err != nil || lost != s.changedLost {
		s.changedLost = lost
		complete = false
	}
	keys := make([]uint32, 1024)
	vals := make([]uint32, 1024)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := s.changed.BatchLookupAndDelete(&cursor, keys, vals, nil)
		for _, k := range keys[:n] {
			pids = append(pids, int(k))
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return pids, complete
		}
		if err != nil {
			return s.drainOneByOne(pids), false
		}
	}
}

// drainOneByOne empties the changed map key by key (kernels without batch
// operations on hash maps), adding the keys to pids.
func (s *Source) drainOneByOne(pids []int) []int {
	var k uint32
	for range 2 * changedMax {
		if err := s.changed.NextKey(nil, &k); err != nil {
			break
		}
		_ = s.changed.Delete(k)
		pids = append(pids, int(k))
	}
	return pids
}

// changedMax is the size of the kernel's map of changed PIDs (CHANGED_MAX
// in bpf/memwatch.c).
const changedMax = 16384

// ProcessEvents returns a channel that receives a value soon after a
// process of oomhero's PID namespace (or one below it) forked, exec'ed or
// exited (at most one a ProcessGap), or nil when the kernel does not
// provide these events. The agent rescans on it instead of every --rescan
// period, rereading the processes ProcessChanges names.
func (s *Source) ProcessEvents() <-chan struct{} {
	s.procMu.Lock()
	defer s.procMu.Unlock()
	if s.procCh == nil {
		return nil
	}
	return s.procCh
}

// procEvent handles a process-event record: the receiver of ProcessEvents
// is told at once, or ProcessGap after it was told last; the kernel is
// re-armed just before.
func (s *Source) procEvent() {
	s.procMu.Lock()
	defer s.procMu.Unlock()
	if s.procCh == nil || s.procTimer != nil {
		return
	}
	if wait := s.opts.ProcessGap - time.Since(s.procLast); wait > 0 {
		s.procTimer = time.AfterFunc(wait, func() {
			s.procMu.Lock()
			defer s.procMu.Unlock()
			s.procTimer = nil
			if s.procCh != nil {
				s.procFire()
			}
		})
		return
	}
	s.procFire()
}

// procFire clears the kernel's pending flag and notifies. The caller holds
// s.procMu.
func (s *Source) procFire() {
	s.procLast = time.Now()
	if err := s.procs.Put(uint32(0), s.procCfg); err != nil {
		s.opts.Logger.Warn("cannot re-arm process events", "err", err)
	}
	select {
	case s.procCh <- struct{}{}:
	default:
	}
}

// releaseMemory collects garbage twice (the first queues cleanups, such as
// munmap of the kernel BTF, the second finds them run) and returns freed
// memory to the kernel.
func releaseMemory() {
	debug.FreeOSMemory()
	runtime.Gosched()
	debug.FreeOSMemory()
}

// KernelSends tells whether the program sends armed levels itself, and
// why not.
func (s *Source) KernelSends() (bool, string) { return s.ks != nil, s.sendWhy }

// SetExpress makes the source send the signals the agent armed in p for a
// reading, before it hands the reading over (package express). Call it
// before Run.
func (s *Source) SetExpress(p *express.Plans) {
	s.express = p
	if s.ks != nil && p != nil {
		p.SetKernel(s.ks)
	}
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
		s.procMu.Lock()
		if s.procTimer != nil {
			s.procTimer.Stop()
		}
		s.procCh = nil // no more notifications
		s.procMu.Unlock()
		s.takeMu.Lock()
		s.mapsClosed = true
		s.closeErr = errors.Join(s.ring.Close(), s.l.close())
		if s.ks != nil {
			s.closeErr = errors.Join(s.closeErr, s.ks.close())
		}
		s.takeMu.Unlock()
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
	ctx, cancel := context.WithCancel(ctx)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		readErr <- s.readRing(ctx, out)
	}()
	defer func() {
		cancel()
		s.ring.Close() // interrupts the reader
		wg.Wait()
		s.tmu.Lock()
		for _, t := range s.targets {
			t.r.Close()
		}
		s.targets = map[uint64]*target{}
		s.tmu.Unlock()
		if cerr := s.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bpf source: close: %w", cerr)
		}
	}()

	// Attach points that see frees need cgroupfs only for the heartbeat
	// (and the lost-record check): one wake-up a Heartbeat keeps an idle
	// sidecar idle. Charge-only ones poll for drops every PollInterval, and
	// so does a Source with cgroups the kernel's maps could not take.
	tickEvery := s.tickEvery()
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()

	locked := func(f func() error) error {
		s.tmu.Lock()
		defer s.tmu.Unlock()
		return f()
	}
	applyNow := func() error {
		err := locked(func() error { return s.apply(ctx, out) })
		if every := s.tickEvery(); every != tickEvery {
			tickEvery = every
			tick.Reset(every)
		}
		return err
	}
	if err := applyNow(); err != nil {
		return ctxNil(ctx, err)
	}
	for {
		s.heart.Beat()
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if err == nil {
				return nil
			}
			return fmt.Errorf("bpf source: %w", err)
		case <-s.wake:
			if err := applyNow(); err != nil {
				return ctxNil(ctx, err)
			}
		case <-tick.C:
			err := locked(func() error {
				if err := s.checkLost(ctx, out); err != nil {
					return err
				}
				return s.poll(ctx, out)
			})
			if err != nil {
				return ctxNil(ctx, err)
			}
		}
	}
}

// tickEvery returns how often Run wakes to poll.
func (s *Source) tickEvery() time.Duration {
	if !s.l.attach.SeesFrees() {
		return s.opts.PollInterval
	}
	s.tmu.Lock()
	defer s.tmu.Unlock()
	for _, t := range s.targets {
		if t.polled {
			return s.opts.PollInterval
		}
	}
	return s.opts.Heartbeat
}

func ctxNil(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// readRing handles ring-buffer records until the reader is closed or ctx
// ends: each batch of records already queued is coalesced into one cgroupfs
// read per container, latency counted from its oldest record. It runs on
// its own goroutine so that a record is handled without waking another one.
func (s *Source) readRing(ctx context.Context, out chan<- watch.Reading) error {
	if s.opts.Realtime {
		// The thread dies with the goroutine (never unlocked), so no other
		// goroutine ever runs at this priority.
		runtime.LockOSThread()
		if err := setPolicy(unix.SCHED_FIFO, 1); err != nil {
			s.opts.Logger.Warn("cannot make the ring buffer reader real-time (needs CAP_SYS_NICE), staying SCHED_OTHER", "err", err)
		} else {
			s.opts.Logger.Debug("ring buffer reader is real-time", "tid", unix.Gettid())
		}
	}
	var rec ringbuf.Record
	batch := map[uint64]memwatchEvent{}
	for {
		clear(batch)
		var woke uint64
		for first := true; first || s.ring.available() > 0; first = false {
			if err := s.ring.ReadInto(&rec); err != nil {
				if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("read ring buffer: %w", err)
			}
			if first {
				woke = monoNow()
			}
			s.addRecord(batch, rec.RawSample)
		}
		if len(batch) == 0 {
			continue
		}
		s.tmu.Lock()
		s.wokeAt = woke
		err := s.handle(ctx, out, batch)
		s.tmu.Unlock()
		if err != nil {
			return ctxNil(ctx, err)
		}
		// The readings sent woke the agent's goroutine into this P's next
		// slot, and ReadInto blocks next in epoll_wait: the P stays with
		// this thread in the syscall (Go 1.26) until a spinning thread
		// steals the agent or the runtime's monitor takes the P back,
		// milliseconds later when the process was idle (its back-off).
		// Yield first, so the agent runs now.
		runtime.Gosched()
	}
}

// recordSize is sizeof(struct event) in memwatch.c.
const recordSize = 40

// decodeRecord decodes one ring-buffer record (struct event, native byte
// order). It rejects a record of another size, an unknown kind, a level
// above 2 and cgroup id 0.
func decodeRecord(b []byte) (memwatchEvent, error) {
	if len(b) != recordSize {
		return memwatchEvent{}, fmt.Errorf("ring buffer record of %d bytes, want %d (struct event)", len(b), recordSize)
	}
	ev := memwatchEvent{
		CgroupId: binary.NativeEndian.Uint64(b[0:]),
		TsNs:     binary.NativeEndian.Uint64(b[8:]),
		Usage:    binary.NativeEndian.Uint64(b[16:]),
		Max:      binary.NativeEndian.Uint64(b[24:]),
		Level:    binary.NativeEndian.Uint32(b[32:]),
		Kind:     binary.NativeEndian.Uint32(b[36:]),
	}
	switch {
	case ev.Kind < kindUp || ev.Kind > kindProc:
		return memwatchEvent{}, fmt.Errorf("ring buffer record of unknown kind %d", ev.Kind)
	case ev.Level > 2:
		return memwatchEvent{}, fmt.Errorf("ring buffer record with level %d, want 0-2", ev.Level)
	case ev.CgroupId == 0 && ev.Kind != kindProc:
		return memwatchEvent{}, errors.New("ring buffer record for cgroup id 0")
	}
	return ev, nil
}

// addRecord decodes one record into batch: the latest record of a cgroup
// wins, with the time of its oldest.
func (s *Source) addRecord(batch map[uint64]memwatchEvent, b []byte) {
	ev, err := decodeRecord(b)
	if err != nil {
		s.opts.Logger.Warn("ignoring ring buffer record", "err", err)
		return
	}
	if ev.Kind == kindProc {
		s.procEvent()
		return
	}
	if s.onEvent != nil {
		s.onEvent(ev)
	}
	if old, ok := batch[ev.CgroupId]; ok && old.TsNs < ev.TsNs {
		ev.TsNs = old.TsNs
	}
	batch[ev.CgroupId] = ev
}

// handle delivers one coalesced batch. The caller holds s.tmu.
func (s *Source) handle(ctx context.Context, out chan<- watch.Reading, batch map[uint64]memwatchEvent) error {
	// Records lost are checked after the batch (a map lookup, a system
	// call): the crossing in hand is read and sent first.
	for id, ev := range batch {
		t := s.targets[id]
		if t == nil || t.broken != nil || t.polled {
			continue
		}
		if ev.Kind != kindPoke {
			t.kLevel = ev.Level
		}
		if err := s.deliver(ctx, out, t, OriginBPF, ev.TsNs); err != nil {
			return err
		}
	}
	return s.checkLost(ctx, out)
}

// setPolicy sets the scheduling policy of the calling thread.
func setPolicy(policy, prio uint32) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: policy, Priority: prio}
	return unix.SchedSetAttr(0, &attr, 0)
}

// monoNow returns CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
// It is read once with clock_gettime(2); after that the Go runtime's
// monotonic clock (CLOCK_MONOTONIC too, through the vDSO) carries it on
// without a system call: a reading of a kernel event took four of them,
// each tens of microseconds on the reader's first steps after a wake here.
func monoNow() uint64 {
	return monoBase + uint64(time.Since(monoStart))
}

// monoStart and monoBase are the same instant on both clocks: monoBase is
// the middle of two clock_gettime calls around monoStart (off by at most
// half of one call).
var monoStart, monoBase = func() (time.Time, uint64) {
	var before, after unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
	start := time.Now()
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &after)
	b, a := uint64(before.Nano()), uint64(after.Nano())
	return start, b + (a-b)/2
}()

// deliver reads t from cgroupfs and sends the reading. kernelTs, when not
// zero, is the time of the kernel event that caused it.
func (s *Source) deliver(ctx context.Context, out chan<- watch.Reading, t *target, origin string, kernelTs uint64) error {
	var readAt uint64
	if kernelTs != 0 {
		readAt = monoNow()
	}
	rd, err := t.r.Read()
	if err != nil {
		t.broken = err
		s.opts.Logger.Warn("cannot read cgroup, not reporting it until the next update",
			"cgroup", t.r.Dir(), "err", err)
		return nil
	}
	if kernelTs != 0 {
		s.slowReading(t.r.Dir(), kernelTs, s.wokeAt, readAt, monoNow())
	}
	if err := s.send(ctx, out, t, rd, origin, kernelTs); err != nil {
		return err
	}
	return s.rearm(t, rd)
}

// slowReadingAfter is the time from a kernel event to the end of its
// cgroupfs read past which a debug line splits it.
const slowReadingAfter = time.Millisecond

// slowReading says at debug level where the time went when a kernel
// event's reading was slow: until the ring reader had the batch (the ring
// buffer's wakeup, the reader thread getting a CPU: woke is when its first
// record was read), from then to the read (the batch before it, the
// targets' lock) and the cgroupfs read.
func (s *Source) slowReading(dir string, kernelTs, woke, readAt, readEnd uint64) {
	if readEnd < kernelTs || time.Duration(readEnd-kernelTs) < slowReadingAfter || readAt < kernelTs {
		return
	}
	wake := "unknown"
	toRead := time.Duration(readAt - kernelTs).String()
	if woke >= kernelTs && woke <= readAt {
		wake, toRead = time.Duration(woke-kernelTs).String(), time.Duration(readAt-woke).String()
	}
	s.opts.Logger.Debug("slow reading of a kernel event", "cgroup", dir, "event_mono_ns", kernelTs,
		"event_to_wake", wake, "wake_to_read", toRead, "read", time.Duration(readEnd-readAt).String())
}

// levelOf returns the level of value against t's thresholds, as memwatch.c
// numbers them.
func levelOf(t watch.Target, value uint64) uint32 {
	lo, hi := thresholds(t)
	switch {
	case value >= hi:
		return 2
	case value >= lo:
		return 1
	}
	return 0
}

// offsetPages returns the pages of rd's usage that are not t's metric.
func (s *Source) offsetPages(t watch.Target, rd watch.Reading) int64 {
	v := rd.Value(t.Metric)
	if v > rd.Usage {
		return 0
	}
	return int64(rd.Usage/s.pageSize) - int64((v+s.pageSize-1)/s.pageSize)
}

// rearm seeds t's kernel state again from rd when the kernel's view
// disagrees with it: the level the kernel last reported is not the level
// of the metric (a crossing of usage that the working set has not made yet,
// or one the kernel missed), or the offset moved since the last seed (page
// cache grew or was reclaimed). The kernel then judges the next page
// afresh, against thresholds that stand where the metric crosses. Crossings
// the read does not confirm are re-armed at most maxNotYet times in a row.
// The caller holds s.tmu.
func (s *Source) rearm(t *target, rd watch.Reading) error {
	p, ok := s.placed[t.t.ID]
	if !ok || t.polled {
		return nil
	}
	level := levelOf(t.t, rd.Value(t.t.Metric))
	offset := s.offsetPages(t.t, rd)
	switch {
	case level != t.kLevel:
		if t.notYet >= maxNotYet {
			return nil
		}
		t.notYet++
	case offset != t.kOffset:
	default:
		t.notYet = 0
		return nil
	}
	st := s.seed(t, rd)
	if err := s.put(t.t.ID, p, st); err != nil {
		return s.demote(t, err)
	}
	t.kLevel, t.kOffset = uint32(st.Level), st.Offset
	return nil
}

// put writes the kernel state of a watched cgroup where p says it lives.
func (s *Source) put(id uint64, p placement, st memwatchWatchState) error {
	if p.inSlot {
		st.Overflow = b2u(p.overflow)
		return s.slots.Put(slotOf(id), st)
	}
	return s.overflow.Put(id, st)
}

// demote makes t a polled target after its kernel state could not be
// written (a full map): it is then read every PollInterval.
func (s *Source) demote(t *target, err error) error {
	s.opts.Logger.Warn("cannot watch cgroup in the kernel, polling it from cgroupfs instead",
		"cgroup", t.r.Dir(), "every", s.opts.PollInterval, "err", err)
	t.polled = true
	s.placed[t.t.ID] = placement{polled: true}
	return nil
}

// send completes a reading of t and sends it.
func (s *Source) send(ctx context.Context, out chan<- watch.Reading, t *target, rd watch.Reading, origin string, kernelTs uint64) error {
	rd.ID = t.t.ID
	rd.Origin = origin
	// Polled while at or above the lower threshold: by the metric where
	// the program follows the offset, by usage on charge-only attach
	// points, where the metric can rise unseen (file pages activated).
	if s.l.attach == ChargeFexit {
		t.above = rd.Usage >= t.lo
	} else {
		t.above = rd.Value(t.t.Metric) >= t.lo
	}
	if kernelTs != 0 {
		if now := monoNow(); now > kernelTs {
			rd.Latency = time.Duration(now - kernelTs)
		}
	}
	s.express.Fire(&rd)
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
	// A lost record may have been a process event: rescan too.
	s.procEvent()
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
		if t.broken != nil {
			continue
		}
		switch {
		case t.polled:
			if now.Sub(t.last) < s.opts.PollInterval-s.opts.PollInterval/4 {
				continue
			}
		case !t.settled && now.Sub(t.added) >= settleAfter:
			t.settled = true // read once, reseeded if its offset moved (rearm)
		case !t.above || now.Sub(t.last) < every-every/4:
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

// slotCount is SLOTS in memwatch.c, and the size of the overflow map.
const slotCount = 4096

func slotOf(id uint64) uint32 { return uint32(id & (slotCount - 1)) }

// placement is where a watched cgroup's state lives in the kernel.
type placement struct {
	inSlot   bool
	overflow bool // when inSlot: the slot's overflow flag
	polled   bool // in no map (the overflow map is full): read from cgroupfs
}

// place decides where each watched cgroup lives: the lowest id of each slot
// holds the slot, the others go to the overflow map, lowest first, while it
// has room (overflowCap entries), and the rest are polled from cgroupfs.
func place(ids []uint64, overflowCap int) map[uint64]placement {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	next := make(map[uint64]placement, len(sorted))
	owner := map[uint32]uint64{}
	var rest []uint64
	for _, id := range sorted {
		if _, taken := owner[slotOf(id)]; taken {
			rest = append(rest, id)
			continue
		}
		owner[slotOf(id)] = id
		next[id] = placement{inSlot: true}
	}
	for i, id := range rest {
		if i >= overflowCap {
			next[id] = placement{polled: true}
			continue
		}
		next[id] = placement{}
		o := owner[slotOf(id)]
		next[o] = placement{inSlot: true, overflow: true}
	}
	return next
}

// seed returns the kernel state of t, seeded from a reading rd.
func (s *Source) seed(t *target, rd watch.Reading) memwatchWatchState {
	lo, hi := thresholds(t.t)
	limit := t.t.Limit
	if limit == 0 {
		limit = rd.Limit
	}
	if limit == 0 || limit == math.MaxUint64 {
		limit = hi
	}
	st := memwatchWatchState{
		Id:        t.t.ID,
		Lo:        s.pages(lo),
		Hi:        s.pages(hi),
		Step:      max(1, uint64(float64(limit)*s.opts.ProgressStep)/s.pageSize),
		GapNs:     uint64(s.opts.ProgressGap),
		LastPages: rd.Usage / s.pageSize,
		LastNs:    monoNow(),
		Level:     uint64(levelOf(t.t, rd.Value(t.t.Metric))),
		Offset:    s.offsetPages(t.t, rd),
		File:      int64((rd.InactiveFile + rd.ActiveFile) / s.pageSize),
	}
	if t.t.Metric != watch.Usage && t.t.Metric != watch.RSS && s.l.attach != ChargeFexit {
		// Working set: the lruvec attach points see the inactive file
		// LRU move and keep the offset up to date themselves.
		st.Flags = flagTrackInactive
	}
	return st
}

// flagTrackInactive is WATCH_TRACK_INACTIVE in memwatch.c.
const flagTrackInactive = 1

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
		if t.ID != 0 {
			want[t.ID] = t
		}
	}
	fresh := map[uint64]watch.Reading{}
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
		rd, err := r.Read()
		if err != nil {
			r.Close()
			s.opts.Logger.Warn("cannot read cgroup, not watching it", "cgroup", nt.Dir, "err", err)
			continue
		}
		t := &target{t: nt, r: r, added: time.Now()}
		t.lo, _ = thresholds(nt)
		s.targets[id] = t
		fresh[id] = rd
	}
	for id, t := range s.targets {
		if _, ok := want[id]; !ok {
			t.r.Close()
			delete(s.targets, id)
		}
	}

	ids := make([]uint64, 0, len(s.targets))
	metrics := make(map[uint64]watch.Metric, len(s.targets))
	for id, t := range s.targets {
		ids = append(ids, id)
		metrics[id] = t.t.Metric
	}
	if s.ks != nil {
		s.ks.setMetrics(metrics)
	}
	next := place(ids, s.overflowCap)
	// Overflow entries that go away or are polled now are deleted first, to
	// make room; then overflow entries are written before slots, so a cgroup
	// moving out of its slot is findable again as soon as the slot's new
	// owner flags the overflow; then what is no longer used is cleared.
	for id, old := range s.placed {
		if p, still := next[id]; !old.inSlot && !old.polled && (!still || p.polled) {
			if err := s.overflow.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("bpf source: unwatch cgroup %d: %w", id, err)
			}
		}
	}
	ordered := make([]uint64, 0, len(next))
	for id := range next {
		ordered = append(ordered, id)
	}
	slices.SortFunc(ordered, func(a, b uint64) int {
		pa, pb := next[a], next[b]
		if pa.inSlot != pb.inSlot {
			if pa.inSlot {
				return 1
			}
			return -1
		}
		return 0
	})
	for _, id := range ordered {
		p, t := next[id], s.targets[id]
		old, had := s.placed[id]
		rd, isFresh := fresh[id]
		t.polled = p.polled
		if p.polled {
			if !old.polled || !had {
				s.opts.Logger.Warn("BPF watch map full, polling cgroup from cgroupfs instead",
					"cgroup", t.r.Dir(), "every", s.opts.PollInterval)
			}
			continue
		}
		if !isFresh && had && old.inSlot == p.inSlot && !old.polled {
			if old.overflow != p.overflow {
				// Only the slot's overflow flag changed: keep the
				// kernel's state.
				var st memwatchWatchState
				if err := s.slots.Lookup(slotOf(id), &st); err != nil {
					return fmt.Errorf("bpf source: read slot of cgroup %d: %w", id, err)
				}
				st.Overflow = b2u(p.overflow)
				if err := s.slots.Put(slotOf(id), st); err != nil {
					return fmt.Errorf("bpf source: watch cgroup %d: %w", id, err)
				}
			}
			continue
		}
		if !isFresh {
			// Moved between slot, overflow and polling: seed it again.
			var err error
			if rd, err = t.r.Read(); err != nil {
				t.broken = err
				s.opts.Logger.Warn("cannot read cgroup, not reporting it until the next update", "cgroup", t.r.Dir(), "err", err)
				continue
			}
			fresh[id] = rd
		}
		st := s.seed(t, rd)
		if err := s.put(id, p, st); err != nil {
			if p.inSlot {
				return fmt.Errorf("bpf source: watch cgroup %d: %w", id, err)
			}
			// The overflow map refused it (full after all): poll it.
			s.opts.Logger.Warn("cannot watch cgroup in the kernel, polling it from cgroupfs instead",
				"cgroup", t.r.Dir(), "every", s.opts.PollInterval, "err", err)
			next[id] = placement{polled: true}
			t.polled = true
			continue
		}
		t.kLevel, t.kOffset, t.notYet = uint32(st.Level), st.Offset, 0
	}
	owned := map[uint32]bool{}
	for id, p := range next {
		if p.inSlot {
			owned[slotOf(id)] = true
		}
	}
	for id, old := range s.placed {
		p, still := next[id]
		switch {
		case old.inSlot && !owned[slotOf(id)]:
			if err := s.slots.Put(slotOf(id), memwatchWatchState{}); err != nil {
				return fmt.Errorf("bpf source: unwatch cgroup %d: %w", id, err)
			}
		case !old.inSlot && !old.polled && still && p.inSlot:
			if err := s.overflow.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("bpf source: unwatch cgroup %d: %w", id, err)
			}
		}
	}
	s.placed = next

	for id, rd := range fresh {
		t := s.targets[id]
		if t == nil || t.broken != nil {
			continue
		}
		if err := s.send(ctx, out, t, rd, OriginResync, 0); err != nil {
			return err
		}
	}
	return nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

var _ watch.Source = (*Source)(nil)
