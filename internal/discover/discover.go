// Package discover finds the containers to watch: it scans a procfs mount,
// groups processes by memory cgroup and resolves each group's cgroup
// directory, id, version and limit.
//
// Sidecar mode: the pod shares one PID namespace; a container's cgroup is
// read through /proc/<pid>/root/sys/fs/cgroup[/memory] of one of its
// processes. Node mode: the same with the host's procfs, and optionally the
// host's cgroupfs mount. Every path comes from the caller.
//
// What a container controls is data, never trust: its view under
// /proc/<pid>/root is opened through package safefs (cgroupfs only, no link
// followed, bounded reads); process names are cleaned with safename.Clean;
// a process whose files cannot be read is skipped and reported once, and
// the scan goes on.
package discover

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
	"unique"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/safename"
	"github.com/oomhero/oomhero/internal/watch"
)

// Process is one process of a container.
type Process struct {
	PID, PPID int
	// Start is the start time in clock ticks since boot (field 22 of
	// /proc/<pid>/stat): together with PID it names one process for good.
	Start uint64
	// Comm is the command name, cleaned (safename.Clean): a process can
	// name itself anything.
	Comm string
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
	// young is how many more scans reread this process every time: a
	// container's first process execs shortly after it appears (the
	// runtime's init, "runc:[2:INIT]", becomes the application), and its
	// name must follow within a scan, not revalidateEvery seconds later.
	// A process older than youngFor is not young, however few scans saw
	// it: where scans are rare (every few seconds with the BPF source,
	// whose exec events trigger scans anyway) 200 processes were reread
	// in full for half a minute after they started.
	young int
}

// Skip is a process a scan left out because its files could not be read or
// parsed. It is reported once per process.
type Skip struct {
	PID int
	Err error
}

// revalidateEvery is how many seconds pass before a known process's files
// are read again: each second of scanning rereads the stat and cgroup files
// of one known process in revalidateEvery (by PID), so a new command (exec)
// of a process past its young scans, or a moved process, is noticed within
// fifteen minutes. That is all it is for: a recycled PID is noticed at the
// next full scan (quiet.go), an exec while young (a runtime's init becoming
// the application) by the young rereads, and what a signal depends on (the
// runtime behind a PID, its handlers) is read again at delivery, keyed by
// PID, start time and command. Counted in seconds, not scans: scans that
// come every few hundred milliseconds (process events on a busy node) must
// not reread a share of the node each time, and scans that come every few
// seconds (a quiet pod) catch up on the seconds missed. Next to 2,000
// processes a tenth a second was most of an idle sidecar's CPU (1.2 % of a
// core); one in 120 a second was still 15 % of it (perf, 30 Nov); at one
// in 300 the rereads were still 40 % of the idle cgroupfs sidecar's
// profile (2,000 processes, 1 Dec), hence fifteen minutes.
const revalidateEvery = 900

// youngScans is how many scans reread a new process every time (while it
// is younger than youngFor).
const youngScans = 10

// Scanner scans a procfs mount. It remembers the processes it has seen, so a
// scan reads only the procfs directory, the files of new processes (during
// their first youngScans scans: they may still exec) and a share of the
// known ones (revalidateEvery). A Scanner is not safe for
// concurrent use.
type Scanner struct {
	root     string
	self     int
	selfPath string
	known    map[int]entry
	scans    int
	bad      map[int]bool // skipped and reported, until the PID goes
	skipped  []Skip

	// Quiet scans (quiet.go): when the procfs shows no PID handed out and
	// no thread come or gone since the last full scan, Scan returns that
	// scan's groups without reading the procfs directory.
	mark   procMark
	marked bool             // mark is valid
	quiet  int              // scans answered from last since the last full scan
	young  bool             // a known process is still young (fresh not empty)
	fresh  map[int]struct{} // the young processes: probed scans reread them
	dirty  bool             // Invalidate: the next scan is full
	last   map[string]*Group
	// ticks returns clock ticks since boot (the unit of Process.Start);
	// tests fix it.
	ticks func() uint64
	// slot is the last revalidation slot handled (dueSlots); slotted
	// tells whether there was one.
	slot    int64
	slotted bool
	// Following (follow.go): the caller tells every process change
	// (Changed), so a scan rereads only the changed PIDs.
	following bool
	changed   map[int]struct{}
	lastFull  time.Time
	// Buffers kept from scan to scan (listPIDs, Scan).
	dirBuf []byte
	pids   []int
	seen   map[int]bool
	// QuietScans counts the scans answered without reading the procfs
	// directory, ProbeScans those that read only the PIDs handed out since
	// and the young processes (quiet.go), FollowScans those that reread
	// only the changed PIDs, FullScans the others (for tests and the
	// benchmark).
	QuietScans, ProbeScans, FollowScans, FullScans int
}

