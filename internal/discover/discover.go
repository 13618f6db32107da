// Package discover finds the containers to watch: it scans a procfs mount,
// groups processes by memory cgroup and resolves each group's cgroup
// directory, id, version and limit.
//
// Sidecar mode: the pod shares one PID namespace; a container's cgroup is
// read through /proc/<pid>/root/sys/fs/cgroup[/memory] of one of its
// processes. Node mode: the same with the host's procfs, and optionally the
// host's cgroupfs mount. Every path comes from the caller.
package discover

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/watch"
)

// Process is one process of a container.
type Process struct {
	PID, PPID int
	// Start is the start time in clock ticks since boot (field 22 of
	// /proc/<pid>/stat): together with PID it names one process for good.
	Start uint64
	Comm  string
}

// Group is the processes that share one memory cgroup.
type Group struct {
	// Path is the memory cgroup path as /proc/<pid>/cgroup shows it.
	Path    string
	Version watch.CgroupVersion
	Procs   []Process // by increasing PID
}

// Main returns the group's first process: the one whose parent is outside the
// group (the container's init), the lowest PID among several.
func (g *Group) Main() Process {
	for _, p := range g.Procs {
		if !slices.ContainsFunc(g.Procs, func(q Process) bool { return q.PID == p.PPID }) {
			return p
		}
	}
	return g.Procs[0]
}

// PIDs returns the group's PIDs.
func (g *Group) PIDs() []int {
	out := make([]int, len(g.Procs))
	for i, p := range g.Procs {
		out[i] = p.PID
	}
	return out
}

type entry struct {
	Process
	path    string
	version watch.CgroupVersion
}

// Scanner scans a procfs mount. It remembers the processes it has seen, so a
// scan reads only the procfs directory and the files of new processes.
// A Scanner is not safe for concurrent use.
type Scanner struct {
	root     string
	fs       procfs.FS
	self     int
	selfPath string
	known    map[int]entry
}

// NewScanner returns a Scanner of the procfs mounted at root. self is
// oomhero's own PID in that procfs: its cgroup (oomhero's own container) and
// PID 1 (the pod's infrastructure process) are never part of a group.
func NewScanner(root string, self int) (*Scanner, error) {
	fs, err := procfs.NewFS(root)
	if err != nil {
		return nil, fmt.Errorf("open procfs %q: %w", root, err)
	}
	s := &Scanner{root: root, fs: fs, self: self, known: map[int]entry{}}
	e, err := s.read(self)
	if err != nil {
		return nil, fmt.Errorf("read own process %d: %w", self, err)
	}
	s.selfPath = e.path
	return s, nil
}

// SelfCgroup returns oomhero's own memory cgroup path.
func (s *Scanner) SelfCgroup() string { return s.selfPath }

func (s *Scanner) read(pid int) (entry, error) {
	p, err := s.fs.Proc(pid)
	if err != nil {
		return entry{}, err
	}
	st, err := p.Stat()
	if err != nil {
		return entry{}, err
	}
	cgs, err := p.Cgroups()
	if err != nil {
		return entry{}, err
	}
	e := entry{Process: Process{PID: pid, PPID: st.PPID, Start: st.Starttime, Comm: st.Comm}}
	for _, c := range cgs {
		if c.HierarchyID != 0 && slices.Contains(c.Controllers, "memory") {
			e.path, e.version = c.Path, watch.V1
			return e, nil
		}
	}
	for _, c := range cgs {
		if c.HierarchyID == 0 {
			e.path, e.version = c.Path, watch.V2
			return e, nil
		}
	}
	return e, fmt.Errorf("process %d: no memory cgroup in %s/%d/cgroup", pid, s.root, pid)
}

// Scan lists the process groups by memory cgroup path, oomhero's own cgroup
// and PID 1 left out. Processes that exit during the scan are skipped.
func (s *Scanner) Scan() (map[string]*Group, error) {
	procs, err := s.fs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("list processes in %q: %w", s.root, err)
	}
	seen := make(map[int]bool, len(procs))
	groups := map[string]*Group{}
	for _, p := range procs {
		if p.PID == 1 || p.PID == s.self {
			continue
		}
		seen[p.PID] = true
		e, ok := s.known[p.PID]
		if !ok {
			if e, err = s.read(p.PID); err != nil {
				if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) || isESRCH(err) {
					continue // exited meanwhile, or a kernel thread's files
				}
				if strings.Contains(err.Error(), "no memory cgroup") {
					continue // kernel threads have no cgroup line on some kernels
				}
				return nil, err
			}
			s.known[p.PID] = e
		}
		if e.path == s.selfPath {
			continue
		}
		g := groups[e.path]
		if g == nil {
			g = &Group{Path: e.path, Version: e.version}
			groups[e.path] = g
		}
		g.Procs = append(g.Procs, e.Process)
	}
	for pid := range s.known {
		if !seen[pid] {
			delete(s.known, pid)
		}
	}
	for _, g := range groups {
		slices.SortFunc(g.Procs, func(a, b Process) int { return a.PID - b.PID })
	}
	return groups, nil
}

