// Package runtimes names the runtime that runs in a target process (HotSpot JVM,
// Node.js, PostgreSQL, nginx, Go, ...) and keeps the table of what each signal does
// to a process of that runtime.
//
// A handler bit in /proc/<pid>/status SigCgt is not consent: most handlers belong to
// the runtime, not to the application. HotSpot catches SIGUSR2 to suspend its own
// threads, Node.js opens its debugger on SIGUSR1, the PostgreSQL checkpointer exits on
// SIGUSR2, nginx reopens its logs on SIGUSR1 and the Go runtime catches every signal
// whether the program asked for it or not. Identify tells which runtime a process
// runs (from procfs only: exe link, comm, cmdline, mapped files, bounded reads) and
// EffectOf tells what a signal would do to it:
//
//   - Safe: the runtime installs no handler of its own for that signal; the
//     application's handler runs, or the default action, as SigCgt says.
//   - Dropped: the runtime takes the signal and, unless the application asked for
//     it, ignores it or only logs a line (Go without signal.Notify).
//   - Harmful: the runtime acts on it for its own purposes: crash, debugger, reload,
//     restart, log reopening, dumps, shutdown, exit.
//
// Every row of the table names its source: the upstream file and function that
// installs the handler, or the test of this package that proves the row on a real
// process. README's "Runtime safety table" is generated from Table (see
// cmd/gentable) and a test fails when the two differ.
package runtimes

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Runtime is what runs in one process.
type Runtime struct {
	Name     string // stable short id: "hotspot", "node", "postgres", ...; "" when unknown
	Role     string // e.g. "master", "worker", "checkpointer", "fork-child"; "" if n/a
	Version  string // when known (e.g. "17"); "" otherwise
	Evidence string // what identified it, for logs ("exe /usr/bin/node", "maps libjvm.so")
	// Options lists, space separated and sorted, the runtime options found in the
	// process's command line or environment that change what a signal does, in the
	// form the table's Row.When uses: "heapsnapshot-signal=SIGUSR2",
	// "report-signal=SIGUSR2", "disable-sigusr1" (node), "Xrs" (JVMs),
	// "mpm=prefork" (httpd). "" when none.
	Options string
}

// RoleUntitled is the role of a server's child process that has not set
// its process title yet, the title that names its role: identified a few
// milliseconds too early, it is neither its parent's role nor its own.
const RoleUntitled = "untitled"

// Provisional reports whether rt may change without an exec: the role of
// an untitled child follows its title. Such an identification must not be
// kept; the process is identified again at its next read or signal.
func (rt Runtime) Provisional() bool { return rt.Role == RoleUntitled }

// Has reports whether opt is one of rt's Options.
func (rt Runtime) Has(opt string) bool {
	for _, o := range strings.Fields(rt.Options) {
		if o == opt {
			return true
		}
	}
	return false
}

// String is a short form for logs: name, role and version when known.
func (rt Runtime) String() string {
	if rt.Name == "" {
		return "unknown"
	}
	s := rt.Name
	if rt.Version != "" {
		s += " " + rt.Version
	}
	if rt.Role != "" {
		s += " (" + rt.Role + ")"
	}
	return s
}

// Harm classifies the effect of a signal on a runtime.
type Harm int

const (
	Safe    Harm = iota // no runtime handler: the app's own handler (or default action) gets it
	Dropped             // the runtime swallows it unless the app asked (e.g. Go without signal.Notify)
	Harmful             // crash, debugger, reload, shutdown, exit, ...
)

// String returns "safe", "dropped" or "harmful".
func (h Harm) String() string {
	switch h {
	case Safe:
		return "safe"
	case Dropped:
		return "dropped"
	case Harmful:
		return "harmful"
	}
	return "harm(" + strconv.Itoa(int(h)) + ")"
}

// Default is what oomhero does by default with a signal of this class: "sent",
// "sent-with-note" or "refused" (unless declared by the container or allowed with
// --allow).
func (h Harm) Default() string {
	switch h {
	case Dropped:
		return "sent-with-note"
	case Harmful:
		return "refused"
	}
	return "sent"
}

// Effect is what one signal does to a process of one runtime.
type Effect struct {
	Harm   Harm
	What   string // "opens the inspector (debugger) on 127.0.0.1:9229"
	Source string // citation: upstream file/function, or the test that proves it
	// Forwards is set for signal forwarders (tini, dumb-init): the process passes
	// the signal on to its child (or the child's process group), so the real
	// effect is the child's row. Such rows are Harmful so that a forwarder is
	// never used to go around the child's own row; oomhero signals the child
	// directly.
	Forwards bool
}

// Row is one line of the table.
type Row struct {
	Runtime, Role, Signal string
	Effect                Effect
	// When, if not "", restricts the row to processes whose Runtime.Options
	// contain it (e.g. "heapsnapshot-signal=SIGUSR2"). A row with When wins over
	// the same row without it.
	When string
}

// EffectOf says what sig does to a process of runtime rt (Safe with empty What when
// the table has no row).
//
// The most specific row wins: a row for rt.Role over a row for every role (Role
// ""), and a row whose When is one of rt.Options over a row without When. A
// runtime built on another one (puma and unicorn on ruby, gunicorn on python)
// falls back to the base runtime's rows when it has none of its own for sig.
func EffectOf(rt Runtime, sig unix.Signal) Effect {
	name := unix.SignalName(sig)
	if name == "" || rt.Name == "" {
		return Effect{Harm: Safe}
	}
	for r := rt; r.Name != ""; r = (Runtime{Name: baseOf[r.Name], Options: rt.Options}) {
		if e, ok := lookup(r, name); ok {
			return e
		}
	}
	return Effect{Harm: Safe}
}

// baseOf names the runtime whose rows apply when a runtime has none of its own.
var baseOf = map[string]string{
	"puma":     "ruby",
	"unicorn":  "ruby",
	"gunicorn": "python",
}

func lookup(rt Runtime, signal string) (Effect, bool) {
	best, bestScore := -1, -1
	for i, r := range table {
		if r.Runtime != rt.Name || r.Signal != signal {
			continue
		}
		if r.Role != "" && r.Role != rt.Role {
			continue
		}
		if r.When != "" && !rt.Has(r.When) {
			continue
		}
		score := 0
		if r.When != "" {
			score += 2
		}
		if r.Role != "" {
			score++
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return Effect{}, false
	}
	return table[best].Effect, true
}

// Table lists every row, for README and tests.
func Table() []Row {
	return append([]Row(nil), table...)
}

// Names lists, sorted, every name Identify can return (for validating
// --allow runtime:SIGNAL).
func Names() []string {
	return []string{"beam", "dotnet", "dumb-init", "envoy", "go", "gunicorn", "haproxy", "hotspot",
		"httpd", "mysqld", "nginx", "node", "openj9", "perl", "php", "php-fpm", "postgres", "puma",
		"python", "redis", "ruby", "shell", "tini", "unicorn", "uwsgi"}
}
