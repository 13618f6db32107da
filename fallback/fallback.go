// Package fallback is the cgroupfs polling source: it reads each watched
// container's memory files on an interval that tightens as the figure nears
// the next threshold. It is used where the BPF source cannot load.
//
// On cgroup v1 a container far below its warning threshold is not polled on
// the interval: the kernel's memory threshold notification (cgroup
// .event_control on memory.usage_in_bytes, package cgroup, NotifyUsage) is
// armed below the threshold, in usage terms (usage is never below the
// working set or anonymous memory), far enough below it to cover the
// kernel's lag in checking it (cgroup.ThresholdLag); until the kernel
// signals a crossing, such a quiet container is read only every
// quietEvery, as a safety net. Registrations run in a goroutine of their
// own (each waits for an RCU grace period); the eventfds are gathered in
// one epoll instance waited on through the Go netpoller. Where the
// notification cannot be registered (cgroup v2, a read-only
// cgroup.event_control, a PREEMPT_RT kernel) the container is polled on
// the interval, as before.
//
// Polls are scheduled on the monotonic clock only (Clock.Mono: time.Since
// of a time.Now reading): a step of the wall clock (NTP, a VM resumed, an
// operator's date) neither delays nor bunches polls. The wall clock only
// stamps readings. The loop beats a heartbeat on every turn (at least once
// every quietEvery), so /healthz notices a poll stuck in a read.
package fallback

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/express"
	"github.com/oomhero/oomhero/internal/heartbeat"
	"github.com/oomhero/oomhero/internal/watch"
)

// Source polls cgroupfs. It implements watch.Source and heartbeat.Progress.
type Source struct {
	interval, minInterval time.Duration
	clock                 Clock
	heart                 *heartbeat.Heart

	mu      sync.Mutex
	targets map[uint64]watch.Target
	changed chan struct{}
	kick    func() // wakes Run's wait (nil: Run selects on changed)

	// register arms a cgroup v1 usage threshold (cgroup.NotifyUsage;
	// tests replace it), lag is how far usage can pass it unchecked
	// (cgroup.ThresholdLag).
	register func(watch.CgroupDir, uint64) (*cgroup.UsageEvent, error)
	lag      uint64
	// notify is Run's notifier, nil when there is none; only Run's
	// goroutine uses it.
	notify *notifier
	// reads counts the polls that read a usage counter (tests).
	reads atomic.Uint64
	// express sends what the agent armed for a reading (nil: none).
	express *express.Plans
}

// New returns a Source that polls every container at most interval apart
// and, near a threshold, as often as every minInterval.
func New(interval, minInterval time.Duration) *Source {
	return NewWithClock(interval, minInterval, nil)
}

// NewWithClock is New with the clock the poller schedules on; nil means the
// system's (SystemClock). Tests inject one.
func NewWithClock(interval, minInterval time.Duration, clock Clock) *Source {
	if clock == nil {
		clock = SystemClock()
	}
	return &Source{interval: interval, minInterval: minInterval, clock: clock,
		heart:   heartbeat.New(clock.Mono),
		targets: map[uint64]watch.Target{}, changed: make(chan struct{}, 1),
		register: cgroup.NotifyUsage, lag: cgroup.ThresholdLag()}
}

// Name implements watch.Source.
func (s *Source) Name() string { return "cgroupfs" }

// SetExpress makes the source send the signals the agent armed in p for a
// reading, before it hands the reading over (package express). Call it
// before Run.
func (s *Source) SetExpress(p *express.Plans) { s.express = p }

// SinceProgress implements heartbeat.Progress: how long ago the poll loop
// last turned. It turns at least once every quietEvery (a second at the
// default interval); a read that blocks (a
// FIFO where a cgroup file should be) or a reader that stopped taking
// readings stops it.
func (s *Source) SinceProgress() time.Duration { return s.heart.SinceProgress() }

// Update implements watch.Source.
func (s *Source) Update(targets []watch.Target) {
	m := make(map[uint64]watch.Target, len(targets))
	for _, t := range targets {
		m[t.ID] = t
	}
	s.mu.Lock()
	s.targets = m
	kick := s.kick
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	if kick != nil {
		kick()
	}
}

