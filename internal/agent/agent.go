// Package agent ties oomhero together: it discovers containers, feeds their
// readings from a Source through the policy, and acts on decisions (signals,
// logs, OOM-kill reports, hooks for metrics and events).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/oomwatch"
	"github.com/oomhero/oomhero/internal/policy"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// Observer is told what the agent sees and does (metrics, Kubernetes
// Events). Methods are called from the agent's loop and must return quickly.
type Observer interface {
	// Scanned is called after every discovery scan with the watched targets.
	Scanned(targets []watch.Target)
	Reading(t watch.Target, rd watch.Reading, level watch.Level)
	LevelChanged(t watch.Target, from, to watch.Level, rd watch.Reading)
	// Signal reports one signal: result is "sent", "gone" or "error".
	Signal(t watch.Target, level watch.Level, pid int, result string)
	NoTarget(t watch.Target, level watch.Level)
	// OOMKill reports kills OOM kills; message is the report logged.
	OOMKill(t watch.Target, kills uint64, message string)
	Forget(t watch.Target)
}

// NopObserver does nothing; embed it to implement part of Observer.
type NopObserver struct{}

func (NopObserver) Scanned([]watch.Target)                                             {}
func (NopObserver) Reading(watch.Target, watch.Reading, watch.Level)                   {}
func (NopObserver) LevelChanged(watch.Target, watch.Level, watch.Level, watch.Reading) {}
func (NopObserver) Signal(watch.Target, watch.Level, int, string)                      {}
func (NopObserver) NoTarget(watch.Target, watch.Level)                                 {}
func (NopObserver) OOMKill(watch.Target, uint64, string)                               {}
func (NopObserver) Forget(watch.Target)                                                {}

// Observers fans out to several observers.
type Observers []Observer

func (o Observers) Scanned(ts []watch.Target) {
	for _, x := range o {
		x.Scanned(ts)
	}
}
func (o Observers) Reading(t watch.Target, rd watch.Reading, l watch.Level) {
	for _, x := range o {
		x.Reading(t, rd, l)
	}
}
func (o Observers) LevelChanged(t watch.Target, from, to watch.Level, rd watch.Reading) {
	for _, x := range o {
		x.LevelChanged(t, from, to, rd)
	}
}
func (o Observers) Signal(t watch.Target, l watch.Level, pid int, result string) {
	for _, x := range o {
		x.Signal(t, l, pid, result)
	}
}
func (o Observers) NoTarget(t watch.Target, l watch.Level) {
	for _, x := range o {
		x.NoTarget(t, l)
	}
}
func (o Observers) OOMKill(t watch.Target, kills uint64, msg string) {
	for _, x := range o {
		x.OOMKill(t, kills, msg)
	}
}
func (o Observers) Forget(t watch.Target) {
	for _, x := range o {
		x.Forget(t)
	}
}

// Scanner lists process groups (discover.Scanner).
type Scanner interface {
	Scan() (map[string]*discover.Group, error)
}

// Resolver resolves a group to a container (discover.Resolver).
type Resolver interface {
	Resolve(g *discover.Group) (watch.Container, error)
}

// Agent is oomhero's main loop.
type Agent struct {
	Config   *config.Config
	Log      *slog.Logger
	Scanner  Scanner
	Resolver Resolver
	Source   watch.Source
	Sender   signals.Sender
	// OOM, when not nil, reports OOM kills.
	OOM      *oomwatch.Watcher
	Observer Observer
	// Self is oomhero's PID in Config.Proc: never signalled.
	Self int
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	policy     *policy.Policy
	byPath     map[string]*tracked
	byID       map[uint64]*tracked
	notWatched map[string]string // path -> reason said
}

type tracked struct {
	watch.Container
	group    *discover.Group
	last     watch.Reading
	hasLast  bool
	sent     [3]time.Time // last signal actually delivered, per level
	noTarget [3]bool      // "no process can take the signal" said this episode
	readErr  bool
	psi      *cgroup.PressureReader // nil where the cgroup has no PSI
	pressure cgroup.Pressure
	hot      bool      // told the OOM watcher the cgroup is near its limit
	oomAt    time.Time // last OOM kill seen
	scans    int       // rescans since the last full resolve
	comm     string    // main process's command at the last resolve
}

