package agent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/express"
	"github.com/oomhero/oomhero/internal/runtimes"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// Express sends (package express): where the source can send for a
// reading and the sender checks a process just before its signal, the
// agent arms, after each decision and each change of a container's book,
// the signal each level above the container's would send on entry — to the
// processes the book names (handler, runtime known and not harmed, or
// consent) — and the source's goroutine sends it as soon as its read shows
// the crossing. The agent then books those sends as its own (sent, said,
// counted, logged with express=true) and sends the rest as before. Nothing
// is armed in a dry run, with --targets other than handlers, right after
// an OOM kill, for a container opted out or excluded.

// setupExpress gives the source a Plans when both it and the sender can.
func (a *Agent) setupExpress() {
	src, ok := a.Source.(interface{ SetExpress(*express.Plans) })
	if !ok {
		return
	}
	cs, ok := a.Sender.(signals.CheckedSender)
	if !ok {
		return
	}
	a.express = express.New(cs)
	src.SetExpress(a.express)
}

// arm arms (or disarms) container t's plan from what the agent knows now.
func (a *Agent) arm(t *tracked) {
	if a.express == nil {
		return
	}
	if a.byID[t.ID] != t {
		a.express.Arm(t.ID, nil)
		return
	}
	p, why := a.plan(t)
	a.express.Arm(t.ID, p)
	// What is armed, at debug level when it changes: a first signal that
	// did not go out express says why here.
	if a.Log != nil && why != t.armedSaid {
		t.armedSaid = why
		a.Log.Debug("express plan", t.who(), "armed", why)
	}
}

// plan is what entering each level above t's would send now, nil for
// nothing, and what it armed (or why nothing) in words.
func (a *Agent) plan(t *tracked) (*express.Plan, string) {
	switch {
	case t.ds.decl.Off || t.excluded:
		return nil, "none: opted out or excluded"
	case a.dryRun(t):
		return nil, "none: dry run"
	case a.cfgOf(t).Targets != config.Handlers:
		return nil, "none: targets other than handlers"
	case t.group == nil:
		return nil, "none: no processes yet"
	}
	now := a.now()
	if !t.oomAt.IsZero() && now.Sub(t.oomAt) < afterOOM {
		return nil, "none: right after an OOM kill"
	}
	var p *express.Plan
	var why []string
	for l := watch.Warning; l <= watch.Critical; l++ {
		th, due := a.policy.Entry(t.ID, l, now)
		sig := a.sigFor(t, l)
		if !due || sig == 0 {
			why = append(why, l.String()+": not due")
			continue
		}
		var tgs []express.Target
		ready := a.ready(t, sig)
		for _, tg := range ready {
			if !a.mayGo(t, tg.n, l, sig) {
				continue
			}
			tgs = append(tgs, express.Target{PID: tg.PID, Want: a.expect(tg)})
		}
		if len(tgs) == 0 {
			why = append(why, fmt.Sprintf("%s: none of %d processes (%d ready)", l, len(t.group.Procs), len(ready)))
			continue
		}
		pids := make([]string, len(tgs))
		for i, tg := range tgs {
			pids[i] = strconv.Itoa(tg.PID)
		}
		why = append(why, fmt.Sprintf("%s: pid %s", l, strings.Join(pids, ",")))
		if p == nil {
			p = &express.Plan{Metric: a.Config.Metric}
			if a.Config.Metric == watch.WorkingSet {
				// A reading in flux waits for the agent's reread (flux.go).
				limit := t.Limit
				p.Hold = func(rd watch.Reading) bool { return inFlux(rd, limit) }
			}
		}
		p.Levels[l] = &express.Level{Threshold: th, Signal: sig, Targets: tgs}
	}
	return p, strings.Join(why, "; ")
}

// mayGo tells, without a word and without starting an identification,
// whether vet would let sig go to the process of note n at level l: its
// runtime is known, and the signal does not harm it or was consented to
// or allowed.
func (a *Agent) mayGo(t *tracked, n *procNote, l watch.Level, sig unix.Signal) bool {
	if !n.current(a.watchedSigs(t)) {
		return false
	}
	if a.effectOf(n.rt, sig).Harm != runtimes.Harmful {
		return true
	}
	return t.consented(l) || a.Config.Allowed(n.rt.Name, sig)
}

// expect is what must still hold of target tg when its signal goes.
func (a *Agent) expect(tg target) signals.Expect {
	want := signals.Expect{Start: tg.Start, Handler: tg.handler}
	if tg.n.ok {
		want.Name = tg.n.h.Name
	}
	return want
}

// booked is what the source sent for the reading being judged.
type booked map[procKey]watch.Level

// sentAhead books what the source sent for reading rd of container t as
// the agent's own sends, and returns the processes it tried for their
// level (signal skips them): sent, or failed as the agent's own send would
// (a missing privilege). A process that changed since it was armed
// (ErrChanged, ErrNoHandler) is read again by the usual path.
func (a *Agent) sentAhead(t *tracked, rd watch.Reading) booked {
	if len(rd.Sent) == 0 {
		return nil
	}
	var out booked
	for _, s := range rd.Sent {
		sig := unix.Signal(s.Signal)
		sigName := config.SignalName(sig)
		p, n := a.procOf(t, s.PID, s.Start)
		switch {
		case s.Err == nil:
			if out == nil {
				out = booked{}
			}
			out[procKey{s.PID, s.Start}] = s.Level
			t.sent[s.Level] = a.now()
			if n != nil {
				if _, say := a.vet(t, p, n, s.Level, sig); say != nil {
					say()
				}
			}
			attrs := append(a.signalAttrs(t, p, s.Level, sigName, rd, s.At), "express", true)
			if s.Kernel {
				// Sent by the BPF program on the crossing page (kernel sends).
				attrs = append(attrs, "in_kernel", true)
			}
			a.Log.Info("signal sent", attrs...)
			a.Observer.Signal(a.target(t), s.Level, s.PID, "sent")
		case errors.Is(s.Err, signals.ErrGone):
			a.Log.Debug("process gone before the signal", "pid", s.PID, t.who())
		case errors.Is(s.Err, signals.ErrChanged), errors.Is(s.Err, signals.ErrNoHandler):
			if n != nil {
				n.ok = false
			}
		default:
			// Tried: the agent would fail the same way (a missing
			// privilege), so it does not try again for this reading.
			if out == nil {
				out = booked{}
			}
			out[procKey{s.PID, s.Start}] = s.Level
			a.Log.Error("signal failed", "pid", s.PID, "command", p.Comm, t.who(), "signal", sigName, "error", s.Err)
			a.Observer.Signal(a.target(t), s.Level, s.PID, "error")
		}
	}
	return out
}

// procOf returns container t's process pid (started at start) and its
// note, or a bare process and nil when it is no longer listed.
func (a *Agent) procOf(t *tracked, pid int, start uint64) (discover.Process, *procNote) {
	if t.group != nil {
		for _, p := range t.group.Procs {
			if p.PID == pid && p.Start == start {
				var n *procNote
				if t.ep.procs != nil {
					n = t.ep.procs.notes[procKey{pid, start}]
				}
				return p, n
			}
		}
	}
	return discover.Process{PID: pid, Start: start}, nil
}
