// Package cgroup reads the memory figures of one memory cgroup directory, on
// cgroup v1 (memory controller hierarchy) and cgroup v2 (unified hierarchy).
//
// Every function takes the cgroup directory as a parameter; nothing here knows
// where cgroupfs is mounted. Every open goes through package safefs: the
// directory must be on cgroupfs, no link is followed out of its trusted root,
// and every read is bounded. A read or parse error is always an error, never
// a zero figure.
package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

// ErrParse is wrapped by every error about a file's content.
var ErrParse = errors.New("cannot parse cgroup file")

// v1Unlimited is the smallest value cgroup v1 uses to mean "no limit":
// PAGE_COUNTER_MAX rounded to pages, 0x7FFFFFFFFFFFF000 on 4 KiB pages.
// Anything at or above 1<<62 is treated as unlimited.
const v1Unlimited = uint64(1) << 62

type files struct {
	usage, limit, stat, statInactive, statAnon, statActive string
}

var names = map[watch.CgroupVersion]files{
	watch.V1: {"memory.usage_in_bytes", "memory.limit_in_bytes", "memory.stat", "total_inactive_file", "total_rss", "total_active_file"},
	watch.V2: {"memory.current", "memory.max", "memory.stat", "inactive_file", "anon", "active_file"},
}

// OpenDir opens d through package safefs: d.Rel beneath the trusted d.Root,
// no link followed, accepted only on cgroupfs and, when d.Ino is set, only
// if it is still the directory d was resolved to.
func OpenDir(d watch.CgroupDir) (*safefs.Dir, error) {
	dir, err := safefs.OpenDir(d.Root, d.Rel)
	if err != nil {
		return nil, err
	}
	if d.Ino != 0 && dir.Ino() != d.Ino {
		dir.Close()
		return nil, fmt.Errorf("%s: %w (inode %d, resolved as %d)", d, ErrChanged, dir.Ino(), d.Ino)
	}
	return dir, nil
}

// ErrChanged is wrapped when a cgroup directory is no longer the one it was
// resolved to (the path now leads to another directory).
var ErrChanged = errors.New("cgroup directory changed since it was resolved")

// Detect tells the cgroup version of a memory cgroup directory from the files
// it holds.
func Detect(d watch.CgroupDir) (watch.CgroupVersion, error) {
	dir, err := OpenDir(d)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	return detect(dir)
}

func detect(dir *safefs.Dir) (watch.CgroupVersion, error) {
	switch {
	case dir.Has("memory.usage_in_bytes"):
		return watch.V1, nil
	case dir.Has("memory.current"):
		return watch.V2, nil
	case dir.Has("cgroup.controllers"):
		return 0, fmt.Errorf("%s: cgroup v2 directory without the memory controller", dir.Name())
	}
	return 0, fmt.Errorf("%s: not a memory cgroup directory", dir.Name())
}

// ID returns the cgroup id of d: the inode number of the verified directory
// (fstat of its descriptor), which the kernel also uses as the cgroup's id
// (kernfs node id).
func ID(d watch.CgroupDir) (uint64, error) {
	dir, err := OpenDir(d)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	return dir.Ino(), nil
}

// Limit returns the memory limit of d in bytes, or an error wrapping
// watch.ErrNoLimit when the cgroup has none.
func Limit(d watch.CgroupDir, v watch.CgroupVersion) (uint64, error) {
	f, dir, err := openFiles(d, v)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	b, err := dir.ReadFile(f.limit, safefs.LimitValue)
	if err != nil {
		return 0, err
	}
	return parseLimit(b, dir.Name()+"/"+f.limit)
}

// openFiles opens d and returns the names of the memory files of version v
// in it.
func openFiles(d watch.CgroupDir, v watch.CgroupVersion) (files, *safefs.Dir, error) {
	f, ok := names[v]
	if !ok {
		return files{}, nil, fmt.Errorf("unknown cgroup version %d", v)
	}
	dir, err := OpenDir(d)
	if err != nil {
		return files{}, nil, err
	}
	return f, dir, nil
}

// LimitFile is a cgroup's own memory limit file, opened once through
// package safefs and reread with one pread: a node agent checks the limits
// of a hundred containers every few seconds, and each check through Limit
// walked /proc/<pid>/root and verified the directory and the file again.
// A LimitFile is not safe for concurrent use.
type LimitFile struct {
	f   *safefs.File
	buf []byte
}

