package vm

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/testenv/app/applog"
	"github.com/oomhero/oomhero/testenv/pods"
)

// The scenarios of the sidecar issue (and the OOM-kill report) on cgroup v2,
// all in one boot: each is a pod with its own oomhero, running side by side.
//
// Timing under TCG: the guest runs 10-20 times slower than the host and its
// two virtual CPUs are shared by six pods, so the latency bounds here are
// looser than the real-pod suite's 50 ms (see maxLatencyVM). They still fail
// when oomhero misses a crossing, signals early or late by a poll period's
// order of magnitude, or signals what it must not.

const (
	mib = 1 << 20
	// maxLatencyVM bounds crossing-to-receipt at 20 MiB/s in the VM. The
	// real-pod suite asks 50 ms; under TCG the guest runs 10-20 times
	// slower and its two virtual CPUs are shared by several pods, and
	// latencies of 25-330 ms were measured here. The bound still fails a
	// source that misses a crossing or waits for a cooldown tick (1 s).
	maxLatencyVM = 750 * time.Millisecond
	// minFastRate is the least leak rate that still makes the fast-leak
	// scenario a fast leak (MiB/s; 90 % to the kill in 870 ms): below it the
	// VM was too slow (an overloaded host) and the scenario proves little.
	// Measured alone here: 55-207 MiB/s depending on the host's load.
	minFastRate = 30
	// discovered is the app start delay (-delay) that lets oomhero start
	// and discover the app (rescan 1 s) before the app grows.
	discovered = 4 * time.Second
)

func oomheroContainer(source string, env ...string) Container {
	return Container{
		Name:      "oomhero",
		MemoryMax: 64 * mib,
		Args:      []string{"/bin/oomhero"},
		Env:       append([]string{"OOMHERO_SOURCE=" + source, "OOMHERO_LOG_FORMAT=json"}, env...),
	}
}

func app(name string, limit int64, args ...string) Container {
	return Container{Name: name, MemoryMax: limit, Args: append([]string{"/bin/testapp"}, args...)}
}

func delay(d time.Duration) string { return "-delay=" + d.String() }

// Scenario pods are named "<scenario>-<source>"; oomhero is always the first
// container. Pods end on what the app logged (EndOn) or when their main
// container exits (Main, Linger), so a slower machine makes them longer, not
// wrong; Duration is only an upper bound.

func pod(scenario, source string, c ...Container) Pod {
	return Pod{Name: scenario + "-" + source, Duration: D(45 * time.Second), Containers: c}
}

var thresholds = []string{"WARNING=65", "CRITICAL=90"}

// leak200Pod: 200 MiB/s (or as fast as the VM goes) into 256 MiB, 90 % to
// the kill in about 130 ms at 200 MiB/s. The app's exit ends the pod 4 s
// later (time for oomhero's "oom kill" line).
func leak200Pod(source string, start time.Duration) Pod {
	p := pod("leak200", source, oomheroContainer(source, thresholds...),
		withMain(app("app", 256*mib, "-mode=leak", "-rate=200", "-chunk=256", delay(start))))
	p.Linger = D(4 * time.Second)
	return p
}

// leak20Pod: up to 95 % of 256 MiB at 20 MiB/s (12.2 s).
func leak20Pod(source string, start time.Duration) Pod {
	return pod("leak20", source, oomheroContainer(source, thresholds...),
		endOn(app("app", 256*mib, "-mode=leak", "-rate=20", "-chunk=256", "-cap-percent=95", "-sample-interval=0", delay(start)),
			"event=cap", 2*time.Second))
}

// holdPods: apps held between thresholds, one boot per source.
func holdPods(source string) []Pod {
	return []Pod{
		// Held at 75 %: warnings every second (COOLDOWN default 1 s).
		pod("children", source, oomheroContainer(source, thresholds...),
			endOn(app("app", 256*mib, "-mode=hold", "-rate=50", "-chunk=1024", "-percent=75", "-children=3", delay(discovered)),
				"signal=SIGUSR1", 4*time.Second)),
		pod("nolimit", source, oomheroContainer(source, thresholds...),
			app("nolimit", 0, "-mode=hold", "-rate=100", "-chunk=1024", "-cap=128", delay(discovered)),
			endOn(app("limited", 256*mib, "-mode=hold", "-rate=50", "-chunk=1024", "-percent=75", delay(discovered)),
				"signal=SIGUSR1", 2*time.Second)),
		// Held at 70 %, between warning (50) and critical (90), 11 s after
		// the first warning.
		pod("cooldown", source, oomheroContainer(source, "WARNING=50", "CRITICAL=90", "COOLDOWN=2s"),
			endOn(app("app", 256*mib, "-mode=hold", "-rate=50", "-chunk=1024", "-percent=70", delay(discovered)),
				"signal=SIGUSR1", 11*time.Second)),
	}
}

