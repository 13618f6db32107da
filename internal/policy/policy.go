// Package policy decides, per container, the memory level (ok, warning,
// critical) and when to signal. It is pure code: the caller passes the time,
// so tests need no sleeps.
//
// Semantics (the original oomhero contract, made exact):
//   - A container is at critical while its figure is at or above the critical
//     threshold, at warning while at or above the warning threshold.
//   - A level is left only once the figure falls Hysteresis bytes below the
//     level's threshold, so a figure wobbling around a threshold does not flap.
//   - Entering a level signals it at once. A rise straight from ok to critical
//     signals warning, then critical: the application sees both, in order.
//   - While at a level, its signal is sent again every Cooldown (each level
//     keeps its own clock). Only the current level is signalled.
//   - With Once (per container), a level is signalled once per crossing: a
//     level left and entered again is a new crossing; falling from critical
//     to warning does not leave warning, so it sends nothing.
//
// A Policy is not safe for concurrent use.
package policy

import (
	"time"

	"github.com/oomhero/oomhero/internal/watch"
)

// Thresholds of one container, in bytes of the chosen metric, and its
// repeat policy.
type Thresholds struct {
	Warn, Crit uint64
	// Hysteresis is how far, in bytes, the figure must fall below a
	// threshold to leave its level.
	Hysteresis uint64
	// Cooldown, when not 0, replaces the Policy's cooldown for this
	// container.
	Cooldown time.Duration
	// Once signals each level once per crossing instead of every cooldown.
	Once bool
}

// Decision is what Observe or Tick concluded for one container.
type Decision struct {
	ID       uint64
	From, To watch.Level
	// Signal lists the levels whose signal must be sent now, in order.
	Signal []watch.Level
	// Value is the figure the decision was taken on, in bytes.
	Value uint64
}

// Changed reports whether the level changed.
func (d Decision) Changed() bool { return d.From != d.To }

type state struct {
	th       Thresholds
	level    watch.Level // max(memLevel, pressure)
	memLevel watch.Level // by the memory figure, with hysteresis
	pressure watch.Level // by memory pressure (PSI), set by ObservePressure
	lastSent [3]time.Time
	crossed  [3]bool // Once: the level's signal went out on this crossing
	value    uint64
}

// Policy keeps the level of every container.
type Policy struct {
	cooldown time.Duration
	states   map[uint64]*state
}

// New returns a Policy that repeats a level's signal every cooldown.
func New(cooldown time.Duration) *Policy {
	return &Policy{cooldown: cooldown, states: map[uint64]*state{}}
}

// Set sets (or changes) the thresholds of container id. A new container
// starts at ok.
func (p *Policy) Set(id uint64, th Thresholds) {
	if s, ok := p.states[id]; ok {
		s.th = th
		return
	}
	p.states[id] = &state{th: th}
}

// Forget drops a container.
func (p *Policy) Forget(id uint64) { delete(p.states, id) }

// Level returns the current level of container id.
func (p *Policy) Level(id uint64) watch.Level {
	if s, ok := p.states[id]; ok {
		return s.level
	}
	return watch.OK
}

// LastSent returns when the signal of level l was last decided for id (zero
// if never).
func (p *Policy) LastSent(id uint64, l watch.Level) time.Time {
	if s, ok := p.states[id]; ok && l > watch.OK && int(l) < len(s.lastSent) {
		return s.lastSent[l]
	}
	return time.Time{}
}

func (s *state) levelFor(v uint64) watch.Level {
	up := watch.OK
	switch {
	case s.th.Crit > 0 && v >= s.th.Crit:
		up = watch.Critical
	case s.th.Warn > 0 && v >= s.th.Warn:
		up = watch.Warning
	}
	if up >= s.memLevel {
		return up
	}
	// Falling: stay at a level until the figure is Hysteresis below its threshold.
	l := s.memLevel
	for l > up {
		th := s.th.Warn
		if l == watch.Critical {
			th = s.th.Crit
		}
		if v+s.th.Hysteresis >= th {
			break
		}
		l--
	}
	return l
}