type polled struct {
	watch.Target
	r *cgroup.Reader
	// next is when the next poll is due, on the monotonic clock
	// (Clock.Mono); 0 means at once.
	next time.Duration
	// last figures, for the rate estimate
	seen      bool          // polled at least once
	lastTime  time.Duration // Clock.Mono at the last poll
	lastUsage uint64
	lastValue uint64
	lastFull  bool
	rate      float64 // bytes per second, peak-held (see nextInterval)
	failed    bool
	relaxed   bool // the next poll is at the full interval: it may be batched
	// what was last reported, to report only changes far from thresholds
	sent      bool
	sentTime  time.Duration
	sentUsage uint64
	// cgroup v1 threshold notification (see the package doc)
	ev        *cgroup.UsageEvent // registered, nil when none
	evState   evState
	evGen     uint64 // registration asked for; a stale answer is dropped
	evAt      uint64 // the usage it was asked at (armAt)
	evFresh   bool   // registered since the last poll
	crossings uint64 // signalled since registration: odd while the kernel holds usage above ev.At
	quiet     bool   // below ev.At, kernel agreeing: polled every quietEvery
}

type evState uint8

const (
	evNone    evState = iota // not asked yet (or the thresholds changed)
	evPending                // asked, registration in flight or queued
	evDone                   // registered (ev) or refused (ev nil: polled)
)

// Far below the thresholds a poll is reported only when usage moved by
// limit/changeDivisor or heartbeat passed: policy has nothing to decide and
// metrics need no finer figure.
const (
	changeDivisor  = 256
	heartbeatEvery = 10 * time.Second
)

// Run implements watch.Source.
func (s *Source) Run(ctx context.Context, out chan<- watch.Reading) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	polls := map[uint64]*polled{}
	var n *notifier
	var helpers sync.WaitGroup
	defer func() {
		// The waiter and the registrar end first (a registration in
		// flight is closed by the registrar), then every descriptor.
		cancel()
		if n != nil {
			n.close()
		}
		helpers.Wait()
		for _, p := range polls {
			s.closePoll(p)
		}
	}()
	timer := s.clock.NewTimer(s.interval)
	defer timer.Stop()
	// The loop waits in the timer itself where it can (fdTimer.Wait),
	// and whatever has news for it kicks it (waiter).
	kick := func() {}
	w, direct := timer.(waiter)
	if direct {
		kick = w.Kick
		s.mu.Lock()
		s.kick = kick
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.kick = nil
			s.mu.Unlock()
		}()
		helpers.Go(func() { <-ctx.Done(); kick() })
		kick() // an Update before s.kick was set is seen at once
	}
	reg := &regQueue{reqs: make(chan registration, 1), out: make(chan registration, 1)}
	if s.register != nil {
		if n = newNotifier(); n != nil {
			n.kick = kick
			helpers.Go(func() { n.wait(ctx) })
			helpers.Go(func() { registrar(ctx, s.register, reg.reqs, reg.out, kick) })
		}
	}
	s.notify = n
	var ready <-chan struct{}
	if n != nil {
		ready = n.ready
	}
	notified := func() {
		now := s.clock.Mono()
		if !n.collect(func(id uint64) { s.signalled(polls[id], now) }) {
			// No more notifications: every container is polled.
			for _, p := range polls {
				s.dropEvent(p)
				p.evState, p.next = evDone, min(p.next, now)
			}
			ready, s.notify = nil, nil
		}
	}
	registered := func(r registration) {
		reg.inflight = false
		s.registered(polls[r.id], r)
	}
	var due []*polled // reused: an idle turn allocates nothing
	for {
		s.heart.Beat()
		now := s.clock.Mono()
		due = s.due(polls, now, due[:0])
		for _, p := range due {
			if rd, ok := s.poll(p, now, reg); ok {
				s.express.Fire(&rd)
				select {
				case out <- rd:
				case <-ctx.Done():
					return nil
				}
			}
		}
		reg.next(polls)
		timer.Reset(s.wake(polls, now) - now)
		if direct {
			if err := w.Wait(); err != nil && ctx.Err() == nil {
				return fmt.Errorf("cgroupfs source: wait for the poll timer: %w", err)
			}
			// Fired or kicked: look at everything a kick may stand for.
			select {
			case <-ctx.Done():
				return nil
			default:
			}
			select {
			case <-s.changed:
				s.sync(polls)
			default:
			}
			select {
			case <-ready:
				notified()
			default:
			}
			select {
			case r := <-reg.out:
				registered(r)
			default:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
			s.sync(polls)
		case <-timer.C():
		case <-ready:
			notified()
		case r := <-reg.out:
			registered(r)
		}
	}
}