// resolveEvery is how many rescans may reuse a known container's cgroup
// (same processes) before it is resolved again to notice a new limit.
const resolveEvery = 10

// afterOOM is how long signals to a container pause after an OOM kill: its
// processes are being killed and the runtime is tearing it down.
const afterOOM = time.Second

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Run runs until ctx ends or the source fails.
func (a *Agent) Run(ctx context.Context) error {
	if a.Observer == nil {
		a.Observer = NopObserver{}
	}
	a.policy = policy.New(a.Config.Cooldown)
	a.byPath, a.byID, a.notWatched = map[string]*tracked{}, map[uint64]*tracked{}, map[string]string{}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readings := make(chan watch.Reading, 64)
	srcDone := make(chan error, 1)
	go func() { srcDone <- a.Source.Run(ctx, readings) }()
	kills := make(chan oomwatch.Kill, 8)
	oomDone := make(chan error, 1)
	if a.OOM != nil {
		go func() { oomDone <- a.OOM.Run(ctx, kills) }()
	}
	wait := func() {
		cancel()
		<-srcDone
		if a.OOM != nil {
			<-oomDone
		}
	}

	if err := a.rescan(); err != nil {
		wait()
		return err
	}
	rescan := time.NewTicker(a.Config.Rescan)
	defer rescan.Stop()
	cooldown := time.NewTimer(time.Hour)
	defer cooldown.Stop()
	for {
		if next, ok := a.policy.NextDue(); ok {
			cooldown.Reset(max(time.Until(next), 0))
		} else {
			cooldown.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			wait()
			return nil
		case err := <-srcDone:
			cancel()
			if a.OOM != nil {
				<-oomDone
			}
			if err == nil {
				return nil
			}
			return fmt.Errorf("source %s: %w", a.Source.Name(), err)
		case err := <-oomDone:
			a.Log.Error("OOM-kill watcher stopped", "error", err)
			a.OOM = nil
		case <-rescan.C:
			if err := a.rescan(); err != nil {
				a.Log.Error("rescan failed", "error", err)
			}
		case rd := <-readings:
			a.reading(rd)
		case k := <-kills:
			a.kill(k)
		case <-cooldown.C:
			for _, d := range a.policy.Tick(a.now()) {
				if t := a.byID[d.ID]; t != nil {
					for _, l := range d.Signal {
						a.signal(t, l, t.last)
					}
				}
			}
		}
	}
}

func (a *Agent) thresholds(limit uint64) policy.Thresholds {
	return policy.Thresholds{
		Warn:       limit / 100 * uint64(a.Config.Warning),
		Crit:       limit / 100 * uint64(a.Config.Critical),
		Hysteresis: limit / 100 * uint64(a.Config.Hysteresis),
	}
}

