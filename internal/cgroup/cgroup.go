// Package cgroup reads the memory figures of one memory cgroup directory, on
// cgroup v1 (memory controller hierarchy) and cgroup v2 (unified hierarchy).
//
// Every function takes the cgroup directory as a parameter; nothing here knows
// where cgroupfs is mounted. A read or parse error is always an error, never a
// zero figure.
package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/watch"
)

// ErrParse is wrapped by every error about a file's content.
var ErrParse = errors.New("cannot parse cgroup file")

// v1Unlimited is the smallest value cgroup v1 uses to mean "no limit":
// PAGE_COUNTER_MAX rounded to pages, 0x7FFFFFFFFFFFF000 on 4 KiB pages.
// Anything at or above 1<<62 is treated as unlimited.
const v1Unlimited = uint64(1) << 62

type files struct {
	usage, limit, stat, statInactive, statAnon string
}

var names = map[watch.CgroupVersion]files{
	watch.V1: {"memory.usage_in_bytes", "memory.limit_in_bytes", "memory.stat", "total_inactive_file", "total_rss"},
	watch.V2: {"memory.current", "memory.max", "memory.stat", "inactive_file", "anon"},
}

// Detect tells the cgroup version of a memory cgroup directory from the files
// it holds.
func Detect(dir string) (watch.CgroupVersion, error) {
	if _, err := os.Stat(filepath.Join(dir, "memory.usage_in_bytes")); err == nil {
		return watch.V1, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "memory.current")); err == nil {
		return watch.V2, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err == nil {
		return 0, fmt.Errorf("%s: cgroup v2 directory without the memory controller", dir)
	}
	return 0, fmt.Errorf("%s: not a memory cgroup directory", dir)
}

// ID returns the cgroup id of dir: the inode number of the directory, which
// the kernel also uses as the cgroup's id (kernfs node id).
func ID(dir string) (uint64, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no inode number", dir)
	}
	return st.Ino, nil
}