// leakPods: the fast leaks one after the other (each has the VM to itself
// for its 2 s), then the 20 MiB/s leaks side by side.
func leakPods(sources []string) []Pod {
	var ps []Pod
	at := discovered
	for _, s := range sources {
		ps = append(ps, leak200Pod(s, at))
		at += 4 * time.Second
	}
	for _, s := range sources {
		ps = append(ps, leak20Pod(s, at))
	}
	return ps
}

// pageCachePods: usage near the limit with page cache of a file on /data (a
// RAM disk with ext2: real file cache), working set ~10 %, for 30 s. The
// churn keeps a CPU busy, so these get a boot of their own.
func pageCachePods(sources []string) []Pod {
	var ps []Pod
	for _, source := range sources {
		p := pod("pagecache", source, oomheroContainer(source, thresholds...),
			app("app", 256*mib, "-mode=churn", "-anon=16", "-file=/data/pagecache-"+source+"/churn.dat", "-file-size=320",
				"-sample-interval=250ms", delay(3*time.Second)))
		p.Duration = D(35 * time.Second)
		ps = append(ps, p)
	}
	return ps
}

func endOn(c Container, s string, wait time.Duration) Container {
	c.EndOn, c.EndWait = s, D(wait)
	return c
}

func withMain(c Container) Container { c.Main = true; return c }

type e2e struct {
	t   *testing.T
	res *Result
	pod string
}

func (e e2e) oomhero() []pods.Entry {
	return pods.ParseOomheroLog(e.res.Text(e.pod, "oomhero"))
}

