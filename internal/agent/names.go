package agent

import "slices"

// Names a container is known by. A container names itself (its main
// process's command, OOMHERO_NAME) and each name is a metric label and a
// log attribute, so a container that renames itself without end (prctl
// PR_SET_NAME in a loop, an exec storm with a new OOMHERO_NAME each time,
// a restart loop) would mint labels without end. Each cgroup path may use
// at most maxNamesPerPath names, across restarts of its container; past
// that it keeps the last one it was given.

const (
	// maxNamesPerPath covers the usual life of a container: the runtime's
	// init, a wrapper (sh -c, tini), the application, a declared name.
	maxNamesPerPath = 4
	// maxNamedPaths bounds the memory of names; the oldest path is
	// forgotten first.
	maxNamedPaths = 4096
)

type nameBook struct {
	byPath map[string][]string
	order  []string        // paths, oldest first
	said   map[string]bool // "names frozen" logged, per path
}

// boundName returns the name the container at path may use when it asks
// for want: want itself while the path has used it before or has used
// fewer than maxNamesPerPath names, else the last name it was given.
func (a *Agent) boundName(path, want string) string {
	b := &a.names
	if b.byPath == nil {
		b.byPath, b.said = map[string][]string{}, map[string]bool{}
	}
	used, known := b.byPath[path]
	if slices.Contains(used, want) {
		return want
	}
	if len(used) < maxNamesPerPath {
		if !known {
			if len(b.order) >= maxNamedPaths {
				old := b.order[0]
				b.order = b.order[1:]
				delete(b.byPath, old)
				delete(b.said, old)
			}
			b.order = append(b.order, path)
		}
		b.byPath[path] = append(used, want)
		return want
	}
	last := used[len(used)-1]
	if !b.said[path] {
		b.said[path] = true
		a.Log.Warn("container keeps renaming itself; its name stays", "container", last, "cgroup", path,
			"asked_for", want, "names_used", len(used))
	}
	return last
}
