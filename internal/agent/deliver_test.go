package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/oomwatch"
	"github.com/oomhero/oomhero/internal/runtimes"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// countingObserver counts Signal results.
type countingObserver struct {
	NopObserver
	results chan string
}

func (o *countingObserver) Signal(t watch.Target, l watch.Level, pid int, result string) {
	o.results <- fmt.Sprintf("%s/%s/%d/%s", t.Name, l, pid, result)
}

// fakeRuntimes: pid 10 is a JVM (SIGUSR2 crashes it), 11 is node (SIGUSR1
// opens the debugger), 12 a Go program that never asked (dropped), 13 has
// no runtime row.
func fakeRuntimes(a *Agent) {
	a.Identify = func(proc string, pid int) runtimes.Runtime {
		switch pid % 100 {
		case 10:
			return runtimes.Runtime{Name: "hotspot", Version: "17.0.15", Evidence: "maps libjvm.so"}
		case 11:
			return runtimes.Runtime{Name: "node", Evidence: "exe /usr/bin/node"}
		case 12:
			return runtimes.Runtime{Name: "go", Evidence: "buildinfo"}
		}
		return runtimes.Runtime{}
	}
	a.EffectOf = func(rt runtimes.Runtime, sig unix.Signal) runtimes.Effect {
		switch {
		case rt.Name == "hotspot" && sig == unix.SIGUSR2:
			return runtimes.Effect{Harm: runtimes.Harmful, What: "crashes the JVM (SR_handler)", Source: "test"}
		case rt.Name == "node" && sig == unix.SIGUSR1:
			return runtimes.Effect{Harm: runtimes.Harmful, What: "opens the inspector", Source: "test"}
		case rt.Name == "go":
			return runtimes.Effect{Harm: runtimes.Dropped, What: "dropped without signal.Notify", Source: "test"}
		}
		return runtimes.Effect{}
	}
}

