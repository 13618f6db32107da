package agent

import (
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/declare"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/watch"
)

// Node mode and opt-in.
//
// The node agent (oomhero node) scans the host's procfs: every process of
// the node. A group (one memory cgroup) is considered only when its path is
// of the kubelet's layout (Identifier; system services, the kubelet itself
// and anything else are ignored at the cost of one map lookup per rescan),
// and watched only when its container opted in (--opt-in declared, node
// mode's default) or did not opt out (--opt-in all):
//
//	OOMHERO=off in its environment        out (the container's word wins)
//	OOMHERO=on or any OOMHERO_* variable  in
//	oomhero.dev/watch: "false"            out
//	oomhero.dev/watch: "true", or a list  in (the named containers)
//	naming the container
//	otherwise                             in under --opt-in all, else out
//
// The environment is read once per main process (PID, start time and
// command: an exec is a new main process), off the loop when it is slow
// (bounded.go). A container that is not watched is never resolved (no
// cgroup file is opened), never read by the source, never signalled and
// never notified: what a rescan spends on it is the scan of its processes
// (package discover: a new process's stat and cgroup, a tenth of the known
// ones per scan) and a map lookup.
//
// The sidecar keeps its behaviour: --opt-in all (its default) watches every
// container, and OOMHERO=off is "still watched, never signalled"; with
// --opt-in declared it watches only the containers whose environment opts
// in (it has no annotations).

// Identity names a container as Kubernetes does (package kube's Identity):
// from the API server when it is used, else PodUID and ContainerID from the
// cgroup path only.
type Identity struct {
	Namespace, Pod, Container, PodUID, ContainerID string
	// Annotations are the pod's (nil without the API server).
	Annotations map[string]string
	// Unlisted: the API server's list of this node's pods is complete
	// and has no pod of this UID. Such a cgroup is never watched.
	Unlisted bool
}

// Identifier maps a memory cgroup path to the container's identity; false
// when the path is not of a kubelet layout (never watched in node mode).
// Identify is called from the agent's loop, for each group at each rescan:
// it must be cheap (a parse and a map lookup) and safe for use while other
// goroutines update what it knows.
type Identifier interface {
	Identify(cgroupPath string) (Identity, bool)
}

// gate is what the agent knows of one cgroup path's opt-in.
type gate struct {
	id      Identity
	key     discover.Process // main process whose environment was read
	read    bool             // an environment read ended for key
	pending bool
	env     declare.Declaration
	envOK   bool   // the environment could be read
	in      bool   // the last decision
	said    string // the last decision's reason, logged
}

// optIn reports whether group g at path is watched under the opt-in rules,
// and whether a tracked container it was (t, possibly nil) was forgotten
// because it is no longer watched (the source's targets must be updated).
// In the sidecar with --opt-in all it always is.
func (a *Agent) optIn(path string, g *discover.Group, t *tracked) (watched, forgot bool) {
	node := a.Config.Node()
	if !node && a.Config.OptIn != config.OptInDeclared {
		return true, false
	}
	if a.gates == nil {
		a.gates, a.ignored = map[string]*gate{}, map[string]bool{}
	}
	var id Identity
	if node {
		if a.ignored[path] {
			return false, false
		}
		ok := false
		if a.Identifier != nil {
			id, ok = a.Identifier.Identify(path)
		}
		if !ok {
			a.ignored[path] = true
			a.Log.Debug("cgroup not of a kubelet layout: never watched in node mode", "cgroup", path,
				"pids", len(g.Procs), "ignored_cgroups", len(a.ignored))
			return false, false
		}
	}
	gt := a.gates[path]
	if gt == nil {
		gt = &gate{}
		a.gates[path] = gt
	}
	gt.id = id
	var in bool
	var why string
	switch {
	case node && id.Unlisted:
		why = "no pod of this UID on this node (the API server's list): a kubelet-shaped cgroup of something else on the host"
	case node && id.Namespace != "" && id.Container == "":
		// Listed by the API server, but not a container of the pod's
		// spec: its sandbox (pause), or one the kubelet has not
		// reported yet (named at a later rescan).
		why = "not a container of the pod's spec (its sandbox), or not reported by the kubelet yet"
	case node && id.Namespace == "" && len(g.Procs) == 1 && g.Procs[0].Comm == "pause":
		why = "the pod's sandbox (pause)" // without the API server
	default:
		a.readGate(gt, g)
		in, why = a.decide(gt)
	}
	if why != gt.said {
		gt.said = why
		pod, name := id.Pod, id.Container
		if pod == "" {
			pod = id.PodUID
		}
		if name == "" {
			name = g.Main().Comm
		}
		attrs := []any{slog.Attr{Value: slog.GroupValue(idAttrs(id.Namespace, pod, name)...)},
			"cgroup", path, "reason", why}
		switch {
		case in && strings.Contains(why, "bad pod annotation"):
			a.Log.Warn("container opted in", attrs...)
		case in:
			a.Log.Debug("container opted in", attrs...)
		case strings.Contains(why, "bad pod annotation"):
			a.Log.Warn("container not watched: not opted in", attrs...) // it tried
		default:
			a.Log.Debug("container not watched: not opted in", attrs...)
		}
	}
	gt.in = in
	if !in {
		if t != nil {
			a.Log.Info("container no longer watched", t.who(), "cgroup", path, "reason", why)
			a.forget(t)
			return false, true
		}
		return false, false
	}
	if t != nil {
		return true, a.reidentify(t, gt)
	}
	return true, false
}

