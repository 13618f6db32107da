package agent

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oomhero/oomhero/internal/oomwatch"
	"github.com/oomhero/oomhero/internal/watch"
)

// Reports: the OOM-kill report and the observers told about everything.

// Observer is told what the agent sees and does (metrics, Kubernetes
// Events). Methods are called from the agent's loop and must return quickly.
type Observer interface {
	// Scanned is called after every discovery scan with the watched targets.
	Scanned(targets []watch.Target)
	Reading(t watch.Target, rd watch.Reading, level watch.Level)
	LevelChanged(t watch.Target, from, to watch.Level, rd watch.Reading)
	// Signal reports one signal: result is "sent", "gone", "error",
	// "refused" (the runtime safety table, see deliver.go) or "dry_run"
	// (logged, not sent: select.go).
	Signal(t watch.Target, level watch.Level, pid int, result string)
	NoTarget(t watch.Target, level watch.Level)
	// Notification reports one HTTP notification: result is one of
	// notify.Sent, Failed, Refused, DryRun.
	Notification(t watch.Target, level watch.Level, result string)
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
func (NopObserver) Notification(watch.Target, watch.Level, string)                     {}
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
func (o Observers) Notification(t watch.Target, l watch.Level, result string) {
	for _, x := range o {
		x.Notification(t, l, result)
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

// kill reports an OOM kill in one line.
func (a *Agent) kill(k oomwatch.Kill) {
	t := a.byID[k.ID]
	if t == nil {
		return
	}
	t.oomAt = k.Time
	t.oomSeen = max(t.oomSeen, k.Total)
	a.arm(t) // nothing ahead of the agent right after a kill
	if t.excluded {
		a.Log.Debug("oom kill in an excluded container", t.who(), "kills", k.Kills)
		return
	}
	attrs := []any{t.who(), "cgroup", t.Path, "kills", k.Kills, "oom_kill_total", k.Total,
		"limit_bytes", t.Limit}
	if t.hasLast {
		v := t.last.Value(a.Config.Metric)
		attrs = append(attrs, "last_percent", percent(v, t.Limit), "last_working_set_bytes", t.last.WorkingSet(),
			"last_usage_bytes", t.last.Usage, "last_reading_ago", k.Time.Sub(t.last.Time).Round(time.Millisecond))
	}
	attrs = append(attrs, t.pressureAttrs()...)
	attrs = append(attrs, a.killTopAttrs(t, k.Time)...)
	// why: for each level whose signal never went out, the reason; a
	// refusal or a choice of the container says more than "not delivered".
	var whys []string
	for _, l := range []watch.Level{watch.Warning, watch.Critical} {
		key := "last_" + l.String()
		if !t.sent[l].IsZero() {
			attrs = append(attrs, key+"_ago", k.Time.Sub(t.sent[l]).Round(time.Millisecond))
			continue
		}
		attrs = append(attrs, key, "none")
		var w string
		switch {
		case t.ds.decl.Off:
			w = "the container opted out (OOMHERO=off)"
		case !t.drySent[l].IsZero():
			w = fmt.Sprintf("dry run: the %s signal was logged %v before it, not sent", l, k.Time.Sub(t.drySent[l]).Round(time.Millisecond))
		case a.sigFor(t, l) == 0:
			w = fmt.Sprintf("the %s signal is none", l)
		case t.ep.refused[l] != "":
			w = t.ep.refused[l]
		case t.noTarget[l]:
			w = fmt.Sprintf("no process could take the %s signal (--targets %s)", l, a.cfgOf(t).Targets)
		case a.policy.Level(t.ID) < l:
			w = fmt.Sprintf("the %s threshold was not reached in the last reading", l)
		default:
			w = fmt.Sprintf("the %s signal could not be delivered", l)
		}
		if !slices.Contains(whys, w) {
			whys = append(whys, w)
		}
	}
	why := strings.Join(whys, "; ")
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