func (e e2e) app(name string) applog.Log {
	e.t.Helper()
	// A sample or receipt whose cgroup read failed (read_error=) carries no
	// figures: a fault of the test app, not of oomhero. Count, don't parse.
	// A receipt keeps its time, the only figure of it the checks use.
	var b strings.Builder
	var unread []applog.Signal
	bad := 0
	for _, l := range e.res.Lines(e.pod, name) {
		if strings.Contains(l.Text, " read_error=") {
			if bad++; bad == 1 {
				e.t.Logf("%s: test app line with a read error (the app's fault): %s", name, l.Text)
			}
			if pl, ok := applog.ParseLine(l.Text); ok && pl.Event == "signal" {
				if at, err := pl.Mono(); err == nil {
					unread = append(unread, applog.Signal{Name: pl.KV["signal"], Mono: at})
				}
			}
			continue
		}
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	if bad > 1 {
		e.t.Logf("%s: %d test app lines with read errors", name, bad)
	}
	lg, err := applog.ParseLog(strings.NewReader(b.String()))
	if err != nil {
		e.t.Fatalf("parse %s log: %v", name, err)
	}
	if len(unread) > 0 {
		lg.Signals = append(lg.Signals, unread...)
		slices.SortFunc(lg.Signals, func(a, b applog.Signal) int { return cmp.Compare(a.Mono, b.Mono) })
	}
	return lg
}

// chargeJitter is how far memory.current can sit above what the app's own
// next sample shows: the kernel charges memory to a cgroup in per-CPU
// batches of 64 pages (256 KiB), so with 2 CPUs a reading can be up to
// 512 KiB ahead of the pages actually in use.
const chargeJitter = 512 << 10

// react is pods.React with the charge jitter: a signal is early only when it
// came before the last sample more than chargeJitter below the threshold.
func react(lg applog.Log, threshold uint64, sig string) pods.Reaction {
	r := pods.React(lg, threshold, sig)
	if !r.Crossed {
		return r
	}
	r.LastBelow = 0
	for _, s := range lg.Samples {
		if s.Mono >= r.CrossAt {
			break
		}
		if s.WorkingSet+chargeJitter < threshold {
			r.LastBelow = s.Mono
		}
	}
	return r
}

// dump logs every container's output of the pod when the test failed.
func (e e2e) dump() {
	if !e.t.Failed() {
		return
	}
	for _, c := range []string{"oomhero", "app", "nolimit", "limited"} {
		if s := e.res.Text(e.pod, c); s != "" {
			if len(s) > 20000 {
				s = "...\n" + s[len(s)-20000:]
			}
			e.t.Logf("%s/%s:\n%s", e.pod, c, s)
		}
	}
	for _, k := range e.res.Kmsg() {
		e.t.Logf("kmsg [%v] %s", time.Duration(k.T), k.Text)
	}
}

// checkSource: oomhero said which source is active, and it is the one asked.
func (e e2e) checkSource(es []pods.Entry, want string) {
	e.t.Helper()
	act := pods.Select(es, "source active", "")
	if len(act) == 0 {
		e.t.Errorf("oomhero never logged \"source active\"")
		return
	}
	got := act[len(act)-1].Str("source")
	if !strings.HasPrefix(got, want) {
		e.t.Errorf("oomhero's active source is %q, want %s", got, want)
	}
}

func (e e2e) watched(es []pods.Entry, container string) pods.Watched {
	e.t.Helper()
	w, ok, err := pods.FindWatched(es, "/"+container)
	if err != nil || !ok {
		e.t.Fatalf("oomhero did not log \"container watched\" with thresholds for %s (%v)", container, err)
	}
	return w
}

// TestE2E runs the scenarios with every source, in four boots: the held
// apps of each source, the leaks, the page cache. OOMHERO_VM_SOURCES
// (comma-separated) narrows the sources.
// pressurePod: the page-cache churn with a larger anonymous part (working
// set about 40 %, below the memory thresholds, usage at the limit): the
// kernel reclaims on every pass and the app stalls. oomhero runs with a
// pressure trigger (PSI full avg10 >= 1 %), which alone must warn the app.
func pressurePod(source string) Pod {
	p := pod("pressure", source, oomheroContainer(source, "WARNING=95", "CRITICAL=99", "OOMHERO_WARNING_PRESSURE=1"),
		endOn(app("app", 256*mib, "-mode=churn", "-anon=100", "-file=/data/pressure-"+source+"/churn.dat", "-file-size=320",
			"-sample-interval=250ms", delay(3*time.Second)), "signal=SIGUSR1", 2*time.Second))
	p.Duration = D(40 * time.Second)
	return p
}

func TestE2E(t *testing.T) {
	sources := []string{"cgroupfs", "bpf"}
	if s := os.Getenv("OOMHERO_VM_SOURCES"); s != "" {
		sources = strings.Split(s, ",")
	}
	type boot struct {
		name string
		spec Spec
	}
	var boots []boot
	for _, source := range sources {
		boots = append(boots, boot{"hold-" + source, Spec{Pods: holdPods(source)}})
	}
	boots = append(boots,
		boot{"leaks", Spec{Pods: leakPods(sources)}},
		boot{"pagecache", Spec{DataMiB: 400 * len(sources), Pods: pageCachePods(sources)}},
		boot{"pressure", Spec{DataMiB: 400, Pods: []Pod{pressurePod(sources[0])}}})

	for _, b := range boots {
		b.spec.Timeout = D(55 * time.Second)
		for i, p := range b.spec.Pods {
			// Pods start a little apart, as on a node. (Five oomheros
			// attaching fexit programs at the same instant once locked
			// up both CPUs of the guest: see the package doc.)
			p.Containers[0].StartDelay = D(time.Duration(i) * 500 * time.Millisecond)
		}
		t.Run(b.name, func(t *testing.T) {
			m := machine(t, "oomhero", "testapp")
			m.MemoryMiB = 2048 + b.spec.DataMiB
			res := run(t, m, b.spec)
			for _, p := range b.spec.Pods {
				var cpu []string
				for _, c := range p.Containers {
					cpu = append(cpu, fmt.Sprintf("%s %v", c.Name, res.CPU(p.Name, c.Name).Round(time.Millisecond)))
				}
				if ev := res.Find(KindDone, p.Name, ""); ev != nil {
					t.Logf("pod %s done at %v (guest clock); CPU time: %s", p.Name,
						time.Duration(ev.T).Round(time.Millisecond), strings.Join(cpu, ", "))
				}
				scenario, source, _ := strings.Cut(p.Name, "-")
				t.Run(p.Name, func(t *testing.T) {
					e := e2e{t: t, res: res, pod: p.Name}
					defer e.dump()
					e.checkSource(e.oomhero(), source)
					scenarios[scenario](e)
				})
			}
		})
	}
}

var scenarios = map[string]func(e2e){
	"leak20":    leak20,
	"leak200":   leak200,
	"pagecache": pageCache,
	"children":  children,
	"nolimit":   noLimit,
	"cooldown":  cooldown,
	"pressure":  pressure,
}

// pressure: memory pressure (PSI) alone raises the level: oomhero logs the
// change with origin "pressure" and the pressure figures, and the app gets
// its warning although its working set is far below the memory thresholds.
func pressure(e e2e) {
	t := e.t
	es := e.oomhero()
	w := e.watched(es, "app")
	if w.Entry.Str("pressure") != "memory.pressure" {
		t.Errorf("\"container watched\" does not say memory pressure is read: %s", w.Entry.Raw)
	}
	var changed *pods.Entry
	for _, c := range pods.Select(es, "level changed", "app") {
		if c.Str("origin") == "pressure" && c.Str("to") == "warning" {
			changed = &c
			break
		}
	}
	if changed == nil {
		t.Fatalf("no \"level changed\" to warning with origin pressure:\n%s", pods.Short(pods.Select(es, "level changed", "")))
	}
	t.Logf("pressure raised the level: %s", changed.Raw)
	if changed.Str("pressure_full_avg10") == "" {
		t.Errorf("the level change does not give the pressure figures")
	}
	lg := e.app("app")
	if len(lg.Signals) == 0 || lg.Signals[0].Name != "SIGUSR1" {
		t.Fatalf("the app got no SIGUSR1 (signals: %+v)", lg.Signals)
	}
	var maxWS uint64
	for _, s := range lg.Samples {
		maxWS = max(maxWS, s.WorkingSet)
	}
	if maxWS >= w.Warning {
		t.Errorf("working set reached the memory warning threshold (%d >= %d): pressure did not act alone", maxWS, w.Warning)
	}
}

// leak20: a 20 MiB/s leak gets its warning, then its critical signal, each
// within maxLatencyVM of the crossing.
func leak20(e e2e) {
	t := e.t
	es := e.oomhero()
	w := e.watched(es, "app")
	if w.Limit != 256*mib {
		t.Errorf("limit_bytes = %d, want %d", w.Limit, 256*mib)
	}
	lg := e.app("app")
	warn := react(lg, w.Warning, "SIGUSR1")
	crit := react(lg, w.Critical, "SIGUSR2")
	t.Log(warn)
	t.Log(crit)
	for _, p := range pods.CheckReactions(warn, crit, maxLatencyVM) {
		t.Error(p)
	}
}

// leak200: a 200 MiB/s leak into 256 MiB gets its critical signal before the
// kernel's OOM kill, and oomhero reports the kill in one "oom kill" line.
func leak200(e e2e) {
	t := e.t
	es := e.oomhero()
	w := e.watched(es, "app")
	exit := e.res.Find(KindExit, e.pod, "app")
	if exit == nil || exit.Signal != "SIGKILL" {
		t.Fatalf("app exit %+v, want killed by SIGKILL (OOM kill)", exit)
	}
	ev, _ := e.res.File(e.pod, "app", "memory.events")
	if !strings.Contains(ev, "oom_kill 1") {
		t.Fatalf("memory.events of the app's cgroup has no oom_kill 1:\n%s", ev)
	}
	// PSI (booted with psi=1): a container driven into its limit stalled
	// in reclaim before the kill.
	if ps, ok := e.res.File(e.pod, "app", cgroup.PressureFile); !ok {
		t.Errorf("no %s reported for the app", cgroup.PressureFile)
	} else if p, err := cgroup.ParsePressure([]byte(ps)); err != nil {
		t.Errorf("app %s: %v", cgroup.PressureFile, err)
	} else {
		t.Logf("app memory pressure at the end: some total %v, full total %v", p.Some.Total, p.Full.Total)
		if p.Some.Total == 0 {
			t.Errorf("no memory stall recorded for a container that hit its limit:\n%s", ps)
		}
	}
	lg := e.app("app")
	crit := react(lg, w.Critical, "SIGUSR2")
	t.Log(react(lg, w.Warning, "SIGUSR1"))
	t.Log(crit)
	if n := len(lg.Samples); n > 1 {
		first, last := lg.Samples[0], lg.Samples[n-1]
		rate := float64(last.Usage-first.Usage) / mib / (last.Mono - first.Mono).Seconds()
		t.Logf("leak rate achieved: %.0f MiB/s", rate)
		if rate < minFastRate {
			t.Errorf("the leak reached only %.0f MiB/s, want at least %d: the VM was too slow (overloaded host?) for a fast-leak test", rate, minFastRate)
		}
	}
	if !crit.Crossed {
		t.Fatalf("the app never crossed the critical threshold (%d): the test proves nothing", crit.Threshold)
	}
	if !crit.Received {
		t.Errorf("no SIGUSR2 before the OOM kill")
	} else if n := len(lg.Samples); n > 0 {
		t.Logf("critical arrived %v before the app's last sample", lg.Samples[n-1].Mono-crit.At)
	}
	kills := pods.Select(es, "oom kill", "")
	if len(kills) != 1 {
		t.Fatalf("oomhero logged %d \"oom kill\" lines, want 1", len(kills))
	}
	k := kills[0]
	t.Logf("oom kill line: %s", k.Raw)
	if !k.Mentions("app") {
		t.Errorf("\"oom kill\" does not name the container")
	}
	if l, err := k.Uint("limit_bytes"); err != nil || l != 256*mib {
		t.Errorf("\"oom kill\" limit_bytes = %d (%v), want %d", l, err, 256*mib)
	}
	for _, key := range []string{"last_working_set_bytes", "last_usage_bytes"} {
		if _, err := k.Uint(key); err != nil {
			t.Errorf("\"oom kill\": %v", err)
		}
	}
	if crit.Received && k.Str("last_critical_ago") == "" {
		t.Errorf("\"oom kill\" does not say when the critical signal went out")
	}
}

// pageCache: an app whose usage sits near its limit with page cache, working
// set low, gets no signal in 30 s.
func pageCache(e e2e) {
	t := e.t
	es := e.oomhero()
	w := e.watched(es, "app")
	lg := e.app("app")
	var maxUsage, maxWS uint64
	for _, s := range lg.Samples {
		maxUsage = max(maxUsage, s.Usage)
		maxWS = max(maxWS, s.WorkingSet)
	}
	var span time.Duration
	if n := len(lg.Samples); n > 1 {
		span = lg.Samples[n-1].Mono - lg.Samples[0].Mono
	}
	t.Logf("limit %d: max usage %.1f%%, max working set %.1f%%, %d samples over %v",
		w.Limit, 100*float64(maxUsage)/float64(w.Limit), 100*float64(maxWS)/float64(w.Limit), len(lg.Samples), span)
	if maxUsage < w.Limit*9/10 {
		t.Errorf("usage never reached 90%% of the limit (max %d): the test proves nothing", maxUsage)
	}
	if maxWS >= w.Warning {
		t.Errorf("the app's working set reached the warning threshold (%d >= %d): the scenario is wrong", maxWS, w.Warning)
	}
	if span < 25*time.Second {
		t.Errorf("the app ran %v, want about 30 s", span)
	}
	if n := len(lg.Signals); n > 0 {
		t.Errorf("the page-cache app got %d signals, want none (first: %+v)", n, lg.Signals[0])
	}
	if s := pods.Select(es, "signal sent", ""); len(s) > 0 {
		t.Errorf("oomhero sent %d signals, want none", len(s))
	}
	if !strings.Contains(e.res.Text(e.pod, "app"), "event=churn-pass") {
		t.Errorf("the app never finished a churn pass")
	}
}

// children: three child processes without a handler survive while the app
// is warned, repeatedly.
func children(e e2e) {
	t := e.t
	es := e.oomhero()
	lg := e.app("app")
	warns := lg.SignalsNamed("SIGUSR1")
	t.Logf("%d warnings received, %d children started", len(warns), len(lg.ChildStarts))
	if len(warns) < 2 {
		t.Errorf("%d warnings, want at least 2 (cooldown 1 s)", len(warns))
	}
	if len(lg.ChildStarts) != 3 {
		t.Fatalf("%d children started, want 3", len(lg.ChildStarts))
	}
	appPid, err := lg.Start.Uint("pid")
	if err != nil {
		t.Fatal(err)
	}
	// Children that exit before the pod's end log child-exit; at the end
	// SIGTERM makes the parent end them (signal=none or SIGTERM).
	for _, l := range lg.ChildExits {
		if s := l.KV["signal"]; s == "SIGUSR1" || s == "SIGUSR2" {
			t.Errorf("child killed by %s: %v", s, l.KV)
		}
	}
	stopped := time.Duration(e.res.Find(KindExit, e.pod, "app").T)
	for _, l := range lg.ChildExits {
		if at, err := l.Mono(); err == nil && at < stopped-2*time.Second {
			t.Errorf("child exited before the pod was stopped: %v", l.KV)
		}
	}
	sent := pods.Select(es, "signal sent", "")
	if len(sent) == 0 {
		t.Errorf("oomhero logged no \"signal sent\"")
	}
	for _, s := range sent {
		if pid, err := s.Uint("pid"); err != nil || pid != appPid {
			t.Errorf("oomhero signalled pid %s, want only the app (%d)", s.Str("pid"), appPid)
		}
	}
}

// noLimit: a container without a memory limit gets nothing and oomhero's
// log says why, once, while its limited neighbour is warned.
func noLimit(e e2e) {
	t := e.t
	es := e.oomhero()
	not := pods.Select(es, "container not watched", "/nolimit")
	if len(not) != 1 {
		t.Fatalf("%d \"container not watched\" lines name the unlimited container, want 1:\n%s",
			len(not), pods.Short(pods.Select(es, "container not watched", "")))
	}
	reason := not[0].Str("reason")
	t.Logf("container not watched: reason=%q", reason)
	if !strings.Contains(strings.ToLower(reason), "limit") {
		t.Errorf("reason %q does not mention the missing limit", reason)
	}
	if _, ok, _ := pods.FindWatched(es, "/nolimit"); ok {
		t.Errorf("oomhero watches the container without a limit")
	}
	nl := e.app("nolimit")
	if n := len(nl.Signals); n > 0 {
		t.Errorf("the container without a limit got %d signals", n)
	}
	if len(nl.Samples) == 0 || nl.Samples[len(nl.Samples)-1].Usage < 120*mib {
		t.Errorf("the unlimited app does not hold its memory: the test proves little")
	}
	if n := len(e.app("limited").SignalsNamed("SIGUSR1")); n == 0 {
		t.Errorf("the limited neighbour got no warning")
	}
}

// cooldown: COOLDOWN=2s, held above warning for 10 s: 5 ± 1 warnings.
func cooldown(e e2e) {
	t := e.t
	es := e.oomhero()
	w := e.watched(es, "app")
	lg := e.app("app")
	ws := lg.SignalsNamed("SIGUSR1")
	if len(ws) == 0 {
		t.Fatal("no warning")
	}
	first := ws[0].Mono
	n := len(lg.Samples)
	if n == 0 || lg.Samples[n-1].Mono < first+10*time.Second {
		t.Fatalf("the app did not run 10 s after its first warning: the pod is too short")
	}
	for _, s := range lg.Samples {
		if s.Mono >= first && s.Mono < first+10*time.Second && (s.WorkingSet < w.Warning || s.WorkingSet >= w.Critical) {
			t.Fatalf("working set %d at +%v outside [warning %d, critical %d): the scenario is wrong",
				s.WorkingSet, s.Mono-first, w.Warning, w.Critical)
		}
	}
	var in []string
	for _, s := range ws {
		if s.Mono >= first && s.Mono < first+10*time.Second {
			in = append(in, fmt.Sprint((s.Mono - first).Round(time.Millisecond)))
		}
	}
	t.Logf("warnings within 10 s of the first: %d at %v", len(in), in)
	if len(in) < 4 || len(in) > 6 {
		t.Errorf("%d warnings in 10 s with COOLDOWN=2s, want 5 ± 1", len(in))
	}
	if n := len(lg.SignalsNamed("SIGUSR2")); n > 0 {
		t.Errorf("%d critical signals while held below critical", n)
	}
}