// readGate reads the environment of g's main process when it changed since
// the last read. A slow read is applied when it ends, and a rescan follows
// when it opts the container in.
func (a *Agent) readGate(gt *gate, g *discover.Group) {
	main := g.Main()
	if gt.pending || gt.read && gt.key == main {
		return
	}
	gt.key, gt.read, gt.pending = main, false, true
	// The main process first, then at most a few others (a main process
	// that is exiting or a zombie): a container that did not opt in costs
	// at most four reads per main process, however many processes it runs.
	order := []discover.Process{main}
	for _, p := range g.Procs {
		if len(order) == 4 {
			break
		}
		if p.PID != main.PID {
			order = append(order, p)
		}
	}
	proc, self := a.Config.Proc, a.Self
	read := a.readDecl
	if read == nil {
		read = readDeclaration
	}
	inline := true
	bounded(a, func() declRead { return read(proc, self, order) }, func(r declRead) {
		gt.pending = false
		if gt.key != main {
			return
		}
		gt.read, gt.env, gt.envOK = true, r.d, r.found
		if !inline {
			if in, _ := a.decide(gt); in && !gt.in {
				if err := a.rescan(); err != nil {
					a.Log.Error("rescan failed", "error", err)
				}
			}
		}
	})
	inline = false
}

// decide applies the opt-in rules to what gt knows. A container whose
// environment is being read is not watched yet.
func (a *Agent) decide(gt *gate) (bool, string) {
	if gt.pending {
		return false, "reading its environment"
	}
	env := gt.env
	switch {
	case gt.envOK && env.Off:
		return false, "OOMHERO=off in its environment"
	case gt.envOK && len(declaredNames(&env)) > 0:
		return true, "declared in its environment: " + strings.Join(declaredNames(&env), " ")
	}
	if a.Config.Node() {
		in, out, bad := declare.Watch(gt.id.Annotations, gt.id.Container)
		switch {
		case out:
			return false, "pod annotation " + declare.WatchAnnotation + `: "false"`
		case in:
			return true, "pod annotation " + declare.WatchAnnotation
		case bad != nil && a.Config.OptIn == config.OptInDeclared:
			return false, "bad pod annotation " + bad.Error()
		}
	}
	if a.Config.OptIn == config.OptInAll {
		if in, out, bad := declare.Watch(gt.id.Annotations, gt.id.Container); a.Config.Node() && !in && !out && bad != nil {
			return true, "--opt-in all; bad pod annotation ignored: " + bad.Error()
		}
		return true, "--opt-in all"
	}
	return false, "did not opt in (--opt-in declared): no OOMHERO variable in its environment, no " + declare.WatchAnnotation + " annotation naming it"
}

// declaredNames lists the variables of declare.Names that d declares
// (valid or not): declaring one is opting in. An OOMHERO_* name oomhero does
// not know (another tool's, a typo) is not.
func declaredNames(d *declare.Declaration) []string {
	var out []string
	for _, s := range d.Set {
		name, _, _ := strings.Cut(s, "=")
		out = append(out, name)
	}
	for _, e := range d.Errors {
		if slices.Contains(declare.Names, e.Name) && !slices.Contains(out, e.Name) {
			out = append(out, e.Name)
		}
	}
	return out
}