// OpenLimit opens d's own limit file.
func OpenLimit(d watch.CgroupDir, v watch.CgroupVersion) (*LimitFile, error) {
	f, dir, err := openFiles(d, v)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	lf, err := dir.Open(f.limit)
	if err != nil {
		return nil, err
	}
	return &LimitFile{f: lf, buf: make([]byte, 0, 64)}, nil
}

// Read rereads the limit, as Limit does (watch.ErrNoLimit when unset).
func (l *LimitFile) Read() (uint64, error) {
	b, err := l.f.ReadAll(l.buf, safefs.LimitValue)
	if err != nil {
		return 0, err
	}
	return parseLimit(b, l.f.Name())
}

// Close closes the file (a nil LimitFile too).
func (l *LimitFile) Close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

func parseLimit(b []byte, name string) (uint64, error) {
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return 0, fmt.Errorf("%s: %w", name, watch.ErrNoLimit)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %q", ErrParse, name, s)
	}
	if n >= v1Unlimited {
		return 0, fmt.Errorf("%s: %w", name, watch.ErrNoLimit)
	}
	return n, nil
}

// EffectiveLimit returns the smallest memory limit of d and of its parents
// up to and including top (a parent's limit can OOM-kill the container too).
// The walk stays beneath d.Root: top is a relative path like d.Rel, d.Rel or
// one of its parents. It returns an error wrapping watch.ErrNoLimit when no
// directory on the way has a limit.
func EffectiveLimit(d watch.CgroupDir, top string, v watch.CgroupVersion) (uint64, error) {
	top = cleanRel(top)
	rel := cleanRel(d.Rel)
	var best uint64
	for cur := d; ; {
		l, err := Limit(cur, v)
		switch {
		case err == nil:
			if best == 0 || l < best {
				best = l
			}
		case errors.Is(err, watch.ErrNoLimit):
		case errors.Is(err, os.ErrNotExist) && rel != cleanRel(d.Rel):
			// The root of a hierarchy has no limit file.
		default:
			return 0, err
		}
		if rel == top || rel == "." || len(rel) <= len(top) {
			break
		}
		rel = path.Dir(rel)
		cur = watch.CgroupDir{Root: d.Root, Rel: rel}
	}
	if best == 0 {
		return 0, fmt.Errorf("%s: %w", d, watch.ErrNoLimit)
	}
	return best, nil
}

func cleanRel(rel string) string {
	r := strings.TrimLeft(path.Clean("/"+rel), "/")
	if r == "" {
		return "."
	}
	return r
}

// Reader reads the memory figures of one cgroup directory. It keeps the files
// open and rereads them with pread, so a reading costs three system calls.
// A Reader is not safe for concurrent use.
type Reader struct {
	dir                string
	v                  watch.CgroupVersion
	usage, limit, stat *safefs.File
	statKeys           [][]byte // inactive file, anon, active file
	buf                []byte
	limitOverride      uint64
}

