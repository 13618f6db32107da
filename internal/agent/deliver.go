package agent

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/declare"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/notify"
	"github.com/oomhero/oomhero/internal/runtimes"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// Delivery: which processes get which signal, and whether the runtime in
// each can take it (package runtimes).
//
// A handler bit in SigCgt is not consent: most handlers belong to the
// runtime (HotSpot's SIGUSR2 suspend/resume, Node's SIGUSR1 inspector,
// PostgreSQL's and nginx's control signals), not to the application. So:
//   - Safe: sent.
//   - Dropped (a runtime that swallows the signal unless the program asked,
//     like Go without signal.Notify): sent, and said once per episode.
//   - Harmful (crash, debugger, reload, shutdown, exit): refused, unless the
//     container declared that level's signal itself (OOMHERO_<LEVEL>_SIGNAL,
//     consent) or the operator allowed it (--allow runtime:SIGNAL). A refusal
//     is said once per episode with how to opt in, and counted each time.

// procKey names one process for good: PID and start time.
type procKey struct {
	pid   int
	start uint64
}

// episode is what is said or learned once per episode (from leaving ok
// until back at ok), and the book of the container's processes, which
// outlives it (handlers.go).
type episode struct {
	said map[string]bool
	// refused is why a level's signal was refused, for the OOM-kill report.
	refused [3]string
	procs   *procBook // kept by reset
}

// reset starts a new episode: what was said is forgotten, the book of the
// processes kept.
func (e *episode) reset() { *e = episode{procs: e.procs} }

func (e *episode) once(key string) bool {
	if e.said == nil {
		e.said = map[string]bool{}
	}
	if e.said[key] {
		return false
	}
	e.said[key] = true
	return true
}

// sigFor is container t's signal for level l (0: none).
func (a *Agent) sigFor(t *tracked, l watch.Level) unix.Signal {
	if l == watch.Critical {
		return a.cfgOf(t).CriticalSignal
	}
	return a.cfgOf(t).WarningSignal
}

// signalVar is the declaration that consents to level l's signal.
func signalVar(l watch.Level) string {
	if l == watch.Critical {
		return declare.CriticalSignal
	}
	return declare.WarningSignal
}

// identify returns the runtime of process p (its note n, read lately),
// and false while it is not known yet. The answer is kept in the book (an
// exec keeps the PID and start time, so it holds only while the process's
// command is the one it was identified under, and while no handler of the
// container's signals appeared since: handlers.go). Identification reads
// the process's memory map: when that takes longer than probeWait (the
// process is in memory reclaim), the answer is stored when it comes
// (bounded.go).
func (a *Agent) identify(t *tracked, p discover.Process, n *procNote) (runtimes.Runtime, bool) {
	if n.current(a.watchedSigs(t)) {
		return n.rt, true
	}
	if n.pending {
		return runtimes.Runtime{}, false
	}
	id := a.Identify
	if id == nil {
		id = runtimes.Identify
	}
	b, k := t.ep.book(), procKey{p.PID, p.Start}
	name, mask := n.h.Name, n.h.Caught&a.watchedSigs(t)
	n.pending = true
	var out runtimes.Runtime
	proc := a.Config.Proc
	start := time.Now()
	ok := bounded(a, func() runtimes.Runtime { return id(proc, p.PID) }, func(rt runtimes.Runtime) {
		n.pending = false
		if a.byID[t.ID] != t || t.ep.procs != b || b.notes[k] != n {
			return // forgotten meanwhile
		}
		n.rt, n.rtName, n.rtMask, n.known = rt, name, mask, true
		out = rt
		a.arm(t)
		if a.Log != nil { // tests of identification alone give none
			a.Log.Debug("runtime identified", "pid", p.PID, "command", name, t.who(), "runtime", runtimeName(rt),
				"took", time.Since(start).Round(time.Microsecond).String())
		}
	})
	return out, ok
}

// identifyTargets reads the processes of container t and identifies the
// runtimes of those that would get a signal, ahead of time (the container
// got hot).
func (a *Agent) identifyTargets(t *tracked) {
	if t.ds.decl.Off || t.excluded {
		return
	}
	switch a.cfgOf(t).Targets {
	case config.Handlers, config.Largest:
		a.refreshProcs(t)
	default:
		for _, l := range []watch.Level{watch.Warning, watch.Critical} {
			if sig := a.sigFor(t, l); sig != 0 {
				for _, tg := range a.chooseTargets(t, sig, nil) {
					a.identify(t, tg.Process, tg.n)
				}
			}
		}
	}
}

