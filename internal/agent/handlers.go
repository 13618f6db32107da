package agent

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/runtimes"
	"github.com/oomhero/oomhero/internal/signals"
)

// Handlers ahead of the signal.
//
// With --targets handlers (the default) a signal goes to the processes
// with a handler for it (SigCgt of /proc/<pid>/status), each one checked
// against the runtime safety table first (runtimes.Identify: exe, maps, Go
// build information). Reading the status of every process of a container
// and identifying runtimes on the way of a signal cost milliseconds in a
// container of 50 processes. So each container keeps a book of its
// processes, filled ahead of time:
//
//   - the handler mask and command of a process when it is first seen
//     (when its container's processes change: declare), again at its next
//     few such changes while it is young (youngReads: a runtime installs
//     its handlers as it starts) and whenever its command changes (an
//     exec);
//   - the runtime of each process with a handler for one of the
//     container's signals, identified after a read that showed that
//     handler: the code that installed it is then loaded, where an earlier
//     identification could miss it (a JVM mapping libjvm). A runtime is
//     known under the command it was identified with; a handler for a
//     signal that the identification did not see asks for another.
//
// A signal goes first to the processes the book names (a handler for it, a
// runtime known under the command last read), each one checked again once
// the pidfd pins it, just before the signal (signals.Expect: same start
// time, same command, the handler still there, in one read of
// /proc/<pid>/stat for the signals 1-31): a handler gone since it
// was read (an exec resets them, a program can reset its own) never turns
// a signal into a kill, and a process whose command changed is read and
// identified again. Then, after a pause that leaves the CPU to the
// processes signalled (afterPause), every other process of the container
// is read, as before the book existed (a handler may be new), and those
// with a handler get the signal as well: the book decides who gets it
// first, never who does not. That sweep refreshes the whole book, and so
// does the container getting hot (identifyTargets). The "level changed"
// line waits for the sweep.
//
// The book outlives the episode (episode.reset keeps it). Its cost when
// idle is one status read per new process (a few per young one), and one
// identification per process with a handler for a watched signal.

// youngReads is how many times a process younger than youngFor has its
// status read at its discoveries (at least youngGap apart) before only a
// sweep, an exec or the container getting hot reads it again. A process
// older than youngFor when first seen (all of them when oomhero starts) is
// read once.
const (
	youngReads = 3
	youngGap   = time.Second
	youngFor   = 30 * time.Second
)

// userHZ is the unit of a process's start time (clock ticks, USER_HZ).
const userHZ = 100

// young reports whether a process that started at start (clock ticks since
// boot, CLOCK_BOOTTIME: the clock of start_boottime behind it) is younger
// than youngFor. When the clock cannot be read no process is young.
func young(start uint64) bool {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return false
	}
	now := uint64(ts.Nano()) / uint64(time.Second/userHZ)
	return now >= start && now-start < uint64(youngFor/time.Second)*userHZ
}

// freshFor is how long after a sweep read the whole book the container
// getting hot does not read it again.
const freshFor = time.Second

// procBook is what is known of a container's processes ahead of a signal.
type procBook struct {
	notes map[procKey]*procNote
	full  time.Time // when every process was read last (a sweep)

	paused bool     // signals went out lately: what can wait waits (pause)
	after  []func() // what waits, in order
}

// afterPause is how long the work that can wait after a signal from the
// book waits: reading the container's other processes (a handler newer
// than the book), the "level changed" line (which reads every process's
// memory). On a busy node, milliseconds of reads right after the signal
// compete for the CPU with the very process that was warned, and delay its
// handler: measured on 2 busy cores, 1.5-2.5 ms between the signal sent
// and the application's handler running, where a pause gave it 0.1 ms.
const afterPause = 2 * time.Millisecond

// pause makes what container t's signals leave for later wait afterPause.
func (a *Agent) pause(t *tracked) {
	b := t.ep.book()
	if b.paused || a.late == nil {
		return
	}
	b.paused = true
	late, done := a.late, a.done
	time.AfterFunc(afterPause, func() {
		select {
		case late <- func() { a.resume(b) }:
		case <-done:
		}
	})
}

// resume runs what waited in b, in order.
func (a *Agent) resume(b *procBook) {
	for len(b.after) > 0 {
		f := b.after[0]
		b.after = b.after[1:]
		f()
	}
	b.after, b.paused = nil, false
}

// later runs f after container t's pause, in order with what waits, or at
// once when there is no pause.
func (a *Agent) later(t *tracked, f func()) {
	if b := t.ep.procs; b != nil && b.paused {
		b.after = append(b.after, f)
		return
	}
	f()
}

// procNote is one process in the book.
type procNote struct {
	seen  string    // the command discovery gave it when it was read last
	reads int       // status reads so far
	at    time.Time // last read
	ok    bool      // the last read succeeded: h holds
	h     signals.Handlers

	// Its runtime, identified under the command rtName (its status's
	// Name; "" when not identified) after a read that showed the handlers
	// rtMask.
	rt      runtimes.Runtime
	rtName  string
	rtMask  uint64
	known   bool
	pending bool // identification under way (bounded.go)
}

