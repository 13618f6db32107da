// Package fallback is the cgroupfs polling source: it reads each watched
// container's memory files on an interval that tightens as the figure nears
// the next threshold. It is used where the BPF source cannot load.
//
// Polls are scheduled on the monotonic clock only (Clock.Mono: time.Since
// of a time.Now reading): a step of the wall clock (NTP, a VM resumed, an
// operator's date) neither delays nor bunches polls. The wall clock only
// stamps readings. The loop beats a heartbeat on every turn (at least once
// an interval), so /healthz notices a poll stuck in a read.
package fallback

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/oomhero/oomhero/internal/cgroup"
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
		targets: map[uint64]watch.Target{}, changed: make(chan struct{}, 1)}
}

// Name implements watch.Source.
func (s *Source) Name() string { return "cgroupfs" }

// SinceProgress implements heartbeat.Progress: how long ago the poll loop
// last turned. It turns at least once an interval; a read that blocks (a
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
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
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
}

// Far below the thresholds a poll is reported only when usage moved by
// limit/changeDivisor or heartbeat passed: policy has nothing to decide and
// metrics need no finer figure.
const (
	changeDivisor  = 256
	heartbeatEvery = 10 * time.Second
)

// Run implements watch.Source.
func (s *Source) Run(ctx context.Context, out chan<- watch.Reading) error {
	polls := map[uint64]*polled{}
	defer func() {
		for _, p := range polls {
			if p.r != nil {
				p.r.Close()
			}
		}
	}()
	timer := s.clock.NewTimer(s.interval)
	defer timer.Stop()
	var due []*polled // reused: an idle turn allocates nothing
	for {
		s.heart.Beat()
		now := s.clock.Mono()
		due = s.due(polls, now, due[:0])
		for _, p := range due {
			if rd, ok := s.poll(p, now); ok {
				select {
				case out <- rd:
				case <-ctx.Done():
					return nil
				}
			}
		}
		timer.Reset(s.wake(polls, now) - now)
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
			s.sync(polls)
		case <-timer.C():
		}
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
// due, and at most one interval after now, so the loop (and its heartbeat)
// turns at least once an interval.
func (s *Source) wake(polls map[uint64]*polled, now time.Duration) time.Duration {
	next := now + s.interval
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
// then move every poll by the step.)
func (s *Source) grid(now time.Duration) time.Duration {
	lead := s.interval / 5
	return ((now+lead)/s.interval + 1) * s.interval
}

// sync brings the polled set in line with the targets.
func (s *Source) sync(polls map[uint64]*polled) {
	s.mu.Lock()
	targets := s.targets
	s.mu.Unlock()
	for id, p := range polls {
		t, ok := targets[id]
		if !ok || t.Dir != p.Dir || t.Limit != p.Limit || t.Version != p.Version {
			if p.r != nil {
				p.r.Close()
			}
			delete(polls, id)
			continue
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
func (s *Source) poll(p *polled, now time.Duration) (watch.Reading, bool) {
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
	if p.failed {
		return watch.Reading{}, false
	}
	p.failed = true
	return watch.Reading{ID: p.ID, Time: s.clock.Now(), Origin: "poll", Err: err}, true
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
