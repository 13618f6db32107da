package agent

import (
	"errors"
	"slices"
	"strings"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/declare"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/safename"
	"github.com/oomhero/oomhero/internal/watch"
)

// Declarations: what each container asks for in its own environment
// (package declare), merged over the sidecar's configuration.

// declState is the declaration of one container and where it came from.
type declState struct {
	read      bool
	pending   bool                // a read is out (bounded.go)
	from      discover.Process    // process it was read from
	pids      []int               // the container's PIDs when it was read
	main      discover.Process    // the main process when it was read
	decl      declare.Declaration // env merged with the pod's annotations (node mode)
	env       declare.Declaration // the environment's alone
	said      map[string]bool     // said once: bad values ("NAME=value"), "truncated"
	unreadErr string              // last "cannot read" said
}

// once reports whether key is said for the first time for this container.
func (ds *declState) once(key string) bool {
	if ds.said == nil {
		ds.said = map[string]bool{}
	}
	if ds.said[key] {
		return false
	}
	ds.said[key] = true
	return true
}

// cfgOf returns the configuration of container t (the sidecar's when it
// declared nothing).
func (a *Agent) cfgOf(t *tracked) *config.Config {
	if t.cfg != nil {
		return t.cfg
	}
	return a.Config
}

// consented reports whether the container declared level l's signal itself
// (consent to send it even where the runtime table calls it harmful).
func (t *tracked) consented(l watch.Level) bool {
	if l == watch.Critical {
		return t.ds.decl.CriticalSignal.Declared
	}
	return t.ds.decl.WarningSignal.Declared
}

// declRead is the result of reading a container's environment.
type declRead struct {
	d     declare.Declaration
	from  discover.Process
	found bool
	err   error // the last error (of the last process tried)
	part  error // ErrTruncated: read in part
}

// readDeclaration reads the declaration from the first process of order
// whose environment can be read (it runs off the agent's loop: see
// bounded.go).
func readDeclaration(proc string, self int, order []discover.Process) declRead {
	var r declRead
	for i, p := range order {
		if i > 0 && p.PID == order[0].PID || p.PID == self {
			continue
		}
		d, err := declare.Read(proc, p.PID)
		if err == nil || errors.Is(err, declare.ErrTruncated) {
			r.d, r.from, r.found, r.part = d, p, true, err
			return r
		}
		r.err = err
	}
	return r
}

// declare (re)reads container t's declaration when its main process or its
// processes changed since the last read, and applies it. It reports whether
// the thresholds or repeat policy changed (the policy and source must be
// told). A read that takes longer than probeWait (the process is in memory
// reclaim) is applied when it comes, and the policy and source are told
// then; meanwhile the previous declaration (or the sidecar's configuration)
// applies.
func (a *Agent) declare(t *tracked, g *discover.Group) bool {
	// The processes changed (or the container was resolved again): the
	// book of their handlers and runtimes follows (handlers.go).
	defer a.noteProcs(t)
	ds := &t.ds
	main := g.Main()
	if ds.pending || ds.read && ds.main == main && slices.Equal(ds.pids, g.PIDs()) {
		return false
	}
	ds.main, ds.pids = main, g.PIDs()
	// The main process first; the others when it cannot be read (exiting,
	// or a zombie: its environment is gone).
	order := append([]discover.Process{main}, g.Procs...)
	proc, self := a.Config.Proc, a.Self
	read := a.readDecl
	if read == nil {
		read = readDeclaration
	}
	ds.pending = true
	changed, inline := false, true
	if !bounded(a, func() declRead { return read(proc, self, order) }, func(r declRead) {
		ds.pending = false
		if a.byID[t.ID] != t {
			return // forgotten meanwhile
		}
		c := a.applyDeclaration(t, r)
		if inline {
			changed = c
		} else if c {
			a.policy.Set(t.ID, a.thresholds(t))
			a.arm(t) // a plan of the old thresholds must not fire
			a.Source.Update(a.targets())
		}
	}) && ds.once("slow") {
		a.Log.Warn("reading the container's environment is slow (its process may be in memory reclaim); its declaration applies when the read ends",
			t.who(), "pid", main.PID)
	}
	inline = false
	return changed
}