func (a *Agent) effectOf(rt runtimes.Runtime, sig unix.Signal) runtimes.Effect {
	if a.EffectOf != nil {
		return a.EffectOf(rt, sig)
	}
	return runtimes.EffectOf(rt, sig)
}

func runtimeName(rt runtimes.Runtime) string {
	switch {
	case rt.Name == "":
		return "unknown"
	case rt.Role != "":
		return rt.Name + " " + rt.Role
	}
	return rt.Name
}

// vet decides whether sig may go to process p of container t at level l,
// by the runtime safety table, consent and --allow: "" to send, or the
// result to report instead ("refused", or "unidentified" while the
// process's runtime is not known yet). It logs a refusal or a hold once
// per episode; what is said of a signal that may go (consent, --allow, a
// runtime that drops it) is returned in say, to be said once per episode
// after the signal went (nothing of it on the signal's way).
func (a *Agent) vet(t *tracked, p discover.Process, n *procNote, l watch.Level, sig unix.Signal) (result string, say func()) {
	sigName := config.SignalName(sig)
	key := fmt.Sprintf("%d/%d/%d", p.PID, p.Start, sig)
	rt, known := a.identify(t, p, n)
	if !known {
		// Not sent: it could be a runtime the table refuses. A process
		// this slow to read is stuck in the kernel and would not act on
		// a signal now anyway; a later decision tries again.
		if t.ep.once("unidentified/" + key) {
			a.Log.Warn("signal held: the process's runtime is not identified yet (reading its memory map is slow: it may be in memory reclaim)",
				"pid", p.PID, "command", p.Comm, t.who(), "memory_level", l.String(), "signal", sigName)
		}
		return "unidentified", nil
	}
	eff := a.effectOf(rt, sig)
	attrs := func(extra ...any) []any {
		if a.dryRun(t) {
			extra = append(extra, "dry_run", true)
		}
		return append([]any{"pid", p.PID, "command", p.Comm, t.who(), "memory_level", l.String(), "signal", sigName,
			"runtime", runtimeName(rt), "version", rt.Version, "effect", eff.What, "evidence", rt.Evidence}, extra...)
	}
	sent := "signal sent"
	if a.dryRun(t) {
		sent = "signal would be sent (dry run)"
	}
	switch eff.Harm {
	case runtimes.Harmful:
		switch {
		case t.consented(l):
			return "", func() {
				if t.ep.once("consent/" + key) {
					a.Log.Warn(sent+" by the container's declaration although the runtime would be harmed",
						attrs("declared", signalVar(l)+"="+sigName)...)
				}
			}
		case a.Config.Allowed(rt.Name, sig):
			return "", func() {
				if t.ep.once("allow/" + key) {
					a.Log.Warn(sent+", allowed by --allow although the runtime would be harmed",
						attrs("allow", rt.Name+":"+sigName)...)
				}
			}
		}
		t.ep.refused[l] = fmt.Sprintf("the %s signal was refused: %s %s (runtime %s)", l, sigName, eff.What, runtimeName(rt))
		if t.ep.once("refused/" + key) {
			a.Log.Warn("signal refused: the runtime's own handler would be harmed", attrs(
				"opt_in", fmt.Sprintf("declare %s=%s on the container, or run oomhero with --allow %s:%s", signalVar(l), sigName, rt.Name, sigName),
				"source", eff.Source)...)
		}
		return "refused", nil
	case runtimes.Dropped:
		return "", func() {
			if t.ep.once("dropped/" + key) {
				a.Log.Info(sent+", but the runtime will likely drop it unless the program asked for it", attrs()...)
			}
		}
	}
	return "", nil
}

// deliver acts on one decision to signal level l (the level before was
// from): the HTTP notification, when the container has a URL, then the
// signal. Nothing goes to a container that opted out or was just
// OOM-killed.
func (a *Agent) deliver(t *tracked, l, from watch.Level, rd watch.Reading) {
	if t.ds.decl.Off || t.excluded {
		return
	}
	if !t.oomAt.IsZero() && a.now().Sub(t.oomAt) < afterOOM {
		a.Log.Debug("signal held back: the container was just OOM-killed", t.who(), "memory_level", l.String())
		return
	}
	a.notify(t, l, from, rd)
	a.signal(t, l, rd)
}