// NewReader opens the memory files of d through package safefs. limit, when
// not zero, is reported as the limit instead of the directory's own (an
// effective limit found up the tree).
func NewReader(d watch.CgroupDir, v watch.CgroupVersion, limit uint64) (*Reader, error) {
	f, dir, err := openFiles(d, v)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	r := &Reader{dir: dir.Name(), v: v, statKeys: [][]byte{[]byte(f.statInactive), []byte(f.statAnon), []byte(f.statActive)},
		buf: make([]byte, 8192), limitOverride: limit}
	if r.usage, err = dir.Open(f.usage); err != nil {
		return nil, err
	}
	if r.stat, err = dir.Open(f.stat); err != nil {
		r.Close()
		return nil, err
	}
	if limit == 0 {
		if r.limit, err = dir.Open(f.limit); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// Dir returns the directory the Reader reads.
func (r *Reader) Dir() string { return r.dir }

// Close closes the files.
func (r *Reader) Close() error {
	for _, f := range []*safefs.File{r.usage, r.limit, r.stat} {
		f.Close()
	}
	return nil
}

// readAll rereads f whole, at most limit bytes. The reads are raw system
// calls (safefs.File.ReadAll): they take microseconds and never block, and a
// plain system call lets the Go scheduler hand the processor to another
// thread, which, on a poll ten times a second, costs more than the reads
// themselves.
func (r *Reader) readAll(f *safefs.File, limit int) ([]byte, error) {
	b, err := f.ReadAll(r.buf, limit)
	if errors.Is(err, safefs.ErrTooBig) {
		return nil, fmt.Errorf("%w: %w", ErrParse, err)
	}
	if err != nil {
		return nil, err
	}
	if cap(b) > cap(r.buf) {
		r.buf = b[:cap(b)]
	}
	return b, nil
}

func (r *Reader) readUint(f *safefs.File) (uint64, error) {
	b, err := r.readAll(f, safefs.LimitValue)
	if err != nil {
		return 0, err
	}
	s := bytes.TrimSpace(b)
	n, err := strconv.ParseUint(string(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %q", ErrParse, f.Name(), s)
	}
	return n, nil
}

// Usage reads only the usage counter, in bytes.
func (r *Reader) Usage() (uint64, error) { return r.readUint(r.usage) }

// Read reads usage, inactive file, anon and limit.
func (r *Reader) Read() (watch.Reading, error) {
	var rd watch.Reading
	var err error
	rd.Time = time.Now()
	if rd.Usage, err = r.readUint(r.usage); err != nil {
		return rd, err
	}
	if rd.Limit = r.limitOverride; rd.Limit == 0 {
		b, err := r.readAll(r.limit, safefs.LimitValue)
		if err != nil {
			return rd, err
		}
		if rd.Limit, err = parseLimit(b, r.limit.Name()); err != nil {
			return rd, err
		}
	}
	b, err := r.readAll(r.stat, safefs.LimitStat)
	if err != nil {
		return rd, err
	}
	var vals [3]uint64
	seen, err := parseStat(b, r.statKeys, vals[:])
	if err != nil {
		return rd, fmt.Errorf("%s: %w", r.stat.Name(), err)
	}
	if seen&3 != 3 {
		return rd, fmt.Errorf("%w: %s: missing %q or %q", ErrParse, r.stat.Name(), r.statKeys[0], r.statKeys[1])
	}
	rd.InactiveFile, rd.Anon, rd.ActiveFile = vals[0], vals[1], vals[2]
	return rd, nil
}

// parseStat finds keys in a memory.stat content ("key value" lines) and
// stores their values in vals (len(vals) >= len(keys)). Bit i of seen is
// set when keys[i] was found; a repeated key's last value wins.
func parseStat(b []byte, keys [][]byte, vals []uint64) (seen uint, err error) {
	for line := range bytes.Lines(b) {
		line = bytes.TrimSuffix(line, []byte{'\n'})
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		key, val := line[:sp], line[sp+1:]
		k := 0
		for k < len(keys) && !bytes.Equal(keys[k], key) {
			k++
		}
		if k == len(keys) {
			continue
		}
		n, perr := strconv.ParseUint(string(val), 10, 64)
		if perr != nil {
			return 0, fmt.Errorf("%w: %q", ErrParse, line)
		}
		vals[k], seen = n, seen|1<<k
	}
	return seen, nil
}

// parseStatKey returns the value of one key of a "key value" file.
func parseStatKey(b []byte, key string) (uint64, bool, error) {
	var v [1]uint64
	seen, err := parseStat(b, [][]byte{[]byte(key)}, v[:])
	return v[0], seen != 0, err
}

// OOMKills returns the number of OOM kills the kernel counted in d
// (oom_kill in memory.events on v2, in memory.oom_control on v1).
func OOMKills(d watch.CgroupDir, v watch.CgroupVersion) (uint64, error) {
	name := "memory.events"
	if v == watch.V1 {
		name = "memory.oom_control"
	}
	dir, err := OpenDir(d)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	b, err := dir.ReadFile(name, safefs.LimitSmall)
	if err != nil {
		return 0, err
	}
	n, found, err := parseStatKey(b, "oom_kill")
	if err != nil {
		return 0, fmt.Errorf("%s/%s: %w", dir.Name(), name, err)
	}
	if !found {
		return 0, fmt.Errorf("%w: %s/%s: no oom_kill", ErrParse, dir.Name(), name)
	}
	return n, nil
}

// HierarchicalLimit returns the "hierarchical_memory_limit" of a cgroup v1
// memory.stat: the smallest limit of the cgroup and its ancestors, as the
// kernel enforces it. It returns an error wrapping watch.ErrNoLimit when
// there is none.
func HierarchicalLimit(d watch.CgroupDir) (uint64, error) {
	dir, err := OpenDir(d)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	name := dir.Name() + "/memory.stat"
	b, err := dir.ReadFile("memory.stat", safefs.LimitStat)
	if err != nil {
		return 0, err
	}
	n, found, err := parseStatKey(b, "hierarchical_memory_limit")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if !found {
		return 0, fmt.Errorf("%w: %s: no hierarchical_memory_limit", ErrParse, name)
	}
	if n >= v1Unlimited {
		return 0, fmt.Errorf("%s: %w", name, watch.ErrNoLimit)
	}
	return n, nil
}
