package agent

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/declare"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/oomwatch"
	"github.com/oomhero/oomhero/internal/watch"
)

// Discovery: which containers are watched, under which name and limit.

// rescan rediscovers containers and updates the source's targets.
func (a *Agent) rescan() error {
	groups, err := a.Scanner.Scan()
	if err != nil {
		return err
	}
	if s, ok := a.Scanner.(interface{ Skipped() []discover.Skip }); ok {
		for _, k := range s.Skipped() { // each process once
			a.Log.Warn("process skipped", "pid", k.PID, "error", k.Err)
		}
	}
	changed := false
	for path, g := range groups {
		if a.Config.CgroupMatch != "" && !strings.Contains(path, a.Config.CgroupMatch) {
			continue
		}
		t := a.byPath[path]
		if t == nil && starting(g) {
			// The runtime's init has not exec'ed the application yet: its
			// root may still be the node's, and the runtime sets the
			// limit only after it (runc: manager.Set after procReady).
			// Resolved at the first rescan after the exec.
			continue
		}
		if in, ch := a.optIn(path, g, t); !in || ch { // node.go: opt-in, identity
			changed = changed || ch
			if !in {
				continue
			}
			t = a.byPath[path]
		}
		if t != nil && a.now().Sub(t.resolved) < resolveAgeOf(t) && t.main == mainOf(g) && !a.limitMoved(t) {
			// Same cgroup path, same main process (PID, start time and
			// command), resolved lately: its directory and limit stand;
			// only its processes are taken. A new main process (the
			// container restarted: its runtime may have made the cgroup
			// anew, with another id) is resolved at once.
			// (A node's containers gain and lose processes at every scan:
			// resolving each again cost a quarter of an idle node agent.)
			t.group = g
			// The declaration is read again when the processes change, and
			// at each rescan while no read has succeeded: right after an
			// exec the environment can read empty, and a declared signal
			// must not wait for the next resolve. (A process title written
			// over the environment stays so: not retried.)
			retry := !t.ds.read && !t.ds.pending && !strings.Contains(t.ds.unreadErr, declare.ErrRewritten.Error())
			if pids := g.PIDs(); !slices.Equal(t.PIDs, pids) || retry {
				t.PIDs = pids
				if a.declare(t, g) {
					a.policy.Set(t.ID, a.thresholds(t))
					a.arm(t) // a plan of the old thresholds must not fire
					changed = true
				}
			}
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
			if errors.Is(err, discover.ErrExited) {
				continue // gone at the next scan: its last reason stands
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
		if o := a.byID[c.ID]; o != nil && o.Path != path {
			// Another watched container resolved to this cgroup id (two
			// hierarchies numbering inodes alike, or a view leading into
			// another container's cgroup): the newcomer is refused, so it
			// cannot take over the watched one's readings and signals.
			reason := fmt.Sprintf("cgroup id %d is already watched as container %s (cgroup %s)", c.ID, o.Name, o.Path)
			if a.notWatched[path] != reason {
				a.notWatched[path] = reason
				a.Log.Warn("container not watched", "container", c.Name, "cgroup", path, "reason", reason,
					"pids", len(g.Procs))
			}
			continue
		}
		delete(a.notWatched, path)
		if t != nil && t.ID == c.ID {
			if c.Name = a.boundName(path, a.uniqueName(c.Name, g)); t.ds.decl.Name == "" && t.Name != c.Name && !strings.HasPrefix(t.Name, g.Main().Comm+"@") && !a.kubeNamed(t) {
				// The main process exec'ed (runtime init -> application);
				// a declared name (OOMHERO_NAME) stays.
				a.Observer.Forget(a.target(t))
				t.Name = c.Name
				if a.reselect(t) {
					changed = true
				}
			}
			t.group, t.PIDs, t.resolved, t.comm, t.main = g, c.PIDs, a.now(), g.Main().Comm, mainOf(g)
			t.ownLimit, t.limitCheck = 0, time.Time{}
			t.limitFile.Close() // the directory may be another now
			t.limitFile = nil
			redeclared := a.declare(t, g)
			if t.Limit != c.Limit || t.Dir != c.Dir {
				a.Log.Info("container limit changed", t.who(), "from_bytes", t.Limit, "to_bytes", c.Limit)
				t.Container = c
				redeclared = true
			}
			if redeclared {
				a.policy.Set(c.ID, a.thresholds(t))
				a.arm(t) // a plan of the old thresholds must not fire
				changed = true
			}
			continue
		}
		if t != nil {
			a.forget(t) // same path, new cgroup (container restarted)
		}
		c.Name = a.boundName(path, a.uniqueName(c.Name, g))
		a.nameFromPod(path, &c) // node.go
		t = &tracked{Container: c, group: g, comm: g.Main().Comm, main: mainOf(g), ann: a.gateAnnotations(path), resolved: a.now()}
		a.byPath[path], a.byID[c.ID] = t, t
		psiNote := "unavailable"
		if r, err := cgroup.OpenPressure(c.Dir); err == nil {
			t.psi, psiNote = r, "memory.pressure"
		} else if !errors.Is(err, cgroup.ErrNoPressure) {
			psiNote = "unavailable: " + err.Error()
		}
		a.declare(t, g)
		a.reselect(t)
		a.topAttrs(t) // the baseline of "grew" at the first level change
		t.top.line = ""
		th := a.thresholds(t)
		a.policy.Set(c.ID, th)
		a.arm(t) // a plan of the old thresholds must not fire
		changed = true
		oomNote := "not watched"
		if a.OOM != nil {
			notified, err := a.OOM.Add(c.ID, c.Dir, c.Version)
			switch {
			case err != nil:
				oomNote = "unavailable: " + err.Error()
			case notified:
				oomNote = "kernel notification"
				t.oomSeen, _ = a.oomCount(c.ID)
			default:
				oomNote = fmt.Sprintf("polled every %v", oomwatch.PollInterval)
				t.oomSeen, _ = a.oomCount(c.ID)
			}
		}
		if t.excluded {
			continue // said by reselect
		}
		a.Log.Info("container watched", t.who(), "cgroup", path, "cgroup_id", c.ID,
			"version", c.Version.String(), "dir", c.Dir, "limit_bytes", c.Limit,
			"warning_bytes", th.Warn, "critical_bytes", th.Crit, "pids", len(c.PIDs), "oom_kills", oomNote, "pressure", psiNote)
	}
	for path, t := range a.byPath {
		if _, ok := groups[path]; !ok {
			a.Log.Info("container gone", t.who(), "cgroup", path)
			a.forget(t)
			changed = true
		}
	}
	for path := range a.notWatched {
		if _, ok := groups[path]; !ok {
			delete(a.notWatched, path)
		}
	}
	a.sweepGates(groups)
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

// mainOf names a group's main process: PID, start time and command.
func mainOf(g *discover.Group) discover.Process {
	m := g.Main()
	m.PPID = 0 // a reparented main process is the same one
	return m
}

// resolveAgeOf spreads the resolves of containers watched at the same time
// (all of them when oomhero starts) over the second half of resolveAge, by
// cgroup id: on a node of 100 containers, resolving all of them in one scan
// held a reading up for tens of milliseconds once a minute.
func resolveAgeOf(t *tracked) time.Duration {
	half := uint64(resolveAge / 2 / time.Second)
	return resolveAge/2 + time.Duration(t.ID%half)*time.Second
}

// limitMoved reads container t's own limit file when limitAge passed since
// it was last read, and tells whether it changed since (then t is resolved
// again: its effective limit may be another). A limit that cannot be read,
// or is not set on the container itself (an ancestor's applies), waits for
// the next resolve.
func (a *Agent) limitMoved(t *tracked) bool {
	now := a.now()
	if now.Sub(t.limitCheck) < limitAge {
		return false
	}
	t.limitCheck = now
	if t.limitFile == nil {
		f, err := cgroup.OpenLimit(t.Dir, t.Version)
		if err != nil {
			return false
		}
		t.limitFile = f
	}
	l, err := t.limitFile.Read()
	if err != nil {
		// Unset (an ancestor's limit applies), or the directory is gone:
		// opened again at the next check.
		t.limitFile.Close()
		t.limitFile = nil
		return false
	}
	moved := t.ownLimit != 0 && l != t.ownLimit
	t.ownLimit = l
	return moved
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
	t.limitFile.Close()
	t.limitFile = nil
	// A container whose only process was just OOM-killed is gone from
	// procfs before a polled OOM-kill counter is read again (and an exit
	// seen by the BPF source rescans at once): read the counter one last
	// time, so the kill is still reported.
	if c, err := a.oomCount(t.ID); err == nil && c > t.oomSeen {
		a.kill(oomwatch.Kill{ID: t.ID, Kills: c - t.oomSeen, Total: c, Time: a.now()})
	}
	if a.OOM != nil {
		a.OOM.Remove(t.ID)
	}
	a.policy.Forget(t.ID)
	a.Notifier.Forget(t.ID)
	a.Observer.Forget(a.target(t))
	delete(a.byPath, t.Path)
	delete(a.byID, t.ID)
	a.arm(t) // disarms
}

func (a *Agent) targets() []watch.Target {
	out := make([]watch.Target, 0, len(a.byID))
	for _, id := range slices.Sorted(maps.Keys(a.byID)) {
		if t := a.byID[id]; !t.excluded {
			out = append(out, a.target(t))
		}
	}
	return out
}

func (a *Agent) target(t *tracked) watch.Target {
	th := a.thresholds(t)
	return watch.Target{Container: t.Container, Warn: th.Warn, Crit: th.Crit, Metric: a.Config.Metric}
}

// starting reports whether every process of g is still a container
// runtime's init stage (runc names them "runc:[0:PARENT]", "runc:[1:CHILD]",
// "runc:[2:INIT]"). A container that names itself so only delays its own
// watching until it execs or its processes change.
func starting(g *discover.Group) bool {
	for _, p := range g.Procs {
		if !discover.RuntimeInit(p.Comm) {
			return false
		}
	}
	return len(g.Procs) > 0
}