func isESRCH(err error) bool {
	return strings.Contains(err.Error(), "no such process")
}

// Resolver finds the cgroup directory of a group.
type Resolver struct {
	// Proc is the procfs mount the groups were scanned from.
	Proc string
	// CgroupRoot, when not empty, is a cgroupfs mount showing the whole
	// hierarchy (node mode): on v1 its "memory" subdirectory is used.
	CgroupRoot string
}

// Resolve returns the container of group g: the cgroup directory that lists
// one of g's processes in its cgroup.procs, its id, version and effective
// limit. A container without a memory limit is returned with an error
// wrapping watch.ErrNoLimit.
func (r Resolver) Resolve(g *Group) (watch.Container, error) {
	c := watch.Container{Path: g.Path, Version: g.Version, PIDs: g.PIDs()}
	main := g.Main()
	c.Name = Name(main.Comm, g.Path)
	var tried []string
	for _, p := range g.Procs {
		for _, dir := range r.candidates(p.PID, g) {
			tried = append(tried, dir)
			if !lists(filepath.Join(dir, "cgroup.procs"), p.PID) {
				continue
			}
			c.Dir = dir
			v, err := cgroup.Detect(dir)
			if err != nil {
				return c, err
			}
			c.Version = v
			if c.ID, err = cgroup.ID(dir); err != nil {
				return c, err
			}
			c.Limit, err = r.limit(dir, v)
			return c, err
		}
		if len(tried) >= 6 {
			break
		}
	}
	return c, fmt.Errorf("container %s (cgroup %s): no readable cgroup directory lists its processes (tried %s)",
		c.Name, g.Path, strings.Join(tried, ", "))
}

func (r Resolver) candidates(pid int, g *Group) []string {
	base := filepath.Join(r.Proc, strconv.Itoa(pid), "root", "sys", "fs", "cgroup")
	var out []string
	if r.CgroupRoot != "" {
		if g.Version == watch.V1 {
			out = append(out, filepath.Join(r.CgroupRoot, "memory", g.Path))
		} else {
			out = append(out, filepath.Join(r.CgroupRoot, g.Path))
		}
	}
	if g.Version == watch.V1 {
		base = filepath.Join(base, "memory")
	}
	out = append(out, base)
	if p := filepath.Clean("/" + g.Path); p != "/" && !strings.HasPrefix(g.Path, "/..") {
		out = append(out, filepath.Join(base, p))
	}
	return out
}

// limit returns the effective limit: the smallest of the directory's own,
// its visible parents' (v2) or the hierarchical limit the kernel reports (v1).
func (r Resolver) limit(dir string, v watch.CgroupVersion) (uint64, error) {
	top := dir
	if r.CgroupRoot != "" && strings.HasPrefix(dir, r.CgroupRoot) {
		top = r.CgroupRoot
		if v == watch.V1 {
			top = filepath.Join(r.CgroupRoot, "memory")
		}
	}
	l, err := cgroup.EffectiveLimit(top, dir, v)
	if v != watch.V1 {
		return l, err
	}
	h, herr := cgroup.HierarchicalLimit(dir)
	if herr != nil {
		if errors.Is(herr, watch.ErrNoLimit) {
			return l, err
		}
		return 0, herr
	}
	if err != nil && !errors.Is(err, watch.ErrNoLimit) {
		return 0, err
	}
	if l == 0 || h < l {
		return h, nil
	}
	return l, nil
}

func lists(procsFile string, pid int) bool {
	b, err := os.ReadFile(procsFile)
	if err != nil {
		return false
	}
	want := []byte(strconv.Itoa(pid))
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if bytes.Equal(sc.Bytes(), want) {
			return true
		}
	}
	return false
}

// Name makes a short human name for a container from its main process's
// command and its cgroup path: "comm@shortid".
func Name(comm, path string) string {
	id := filepath.Base(path)
	id = strings.TrimSuffix(id, ".scope")
	for _, p := range []string{"libpod-", "docker-", "cri-containerd-", "crio-"} {
		id = strings.TrimPrefix(id, p)
	}
	if len(id) > 12 {
		id = id[:12]
	}
	if id == "" || id == "/" || id == "." {
		return comm
	}
	return comm + "@" + id
}