// notify queues the HTTP notification of level l (never blocks).
func (a *Agent) notify(t *tracked, l, from watch.Level, rd watch.Reading) {
	url := a.cfgOf(t).NotifyURL
	if url == "" {
		return
	}
	p := notify.Payload{Container: t.Name, Level: l.String(), PreviousLevel: from.String(),
		Percent: percent(rd.Value(a.Config.Metric), t.Limit), WorkingSetBytes: rd.WorkingSet(), UsageBytes: rd.Usage,
		LimitBytes: t.Limit, Time: a.now().UTC()}
	if t.psi != nil {
		some, full := t.pressure.Some.Avg10, t.pressure.Full.Avg10
		p.PressureSomeAvg10, p.PressureFullAvg10 = &some, &full
	}
	if a.dryRun(t) {
		// What the notifier would say, without a request.
		r := notify.Result{Key: t.ID, Container: t.Name, Level: p.Level, URL: url, Outcome: notify.DryRun}
		if err := notify.Check(url, a.Config.NotifyRemote); err != nil {
			r.Outcome, r.Err = notify.Refused, err
		}
		a.notified(r)
		return
	}
	a.Notifier.Notify(t.ID, url, p)
}

// notified logs and counts what became of one notification.
func (a *Agent) notified(r notify.Result) {
	l := watch.Warning
	if r.Level == watch.Critical.String() {
		l = watch.Critical
	}
	t := a.byID[r.Key]
	if t == nil {
		return // container gone
	}
	attrs := []any{t.who(), "memory_level", r.Level, "url", r.URL}
	if r.Superseded > 0 {
		attrs = append(attrs, "replaced_unsent", r.Superseded)
	}
	switch r.Outcome {
	case notify.Sent:
		a.Log.Info("notification sent", append(attrs, "status", r.Status, "took", r.Took.Round(time.Microsecond))...)
	case notify.DryRun:
		a.Log.Info("notification not sent (dry run)", attrs...)
	case notify.Refused:
		if t.ep.once("notify-refused/" + r.URL) {
			a.Log.Warn("notification refused", append(attrs, "error", r.Err)...)
		}
	default:
		a.Log.Warn("notification failed", append(attrs, "error", r.Err, "took", r.Took.Round(time.Microsecond))...)
	}
	a.Observer.Notification(a.target(t), l, r.Outcome)
}

// target is a process chosen for a signal, and its note in the book.
type target struct {
	discover.Process
	n *procNote
	// handler: it was chosen for its handler, which must still be there
	// when the signal goes.
	handler bool
}

// signal sends level l's signal to the container's chosen processes: first
// those the book names (handlers.go), then, after a pause when some did
// get it (afterPause), the others the --targets mode chooses, read now.
func (a *Agent) signal(t *tracked, l watch.Level, rd watch.Reading) {
	sig := a.sigFor(t, l)
	if sig == 0 {
		return
	}
	chosen := 0
	var first map[procKey]bool
	for k, al := range t.ahead {
		if al == l { // sent by the source (express.go)
			if first == nil {
				first = map[procKey]bool{}
			}
			first[k] = true
			chosen++
		}
	}
	for _, tg := range a.ready(t, sig) {
		if first[procKey{tg.PID, tg.Start}] {
			continue
		}
		if a.send(t, tg, l, sig, rd, true) {
			continue // changed since it was read: read again below
		}
		if first == nil {
			first = map[procKey]bool{}
		}
		first[procKey{tg.PID, tg.Start}] = true
		chosen++
	}
	if chosen > 0 {
		a.pause(t)
	}
	a.later(t, func() {
		if a.byID[t.ID] != t || t.ds.decl.Off || t.excluded {
			return // forgotten, opted out or excluded meanwhile
		}
		a.signalRest(t, l, sig, rd, first, chosen)
	})
}

// signalRest sends sig to the processes of container t the book did not
// name (those in first got it), read now, and says when no process at all
// could take it.
func (a *Agent) signalRest(t *tracked, l watch.Level, sig unix.Signal, rd watch.Reading, first map[procKey]bool, chosen int) {
	mode := a.cfgOf(t).Targets
	for _, tg := range a.chooseTargets(t, sig, first) {
		chosen++
		a.send(t, tg, l, sig, rd, false)
	}
	if mode == config.Handlers || mode == config.Largest {
		// Every process was read: its handlers for the other level's
		// signal are identified now, after this one went out.
		b := t.ep.book()
		b.full = a.now()
		if t.group != nil {
			for _, p := range t.group.Procs {
				if n := b.notes[procKey{p.PID, p.Start}]; n != nil && n.ok {
					a.identifyAhead(t, p, n)
				}
			}
		}
	}
	if chosen == 0 && !t.noTarget[l] {
		t.noTarget[l] = true
		procs := 0
		if t.group != nil {
			procs = len(t.group.Procs)
		}
		a.Log.Warn("no process can take the signal", t.who(), "memory_level", l.String(),
			"signal", config.SignalName(sig), "targets", string(mode), "pids", procs)
		a.Observer.NoTarget(a.target(t), l)
	}
	a.arm(t)
}

