// Package express sends a container's signal for a level it enters from
// the goroutine that read the crossing (a source's reader: the BPF ring
// buffer's, real-time with --realtime, or the cgroupfs poller's), instead
// of handing the reading to the agent's loop first.
//
// The agent stays the authority: it arms, for each container, what it
// would do itself on the next rise (the levels whose signal is due, their
// thresholds, the processes its book names with the checks of their
// send), after every decision; a Fire consumes what a reading reached and
// returns what was sent in the reading (watch.Reading.Sent), which the
// agent books and logs as its own sends. The send is the agent's checked
// one (signals.CheckedSender: the process pinned by a pidfd, its start
// time, command and handler checked just before the signal).
//
// Why: the agent's loop also rescans processes, resolves containers and
// logs; a reading that waits behind that work waited milliseconds (node
// agent, 100 containers / 5,000 processes: up to 12 ms between the source's
// read and the send), and on a busy node its goroutine waits for a CPU
// after the reader's.
package express

import (
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// Target is a process that gets a level's signal, and what must still
// hold of it when the signal goes.
type Target struct {
	PID  int
	Want signals.Expect
}

// Level is what entering one level sends.
type Level struct {
	// Threshold is the level's threshold in bytes of the plan's metric.
	Threshold uint64
	Signal    unix.Signal
	Targets   []Target
}

// Plan is what the agent armed for one container.
type Plan struct {
	Metric watch.Metric
	// Levels are indexed by watch.Level (Warning, Critical); nil: not
	// armed.
	Levels [watch.Critical + 1]*Level
	// Hold, when not nil, tells of a reading that must not be acted on
	// at once (the agent rereads it first): nothing is sent for it.
	Hold func(watch.Reading) bool
}

// Kernel is a source that can send armed levels itself, from its BPF
// program, on the page that crosses a threshold (before its reader has
// read anything). A level is sent by one side only: the kernel takes it
// on the crossing, or user space takes it back (Take) before it sends it.
// Plans calls these with its lock held.
type Kernel interface {
	// Arm arms in the kernel the levels of container id's plan it can
	// send there, and takes back what it armed before; nil disarms.
	Arm(id uint64, plan *Plan)
	// Take takes level l of container id back before user space sends
	// it: false when the kernel has taken it (Collect tells what it sent).
	Take(id uint64, l watch.Level) bool
	// Collect returns what the kernel did for container id since the
	// last call: levels it sent (or tried), and levels it is sending now
	// (Busy).
	Collect(id uint64) []Collected
}

// Collected is what the kernel did for one level.
type Collected struct {
	Level  watch.Level
	Busy   bool        // taken, the program is sending it now
	Signal unix.Signal // the level's signal
	Sent   []Target    // the targets signalled (the others failed its checks)
	At     time.Time
}

// Plans holds the armed plans, by cgroup id. Arm and Fire are safe for
// concurrent use.
type Plans struct {
	send   signals.CheckedSender
	now    func() time.Time
	kernel Kernel // nil: none

	mu    sync.Mutex
	plans map[uint64]*Plan
}

// New returns an empty Plans that sends through s.
func New(s signals.CheckedSender) *Plans {
	return &Plans{send: s, now: time.Now, plans: map[uint64]*Plan{}}
}

// SetKernel makes p arm what it can in k too (the source's BPF program).
// Call it before the first Arm.
func (p *Plans) SetKernel(k Kernel) {
	p.mu.Lock()
	p.kernel = k
	p.mu.Unlock()
}

// Arm replaces container id's plan; nil (or a plan with no level) disarms
// it. The plan is the caller's no more.
func (p *Plans) Arm(id uint64, plan *Plan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if plan == nil || (plan.Levels[watch.Warning] == nil && plan.Levels[watch.Critical] == nil) {
		plan = nil
		delete(p.plans, id)
	} else {
		p.plans[id] = plan
	}
	if p.kernel != nil {
		p.kernel.Arm(id, plan)
	}
}

// Armed returns a copy of container id's plan's levels, for tests and
// logs (nil entries where nothing is armed).
func (p *Plans) Armed(id uint64) (l [watch.Critical + 1]*Level) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pl := p.plans[id]; pl != nil {
		l = pl.Levels
	}
	return l
}

// Fire sends, for reading rd of container rd.ID, the signals of every
// armed level whose threshold rd's figure reached, warning before
// critical, and records them in rd.Sent. A level fires once: it is
// disarmed until the agent arms it again. A reading the plan holds sends
// nothing.
func (p *Plans) Fire(rd *watch.Reading) {
	if p == nil || rd.Err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	plan := p.plans[rd.ID]
	busy := p.collect(rd, plan)
	if plan == nil || plan.Hold != nil && plan.Hold(*rd) {
		return
	}
	value := rd.Value(plan.Metric)
	for l := watch.Warning; l <= watch.Critical; l++ {
		lv := plan.Levels[l]
		if lv == nil || busy[l] || value < lv.Threshold {
			continue
		}
		if p.kernel != nil && !p.kernel.Take(rd.ID, l) {
			continue // the kernel sends it: the next reading collects it
		}
		plan.Levels[l] = nil
		for _, tg := range lv.Targets {
			err := p.send.SendExpected(tg.PID, tg.Want, lv.Signal)
			rd.Sent = append(rd.Sent, watch.Sent{Level: l, PID: tg.PID, Start: tg.Want.Start,
				Signal: int(lv.Signal), At: p.now(), Err: err})
		}
	}
	if plan.Levels[watch.Warning] == nil && plan.Levels[watch.Critical] == nil {
		delete(p.plans, rd.ID)
	}
}

// collect records in rd.Sent what the kernel sent for rd's container, and
// takes the targets it signalled out of plan (what the kernel tried and
// could not send stays armed here). It returns the levels the kernel is
// sending now: they wait for the next reading.
func (p *Plans) collect(rd *watch.Reading, plan *Plan) (busy [watch.Critical + 1]bool) {
	if p.kernel == nil {
		return busy
	}
	for _, c := range p.kernel.Collect(rd.ID) {
		if c.Busy {
			busy[c.Level] = true
			continue
		}
		for _, tg := range c.Sent {
			rd.Sent = append(rd.Sent, watch.Sent{Level: c.Level, PID: tg.PID, Start: tg.Want.Start,
				Signal: int(c.Signal), At: c.At, Kernel: true})
		}
		if plan == nil || plan.Levels[c.Level] == nil {
			continue
		}
		lv := plan.Levels[c.Level]
		var rest []Target
		for _, tg := range lv.Targets {
			if !slices.ContainsFunc(c.Sent, func(s Target) bool { return s.PID == tg.PID && s.Want.Start == tg.Want.Start }) {
				rest = append(rest, tg)
			}
		}
		if len(rest) == 0 {
			plan.Levels[c.Level] = nil
			continue
		}
		cp := *lv
		cp.Targets = rest
		plan.Levels[c.Level] = &cp
	}
	if plan != nil && plan.Levels[watch.Warning] == nil && plan.Levels[watch.Critical] == nil {
		delete(p.plans, rd.ID)
	}
	return busy
}
