package agent

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// Delivery: which processes get which signal.

// sigFor is container t's signal for level l (0: none).
func (a *Agent) sigFor(t *tracked, l watch.Level) unix.Signal {
	if l == watch.Critical {
		return a.cfgOf(t).CriticalSignal
	}
	return a.cfgOf(t).WarningSignal
}

// signal sends level l's signal to the container's chosen processes.
func (a *Agent) signal(t *tracked, l watch.Level, rd watch.Reading) {
	if t.ds.decl.Off {
		return
	}
	if !t.oomAt.IsZero() && a.now().Sub(t.oomAt) < afterOOM {
		a.Log.Debug("signal held back: the container was just OOM-killed", "container", t.Name, "level", l.String())
		return
	}
	sig := a.sigFor(t, l)
	if sig == 0 {
		return
	}
	procs := a.chooseTargets(t, sig)
	value := rd.Value(a.Config.Metric)
	if len(procs) == 0 {
		if !t.noTarget[l] {
			t.noTarget[l] = true
			a.Log.Warn("no process can take the signal", "container", t.Name, "level", l.String(),
				"signal", config.SignalName(sig), "targets", string(a.cfgOf(t).Targets), "pids", len(t.group.Procs))
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
	mode := a.cfgOf(t).Targets
	var cand []discover.Process
	switch mode {
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
		if mode == config.Handlers {
			mask, err := signals.Caught(a.Config.Proc, p.PID)
			if err != nil || !signals.Handles(mask, sig) {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}