// waiter is a Timer the poll loop can wait in directly (fdTimer): Wait
// returns when it fires or when Kick is called.
type waiter interface {
	Wait() error
	Kick()
}

// quietEvery is how often a quiet container (below its armed threshold
// notification) is read all the same, and the longest the loop sleeps:
// ten intervals, at most 3 s (a third of the shortest liveness limit), at
// least one interval.
func (s *Source) quietEvery() time.Duration {
	return max(s.interval, min(10*s.interval, 3*time.Second))
}

// signalled handles a threshold notification of p: usage crossed its armed
// threshold, up or down. A quiet container is read at once, its rate
// estimated afresh (a burst from idle).
func (s *Source) signalled(p *polled, now time.Duration) {
	if p == nil || p.ev == nil {
		return
	}
	c, err := p.ev.Drain()
	if err != nil {
		s.dropEvent(p)
		p.evState = evDone // polled from now on
		c = 1
	}
	if c == 0 {
		return
	}
	p.crossings += c
	if p.quiet || p.crossings%2 == 1 {
		p.quiet, p.relaxed, p.seen = false, false, false
		p.next = min(p.next, now)
	}
}

// registered takes the answer to a registration.
func (s *Source) registered(p *polled, r registration) {
	if p == nil || p.evGen != r.gen || p.evState != evPending || s.notify == nil {
		r.ev.Close()
		return
	}
	p.evState = evDone
	if r.err != nil {
		return // polled
	}
	if err := s.notify.add(r.ev.Fd(), p.ID); err != nil {
		r.ev.Close()
		return
	}
	// Read at once: the kernel compared the threshold with the usage of
	// the registration, so only a read after it tells which side we are.
	p.ev, p.crossings, p.evFresh = r.ev, 0, true
	p.next, p.relaxed = min(p.next, s.clock.Mono()), false
}

func (s *Source) dropEvent(p *polled) {
	p.ev.Close()
	p.ev, p.quiet, p.crossings = nil, false, 0
}

func (s *Source) closePoll(p *polled) {
	if p.r != nil {
		p.r.Close()
	}
	s.dropEvent(p)
}

// armAt returns the usage, in bytes, at which p's threshold notification
// is armed: below the warning threshold by twice the kernel's check lag and
// 1/32 of the limit, so the kernel signals before the figure (never above
// usage) can reach it, and the first polls after the signal measure the
// rate before the crossing. 0: too close to 0 to arm.
func (s *Source) armAt(p *polled) uint64 {
	margin := 2*s.lag + p.Limit/32
	if p.Warn <= margin || p.Limit == 0 {
		return 0
	}
	return p.Warn - margin
}

// regQueue holds the registrations to ask for, one in flight at a time.
type regQueue struct {
	reqs     chan registration
	out      chan registration
	queue    []uint64
	inflight bool
}

// next sends the next queued registration whose container still wants it.
func (q *regQueue) next(polls map[uint64]*polled) {
	for !q.inflight && len(q.queue) > 0 {
		id := q.queue[0]
		q.queue = q.queue[1:]
		p, ok := polls[id]
		if !ok || p.evState != evPending {
			continue
		}
		q.reqs <- registration{id: id, gen: p.evGen, dir: p.Dir, at: p.evAt}
		q.inflight = true
	}
	if len(q.queue) == 0 {
		q.queue = q.queue[:0:0] // let the array go after a start-up burst
	}
}