// Limit returns the memory limit of dir in bytes, or an error wrapping
// watch.ErrNoLimit when the cgroup has none.
func Limit(dir string, v watch.CgroupVersion) (uint64, error) {
	f, ok := names[v]
	if !ok {
		return 0, fmt.Errorf("unknown cgroup version %d", v)
	}
	b, err := os.ReadFile(filepath.Join(dir, f.limit))
	if err != nil {
		return 0, err
	}
	return parseLimit(b, filepath.Join(dir, f.limit))
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

// EffectiveLimit returns the smallest memory limit of dir and of its parents
// up to and including root (a parent's limit can OOM-kill the container too).
// root must be dir or one of its parents. It returns an error wrapping
// watch.ErrNoLimit when no directory on the way has a limit.
func EffectiveLimit(root, dir string, v watch.CgroupVersion) (uint64, error) {
	root = filepath.Clean(root)
	dir = filepath.Clean(dir)
	var best uint64
	for d := dir; ; d = filepath.Dir(d) {
		l, err := Limit(d, v)
		switch {
		case err == nil:
			if best == 0 || l < best {
				best = l
			}
		case errors.Is(err, watch.ErrNoLimit):
		case errors.Is(err, os.ErrNotExist) && d != dir:
			// The root of a hierarchy has no limit file.
		default:
			return 0, err
		}
		if d == root || d == filepath.Dir(d) || len(d) <= len(root) {
			break
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("%s: %w", dir, watch.ErrNoLimit)
	}
	return best, nil
}

// Reader reads the memory figures of one cgroup directory. It keeps the files
// open and rereads them with pread, so a reading costs three system calls.
// A Reader is not safe for concurrent use.
type Reader struct {
	dir                string
	v                  watch.CgroupVersion
	usage, limit, stat *os.File
	statInactive, anon []byte
	buf                []byte
	limitOverride      uint64
}

// NewReader opens the memory files of dir. limit, when not zero, is reported
// as the limit instead of the directory's own (an effective limit found up the
// tree).
func NewReader(dir string, v watch.CgroupVersion, limit uint64) (*Reader, error) {
	f, ok := names[v]
	if !ok {
		return nil, fmt.Errorf("unknown cgroup version %d", v)
	}
	r := &Reader{dir: dir, v: v, statInactive: []byte(f.statInactive), anon: []byte(f.statAnon),
		buf: make([]byte, 8192), limitOverride: limit}
	var err error
	if r.usage, err = os.Open(filepath.Join(dir, f.usage)); err != nil {
		return nil, err
	}
	if r.stat, err = os.Open(filepath.Join(dir, f.stat)); err != nil {
		r.Close()
		return nil, err
	}
	if limit == 0 {
		if r.limit, err = os.Open(filepath.Join(dir, f.limit)); err != nil {
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
	for _, f := range []*os.File{r.usage, r.limit, r.stat} {
		if f != nil {
			f.Close()
		}
	}
	return nil
}

func (r *Reader) readAll(f *os.File) ([]byte, error) {
	// Pseudo-files report no size: read until a read returns less than
	// asked (cgroup files produce their whole content in one read when the
	// buffer is big enough) or nothing.
	//
	// The reads are raw system calls: they take microseconds and never
	// block, and a plain system call lets the Go scheduler hand the
	// processor to another thread, which, on a poll ten times a second,
	// costs more than the reads themselves.
	fd, err := rawFd(f)
	if err != nil {
		return nil, err
	}
	n := 0
	for {
		if n == len(r.buf) {
			r.buf = append(r.buf, make([]byte, len(r.buf))...)
		}
		want := len(r.buf) - n
		m, _, errno := unix.RawSyscall6(unix.SYS_PREAD64, fd, uintptr(unsafe.Pointer(&r.buf[n])), uintptr(want), uintptr(n), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return nil, &os.PathError{Op: "read", Path: f.Name(), Err: errno}
		}
		n += int(m)
		if int(m) < want {
			return r.buf[:n], nil
		}
	}
}

// rawFd returns the descriptor of f for raw reads.
func rawFd(f *os.File) (uintptr, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd uintptr
	if err := sc.Control(func(d uintptr) { fd = d }); err != nil {
		return 0, err
	}
	return fd, nil
}

func (r *Reader) readUint(f *os.File) (uint64, error) {
	b, err := r.readAll(f)
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
		b, err := r.readAll(r.limit)
		if err != nil {
			return rd, err
		}
		if rd.Limit, err = parseLimit(b, r.limit.Name()); err != nil {
			return rd, err
		}
	}
	b, err := r.readAll(r.stat)
	if err != nil {
		return rd, err
	}
	var found int
	found, rd.InactiveFile, rd.Anon, err = parseStat(b, r.statInactive, r.anon)
	if err != nil {
		return rd, fmt.Errorf("%s: %w", r.stat.Name(), err)
	}
	if found != 2 {
		return rd, fmt.Errorf("%w: %s: missing %q or %q", ErrParse, r.stat.Name(), r.statInactive, r.anon)
	}
	return rd, nil
}

// parseStat finds the two keys in a memory.stat content ("key value" lines).
func parseStat(b, k1, k2 []byte) (found int, v1, v2 uint64, err error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		key, val := line[:sp], line[sp+1:]
		var dst *uint64
		switch {
		case bytes.Equal(key, k1):
			dst = &v1
		case bytes.Equal(key, k2):
			dst = &v2
		default:
			continue
		}
		n, perr := strconv.ParseUint(string(val), 10, 64)
		if perr != nil {
			return 0, 0, 0, fmt.Errorf("%w: %q", ErrParse, line)
		}
		*dst = n
		found++
	}
	return found, v1, v2, nil
}

// OOMKills returns the number of OOM kills the kernel counted in dir
// (oom_kill in memory.events on v2, in memory.oom_control on v1).
func OOMKills(dir string, v watch.CgroupVersion) (uint64, error) {
	name := "memory.events"
	if v == watch.V1 {
		name = "memory.oom_control"
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, err
	}
	found, n, _, err := parseStat(b, []byte("oom_kill"), []byte("\x00none"))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if found == 0 {
		return 0, fmt.Errorf("%w: %s: no oom_kill", ErrParse, filepath.Join(dir, name))
	}
	return n, nil
}

// HierarchicalLimit returns the "hierarchical_memory_limit" of a cgroup v1
// memory.stat: the smallest limit of the cgroup and its ancestors, as the
// kernel enforces it. It returns an error wrapping watch.ErrNoLimit when
// there is none.
func HierarchicalLimit(dir string) (uint64, error) {
	name := filepath.Join(dir, "memory.stat")
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	found, n, _, err := parseStat(b, []byte("hierarchical_memory_limit"), []byte("\x00none"))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if found == 0 {
		return 0, fmt.Errorf("%w: %s: no hierarchical_memory_limit", ErrParse, name)
	}
	if n >= v1Unlimited {
		return 0, fmt.Errorf("%s: %w", name, watch.ErrNoLimit)
	}
	return n, nil
}
