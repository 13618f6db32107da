package agent

import (
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/watch"
	"time"
)

// Selection and dry run.
//
// --include-container and --exclude-container select containers by the
// name oomhero gives them (the main command, or OOMHERO_NAME), so a
// container is selected again whenever that name changes (the runtime's
// init exec'ing the application, a declaration read). An excluded container
// is still discovered, so a later name can select it, but the source does
// not read it, no level, signal, notification or OOM kill of it is reported
// and it has no metrics series: one "container excluded" line says why.
//
// --include-command and --exclude-command select the processes that may be
// signalled by their command (/proc/<pid>/comm), in chooseTargets.
//
// --dry-run (or OOMHERO_DRY_RUN=true declared by the container) runs
// everything up to the send: each signal is logged "signal not sent (dry
// run)" with the attributes "signal sent" would have, and reported as
// result dry_run; each notification is checked (a refused URL is still
// refused) and reported as notify.DryRun.

// resultDryRun is the Observer.Signal result of a signal not sent because of
// the dry run.
const resultDryRun = "dry_run"

// reselect applies the container selection to t's current name. It reports
// whether the selection changed (the source's targets must be updated). A
// container excluded while at a level starts again at ok if it is selected
// later.
func (a *Agent) reselect(t *tracked) bool {
	ok, why := a.Config.ContainerSelected(t.Name)
	if ok != t.excluded {
		return false
	}
	t.excluded = !ok
	if t.excluded {
		a.Log.Info("container excluded", t.who(), "cgroup", t.Path, "reason", "its name "+why)
		a.Observer.Forget(a.target(t))
		a.policy.Forget(t.ID)
		a.policy.Set(t.ID, a.thresholds(t))
		a.arm(t) // a plan of the old thresholds must not fire
		t.ep.reset()
		t.noTarget = [3]bool{}
		if t.hot {
			t.hot = false
			if a.OOM != nil {
				a.OOM.SetHot(t.ID, false)
			}
		}
		return true
	}
	a.Log.Info("container selected", t.who(), "cgroup", t.Path, "limit_bytes", t.Limit)
	return true
}

// commandSelected reports whether process p of container t may be
// signalled by --include-command and --exclude-command; a process left out
// is said once per episode.
func (a *Agent) commandSelected(t *tracked, p discover.Process) bool {
	ok, why := a.Config.CommandSelected(p.Comm)
	if !ok && t.ep.once("command-excluded/"+p.Comm) {
		a.Log.Info("process not signalled: command excluded", t.who(), "pid", p.PID, "command", p.Comm,
			"reason", "its command "+why)
	}
	return ok
}

// dryRun reports whether container t is in dry run (the sidecar's
// --dry-run, or its own OOMHERO_DRY_RUN).
func (a *Agent) dryRun(t *tracked) bool { return a.cfgOf(t).DryRun }

// signalAttrs are the attributes of a "signal sent" line (and of its dry
// run twin).
func (a *Agent) signalAttrs(t *tracked, p discover.Process, l watch.Level, sigName string, rd watch.Reading, at time.Time) []any {
	return append([]any{"pid", p.PID, "command", p.Comm, t.who(), "memory_level", l.String(),
		"signal", sigName, "percent", percent(rd.Value(a.Config.Metric), t.Limit),
		"working_set_bytes", rd.WorkingSet(), "usage_bytes", rd.Usage, "limit_bytes", t.Limit},
		append(t.pressureAttrs(), readingAge(rd, at)...)...)
}

// readingAge says how old the reading behind a signal was when it went (at:
// right after the send, before anything is logged): since its figures were
// read ("reading_age"), and, for a reading a kernel event caused, since
// that event ("event_age"). A signal the BPF program sent went before the
// reading: its reading_age is negative, its event_age 0 (the send is part
// of the kernel event).
func readingAge(rd watch.Reading, at time.Time) []any {
	if rd.Time.IsZero() {
		return nil
	}
	age := at.Sub(rd.Time)
	out := []any{"reading_age", age.Round(time.Microsecond).String()}
	if rd.Latency > 0 {
		out = append(out, "event_age", max(0, rd.Latency+age).Round(time.Microsecond).String())
	}
	return out
}