// batch is how early a relaxed poll may be done to share a wake-up with
// others: relaxed polls due within it are done together, so idle containers
// cost one wake-up per interval between them, not one each. Keep it below
// the lead in grid.
func (s *Source) batch() time.Duration { return s.interval / 5 }

// due appends to out the polls to do at now (monotonic): those whose time
// came, and relaxed ones due within the batching window.
func (s *Source) due(polls map[uint64]*polled, now time.Duration, out []*polled) []*polled {
	for _, p := range polls {
		if p.next <= now || p.relaxed && p.next-now <= s.batch() {
			out = append(out, p)
		}
	}
	return out
}

// wake returns when the loop must wake next (monotonic): the earliest poll
// due, and at most quietEvery after now, so the loop (and its heartbeat)
// turns at least once every quietEvery.
func (s *Source) wake(polls map[uint64]*polled, now time.Duration) time.Duration {
	next := now + s.quietEvery()
	for _, p := range polls {
		next = min(next, p.next)
	}
	return max(next, now)
}

// grid returns the relaxed poll time after now: relaxed polls of every
// container fall on one grid of the interval on the monotonic clock, so an
// idle pod costs one wake-up per interval however many containers it has.
// The grid point lies beyond the batching window, or a poll done early
// would be due again at once. (Rounding a time.Time would use the wall
// clock: Truncate drops the monotonic reading, and a wall-clock step would
// then move every poll by the step.) Quiet containers use a grid of
// quietEvery (gridOf).
func (s *Source) grid(now time.Duration) time.Duration { return s.gridOf(now, s.interval) }

func (s *Source) gridOf(now, every time.Duration) time.Duration {
	lead := s.interval / 5
	return ((now+lead)/every + 1) * every
}

// sync brings the polled set in line with the targets.
func (s *Source) sync(polls map[uint64]*polled) {
	s.mu.Lock()
	targets := s.targets
	s.mu.Unlock()
	for id, p := range polls {
		t, ok := targets[id]
		if !ok || t.Dir != p.Dir || t.Limit != p.Limit || t.Version != p.Version {
			s.closePoll(p)
			delete(polls, id)
			continue
		}
		if t.Warn != p.Warn {
			// Armed for the old threshold: ask again (a pending
			// answer is dropped by its generation).
			s.dropEvent(p)
			p.evState = evNone
		}
		p.Target = t // thresholds may have changed
	}
	for id, t := range targets {
		if _, ok := polls[id]; !ok {
			polls[id] = &polled{Target: t}
		}
	}
}