// NewScanner returns a Scanner of the procfs mounted at root (which must be
// a procfs mount). self is oomhero's own PID in that procfs: its cgroup
// (oomhero's own container) and PID 1 (the pod's infrastructure process) are
// never part of a group.
func NewScanner(root string, self int) (*Scanner, error) {
	if err := safefs.CheckProc(root); err != nil {
		return nil, err
	}
	s := &Scanner{root: root, self: self, known: map[int]entry{}, bad: map[int]bool{}, changed: map[int]struct{}{}, fresh: map[int]struct{}{}, ticks: bootClock}
	e, err := s.read(self)
	if err != nil {
		return nil, fmt.Errorf("read own process %d: %w", self, err)
	}
	s.selfPath = e.path
	return s, nil
}

// SelfCgroup returns oomhero's own memory cgroup path.
func (s *Scanner) SelfCgroup() string { return s.selfPath }

// Skipped returns the processes left out since the last call, each once.
func (s *Scanner) Skipped() []Skip {
	out := s.skipped
	s.skipped = nil
	return out
}

func (s *Scanner) read(pid int) (entry, error) {
	dir := filepath.Join(s.root, strconv.Itoa(pid))
	b, err := safefs.ReadProcFile(dir+"/stat", safefs.LimitProcStat)
	if err != nil {
		return entry{}, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return entry{}, fmt.Errorf("%s/stat: %w", dir, err)
	}
	b, err = safefs.ReadProcFile(dir+"/cgroup", safefs.LimitProcCgroup)
	if err != nil {
		return entry{}, err
	}
	// A container's processes share one path and, mostly, a few commands:
	// one copy each (unique), not one per process (next to 2,000
	// processes, about 0.3 MiB of heap).
	e := entry{Process: Process{PID: pid, PPID: st.PPID, Start: st.Start, Comm: unique.Make(safename.Clean(st.Comm)).Value()}}
	e.path, e.version, err = ParseCgroup(b)
	if err != nil {
		return e, fmt.Errorf("process %d: %w in %s/cgroup", pid, err, dir)
	}
	e.path = unique.Make(e.path).Value()
	return e, nil
}

// Stat is what oomhero uses of /proc/<pid>/stat.
type Stat struct {
	Comm  string // raw: clean it before use
	State byte   // field 3: 'R', 'S', ... 'Z' (zombie), 'X' (dead)
	PPID  int
	Start uint64 // field 22, clock ticks since boot
}

// ParseStat parses a /proc/<pid>/stat content. The command may hold spaces
// and parentheses: it runs from the first '(' to the last ')'.
func ParseStat(b []byte) (Stat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Stat{}, errors.New("no (command)")
	}
	f := bytes.Fields(b[end+1:])
	// Field 3 (state) is f[0]; PPID is field 4, start time field 22.
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("%d fields, want at least 22", len(f)+2)
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil || ppid < 0 {
		return Stat{}, fmt.Errorf("ppid %q", f[1])
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("start time %q", f[19])
	}
	return Stat{Comm: string(b[open+1 : end]), State: f[0][0], PPID: ppid, Start: start}, nil
}

// errNoMemoryCgroup: a /proc/<pid>/cgroup without a memory cgroup (kernel
// threads on some kernels).
var errNoMemoryCgroup = errors.New("no memory cgroup")

// ParseCgroup returns the memory cgroup path of a /proc/<pid>/cgroup
// content ("hierarchy-ID:controller-list:path" lines): the v1 hierarchy
// holding the memory controller when there is one, else the v2 line
// ("0::path").
func ParseCgroup(b []byte) (string, watch.CgroupVersion, error) {
	var v2 string
	var hasV2 bool
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) == 0 {
			continue
		}
		id, rest, ok1 := bytes.Cut(line, []byte{':'})
		ctrl, p, ok2 := bytes.Cut(rest, []byte{':'})
		if !ok1 || !ok2 {
			return "", 0, fmt.Errorf("malformed line %q", line)
		}
		if _, err := strconv.ParseUint(string(id), 10, 32); err != nil {
			return "", 0, fmt.Errorf("malformed line %q", line)
		}
		if string(id) == "0" {
			if !hasV2 {
				v2, hasV2 = string(p), true
			}
			continue
		}
		for _, c := range bytes.Split(ctrl, []byte{','}) {
			if string(c) == "memory" {
				return string(p), watch.V1, nil
			}
		}
	}
	if hasV2 {
		return v2, watch.V2, nil
	}
	return "", 0, errNoMemoryCgroup
}