// Observe takes one figure of container id at time now and decides.
// Unknown containers are ignored (zero Decision with ID 0).
func (p *Policy) Observe(id uint64, value uint64, now time.Time) Decision {
	s, ok := p.states[id]
	if !ok {
		return Decision{}
	}
	s.value = value
	s.memLevel = s.levelFor(value)
	return p.decide(s, id, now)
}

// ObservePressure sets the level that memory pressure alone calls for
// (ok when no pressure trigger fired) and decides on the last figure. The
// container's level is the higher of the two.
func (p *Policy) ObservePressure(id uint64, l watch.Level, now time.Time) Decision {
	s, ok := p.states[id]
	if !ok {
		return Decision{}
	}
	s.pressure = l
	return p.decide(s, id, now)
}

func (p *Policy) decide(s *state, id uint64, now time.Time) Decision {
	d := Decision{ID: id, From: s.level, Value: s.value}
	s.level = max(s.memLevel, s.pressure)
	d.To = s.level
	for l := s.level + 1; int(l) < len(s.crossed); l++ {
		s.crossed[l] = false // left: the next entry is a new crossing
	}
	if d.To > d.From {
		// Rising: signal every level entered on the way that is not
		// cooling down, in order.
		for l := max(d.From+1, watch.Warning); l <= d.To; l++ {
			if p.due(s, l, now) {
				d.Signal = append(d.Signal, l)
				s.lastSent[l] = now
			}
		}
		return d
	}
	if d.To > watch.OK && p.due(s, d.To, now) {
		d.Signal = append(d.Signal, d.To)
		s.lastSent[d.To] = now
	}
	return d
}

// Entry tells, without changing anything, whether container id entering
// level l (above its level now) at time now would signal l, and l's
// threshold: what a signal sent ahead of Observe may rely on (package
// express).
func (p *Policy) Entry(id uint64, l watch.Level, now time.Time) (threshold uint64, signals bool) {
	s, ok := p.states[id]
	if !ok || l <= s.level || l > watch.Critical {
		return 0, false
	}
	threshold = s.th.Warn
	if l == watch.Critical {
		threshold = s.th.Crit
	}
	if threshold == 0 {
		return 0, false
	}
	if s.th.Once {
		return threshold, !s.crossed[l]
	}
	last := s.lastSent[l]
	return threshold, last.IsZero() || now.Sub(last) >= p.cooldownOf(s)
}

func (p *Policy) due(s *state, l watch.Level, now time.Time) bool {
	if s.th.Once {
		if s.crossed[l] {
			return false
		}
		s.crossed[l] = true
		return true
	}
	last := s.lastSent[l]
	return last.IsZero() || now.Sub(last) >= p.cooldownOf(s)
}

func (p *Policy) cooldownOf(s *state) time.Duration {
	if s.th.Cooldown > 0 {
		return s.th.Cooldown
	}
	return p.cooldown
}

// Tick re-applies the cooldown without a new figure: for every container
// still at warning or critical whose signal is due, it returns a Decision
// on the last figure. Sources that report only changes rely on it.
func (p *Policy) Tick(now time.Time) []Decision {
	var out []Decision
	for id, s := range p.states {
		if s.level > watch.OK && p.due(s, s.level, now) {
			s.lastSent[s.level] = now
			out = append(out, Decision{ID: id, From: s.level, To: s.level, Signal: []watch.Level{s.level}, Value: s.value})
		}
	}
	return out
}

// NextDue returns the earliest time a Tick can send something, and false when
// no container above ok repeats its signal.
func (p *Policy) NextDue() (time.Time, bool) {
	var next time.Time
	found := false
	for _, s := range p.states {
		if s.level == watch.OK || s.th.Once {
			continue
		}
		t := s.lastSent[s.level].Add(p.cooldownOf(s))
		if !found || t.Before(next) {
			next, found = t, true
		}
	}
	return next, found
}