func TestRuntimeSafetyRefusalConsentAllowOnce(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	// Container 1 (defaults): jvm, node, go, plain. Container 2: a JVM
	// that declared the critical signal, once per crossing. Container 3: a
	// node allowed by --allow.
	for _, pid := range []int{10, 11, 12, 13, 210, 311} {
		status(t, proc, pid, usr)
	}
	environ(t, proc, 10, "PATH=/bin")
	environ(t, proc, 210, "OOMHERO_CRITICAL_SIGNAL=SIGUSR2", "OOMHERO_REPEAT=once")
	environ(t, proc, 311, "PATH=/bin")
	groups := map[string]*discover.Group{
		"/one":   {Path: "/one", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "java"}, {PID: 11, PPID: 10, Comm: "node"}, {PID: 12, PPID: 10, Comm: "goapp"}, {PID: 13, PPID: 10, Comm: "plain"}}},
		"/two":   {Path: "/two", Version: watch.V1, Procs: []discover.Process{{PID: 210, Comm: "java2"}}},
		"/three": {Path: "/three", Version: watch.V1, Procs: []discover.Process{{PID: 311, Comm: "node3"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		"/one":   {ID: 1, Path: "/one", Limit: 1000, Version: watch.V1},
		"/two":   {ID: 2, Path: "/two", Limit: 1000, Version: watch.V1},
		"/three": {ID: 3, Path: "/three", Limit: 1000, Version: watch.V1},
	}}
	obs := &countingObserver{results: make(chan string, 100)}
	var clock atomic.Int64 // a fake clock: the cooldown passes when the test says
	clock.Store(time.Now().UnixNano())
	h := startAgent(t, []string{"--cooldown", "1h", "--allow", "node:SIGUSR1"}, proc, fakeScanner{groups}, res, func(a *Agent) {
		fakeRuntimes(a)
		a.Observer = obs
		a.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	<-h.src.updated
	h.feed(1, 800) // warning: SIGUSR1 to all four (node by --allow)
	h.feed(1, 950) // critical: SIGUSR2; the JVM refused
	h.waitLog(`msg="signal sent" pid=13 command=plain container=java memory_level=critical`)
	clock.Add(int64(2 * time.Hour))
	h.feed(1, 951) // critical again after the cooldown: refused again, said once
	h.feed(2, 950) // declared critical: sent to the JVM despite the table (consent), warning too
	h.feed(2, 951) // once: nothing more
	h.feed(3, 800) // node allowed SIGUSR1
	h.waitLog(`msg="signal sent" pid=311 `)
	got := h.snd.take()
	want := []sent{{10, unix.SIGUSR1}, {11, unix.SIGUSR1}, {12, unix.SIGUSR1}, {13, unix.SIGUSR1},
		{11, unix.SIGUSR2}, {12, unix.SIGUSR2}, {13, unix.SIGUSR2},
		{11, unix.SIGUSR2}, {12, unix.SIGUSR2}, {13, unix.SIGUSR2},
		{210, unix.SIGUSR1}, {210, unix.SIGUSR2},
		{311, unix.SIGUSR1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sent\n%v\nwant\n%v\n%s", got, want, h.logs.String())
	}
	h.stop()
	close(obs.results)
	refused := 0
	for r := range obs.results {
		if strings.HasSuffix(r, "/refused") {
			refused++
			if r != "java/critical/10/refused" {
				t.Errorf("unexpected refusal %s", r)
			}
		}
	}
	if refused != 2 {
		t.Errorf("refusals counted %d, want 2 (JVM critical, twice)", refused)
	}
	out := h.logs.String()
	if n := strings.Count(out, `msg="signal refused: the runtime's own handler would be harmed" pid=10 command=java container=java memory_level=critical signal=SIGUSR2 runtime=hotspot version=17.0.15 effect="crashes the JVM (SR_handler)" evidence="maps libjvm.so" opt_in="declare OOMHERO_CRITICAL_SIGNAL=SIGUSR2 on the container, or run oomhero with --allow hotspot:SIGUSR2"`); n != 1 {
		t.Errorf("JVM refusal said %d times, want once\n%s", n, out)
	}
	for _, w := range []string{
		`msg="signal sent, but the runtime will likely drop it unless the program asked for it" pid=12`,
		`msg="signal sent by the container's declaration although the runtime would be harmed" pid=210 command=java2 container=java2 memory_level=critical signal=SIGUSR2 runtime=hotspot`,
		`declared="OOMHERO_CRITICAL_SIGNAL=SIGUSR2"`,
		`msg="signal sent, allowed by --allow although the runtime would be harmed" pid=311`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s\n%s", w, out)
		}
	}
	if n := strings.Count(out, `msg="signal sent, but the runtime will likely drop it`); n != 2 {
		t.Errorf("dropped note said %d times, want once per signal", n)
	}
}

func TestAllowUnknownRuntimeIsSaid(t *testing.T) {
	h := startAgent(t, []string{"--allow", "nosuch:SIGUSR1,node:SIGUSR2", "--notify-url", "http://10.0.0.1/x"}, t.TempDir(), fakeScanner{map[string]*discover.Group{}}, fakeResolver{}, nil)
	h.waitLog(`msg="--allow names a runtime the safety table does not know: it has no effect" allow=nosuch:SIGUSR1`)
	h.waitLog(`msg="--notify-url will be refused" url=http://10.0.0.1/x`)
	h.stop()
	if strings.Contains(h.logs.String(), "allow=node:SIGUSR2") {
		t.Errorf("a known runtime was reported unknown:\n%s", h.logs.String())
	}
}

func TestKillReportSaysTheSignalWasRefused(t *testing.T) {
	proc := t.TempDir()
	status(t, proc, 10, uint64(1<<(unix.SIGUSR2-1))) // the JVM: SIGUSR2 only
	environ(t, proc, 10, "PATH=/bin")
	groups := map[string]*discover.Group{"/j": {Path: "/j", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "java"}}}}
	res := fakeResolver{byPath: map[string]watch.Container{"/j": {ID: 1, Path: "/j", Limit: 1000, Version: watch.V1}}}
	h := startAgent(t, nil, proc, fakeScanner{groups}, res, fakeRuntimes)
	<-h.src.updated
	h.feed(1, 990)
	h.waitLog(`msg="signal refused`)
	h.stop()
	h.agent.kill(oomwatch.Kill{ID: 1, Kills: 1, Total: 1, Time: time.Now()})
	out := h.logs.String()
	if !strings.Contains(out, `why="no process could take the warning signal (--targets handlers); the critical signal was refused: SIGUSR2 crashes the JVM (SR_handler) (runtime hotspot)"`) {
		t.Fatalf("OOM-kill report does not say why:\n%s", out)
	}
}