// rescan rediscovers containers and updates the source's targets.
func (a *Agent) rescan() error {
	groups, err := a.Scanner.Scan()
	if err != nil {
		return err
	}
	changed := false
	for path, g := range groups {
		if a.Config.CgroupMatch != "" && !strings.Contains(path, a.Config.CgroupMatch) {
			continue
		}
		t := a.byPath[path]
		if t != nil && t.scans < resolveEvery && slices.Equal(t.PIDs, g.PIDs()) && t.comm == g.Main().Comm {
			t.scans++
			t.group = g
			continue
		}
		c, err := a.Resolver.Resolve(g)
		if err != nil {
			if t != nil {
				// A known container whose cgroup cannot be read right now
				// (exiting): keep it until its processes are gone.
				t.group = g
				continue
			}
			reason := err.Error()
			if errors.Is(err, watch.ErrNoLimit) {
				reason = "no memory limit"
			}
			if a.notWatched[path] != reason {
				a.notWatched[path] = reason
				a.Log.Info("container not watched", "container", c.Name, "cgroup", path, "reason", reason,
					"pids", len(g.Procs))
			}
			continue
		}
		delete(a.notWatched, path)
		if t != nil && t.ID == c.ID {
			if c.Name = a.uniqueName(c.Name, g); t.Name != c.Name && !strings.HasPrefix(t.Name, g.Main().Comm+"@") {
				// The main process exec'ed (runtime init -> application).
				a.Observer.Forget(a.target(t))
				t.Name = c.Name
			}
			t.group, t.PIDs, t.scans, t.comm = g, c.PIDs, 0, g.Main().Comm
			if t.Limit != c.Limit || t.Dir != c.Dir {
				a.Log.Info("container limit changed", "container", t.Name, "from_bytes", t.Limit, "to_bytes", c.Limit)
				t.Container = c
				a.policy.Set(c.ID, a.thresholds(c.Limit))
				changed = true
			}
			continue
		}
		if t != nil {
			a.forget(t) // same path, new cgroup (container restarted)
		}
		c.Name = a.uniqueName(c.Name, g)
		t = &tracked{Container: c, group: g, comm: g.Main().Comm}
		a.byPath[path], a.byID[c.ID] = t, t
		psiNote := "unavailable"
		if r, err := cgroup.OpenPressure(c.Dir); err == nil {
			t.psi, psiNote = r, "memory.pressure"
		} else if !errors.Is(err, cgroup.ErrNoPressure) {
			psiNote = "unavailable: " + err.Error()
		}
		th := a.thresholds(c.Limit)
		a.policy.Set(c.ID, th)
		changed = true
		oomNote := "not watched"
		if a.OOM != nil {
			notified, err := a.OOM.Add(c.ID, c.Dir, c.Version)
			switch {
			case err != nil:
				oomNote = "unavailable: " + err.Error()
			case notified:
				oomNote = "kernel notification"
			default:
				oomNote = fmt.Sprintf("polled every %v", oomwatch.PollInterval)
			}
		}
		a.Log.Info("container watched", "container", c.Name, "cgroup", path, "cgroup_id", c.ID,
			"version", c.Version.String(), "dir", c.Dir, "limit_bytes", c.Limit,
			"warning_bytes", th.Warn, "critical_bytes", th.Crit, "pids", len(c.PIDs), "oom_kills", oomNote, "pressure", psiNote)
	}
	for path, t := range a.byPath {
		if _, ok := groups[path]; !ok {
			a.Log.Info("container gone", "container", t.Name, "cgroup", path)
			a.forget(t)
			changed = true
		}
	}
	for path := range a.notWatched {
		if _, ok := groups[path]; !ok {
			delete(a.notWatched, path)
		}
	}
	for _, t := range a.byID {
		a.readPressure(t)
	}
	targets := a.targets()
	if changed {
		a.Source.Update(targets)
	}
	a.Observer.Scanned(targets)
	return nil
}

// uniqueName names a container by its main command ("java"), stable across
// restarts; the resolver's "command@id" form is kept only when another
// watched container already uses the command alone.
func (a *Agent) uniqueName(resolved string, g *discover.Group) string {
	comm := g.Main().Comm
	for _, o := range a.byID {
		if o.Name == comm && o.Path != g.Path {
			return resolved
		}
	}
	return comm
}

func (a *Agent) forget(t *tracked) {
	if t.psi != nil {
		t.psi.Close()
	}
	if a.OOM != nil {
		a.OOM.Remove(t.ID)
	}
	a.policy.Forget(t.ID)
	a.Observer.Forget(a.target(t))
	delete(a.byPath, t.Path)
	delete(a.byID, t.ID)
}

func (a *Agent) targets() []watch.Target {
	out := make([]watch.Target, 0, len(a.byID))
	for _, id := range slices.Sorted(maps.Keys(a.byID)) {
		out = append(out, a.target(a.byID[id]))
	}
	return out
}

func (a *Agent) target(t *tracked) watch.Target {
	th := a.thresholds(t.Limit)
	return watch.Target{Container: t.Container, Warn: th.Warn, Crit: th.Crit, Metric: a.Config.Metric}
}

func percent(v, limit uint64) float64 {
	if limit == 0 {
		return 0
	}
	return float64(int(float64(v)/float64(limit)*1000)) / 10
}

