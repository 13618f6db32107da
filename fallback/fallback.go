// Package fallback is the cgroupfs polling source: it reads each watched
// container's memory files on an interval that tightens as the figure nears
// the next threshold. It is used where the BPF source cannot load.
package fallback

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/watch"
)

// Source polls cgroupfs. It implements watch.Source.
type Source struct {
	interval, minInterval time.Duration

	mu      sync.Mutex
	targets map[uint64]watch.Target
	changed chan struct{}
}

// New returns a Source that polls every container at most interval apart
// and, near a threshold, as often as every minInterval.
func New(interval, minInterval time.Duration) *Source {
	return &Source{interval: interval, minInterval: minInterval,
		targets: map[uint64]watch.Target{}, changed: make(chan struct{}, 1)}
}

// Name implements watch.Source.
func (s *Source) Name() string { return "cgroupfs" }

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
	r    *cgroup.Reader
	next time.Time
	// last figures, for the rate estimate
	lastTime  time.Time
	lastUsage uint64
	lastValue uint64
	lastFull  bool
	rate      float64 // bytes per second, peak-held (see nextInterval)
	failed    bool
	relaxed   bool // the next poll is at the full interval: it may be batched
	// what was last reported, to report only changes far from thresholds
	sentTime  time.Time
	sentUsage uint64
}

// Far below the thresholds a poll is reported only when usage moved by
// limit/changeDivisor or heartbeat passed: policy has nothing to decide and
// metrics need no finer figure.
const (
	changeDivisor = 256
	heartbeat     = 10 * time.Second
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
	timer := time.NewTimer(0)
	defer timer.Stop()
	// Relaxed polls due within batch are done together, so idle containers
	// cost one wake-up per interval between them, not one each.
	batch := s.interval / 5 // keep in step with the grid in poll
	for {
		now := time.Now()
		next := now.Add(s.interval)
		for _, p := range polls {
			due := !p.next.After(now) || (p.relaxed && p.next.Sub(now) <= batch)
			if due {
				rd, ok := s.poll(p, now)
				if ok {
					select {
					case out <- rd:
					case <-ctx.Done():
						return nil
					}
				}
			}
			if p.next.Before(next) {
				next = p.next
			}
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
			s.sync(polls)
		case <-timer.C:
		}
	}
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
func (s *Source) poll(p *polled, now time.Time) (watch.Reading, bool) {
	p.next = now.Add(s.interval)
	if p.r == nil {
		r, err := cgroup.NewReader(p.Dir, p.Version, p.Limit)
		if err != nil {
			if p.failed {
				return watch.Reading{}, false
			}
			p.failed = true
			return watch.Reading{ID: p.ID, Time: now, Origin: "poll", Err: err}, true
		}
		p.r = r
	}
	usage, err := p.r.Usage()
	if err != nil {
		return s.fail(p, now, err)
	}
	var rd watch.Reading
	full := true
	// Every metric is at most usage: far below the warning threshold, usage
	// alone proves the container is at ok, and memory.stat (the costly
	// file) is not read.
	if usage+p.Limit/10 < p.Warn {
		full = false
		rd = watch.Reading{Usage: usage, Limit: p.Limit, Time: now}
	} else {
		if rd, err = p.r.Read(); err != nil {
			return s.fail(p, now, err)
		}
	}
	rd.ID, rd.Origin = p.ID, "poll"
	wasFailed := p.failed
	p.failed = false
	value := rd.Value(p.Metric)
	if !full {
		value = usage
	}
	iv := s.nextInterval(p, now, usage, value, full)
	p.next, p.relaxed = now.Add(iv), iv == s.interval
	if p.relaxed {
		// Relaxed polls of every container fall on one grid, so an idle
		// pod costs one wake-up per interval however many containers it has.
		// (The grid point must lie beyond the batching window, or a poll
		// done early would be due again at once.)
		p.next = now.Add(s.interval / 5).Truncate(s.interval).Add(s.interval)
	}
	p.lastTime, p.lastUsage, p.lastValue, p.lastFull = now, usage, value, full
	if !full && !wasFailed && !p.sentTime.IsZero() && now.Sub(p.sentTime) < heartbeat &&
		absDiff(usage, p.sentUsage) < p.Limit/changeDivisor {
		return rd, false
	}
	p.sentTime, p.sentUsage = now, usage
	return rd, true
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

func (s *Source) fail(p *polled, now time.Time, err error) (watch.Reading, bool) {
	p.r.Close()
	p.r = nil
	if p.failed {
		return watch.Reading{}, false
	}
	p.failed = true
	return watch.Reading{ID: p.ID, Time: now, Origin: "poll", Err: err}, true
}

// nextInterval estimates how soon the figure can reach the next threshold
// above it and polls three times in that time. The growth rate is held at
// its peak and decays with a half-life of rateHalfLife, because allocation
// comes in bursts: a quiet moment between two bursts must not stretch the
// interval.
func (s *Source) nextInterval(p *polled, now time.Time, usage, value uint64, full bool) time.Duration {
	if p.lastTime.IsZero() {
		return s.minInterval
	}
	dt := now.Sub(p.lastTime).Seconds()
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
	if p.rate <= 0 {
		return s.interval
	}
	eta := time.Duration(float64(th-value) / p.rate * float64(time.Second))
	return min(max(eta/3, s.minInterval), s.interval)
}

// rateHalfLife is how fast a past growth rate is forgotten.
const rateHalfLife = 500 * time.Millisecond