// book returns the container's book.
func (e *episode) book() *procBook {
	if e.procs == nil {
		e.procs = &procBook{notes: map[procKey]*procNote{}}
	}
	return e.procs
}

// watchedSigs are the signals container t may get.
func (a *Agent) watchedSigs(t *tracked) uint64 {
	var m uint64
	for _, sig := range []unix.Signal{a.cfgOf(t).WarningSignal, a.cfgOf(t).CriticalSignal} {
		if sig >= 1 && sig <= 64 {
			m |= 1 << (uint(sig) - 1)
		}
	}
	return m
}

// read reads process p's status into n: false when it cannot be read
// (gone).
func (a *Agent) read(p discover.Process, n *procNote) bool {
	h, err := signals.ReadHandlers(a.Config.Proc, p.PID)
	n.seen, n.at, n.ok = p.Comm, a.now(), err == nil
	n.reads++
	if err != nil {
		n.h = signals.Handlers{}
		return false
	}
	n.h = h
	return true
}

// current reports whether n's runtime is known under the command last
// read, identified after a read that showed each of the handlers (of the
// signals in watched) it has now, and for good: a provisional answer (a
// server's child read before it wrote its title) is asked again at the
// next read or signal.
func (n *procNote) current(watched uint64) bool {
	bits := n.h.Caught & watched
	return n.known && n.rtName == n.h.Name && n.rtMask&bits == bits && !n.rt.Provisional()
}

// noteProcs brings container t's book up to its processes: new ones and
// ones whose command changed are read, young ones read again, gone ones
// dropped; those with a handler for the container's signals are
// identified. It runs when the container's processes change (declare).
func (a *Agent) noteProcs(t *tracked) {
	if t.group == nil || t.ds.decl.Off || t.excluded {
		return
	}
	b := t.ep.book()
	now := a.now()
	live := make(map[procKey]bool, len(t.group.Procs))
	for _, p := range t.group.Procs {
		k := procKey{p.PID, p.Start}
		live[k] = true
		n := b.notes[k]
		switch {
		case n == nil:
			n = &procNote{}
			b.notes[k] = n
		case n.seen != p.Comm, n.reads < youngReads && now.Sub(n.at) >= youngGap && young(p.Start):
		default:
			continue
		}
		if a.read(p, n) {
			a.identifyAhead(t, p, n)
		}
	}
	for k := range b.notes {
		if !live[k] {
			delete(b.notes, k)
		}
	}
	a.arm(t)
}

// refreshProcs reads every process of container t again and identifies
// those with a handler for its signals (the container got hot), unless a
// sweep just did.
func (a *Agent) refreshProcs(t *tracked) {
	if t.group == nil || t.ds.decl.Off || t.excluded {
		return
	}
	b := t.ep.book()
	if a.now().Sub(b.full) < freshFor {
		return
	}
	for _, p := range t.group.Procs {
		if a.skipped(t, p) {
			continue
		}
		n := a.note(t, p)
		if a.read(p, n) {
			a.identifyAhead(t, p, n)
		}
	}
	b.full = a.now()
	a.arm(t)
}

// note returns process p's note, made when missing.
func (a *Agent) note(t *tracked, p discover.Process) *procNote {
	b := t.ep.book()
	k := procKey{p.PID, p.Start}
	n := b.notes[k]
	if n == nil {
		n = &procNote{}
		b.notes[k] = n
	}
	return n
}

// identifyAhead identifies process p's runtime when it has a handler for
// one of container t's signals that its runtime was not identified with
// (or its command changed).
func (a *Agent) identifyAhead(t *tracked, p discover.Process, n *procNote) {
	w := a.watchedSigs(t)
	if n.h.Caught&w == 0 || n.current(w) || a.skipped(t, p) {
		return
	}
	a.identify(t, p, n)
}

// skipped reports whether process p of container t is never signalled
// (PID 1, oomhero itself), without a word.
func (a *Agent) skipped(t *tracked, p discover.Process) bool {
	return p.PID == 1 || p.PID == a.Self
}

// ready returns the processes of container t that the book says can take
// sig now, without a read: a handler, a runtime known under the command
// last read. Only for --targets handlers and outside a dry run (which
// logs each would-be signal: it reads them all).
func (a *Agent) ready(t *tracked, sig unix.Signal) []target {
	if t.group == nil || a.cfgOf(t).Targets != config.Handlers || a.dryRun(t) || t.ep.procs == nil {
		return nil
	}
	b, w := t.ep.procs, a.watchedSigs(t)
	var out []target
	for _, p := range t.group.Procs {
		n := b.notes[procKey{p.PID, p.Start}]
		if n == nil || !n.ok || n.pending || !signals.Handles(n.h.Caught, sig) || !n.current(w) || a.skipped(t, p) || !a.commandSelected(t, p) {
			continue
		}
		out = append(out, target{p, n, true})
	}
	return out
}