// poll reads one container and schedules its next poll. It returns false
// when there is nothing to report.
func (s *Source) poll(p *polled, now time.Duration, reg *regQueue) (watch.Reading, bool) {
	p.next = now + s.interval
	if p.r == nil {
		r, err := cgroup.NewReader(p.Dir, p.Version, p.Limit)
		if err != nil {
			if p.failed {
				return watch.Reading{}, false
			}
			p.failed = true
			return watch.Reading{ID: p.ID, Time: s.clock.Now(), Origin: "poll", Err: err}, true
		}
		p.r = r
	}
	usage, err := p.r.Usage()
	s.reads.Add(1)
	if err != nil {
		return s.fail(p, err)
	}
	var rd watch.Reading
	full := true
	// Every metric is at most usage: far below the warning threshold, usage
	// alone proves the container is at ok, and memory.stat (the costly
	// file) is not read.
	if usage+p.Limit/10 < p.Warn {
		full = false
		rd = watch.Reading{Usage: usage, Limit: p.Limit}
	} else {
		if rd, err = p.r.Read(); err != nil {
			return s.fail(p, err)
		}
	}
	rd.ID, rd.Origin, rd.Time = p.ID, "poll", s.clock.Now()
	wasFailed := p.failed
	p.failed = false
	value := rd.Value(p.Metric)
	if !full {
		value = usage
	}
	iv := s.nextInterval(p, now, usage, value, full)
	p.next, p.relaxed = now+iv, iv == s.interval
	if p.relaxed {
		p.next = s.grid(now)
	}
	if s.arm(p, usage, reg); p.quiet {
		p.next, p.relaxed = s.gridOf(now, s.quietEvery()), true
	}
	p.seen, p.lastTime, p.lastUsage, p.lastValue, p.lastFull = true, now, usage, value, full
	if !full && !wasFailed && p.sent && now-p.sentTime < heartbeatEvery &&
		absDiff(usage, p.sentUsage) < p.Limit/changeDivisor {
		return rd, false
	}
	p.sent, p.sentTime, p.sentUsage = true, now, usage
	return rd, true
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

func (s *Source) fail(p *polled, err error) (watch.Reading, bool) {
	p.r.Close()
	p.r = nil
	// The cgroup may be gone (its removal signals the eventfd too): ask
	// again once it reads.
	s.dropEvent(p)
	p.evState = evNone
	if p.failed {
		return watch.Reading{}, false
	}
	p.failed = true
	return watch.Reading{ID: p.ID, Time: s.clock.Now(), Origin: "poll", Err: err}, true
}

// arm asks for p's threshold notification once p is far below it, and tells
// whether p is quiet: registered, usage below the armed threshold, and the
// kernel of the same view (an even number of crossings signalled since the
// registration). A kernel that saw usage above the threshold and has not
// checked it since usage fell keeps p polled: it would not signal the next
// rise.
func (s *Source) arm(p *polled, usage uint64, reg *regQueue) {
	p.quiet = false
	if p.Version != watch.V1 || s.notify == nil {
		return
	}
	switch p.evState {
	case evNone:
		// Asked only well below the threshold, so the kernel's view at
		// the registration (which this read cannot see) is below too.
		at := s.armAt(p)
		if at == 0 || usage+s.lag+p.Limit/64 >= at {
			return
		}
		p.evState, p.evAt = evPending, at
		p.evGen++
		reg.queue = append(reg.queue, p.ID)
	case evDone:
		if p.ev == nil {
			return
		}
		if p.evFresh {
			p.evFresh = false
			if p.crossings == 0 && usage >= p.ev.At {
				// Above at the first read after registering: the
				// kernel's side is unknown. Ask again later.
				s.dropEvent(p)
				p.evState = evNone
				return
			}
		}
		p.quiet = p.crossings%2 == 0 && usage < p.ev.At
	}
}

// nextInterval estimates how soon the figure can reach the next threshold
// above it and polls three times in that time. The growth rate is held at
// its peak and decays with a half-life of rateHalfLife, because allocation
// comes in bursts: a quiet moment between two bursts must not stretch the
// interval.
func (s *Source) nextInterval(p *polled, now time.Duration, usage, value uint64, full bool) time.Duration {
	if !p.seen {
		return s.minInterval
	}
	dt := (now - p.lastTime).Seconds()
	prev, cur := p.lastUsage, usage
	if full && p.lastFull {
		prev, cur = p.lastValue, value
	}
	instant := 0.0
	if dt > 0 && cur > prev {
		instant = float64(cur-prev) / dt
	}
	p.rate = max(instant, p.rate*math.Exp2(-dt/rateHalfLife.Seconds()))
	var th uint64
	switch {
	case value < p.Warn:
		th = p.Warn
	case value < p.Crit:
		th = p.Crit
	default:
		return s.interval
	}
	// The sum stays in float seconds until it is known to fit: a rate that
	// decayed for seconds after a burst is tiny but not zero, and a
	// float64 too big for time.Duration converts to the most negative one
	// on amd64, which clamped to the shortest interval. That polled an
	// idle container every 2 ms (over 2 % of a core) from about 18 s
	// after its last growth until the rate underflowed to zero minutes
	// later.
	third := float64(th-value) / p.rate / 3 // seconds; +Inf when the rate is 0
	if p.rate <= 0 || math.IsNaN(third) || third >= s.interval.Seconds() {
		return s.interval
	}
	return max(time.Duration(third*float64(time.Second)), s.minInterval)
}

// rateHalfLife is how fast a past growth rate is forgotten.
const rateHalfLife = 500 * time.Millisecond