// listPIDs lists the numeric entries of the procfs root into s.pids. The
// directory entries are parsed in place (getdents64): next to thousands of
// processes, a string per entry every scan was garbage for nothing.
func (s *Scanner) listPIDs() ([]int, error) {
	fd, err := unix.Open(s.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: s.root, Err: err}
	}
	defer unix.Close(fd)
	if s.dirBuf == nil {
		s.dirBuf = make([]byte, 32<<10)
	}
	out := s.pids[:0]
	for {
		n, err := unix.Getdents(fd, s.dirBuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getdents64", Path: s.root, Err: err}
		}
		if n <= 0 {
			s.pids = out
			return out, nil
		}
		out = appendDirentPIDs(out, s.dirBuf[:n])
	}
}

// appendDirentPIDs appends the entries of a getdents64 buffer whose names
// are positive decimal numbers. A record: d_ino (8 bytes), d_off (8),
// d_reclen (2), d_type (1), d_name (NUL-terminated).
func appendDirentPIDs(out []int, b []byte) []int {
	for len(b) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < 19 || reclen > len(b) {
			return out
		}
		name := b[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		b = b[reclen:]
		pid, ok := 0, len(name) > 0 && len(name) <= 9
		for _, c := range name {
			if c < '0' || c > '9' {
				ok = false
				break
			}
			pid = pid*10 + int(c-'0')
		}
		if ok && pid > 0 {
			out = append(out, pid)
		}
	}
	return out
}

// gone tells whether a read failed because the process exited meanwhile.
func gone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) || errors.Is(err, unixESRCH)
}

