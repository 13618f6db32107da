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

// Plans holds the armed plans, by cgroup id. Arm and Fire are safe for
// concurrent use.
type Plans struct {
	send signals.CheckedSender
	now  func() time.Time

	mu    sync.Mutex
	plans map[uint64]*Plan
}

// New returns an empty Plans that sends through s.
func New(s signals.CheckedSender) *Plans {
	return &Plans{send: s, now: time.Now, plans: map[uint64]*Plan{}}
}

// Arm replaces container id's plan; nil (or a plan with no level) disarms
// it. The plan is the caller's no more.
func (p *Plans) Arm(id uint64, plan *Plan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if plan == nil || (plan.Levels[watch.Warning] == nil && plan.Levels[watch.Critical] == nil) {
		delete(p.plans, id)
		return
	}
	p.plans[id] = plan
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
	if plan == nil || plan.Hold != nil && plan.Hold(*rd) {
		return
	}
	value := rd.Value(plan.Metric)
	for l := watch.Warning; l <= watch.Critical; l++ {
		lv := plan.Levels[l]
		if lv == nil || value < lv.Threshold {
			continue
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