// send vets target tg and sends it sig, checked with the process pinned
// (signals.Expect). fromBook: tg was chosen by the book without a read; it
// reports true (nothing sent, nothing said) when the process changed since
// its last read (an exec, a handler gone), for a read now.
func (a *Agent) send(t *tracked, tg target, l watch.Level, sig unix.Signal, rd watch.Reading, fromBook bool) bool {
	p := tg.Process
	result, say := a.vet(t, p, tg.n, l, sig)
	if result != "" {
		a.Observer.Signal(a.target(t), l, p.PID, result)
		return false
	}
	if say == nil {
		say = func() {}
	}
	if a.dryRun(t) {
		t.drySent[l] = a.now()
		say()
		a.Log.Info("signal not sent (dry run)", a.signalAttrs(t, p, l, config.SignalName(sig), rd, time.Now())...)
		a.Observer.Signal(a.target(t), l, p.PID, resultDryRun)
		return false
	}
	err := a.sendExpected(p.PID, a.expect(tg), sig)
	sentAt := time.Now()
	result = "sent"
	switch {
	case err == nil:
		t.sent[l] = a.now()
		say()
		a.Log.Info("signal sent", a.signalAttrs(t, p, l, config.SignalName(sig), rd, sentAt)...)
	case errors.Is(err, signals.ErrGone):
		result = "gone"
		a.Log.Debug("process gone before the signal", "pid", p.PID, t.who())
	case errors.Is(err, signals.ErrChanged), errors.Is(err, signals.ErrNoHandler):
		// Exec'ed, or its handler reset, since it was read: what the book
		// says of it no longer holds until it is read again.
		tg.n.ok = false
		if fromBook {
			return true
		}
		a.Log.Debug("process changed before the signal: not sent", "pid", p.PID, "command", p.Comm, t.who(),
			"signal", config.SignalName(sig), "why", err)
		return false
	default:
		result = "error"
		a.Log.Error("signal failed", "pid", p.PID, "command", p.Comm, t.who(),
			"signal", config.SignalName(sig), "error", err)
	}
	a.Observer.Signal(a.target(t), l, p.PID, result)
	return false
}

// sendExpected sends sig to pid if it is still want: with the process
// pinned where the Sender can (signals.CheckedSender), else after a read
// of its status.
func (a *Agent) sendExpected(pid int, want signals.Expect, sig unix.Signal) error {
	if cs, ok := a.Sender.(signals.CheckedSender); ok {
		return cs.SendExpected(pid, want, sig)
	}
	if want.Name != "" || want.Handler {
		h, err := signals.ReadHandlers(a.Config.Proc, pid)
		if err != nil {
			return signals.ErrGone
		}
		if err := h.Check(want, sig); err != nil {
			return err
		}
	}
	return a.Sender.Send(pid, want.Start, sig)
}

// chooseTargets picks the processes that get sig by the --targets mode,
// leaving out those in skip (signalled already), read now. PID 1 and
// oomhero itself are never chosen.
func (a *Agent) chooseTargets(t *tracked, sig unix.Signal, skip map[procKey]bool) []target {
	if t.group == nil || len(t.group.Procs) == 0 {
		return nil
	}
	mode := a.cfgOf(t).Targets
	var cand []discover.Process
	switch mode {
	case config.Main:
		cand = []discover.Process{t.group.Main()}
	default:
		cand = t.group.Procs
	}
	handler := mode == config.Handlers || mode == config.Largest
	var out []target
	for _, p := range cand {
		if skip[procKey{p.PID, p.Start}] || a.skipped(t, p) || !a.commandSelected(t, p) {
			continue
		}
		n := a.note(t, p)
		if !a.read(p, n) && handler || handler && !signals.Handles(n.h.Caught, sig) {
			continue
		}
		out = append(out, target{p, n, handler})
	}
	if mode == config.Largest && len(out) > 1 {
		ps := make([]discover.Process, len(out))
		for i, tg := range out {
			ps[i] = tg.Process
		}
		l := a.largest(ps)
		if len(l) == 0 {
			return nil
		}
		for _, tg := range out {
			if tg.Process == l[0] {
				return []target{tg}
			}
		}
	}
	return out
}