// Scan lists the process groups by memory cgroup path, oomhero's own cgroup
// and PID 1 left out. Processes that exit during the scan are skipped;
// a process whose files cannot be read or parsed is skipped too and
// reported once (Skipped). No process can fail the scan. The map is the
// caller's; the groups are shared with later scans and must not be
// changed.
func (s *Scanner) Scan() (map[string]*Group, error) {
	if s.followOK() {
		return s.scanChanged(), nil
	}
	// The mark is read before the directory: a process that starts
	// during the scan changes the mark, and the next scan reads it.
	mark, markErr := s.readMark()
	if markErr == nil && (s.quietOK(mark) || s.probeOK(mark)) && !s.mainsAlive() {
		s.dirty = true
	}
	if markErr == nil && s.quietOK(mark) {
		s.quiet++
		s.QuietScans++
		return maps.Clone(s.last), nil
	}
	if markErr == nil && s.probeOK(mark) {
		return s.scanProbed(mark), nil
	}
	pids, err := s.listPIDs()
	if err != nil {
		return nil, fmt.Errorf("list processes in %q: %w", s.root, err)
	}
	recycled := s.recycledRange(mark, markErr == nil)
	if s.following && !s.dirty && s.last != nil {
		// The minute's safety net while following: every fork, exec and
		// exit since the last scan came as an event and its PID was
		// reread (follow.go), so no PID was recycled unseen. Rereading
		// the PIDs handed out since the last full scan read each process
		// started meanwhile a second time (1,528 of 2,005 in a pod that
		// grew after oomhero started: the costliest window of an idle BPF
		// sidecar).
		recycled = func(int) bool { return false }
	}
	s.mark, s.marked, s.quiet, s.dirty = mark, markErr == nil, 0, false
	clear(s.changed) // this scan rereads what they named
	s.lastFull = time.Now()
	s.FullScans++
	s.scans++
	now := s.ticks()
	due := s.dueSlots()
	if s.seen == nil {
		s.seen = make(map[int]bool, len(pids))
	}
	seen := s.seen
	clear(seen)
	groups := map[string]*Group{}
	for _, pid := range pids {
		if pid == 1 || pid == s.self {
			continue
		}
		seen[pid] = true
		e, ok := s.known[pid]
		if !ok || s.rereadEach(e, now) || due[pid%revalidateEvery] || recycled(pid) {
			ne, read := s.reread(pid, e, ok)
			if !read {
				continue
			}
			e = ne
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
	clear(s.fresh)
	for pid, e := range s.known {
		if !seen[pid] {
			delete(s.known, pid)
			continue
		}
		if s.rereadEach(e, now) {
			s.fresh[pid] = struct{}{}
		}
	}
	s.young = len(s.fresh) > 0
	for pid := range s.bad {
		if !seen[pid] {
			delete(s.bad, pid)
		}
	}
	for _, g := range groups {
		slices.SortFunc(g.Procs, func(a, b Process) int { return a.PID - b.PID })
	}
	s.last = groups
	return maps.Clone(groups), nil
}

// reread reads process pid's files again and records what it found (old
// and had: what was known of it before). A process that cannot be read is
// forgotten, and skipped once with its error unless it simply went (false).
func (s *Scanner) reread(pid int, old entry, had bool) (entry, bool) {
	e, err := s.read(pid)
	if err != nil {
		delete(s.known, pid)
		if !gone(err) && !errors.Is(err, errNoMemoryCgroup) && !s.bad[pid] {
			s.bad[pid] = true
			s.skipped = append(s.skipped, Skip{PID: pid, Err: err})
		}
		return e, false
	}
	delete(s.bad, pid)
	e.young = youngScans
	if had && e.Start == old.Start {
		e.young = max(old.young-1, 0)
	}
	s.known[pid] = e
	if e.young > 0 || RuntimeInit(e.Comm) {
		s.fresh[pid] = struct{}{} // probed scans reread it (quiet.go)
	}
	return e, true
}

// Resolver finds the cgroup directory of a group.
type Resolver struct {
	// Proc is the procfs mount the groups were scanned from.
	Proc string
	// CgroupRoot, when not empty, is a cgroupfs mount showing the whole
	// hierarchy (node mode): on v1 its "memory" subdirectory is used.
	CgroupRoot string
}

// ErrRecycled is wrapped when a process's PID now names another process
// (its start time changed): what was known of it is stale.
var ErrRecycled = errors.New("PID recycled")

// Resolve returns the container of group g: the cgroup directory that lists
// one of g's processes in its cgroup.procs, its id, version and effective
// limit. A container without a memory limit is returned with an error
// wrapping watch.ErrNoLimit.
//
// Every directory is opened through package safefs, beneath a trusted root
// (/proc/<pid>/root under Proc, or CgroupRoot): on cgroupfs only, no link
// followed. A process counts only if, after its cgroup.procs was read, its
// PID still names the same process (start time): a recycled PID cannot
// lend its cgroup to another container.
func (r Resolver) Resolve(g *Group) (watch.Container, error) {
	c := watch.Container{Path: g.Path, Version: g.Version, PIDs: g.PIDs()}
	main := g.Main()
	c.Name = Name(main.Comm, g.Path)
	var tried []string
	for _, p := range g.Procs {
		for _, cand := range r.candidates(p.PID, g) {
			dir, err := cgroup.OpenDir(cand.d)
			if err != nil {
				tried = append(tried, cleanErr(err))
				continue
			}
			if err := listed(dir, p.PID); err != nil {
				dir.Close()
				tried = append(tried, cleanErr(err))
				continue
			}
			if !r.sameProcess(p) {
				dir.Close()
				tried = append(tried, cleanErr(fmt.Errorf("%s: pid %d recycled", cand.d, p.PID)))
				break
			}
			d := watch.CgroupDir{Root: cand.d.Root, Rel: cand.d.Rel, Ino: dir.Ino()}
			dir.Close()
			c.Dir, c.ID = d, d.Ino
			v, err := cgroup.Detect(d)
			if err != nil {
				return c, err
			}
			c.Version = v
			c.Limit, err = r.limit(c.Dir, cand.top, v)
			return c, err
		}
		if len(tried) >= 6 {
			break
		}
	}
	if r.allExited(g) {
		return c, fmt.Errorf("container %s (cgroup %s): %w", c.Name, safename.Clean(g.Path), ErrExited)
	}
	return c, fmt.Errorf("container %s (cgroup %s): no readable cgroup directory lists its processes (tried %s)",
		c.Name, safename.Clean(g.Path), strings.Join(tried, "; "))
}

// ErrExited: every process of a group exited since the scan (a zombie's
// root cannot be opened): nothing to resolve, and nothing worth a word,
// the group goes at the next scan.
var ErrExited = errors.New("its processes exited")

// allExited reports whether no process of g is still alive: each one's
// stat is gone, names another process (recycled PID), or says zombie or
// dead.
func (r Resolver) allExited(g *Group) bool {
	for _, p := range g.Procs {
		b, err := safefs.ReadProcFile(filepath.Join(r.Proc, strconv.Itoa(p.PID), "stat"), safefs.LimitProcStat)
		if err != nil {
			continue
		}
		if st, err := ParseStat(b); err != nil || st.Start == p.Start && st.State != 'Z' && st.State != 'X' {
			return false
		}
	}
	return len(g.Procs) > 0
}

// cleanErr makes an error about a container's files safe for a log line
// (its paths hold names the container chose): invalid UTF-8 and control or
// non-printing characters become '?', as safename.Clean does, but nothing
// is cut (the reason is at the end; paths are bounded by PATH_MAX).
func cleanErr(err error) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, err.Error())
}