func (a *Agent) reading(rd watch.Reading) {
	t := a.byID[rd.ID]
	if t == nil {
		return
	}
	if rd.Err != nil {
		if !t.readErr {
			t.readErr = true
			a.Log.Warn("cannot read container memory", "container", t.Name, "error", rd.Err)
		}
		return
	}
	t.readErr = false
	if rd.Limit != 0 && rd.Limit != t.Limit {
		rd.Limit = t.Limit
	}
	t.last, t.hasLast = rd, true
	value := rd.Value(a.Config.Metric)
	d := a.policy.Observe(rd.ID, value, a.now())
	if hot := rd.Usage >= t.Limit/2 || d.To > watch.OK; hot != t.hot && a.OOM != nil {
		t.hot = hot
		a.OOM.SetHot(t.ID, hot)
	}
	a.Observer.Reading(a.target(t), rd, d.To)
	if a.Log.Enabled(context.Background(), slog.LevelDebug) {
		a.Log.Debug("sample", "container", t.Name, "origin", rd.Origin, "level", d.To.String(),
			"percent", percent(value, t.Limit), "usage_bytes", rd.Usage, "working_set_bytes", rd.WorkingSet(),
			"anon_bytes", rd.Anon, "limit_bytes", t.Limit, "latency", rd.Latency)
	}
	a.decided(t, d, rd, rd.Origin)
}

// readPressure refreshes a container's memory pressure and, when a pressure
// trigger is set, lets it raise (or release) the level.
func (a *Agent) readPressure(t *tracked) {
	if t.psi == nil {
		return
	}
	p, err := t.psi.Read()
	if err != nil {
		a.Log.Warn("cannot read memory pressure", "container", t.Name, "error", err)
		t.psi.Close()
		t.psi = nil
		return
	}
	t.pressure = p
	if a.Config.WarningPressure == 0 && a.Config.CriticalPressure == 0 {
		return
	}
	l := watch.OK
	switch full := p.Full.Avg10; {
	case a.Config.CriticalPressure > 0 && full >= float64(a.Config.CriticalPressure):
		l = watch.Critical
	case a.Config.WarningPressure > 0 && full >= float64(a.Config.WarningPressure):
		l = watch.Warning
	}
	a.decided(t, a.policy.ObservePressure(t.ID, l, a.now()), t.last, "pressure")
}

// pressureAttrs are the pressure figures for a log line, when known.
func (t *tracked) pressureAttrs() []any {
	if t.psi == nil {
		return nil
	}
	return []any{"pressure_some_avg10", t.pressure.Some.Avg10, "pressure_full_avg10", t.pressure.Full.Avg10}
}

// decided logs a level change and sends the signals a decision calls for.
func (a *Agent) decided(t *tracked, d policy.Decision, rd watch.Reading, origin string) {
	value := rd.Value(a.Config.Metric)
	if d.Changed() {
		a.Log.Info("level changed", append([]any{"container", t.Name, "from", d.From.String(), "to", d.To.String(),
			"percent", percent(value, t.Limit), "metric", string(a.Config.Metric),
			"working_set_bytes", rd.WorkingSet(), "usage_bytes", rd.Usage, "limit_bytes", t.Limit, "origin", origin},
			t.pressureAttrs()...)...)
		a.Observer.LevelChanged(a.target(t), d.From, d.To, rd)
		if d.To == watch.OK {
			t.noTarget = [3]bool{}
		}
		if d.To < watch.Critical {
			t.noTarget[watch.Critical] = false
		}
	}
	for _, l := range d.Signal {
		a.signal(t, l, rd)
	}
}

func (a *Agent) sigFor(l watch.Level) unix.Signal {
	if l == watch.Critical {
		return a.Config.CriticalSignal
	}
	return a.Config.WarningSignal
}

