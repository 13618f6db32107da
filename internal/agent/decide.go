package agent

import (
	"context"
	"errors"
	"log/slog"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/policy"
	"github.com/oomhero/oomhero/internal/watch"
)

// Decisions: readings and pressure through the policy, level changes.

// thresholds are container t's thresholds and repeat policy, from its
// configuration (the sidecar's, or its declaration's).
func (a *Agent) thresholds(t *tracked) policy.Thresholds {
	c, limit := a.cfgOf(t), t.Limit
	return policy.Thresholds{
		Warn:       limit / 100 * uint64(c.Warning),
		Crit:       limit / 100 * uint64(c.Critical),
		Hysteresis: limit / 100 * uint64(c.Hysteresis),
		Cooldown:   c.Cooldown,
		Once:       c.Repeat == config.Once,
	}
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
	t.ahead = a.sentAhead(t, rd)
	defer func() { t.ahead = nil }()
	if t.excluded {
		return
	}
	if rd.Err != nil {
		if !t.readErr {
			t.readErr = true
			a.Log.Warn("cannot read container memory", t.who(), "error", rd.Err)
		}
		return
	}
	t.readErr = false
	if rd.Limit != 0 && rd.Limit != t.Limit {
		rd.Limit = t.Limit
	}
	if a.held(t, rd) {
		return
	}
	t.last, t.hasLast = rd, true
	value := rd.Value(a.Config.Metric)
	d := a.policy.Observe(rd.ID, value, a.now())
	warmed := false
	if hot := rd.Usage >= t.Limit/2 || d.To > watch.OK; hot != t.hot {
		t.hot, warmed = hot, hot
		if a.OOM != nil {
			a.OOM.SetHot(t.ID, hot)
		}
	}
	a.Observer.Reading(a.target(t), rd, d.To)
	if a.Log.Enabled(context.Background(), slog.LevelDebug) {
		a.Log.Debug("sample", t.who(), "origin", rd.Origin, "memory_level", d.To.String(),
			"percent", percent(value, t.Limit), "usage_bytes", rd.Usage, "working_set_bytes", rd.WorkingSet(),
			"anon_bytes", rd.Anon, "limit_bytes", t.Limit, "latency", rd.Latency)
	}
	a.decided(t, d, rd, rd.Origin)
	if warmed && len(d.Signal) == 0 {
		// Read the processes and name their runtimes before a signal is
		// due. (A signal due now does it on its way out, after the
		// processes the book named got it: deliver.go, handlers.go.)
		a.identifyTargets(t)
	}
}

// readPressure refreshes a container's memory pressure and, when a pressure
// trigger is set, lets it raise (or release) the level.
func (a *Agent) readPressure(t *tracked) {
	if t.psi == nil || t.excluded {
		return
	}
	p, err := t.psi.Read()
	if err != nil {
		a.Log.Warn("cannot read memory pressure", t.who(), "error", err)
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

// oomInProgress tells whether container t is being OOM-killed: its
// OOM-kill counter moved past the kills reported (the kernel counts a kill
// before the victim's memory is freed, so this is known before the figure
// falls), or a kill was reported less than afterOOM ago. It starts the
// afterOOM pause of signals.
func (a *Agent) oomInProgress(t *tracked) bool {
	now := a.now()
	if !t.oomAt.IsZero() && now.Sub(t.oomAt) < afterOOM {
		return true
	}
	c, err := a.oomCount(t.ID)
	if err != nil || c <= t.oomSeen {
		return false
	}
	t.oomAt = now
	return true
}

func (a *Agent) oomCount(id uint64) (uint64, error) {
	switch {
	case a.OOMCount != nil:
		return a.OOMCount(id)
	case a.OOM != nil:
		return a.OOM.Count(id)
	}
	return 0, errors.New("OOM kills not watched")
}

// decided logs a level change and sends the signals a decision calls for.
func (a *Agent) decided(t *tracked, d policy.Decision, rd watch.Reading, origin string) {
	value := rd.Value(a.Config.Metric)
	if d.Changed() {
		attrs := append([]any{t.who(), "from", d.From.String(), "to", d.To.String(),
			"percent", percent(value, t.Limit), "metric", string(a.Config.Metric),
			"working_set_bytes", rd.WorkingSet(), "usage_bytes", rd.Usage, "limit_bytes", t.Limit, "origin", origin},
			t.pressureAttrs()...)
		if d.To < d.From && a.oomInProgress(t) {
			// The kernel is freeing a killed process's memory: no news for
			// the application (the "oom kill" line follows), and deliver
			// holds the signals of a falling level.
			a.Log.Debug("level changed", append(attrs, "cause", "oom kill in progress")...)
		} else {
			// The line names the largest processes (topAttrs reads every
			// process's statm: milliseconds in a container of hundreds of
			// processes): it is written once the signals are out, after
			// the pause that leaves the CPU to the processes signalled
			// (later: handlers.go).
			defer a.later(t, func() { a.Log.Info("level changed", append(attrs, a.topAttrs(t)...)...) })
		}
		a.Observer.LevelChanged(a.target(t), d.From, d.To, rd)
		if d.To == watch.OK {
			t.noTarget = [3]bool{}
			t.ep.reset()
		}
		if d.To < watch.Critical {
			t.noTarget[watch.Critical] = false
		}
	}
	prev := d.From
	for _, l := range d.Signal {
		a.deliver(t, l, prev, rd)
		prev = l
	}
	a.arm(t)
}