// sameProcess tells whether p.PID still names the process p (same start
// time).
func (r Resolver) sameProcess(p Process) bool {
	b, err := safefs.ReadProcFile(filepath.Join(r.Proc, strconv.Itoa(p.PID), "stat"), safefs.LimitProcStat)
	if err != nil {
		return false
	}
	st, err := ParseStat(b)
	return err == nil && st.Start == p.Start
}

type candidate struct {
	d   watch.CgroupDir
	top string // the highest directory (relative to d.Root) whose limit counts
}

func (r Resolver) candidates(pid int, g *Group) []candidate {
	var out []candidate
	rel := strings.TrimLeft(path.Clean("/"+g.Path), "/")
	if r.CgroupRoot != "" {
		if g.Version == watch.V1 {
			out = append(out, candidate{watch.CgroupDir{Root: r.CgroupRoot, Rel: path.Join("memory", rel)}, "memory"})
		} else {
			out = append(out, candidate{watch.CgroupDir{Root: r.CgroupRoot, Rel: rel}, "."})
		}
	}
	// The container's own view: its root is /proc/<pid>/root under our
	// verified procfs (trusted: the kernel's magic link); everything below
	// it is the container's and resolved beneath it.
	root := filepath.Join(r.Proc, strconv.Itoa(pid), "root")
	base := "sys/fs/cgroup"
	if g.Version == watch.V1 {
		base = "sys/fs/cgroup/memory"
	}
	out = append(out, candidate{watch.CgroupDir{Root: root, Rel: base}, base})
	if rel != "" && !strings.HasPrefix(g.Path, "/..") {
		d := path.Join(base, rel)
		out = append(out, candidate{watch.CgroupDir{Root: root, Rel: d}, d})
	}
	return out
}

// limit returns the effective limit: the smallest of the directory's own,
// its visible parents' up to top (v2) or the hierarchical limit the kernel
// reports (v1). On v1 the hierarchical limit already is the smallest of the
// cgroup's and every ancestor's, visible or not, so the ancestors are
// walked only when it says there is none (half of a resolve's cost on a
// node agent's periodic resolves).
func (r Resolver) limit(d watch.CgroupDir, top string, v watch.CgroupVersion) (uint64, error) {
	if v != watch.V1 {
		return cgroup.EffectiveLimit(d, top, v)
	}
	h, herr := cgroup.HierarchicalLimit(d)
	switch {
	case herr == nil:
		return h, nil
	case !errors.Is(herr, watch.ErrNoLimit):
		return 0, herr
	}
	return cgroup.EffectiveLimit(d, top, v)
}

// lists tells whether the verified directory's cgroup.procs (read bounded)
// lists pid.
func lists(dir *safefs.Dir, pid int) bool { return listed(dir, pid) == nil }

// listed is lists with the reason when pid is not listed.
func listed(dir *safefs.Dir, pid int) error {
	b, err := dir.ReadFile("cgroup.procs", safefs.LimitProcs)
	if err != nil {
		return err
	}
	want := []byte(strconv.Itoa(pid))
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if bytes.Equal(line, want) {
			return nil
		}
	}
	return fmt.Errorf("%s/cgroup.procs does not list pid %d", dir.Name(), pid)
}

// Name makes a short human name for a container from its main process's
// command and its cgroup path: "comm@shortid", cleaned (safename.Clean).
func Name(comm, path string) string {
	return safename.Clean(name(comm, path))
}

func name(comm, path string) string {
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

var unixESRCH = syscall.ESRCH
