// Package runtimes names the runtime that runs in a target process (HotSpot JVM,
// Node.js, PostgreSQL, nginx, Go, ...) and keeps the table of what each signal does
// to a process of that runtime.
//
// A handler bit in /proc/<pid>/status SigCgt is not consent: most handlers belong to
// the runtime, not to the application. The table tells oomhero's delivery which
// signals would crash, reload, stop or open a debugger in the target, so that they
// are refused unless the container declared them or the operator allowed them.
package runtimes

import "golang.org/x/sys/unix"

// Runtime is what runs in one process.
type Runtime struct {
	Name     string // stable short id: "hotspot", "node", "postgres", ...; "" when unknown
	Role     string // e.g. "master", "worker", "checkpointer", "fork-child"; "" if n/a
	Version  string // when known (e.g. "17")
	Evidence string // what identified it, for logs ("exe /usr/bin/node", "maps libjvm.so")
}

// Identify reads /proc/<pid>/{exe,comm,cmdline,maps} under proc (bounded reads,
// never follows anything inside the container's root) and names the runtime.
func Identify(proc string, pid int) Runtime {
	return Runtime{}
}

// Harm classifies the effect of a signal on a runtime.
type Harm int

const (
	Safe    Harm = iota // no runtime handler: the app's own handler (or default action) gets it
	Dropped             // the runtime swallows it unless the app asked (e.g. Go without signal.Notify)
	Harmful             // crash, debugger, reload, shutdown, exit, ...
)

// Effect is what one signal does to a process of one runtime.
type Effect struct {
	Harm   Harm
	What   string // "opens the inspector (debugger) on 127.0.0.1:9229"
	Source string // citation: upstream file/function, or the test that proves it
}

// EffectOf says what sig does to a process of runtime rt (Safe with empty What when
// the table has no row).
func EffectOf(rt Runtime, sig unix.Signal) Effect {
	return Effect{Harm: Safe}
}

// Row is one line of the table.
type Row struct {
	Runtime, Role, Signal string
	Effect                Effect
}

// Table lists every row, for README and tests.
func Table() []Row {
	return nil
}