// TestIdentifyAgainAfterExec: a process identified as a shell that execs a
// JVM (same PID, same start time) is identified again: its command changed.
func TestIdentifyAgainAfterExec(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	write := func(comm string) {
		os.MkdirAll(filepath.Join(proc, "10"), 0o755)
		os.WriteFile(filepath.Join(proc, "10", "status"), []byte(fmt.Sprintf("Name:\t%s\nSigCgt:\t%016x\n", comm, usr)), 0o644)
	}
	calls := 0
	a := &Agent{Config: &config.Config{Proc: proc, WarningSignal: unix.SIGUSR1, CriticalSignal: unix.SIGUSR2}, Identify: func(_ string, pid int) runtimes.Runtime {
		calls++
		if h, _ := signals.ReadHandlers(proc, pid); h.Name == "java" {
			return runtimes.Runtime{Name: "hotspot"}
		}
		return runtimes.Runtime{Name: "shell"}
	}}
	tr := &tracked{}
	a.byID = map[uint64]*tracked{0: tr}
	p := discover.Process{PID: 10, Start: 5, Comm: "sh"}
	write("sh")
	n := a.note(tr, p)
	a.read(p, n)
	if rt, _ := a.identify(tr, p, n); rt.Name != "shell" {
		t.Fatal(rt)
	}
	a.read(p, n)
	if rt, _ := a.identify(tr, p, n); rt.Name != "shell" || calls != 1 {
		t.Fatalf("%v after %d calls: want the cached answer", rt, calls)
	}
	write("java") // exec
	a.read(p, n)
	if rt, _ := a.identify(tr, p, n); rt.Name != "hotspot" || calls != 2 {
		t.Fatalf("%v after %d calls: want identified again after the exec", rt, calls)
	}
}

// TestProvisionalIdentityAskedAgain: a server's child identified before it
// wrote its title (same command, same handlers: nothing else tells) is not
// kept: the next identification reads it again and sees its real role. (A
// PostgreSQL checkpointer read a millisecond after its fork was kept as
// the postmaster, and got SIGUSR2: crash recovery.)
func TestProvisionalIdentityAskedAgain(t *testing.T) {
	proc := t.TempDir()
	os.MkdirAll(filepath.Join(proc, "10"), 0o755)
	os.WriteFile(filepath.Join(proc, "10", "status"), []byte(fmt.Sprintf("Name:\tpostgres\nSigCgt:\t%016x\n", uint64(1<<(unix.SIGUSR2-1)))), 0o644)
	role := runtimes.RoleUntitled
	calls := 0
	a := &Agent{Config: &config.Config{Proc: proc, WarningSignal: unix.SIGUSR1, CriticalSignal: unix.SIGUSR2}, Identify: func(string, int) runtimes.Runtime {
		calls++
		return runtimes.Runtime{Name: "postgres", Role: role}
	}}
	tr := &tracked{}
	a.byID = map[uint64]*tracked{0: tr}
	p := discover.Process{PID: 10, Start: 5, Comm: "postgres"}
	n := a.note(tr, p)
	a.read(p, n)
	if rt, _ := a.identify(tr, p, n); rt.Role != runtimes.RoleUntitled {
		t.Fatal(rt)
	}
	if n.current(a.watchedSigs(tr)) {
		t.Fatal("a provisional identification counts as current")
	}
	role = "checkpointer" // the child wrote its title
	if rt, _ := a.identify(tr, p, n); rt.Role != "checkpointer" || calls != 2 {
		t.Fatalf("%v after %d calls: want identified again", rt, calls)
	}
	if rt, _ := a.identify(tr, p, n); rt.Role != "checkpointer" || calls != 2 || !n.current(a.watchedSigs(tr)) {
		t.Fatalf("%v after %d calls: want the final answer kept", rt, calls)
	}
	if eff := a.effectOf(runtimes.Runtime{Name: "postgres", Role: runtimes.RoleUntitled}, unix.SIGUSR2); eff.Harm != runtimes.Harmful {
		t.Fatalf("SIGUSR2 to an untitled postgres child: %v, want harmful", eff)
	}
}