// applyName names the container as it declared (OOMHERO_NAME: the pod
// spec's container name, which a sidecar cannot learn otherwise), unless
// another watched container already has that name.
func (a *Agent) applyName(t *tracked, name string) {
	if name == "" || name == t.Name || a.kubeNamed(t) {
		return
	}
	for _, o := range a.byID {
		if o != t && o.Name == name {
			if t.ds.once("name " + name) {
				a.Log.Warn("declared name already taken; the command's name stays", t.who(),
					"variable", declare.Name, "value", name, "taken_by", o.Path)
			}
			return
		}
	}
	if a.boundName(t.Path, name) != name {
		return // renamed too often (names.go)
	}
	a.Log.Info("container named as declared", "container", name, "was", t.Name, "variable", declare.Name)
	a.Observer.Forget(a.target(t))
	t.Name = name
	if a.reselect(t) {
		a.Source.Update(a.targets())
	}
}

// applyDeclaration applies what readDeclaration found and reports whether
// the thresholds or repeat policy changed.
func (a *Agent) applyDeclaration(t *tracked, r declRead) bool {
	ds := &t.ds
	if !r.found {
		if r.err != nil && ds.unreadErr != r.err.Error() {
			ds.unreadErr = r.err.Error()
			applies := "the sidecar's configuration applies"
			if ds.read {
				applies = "the declaration read earlier still applies"
			}
			if errors.Is(r.err, declare.ErrRewritten) {
				a.Log.Warn("cannot read the container's declaration: its processes wrote their process title over their environment; "+applies,
					t.who(), "pid", ds.main.PID, "command", ds.main.Comm,
					"hint", "start the server through a wrapper that keeps its environment (sh -c, tini), or opt in on the sidecar with --allow")
			} else {
				a.Log.Warn("cannot read the container's declaration; "+applies,
					t.who(), "pid", ds.main.PID, "error", r.err)
			}
		}
		if ds.read || a.podDeclEmpty(t) {
			return false
		}
		r = declRead{from: ds.main, found: true} // the pod's annotations alone
	}
	if r.part != nil && ds.once("truncated") {
		a.Log.Warn("container environment read in part", t.who(), "pid", r.from.PID, "error", r.part)
	}
	d, from := declare.Merge(r.d, a.podDecl(t)), r.from
	ds.env = r.d
	ds.unreadErr = ""
	first := !ds.read
	if ds.read && ds.decl.Equal(&d) {
		ds.from = from
		return false
	}
	wasOff := ds.decl.Off
	ds.read, ds.from, ds.decl = true, from, d
	cfg, errs := d.Apply(a.Config)
	for _, e := range append(slices.Clone(d.Errors), errs...) {
		if !ds.once(e.Name + "=" + e.Value) {
			continue
		}
		a.Log.Warn("bad declaration ignored; the sidecar's value applies", t.who(), "pid", from.PID,
			"variable", safename.Clean(e.Name), "value", safename.Clean(e.Value), "accepted", e.Accepted)
	}
	if d.Off && !wasOff {
		a.Log.Info("container opted out: no signal and no notification (OOMHERO=off); still watched",
			t.who(), "pid", from.PID)
	}
	if len(d.Set) > 0 || !first {
		a.Log.Info("container declaration", t.who(), "pid", from.PID, "command", from.Comm,
			"declared", strings.Join(d.Set, " "), "warning_percent", cfg.Warning, "critical_percent", cfg.Critical,
			"warning_signal", config.SignalName(cfg.WarningSignal), "critical_signal", config.SignalName(cfg.CriticalSignal),
			"targets", string(cfg.Targets), "repeat", string(cfg.Repeat), "cooldown", cfg.Cooldown, "notify_url", cfg.NotifyURL,
			"dry_run", cfg.DryRun)
	}
	a.applyName(t, d.Name)
	old := a.cfgOf(t)
	t.cfg = cfg
	return old.Warning != cfg.Warning || old.Critical != cfg.Critical || old.Cooldown != cfg.Cooldown || old.Repeat != cfg.Repeat
}