// sweepGates forgets what is known of cgroup paths that are gone.
func (a *Agent) sweepGates(groups map[string]*discover.Group) {
	for path := range a.gates {
		if _, ok := groups[path]; !ok {
			delete(a.gates, path)
		}
	}
	for path := range a.ignored {
		if _, ok := groups[path]; !ok {
			delete(a.ignored, path)
		}
	}
}

// nameFromPod names a newly resolved container c at path: its pod and, when
// the API server named it, its Kubernetes container name (node mode); its
// own pod from POD_NAMESPACE and POD_NAME (the sidecar).
func (a *Agent) nameFromPod(path string, c *watch.Container) {
	if !a.Config.Node() {
		c.Namespace, c.Pod = a.PodNamespace, a.PodName
		return
	}
	gt := a.gates[path]
	if gt == nil {
		return
	}
	c.Namespace, c.Pod, c.PodUID = gt.id.Namespace, gt.id.Pod, gt.id.PodUID
	if c.Pod == "" {
		c.Pod = gt.id.PodUID // no API server: the pod's UID from the path
	}
	if gt.id.Container != "" {
		c.Name = gt.id.Container
	}
}

// kubeNamed reports whether container t is named by the API server (node
// mode): its name then never follows its command or OOMHERO_NAME.
func (a *Agent) kubeNamed(t *tracked) bool {
	if !a.Config.Node() {
		return false
	}
	gt := a.gates[t.Path]
	return gt != nil && gt.id.Container != ""
}

// reidentify applies what the Identifier says now of a watched container:
// the API server may name it after it is watched (its pod listed late), a
// pod's annotations may change. It reports whether the source's targets
// must be updated.
func (a *Agent) reidentify(t *tracked, gt *gate) bool {
	changed := false
	c := t.Container
	a.nameFromPod(t.Path, &c)
	if c.Namespace != t.Namespace || c.Pod != t.Pod || c.PodUID != t.PodUID || c.Name != t.Name {
		a.Observer.Forget(a.target(t))
		a.Log.Info("container named", "namespace", c.Namespace, "pod", c.Pod, "container", c.Name, "was", t.Name, "cgroup", t.Path)
		t.Namespace, t.Pod, t.PodUID, t.Name = c.Namespace, c.Pod, c.PodUID, c.Name
		a.reselect(t)
		changed = true
	}
	if !maps.Equal(t.ann, gt.id.Annotations) {
		t.ann = gt.id.Annotations
		ds := &t.ds
		if ds.read || !a.podDeclEmpty(t) {
			if a.applyDeclaration(t, declRead{d: ds.env, from: ds.from, found: true}) {
				a.policy.Set(t.ID, a.thresholds(t))
				a.arm(t) // a plan of the old thresholds must not fire
			}
			changed = true
		}
	}
	return changed
}

// podDecl is the declaration container t's pod annotations carry (node
// mode; empty otherwise).
func (a *Agent) podDecl(t *tracked) declare.Declaration {
	if !a.Config.Node() || len(t.ann) == 0 {
		return declare.Declaration{}
	}
	return declare.FromAnnotations(t.ann)
}

// who is the log attribute naming container t: its namespace and pod when
// known, and its name, inlined ("namespace", "pod", "container").
func (t *tracked) who() slog.Attr {
	return slog.Attr{Value: slog.GroupValue(idAttrs(t.Namespace, t.Pod, t.Name)...)}
}

func idAttrs(ns, pod, name string) []slog.Attr {
	out := make([]slog.Attr, 0, 3)
	if ns != "" {
		out = append(out, slog.String("namespace", ns))
	}
	if pod != "" {
		out = append(out, slog.String("pod", pod))
	}
	return append(out, slog.String("container", name))
}

// gateAnnotations returns the pod annotations known for path (node mode).
func (a *Agent) gateAnnotations(path string) map[string]string {
	if gt := a.gates[path]; gt != nil {
		return gt.id.Annotations
	}
	return nil
}

func (a *Agent) podDeclEmpty(t *tracked) bool {
	d := a.podDecl(t)
	return d.Empty()
}