// TestSlowIdentificationDoesNotBlockTheLoop: Identify stuck (the process's
// memory map is locked while it reclaims memory) holds the signal but not
// the agent: other containers are signalled at once; once the answer comes
// the next decision uses it.
func TestSlowIdentificationDoesNotBlockTheLoop(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	for _, pid := range []int{10, 20} {
		status(t, proc, pid, usr)
		environ(t, proc, pid, "PATH=/bin")
	}
	groups := map[string]*discover.Group{
		"/stuck": {Path: "/stuck", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "stuck"}}},
		"/other": {Path: "/other", Version: watch.V1, Procs: []discover.Process{{PID: 20, Comm: "other"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		"/stuck": {ID: 1, Path: "/stuck", Limit: 1000, Version: watch.V1},
		"/other": {ID: 2, Path: "/other", Limit: 1000, Version: watch.V1},
	}}
	release := make(chan struct{})
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	h := startAgent(t, []string{"--cooldown", "1h"}, proc, fakeScanner{groups}, res, func(a *Agent) {
		a.Identify = func(_ string, pid int) runtimes.Runtime {
			if pid == 10 {
				<-release
			}
			return runtimes.Runtime{Name: "go"}
		}
		a.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	<-h.src.updated
	start := time.Now()
	h.feed(1, 800) // warning: identification of pid 10 hangs
	h.feed(2, 800)
	h.waitLog(`msg="signal sent" pid=20`)
	if d := time.Since(start); d > time.Second {
		t.Errorf("another container waited %v behind a stuck identification", d)
	}
	h.waitLog(`msg="signal held: the process's runtime is not identified yet`)
	close(release)
	time.Sleep(50 * time.Millisecond) // the late answer is applied in the loop
	clock.Add(int64(2 * time.Hour))
	h.feed(1, 810) // warning again (cooldown passed): now known, sent
	h.waitLog(`msg="signal sent" pid=10`)
	h.stop()
}

// TestBookFirstThenSweep: a process with a handler is identified when its
// container is watched, before any reading, and gets the first signal
// straight from the book; a process whose handler came later gets it too,
// after a read. A handler gone since the book read it (reset, or an exec)
// is checked just before the signal: no signal goes to a process without
// a handler, and a process that exec'ed is identified again (and its new
// runtime's harmful signal refused).
func TestBookFirstThenSweep(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	statusNamed := func(pid int, name string, cgt uint64) {
		d := filepath.Join(proc, fmt.Sprint(pid))
		os.MkdirAll(d, 0o755)
		if err := os.WriteFile(filepath.Join(d, "status"), []byte(fmt.Sprintf("Name:\t%s\nState:\tS\nSigCgt:\t%016x\n", name, cgt)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	statusNamed(9, "late", 0) // installs its handlers after it was first read
	statusNamed(10, "app", usr)
	statusNamed(11, "child", 0)
	environ(t, proc, 10, "PATH=/bin")
	groups := map[string]*discover.Group{"/app": {Path: "/app", Version: watch.V1, Procs: []discover.Process{
		{PID: 9, PPID: 10, Start: 3, Comm: "late"}, {PID: 10, Start: 2, Comm: "app"}, {PID: 11, PPID: 10, Start: 3, Comm: "child"}}}}
	res := fakeResolver{byPath: map[string]watch.Container{"/app": {ID: 1, Path: "/app", Limit: 1000, Version: watch.V1}}}
	var mu sync.Mutex
	var ids []int
	identified := func() []int { mu.Lock(); defer mu.Unlock(); return slices.Clone(ids) }
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	h := startAgent(t, []string{"--cooldown", "1h"}, proc, fakeScanner{groups}, res, func(a *Agent) {
		fakeRuntimes(a)
		a.Identify = func(proc string, pid int) runtimes.Runtime {
			mu.Lock()
			ids = append(ids, pid)
			mu.Unlock()
			if st, _ := signals.ReadHandlers(proc, pid); st.Name == "java" {
				return runtimes.Runtime{Name: "hotspot"}
			}
			return runtimes.Runtime{}
		}
		a.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	<-h.src.updated
	if got := identified(); !slices.Equal(got, []int{10}) {
		t.Fatalf("identified ahead %v, want [10] (the only process with a handler)", got)
	}
	statusNamed(9, "late", usr)
	h.feed(1, 800) // warning: the book's process first, then the one read now
	h.waitLog(`msg="level changed" container=app from=ok to=warning`)
	if got, want := h.snd.take(), []sent{{10, unix.SIGUSR1}, {9, unix.SIGUSR1}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("warning sent %v, want %v\n%s", got, want, h.logs.String())
	}
	// The level line (it reads every process's memory) comes after every
	// signal, the late one's included.
	out := h.logs.String()
	if i, j, k := strings.Index(out, `msg="signal sent" pid=10 `), strings.Index(out, `msg="signal sent" pid=9 `), strings.Index(out, `msg="level changed"`); !(i < j && j < k) {
		t.Errorf("want the book's signal, then the late handler's, then the level line:\n%s", out)
	}

	statusNamed(10, "app", 0) // resets its handlers: the book still says it has them
	h.feed(1, 950)            // critical
	h.waitLog(`msg="signal sent" pid=9 command=late container=app memory_level=critical`)
	if got, want := h.snd.take(), []sent{{9, unix.SIGUSR2}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("critical sent %v, want %v (nothing to the process whose handler is gone)\n%s", got, want, h.logs.String())
	}

	statusNamed(10, "java", usr) // exec'ed: a JVM, whose SIGUSR2 is harmful
	clock.Add(int64(2 * time.Hour))
	h.feed(1, 960) // critical again after the cooldown
	h.waitLog(`msg="signal refused: the runtime's own handler would be harmed" pid=10 command=app container=app memory_level=critical signal=SIGUSR2 runtime=hotspot`)
	h.waitLog(`msg="signal sent" pid=9 command=late container=app memory_level=critical signal=SIGUSR2 percent=96`)
	if got, want := h.snd.take(), []sent{{9, unix.SIGUSR2}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("critical again sent %v, want %v\n%s", got, want, h.logs.String())
	}
	if got := identified(); !slices.Equal(got, []int{10, 9, 10}) {
		t.Errorf("identified %v, want [10 9 10]: the late handler once, the exec'ed process again", got)
	}
	h.stop()
}

// TestNoteProcs: the book reads a process when it first sees it and again
// when its command changes (an exec), not at every change of the
// container's processes; it identifies the processes with a handler for
// the container's signals only, and forgets those gone.
func TestNoteProcs(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	write := func(pid int, name string, cgt uint64) {
		os.MkdirAll(filepath.Join(proc, fmt.Sprint(pid)), 0o755)
		os.WriteFile(filepath.Join(proc, fmt.Sprint(pid), "status"), []byte(fmt.Sprintf("Name:\t%s\nSigCgt:\t%016x\n", name, cgt)), 0o644)
	}
	write(10, "app", usr)
	write(11, "child", 1<<(unix.SIGTERM-1)) // a handler, not for a watched signal
	write(12, "other", 0)
	var ids []int
	a := &Agent{Config: &config.Config{Proc: proc, WarningSignal: unix.SIGUSR1, CriticalSignal: unix.SIGUSR2}, Identify: func(_ string, pid int) runtimes.Runtime {
		ids = append(ids, pid)
		return runtimes.Runtime{Name: "go"}
	}}
	tr := &tracked{group: &discover.Group{Procs: []discover.Process{{PID: 10, Start: 5, Comm: "app"}, {PID: 11, Start: 5, Comm: "child"}}}}
	a.byID = map[uint64]*tracked{0: tr}
	a.noteProcs(tr)
	a.noteProcs(tr)
	b := tr.ep.procs
	if n := b.notes[procKey{10, 5}]; n == nil || n.reads != 1 || !n.current(a.watchedSigs(tr)) || n.rt.Name != "go" {
		t.Fatalf("app: %+v, want read once and identified", n)
	}
	if n := b.notes[procKey{11, 5}]; n == nil || n.reads != 1 || n.known {
		t.Fatalf("child: %+v, want read once, not identified", n)
	}
	write(10, "java", usr) // exec
	tr.group = &discover.Group{Procs: []discover.Process{{PID: 10, Start: 5, Comm: "java"}, {PID: 12, Start: 6, Comm: "other"}}}
	a.noteProcs(tr)
	if n := b.notes[procKey{10, 5}]; n == nil || n.reads != 2 || n.h.Name != "java" || !n.current(a.watchedSigs(tr)) {
		t.Fatalf("exec'ed app: %+v, want read again and identified again", n)
	}
	if _, ok := b.notes[procKey{11, 5}]; ok || b.notes[procKey{12, 6}] == nil || len(b.notes) != 2 {
		t.Fatalf("book %v: want the gone child forgotten, the new process read", b.notes)
	}
	if !slices.Equal(ids, []int{10, 10}) {
		t.Errorf("identified %v, want [10 10]", ids)
	}
	tr.ep.reset()
	if tr.ep.procs != b {
		t.Error("a new episode lost the book")
	}
}