// signal sends level l's signal to the container's chosen processes.
func (a *Agent) signal(t *tracked, l watch.Level, rd watch.Reading) {
	sig := a.sigFor(l)
	if !t.oomAt.IsZero() && a.now().Sub(t.oomAt) < afterOOM {
		a.Log.Debug("signal held back: the container was just OOM-killed", "container", t.Name, "level", l.String())
		return
	}
	procs := a.chooseTargets(t, sig)
	value := rd.Value(a.Config.Metric)
	if len(procs) == 0 {
		if !t.noTarget[l] {
			t.noTarget[l] = true
			a.Log.Warn("no process can take the signal", "container", t.Name, "level", l.String(),
				"signal", config.SignalName(sig), "targets", string(a.Config.Targets), "pids", len(t.group.Procs))
			a.Observer.NoTarget(a.target(t), l)
		}
		return
	}
	now := a.now()
	for _, p := range procs {
		err := a.Sender.Send(p.PID, p.Start, sig)
		result := "sent"
		switch {
		case err == nil:
			t.sent[l] = now
			a.Log.Info("signal sent", append([]any{"pid", p.PID, "command", p.Comm, "container", t.Name, "level", l.String(),
				"signal", config.SignalName(sig), "percent", percent(value, t.Limit),
				"working_set_bytes", rd.WorkingSet(), "usage_bytes", rd.Usage, "limit_bytes", t.Limit},
				t.pressureAttrs()...)...)
		case errors.Is(err, signals.ErrGone):
			result = "gone"
			a.Log.Debug("process gone before the signal", "pid", p.PID, "container", t.Name)
		default:
			result = "error"
			a.Log.Error("signal failed", "pid", p.PID, "command", p.Comm, "container", t.Name,
				"signal", config.SignalName(sig), "error", err)
		}
		a.Observer.Signal(a.target(t), l, p.PID, result)
	}
}

// chooseTargets picks the processes that get sig, by the --targets mode.
// PID 1 and oomhero itself are never chosen.
func (a *Agent) chooseTargets(t *tracked, sig unix.Signal) []discover.Process {
	if t.group == nil || len(t.group.Procs) == 0 {
		return nil
	}
	var cand []discover.Process
	switch a.Config.Targets {
	case config.Main:
		cand = []discover.Process{t.group.Main()}
	default:
		cand = t.group.Procs
	}
	var out []discover.Process
	for _, p := range cand {
		if p.PID == 1 || p.PID == a.Self {
			continue
		}
		if a.Config.Targets == config.Handlers {
			mask, err := signals.Caught(a.Config.Proc, p.PID)
			if err != nil || !signals.Handles(mask, sig) {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// kill reports an OOM kill in one line.
func (a *Agent) kill(k oomwatch.Kill) {
	t := a.byID[k.ID]
	if t == nil {
		return
	}
	t.oomAt = k.Time
	attrs := []any{"container", t.Name, "cgroup", t.Path, "kills", k.Kills, "oom_kill_total", k.Total,
		"limit_bytes", t.Limit}
	if t.hasLast {
		v := t.last.Value(a.Config.Metric)
		attrs = append(attrs, "last_percent", percent(v, t.Limit), "last_working_set_bytes", t.last.WorkingSet(),
			"last_usage_bytes", t.last.Usage, "last_reading_ago", k.Time.Sub(t.last.Time).Round(time.Millisecond))
	}
	attrs = append(attrs, t.pressureAttrs()...)
	var why string
	for _, l := range []watch.Level{watch.Warning, watch.Critical} {
		key := "last_" + l.String()
		if t.sent[l].IsZero() {
			attrs = append(attrs, key, "none")
			if why == "" {
				switch {
				case t.noTarget[l]:
					why = fmt.Sprintf("no process could take the %s signal (--targets %s)", l, a.Config.Targets)
				case a.policy.Level(t.ID) < l:
					why = fmt.Sprintf("the %s threshold was not reached in the last reading", l)
				default:
					why = fmt.Sprintf("the %s signal could not be delivered", l)
				}
			}
		} else {
			attrs = append(attrs, key+"_ago", k.Time.Sub(t.sent[l]).Round(time.Millisecond))
		}
	}
	if why != "" {
		attrs = append(attrs, "why", why)
	}
	a.Log.Warn("oom kill", attrs...)
	msg := fmt.Sprintf("OOM kill in %s (limit %d bytes)", t.Name, t.Limit)
	switch {
	case t.sent[watch.Warning].IsZero() && t.sent[watch.Critical].IsZero():
		msg += "; no signal went out before it: " + why
	case why != "":
		msg += "; " + why
	default:
		msg += fmt.Sprintf("; the critical signal went out %v before it", k.Time.Sub(t.sent[watch.Critical]).Round(time.Millisecond))
	}
	a.Observer.OOMKill(a.target(t), k.Kills, msg)
}
