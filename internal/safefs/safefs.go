// Package safefs opens the cgroup and procfs files oomhero reads through a
// view it does not trust.
//
// A container's cgroup directory is reached through /proc/<pid>/root, a
// root directory the container controls: a root process in it can chroot,
// create FIFOs, symlinks to devices or to other containers' files, huge
// sparse files, or a tmpfs laid out like a cgroup tree. Everything here is
// built on two halves kept apart:
//
//   - a trusted root: a path oomhero chose ("/proc/<pid>/root" under the
//     verified --proc mount, the --cgroup-root mount, "/"), opened with
//     O_PATH and ordinary path resolution;
//   - an untrusted relative part, resolved beneath that root with openat2(2)
//     and RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS: ".."
//     cannot climb out, no symlink or /proc magic link is followed.
//
// A directory is accepted only when fstatfs(2) says cgroupfs (v1 or v2
// magic). A file is opened beneath a verified directory by one name, with
// RESOLVE_NO_XDEV as well (a bind mount over a control file is refused), and
// accepted only when it is a regular file on the directory's own filesystem.
// Every open is O_NONBLOCK|O_NOCTTY|O_CLOEXEC, so neither a FIFO nor a
// terminal can block or adopt oomhero; every read is bounded by a limit per
// kind of file, and a file over its limit is an error, not an allocation.
// The only write, a cgroup v1 event_control registration, goes to a control
// file proven to belong to the verified directory.
//
// Where openat2 is missing (Linux before 5.6, or a seccomp profile that
// refuses it) the same rules are kept by a walk of one openat(2) with
// O_NOFOLLOW per component after lexical ".." resolution, and files are
// checked through an O_PATH descriptor before they are opened.
package safefs

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read limits, in bytes, per kind of file. Real cgroupfs and procfs content
// is far below each; a file above its limit is refused (ErrTooBig).
const (
	// LimitValue bounds a file holding one value (memory.max,
	// memory.current, memory.limit_in_bytes, ...).
	LimitValue = 256
	// LimitSmall bounds a file of a few "key value" lines (memory.events,
	// memory.oom_control, memory.pressure).
	LimitSmall = 4 << 10
	// LimitStat bounds memory.stat (about 1.5 KiB on v2, 3 KiB on v1 with
	// the total_* lines).
	LimitStat = 64 << 10
	// LimitProcs bounds cgroup.procs (one PID a line: room for ~100 000).
	LimitProcs = 1 << 20
	// LimitProcStat bounds /proc/<pid>/stat (one line of 52 numbers and a
	// 16-byte command).
	LimitProcStat = 4 << 10
	// LimitProcCgroup bounds /proc/<pid>/cgroup (one line per hierarchy).
	LimitProcCgroup = 64 << 10
)

// Errors wrapped by the refusals.
var (
	// ErrNotCgroup: a directory or file that is not on cgroupfs.
	ErrNotCgroup = errors.New("not on cgroupfs")
	// ErrNotRegular: a FIFO, device, socket or directory where a control
	// file was expected, or a file on another mount than its directory.
	ErrNotRegular = errors.New("not a regular file of the cgroup directory")
	// ErrTooBig: a file over the read limit of its kind.
	ErrTooBig = errors.New("file over its read limit")
	// ErrNotProc: a --proc path that is not a procfs mount.
	ErrNotProc = errors.New("not a procfs mount")
	// ErrBadName: a file name that is not one path component.
	ErrBadName = errors.New("not a single file name")
)

const (
	openFlags = unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	// inRoot resolves a path beneath a root it cannot leave.
	inRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS
	// beneath resolves one name inside a verified directory, on its mount.
	beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV
)

// anyFS, set only by tests, accepts any filesystem where cgroupfs or procfs
// is required (fake trees in a temporary directory). Every other rule holds.
var anyFS atomic.Int32

// AllowAnyFilesystem lets the calling test use fake cgroup and procfs trees
// in a temporary directory: the filesystem type checks accept any
// filesystem; symlink, file type, mount and size rules still apply. It
// returns a function that restores the checks. It panics outside a test
// binary, so oomhero itself can never turn the checks off.
func AllowAnyFilesystem() (restore func()) {
	if !testing.Testing() {
		panic("safefs.AllowAnyFilesystem called outside a test")
	}
	anyFS.Add(1)
	return func() { anyFS.Add(-1) }
}

// IsCgroupMagic tells whether a statfs f_type is cgroupfs (v1 or v2).
func IsCgroupMagic(magic int64) bool {
	return magic == unix.CGROUP_SUPER_MAGIC || magic == unix.CGROUP2_SUPER_MAGIC
}

func fsMagic(fd int) (int64, error) {
	var st unix.Statfs_t
	for {
		err := unix.Fstatfs(fd, &st)
		if err == unix.EINTR {
			continue
		}
		return int64(st.Type), err
	}
}

func checkCgroupFS(fd int, name string) error {
	m, err := fsMagic(fd)
	if err != nil {
		return fmt.Errorf("fstatfs %s: %w", name, err)
	}
	if !IsCgroupMagic(m) && anyFS.Load() == 0 {
		return fmt.Errorf("%s: %w (filesystem magic %#x)", name, ErrNotCgroup, m)
	}
	return nil
}

// openat2 retries EINTR and the EAGAIN openat2 returns when a rename raced
// with a RESOLVE_IN_ROOT/BENEATH walk. Where openat2 does not exist (Linux
// before 5.6, or a seccomp profile without it) the same rules are kept by a
// walk of one openat(2) per component (walk).
func openat2(dirfd int, p string, how *unix.OpenHow) (int, error) {
	if noOpenat2.Load() {
		return walk(dirfd, p, how)
	}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dirfd, p, how)
		if (err == unix.EINTR || err == unix.EAGAIN) && i < 8 {
			continue
		}
		if err == unix.ENOSYS {
			noOpenat2.Store(true)
			return walk(dirfd, p, how)
		}
		return fd, err
	}
}

// noOpenat2 is set once openat2 returned ENOSYS (and by tests).
var noOpenat2 atomic.Bool

// walk resolves p beneath dirfd the way openat2 does with
// RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS: ".." is
// resolved lexically first (exact, since no symlink is ever followed) and
// cannot climb above dirfd; each component is opened with O_NOFOLLOW, so a
// symlink or a /proc magic link anywhere is refused (ELOOP); every
// intermediate component must be a directory. RESOLVE_NO_XDEV has no
// equivalent here: callers check that a file is on its directory's
// filesystem (same st_dev).
func walk(dirfd int, p string, how *unix.OpenHow) (int, error) {
	clean := strings.TrimLeft(path.Clean("/"+p), "/")
	if clean == "" {
		clean = "."
	}
	comps := strings.Split(clean, "/")
	cur, owned := dirfd, false
	defer func() {
		if owned {
			unix.Close(cur)
		}
	}()
	for i, c := range comps {
		last := i == len(comps)-1
		flags := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			flags = int(how.Flags) | unix.O_NOFOLLOW
		}
		var fd int
		var err error
		for {
			fd, err = unix.Openat(cur, c, flags, 0)
			if err != unix.EINTR {
				break
			}
		}
		if err != nil {
			var st unix.Stat_t
			if err == unix.ENOTDIR && unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP // as openat2 says of a symlink
			}
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(fd)
			return -1, unix.ELOOP
		}
		if owned {
			unix.Close(cur)
		}
		cur, owned = fd, true
	}
	owned = false
	return cur, nil
}

// Dir is a verified cgroupfs directory, held open with O_PATH.
type Dir struct {
	fd   int
	name string
	ino  uint64
	dev  uint64
}

// OpenDir opens rel beneath root and verifies that it is a cgroupfs
// directory. root is trusted and resolved normally; rel is not: it is
// resolved with RESOLVE_IN_ROOT and no symlink of any kind is followed.
func OpenDir(root, rel string) (*Dir, error) {
	name := Join(root, rel)
	rfd, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rfd)
	r := strings.TrimLeft(path.Clean("/"+rel), "/")
	if r == "" {
		r = "."
	}
	fd, err := openat2(rfd, r, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: inRoot})
	if err != nil {
		return nil, fmt.Errorf("open cgroup directory %s: %w", name, err)
	}
	d, err := verifyDir(fd, name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return d, nil
}

func openRoot(root string) (int, error) {
	for {
		fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("open root %s: %w", root, err)
		}
		return fd, nil
	}
}

func verifyDir(fd int, name string) (*Dir, error) {
	if err := checkCgroupFS(fd, name); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("fstat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("%s: not a directory", name)
	}
	return &Dir{fd: fd, name: name, ino: st.Ino, dev: st.Dev}, nil
}

// Join names root/rel for messages, the way the kernel would resolve it
// beneath root.
func Join(root, rel string) string {
	r := strings.TrimLeft(path.Clean("/"+rel), "/")
	if r == "" {
		return root
	}
	return strings.TrimRight(root, "/") + "/" + r
}

// Name returns the directory's path, for messages.
func (d *Dir) Name() string { return d.name }

// Ino returns the directory's inode number, the cgroup's id.
func (d *Dir) Ino() uint64 { return d.ino }

// Close closes the directory.
func (d *Dir) Close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%q: %w", name, ErrBadName)
	}
	return nil
}

// Open opens the control file name of the directory for reading: a regular
// file on the directory's own cgroupfs mount, reached by that one name
// without following any link.
func (d *Dir) Open(name string) (*File, error) {
	return d.open(name, unix.O_RDONLY)
}

func (d *Dir) open(name string, mode int) (*File, error) {
	full := d.name + "/" + name
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("open %s: %w", d.name, err)
	}
	if noOpenat2.Load() {
		// Without RESOLVE_NO_XDEV, look before opening: a device or FIFO
		// bind-mounted over the name is refused before open(2) can touch
		// it (the inode is checked again after the open).
		pfd, err := walk(d.fd, name, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC})
		if err != nil {
			return nil, &pathError{op: "open", path: full, err: err}
		}
		err = d.verifyFile(pfd, full)
		unix.Close(pfd)
		if err != nil {
			return nil, err
		}
	}
	fd, err := openat2(d.fd, name, &unix.OpenHow{Flags: uint64(mode | openFlags), Resolve: beneath})
	if err != nil {
		return nil, &pathError{op: "open", path: full, err: err}
	}
	if err := d.verifyFile(fd, full); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &File{fd: fd, name: full}, nil
}

func (d *Dir) verifyFile(fd int, full string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat %s: %w", full, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s: %w (mode %#o)", full, ErrNotRegular, st.Mode&unix.S_IFMT)
	}
	if st.Dev != d.dev {
		return fmt.Errorf("%s: %w (on another filesystem than its directory)", full, ErrNotRegular)
	}
	return checkCgroupFS(fd, full)
}

// Has tells whether the directory holds a control file called name (a
// regular file on its mount). It opens nothing for reading.
func (d *Dir) Has(name string) bool {
	if validName(name) != nil {
		return false
	}
	fd, err := openat2(d.fd, name, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW, Resolve: beneath})
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return d.verifyFile(fd, d.name+"/"+name) == nil
}

// ReadFile reads the control file name whole, at most limit bytes.
func (d *Dir) ReadFile(name string, limit int) ([]byte, error) {
	f, err := d.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadAll(nil, limit)
}

// WriteControl writes data, in one write, to the control file name of the
// directory (cgroup v1 cgroup.event_control). The file must pass every
// check Open makes; it is never created or truncated.
func (d *Dir) WriteControl(name string, data []byte) error {
	f, err := d.open(name, unix.O_WRONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		n, err := unix.Write(f.fd, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &pathError{op: "write", path: f.name, err: err}
		}
		if n != len(data) {
			return fmt.Errorf("write %s: short write (%d of %d bytes)", f.name, n, len(data))
		}
		return nil
	}
}

// File is an open, verified file. Its reads are raw pread(2) system calls
// from offset 0: they never block (O_NONBLOCK on a regular file) and cost a
// few microseconds, so a poller can reread it on every tick.
type File struct {
	fd   int
	name string
}

// Fd returns the file's descriptor (for epoll).
func (f *File) Fd() int { return f.fd }

// Name returns the file's path, for messages.
func (f *File) Name() string { return f.name }

// Close closes the file.
func (f *File) Close() error {
	if f == nil || f.fd < 0 {
		return nil
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return err
}

// ReadAll reads the whole file from offset 0 into buf (grown as needed, up
// to limit+1 bytes) and returns the content. A file longer than limit is
// ErrTooBig. Pseudo-files report no size: reading stops at a short read.
func (f *File) ReadAll(buf []byte, limit int) ([]byte, error) {
	return preadAll(f.fd, f.name, buf, limit)
}

func preadAll(fd int, name string, buf []byte, limit int) ([]byte, error) {
	if cap(buf) == 0 {
		buf = make([]byte, min(limit+1, 512))
	}
	buf = buf[:cap(buf)]
	n := 0
	for {
		if n == len(buf) {
			if n > limit {
				return nil, fmt.Errorf("%s: %w (more than %d bytes)", name, ErrTooBig, limit)
			}
			buf = append(buf, make([]byte, min(len(buf), limit+1-len(buf)))...)
			buf = buf[:cap(buf)]
		}
		want := len(buf) - n
		m, _, errno := unix.RawSyscall6(unix.SYS_PREAD64, uintptr(fd), uintptr(unsafe.Pointer(&buf[n])), uintptr(want), uintptr(n), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return nil, &pathError{op: "read", path: name, err: errno}
		}
		n += int(m)
		if n > limit {
			return nil, fmt.Errorf("%s: %w (more than %d bytes)", name, ErrTooBig, limit)
		}
		if int(m) < want {
			return buf[:n], nil
		}
	}
}

// pathError is an error about one file; it unwraps to the errno, so
// errors.Is(err, fs.ErrNotExist) works.
type pathError struct {
	op, path string
	err      error
}

func (e *pathError) Error() string { return e.op + " " + e.path + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

// CheckProc verifies that dir is a procfs mount (PROC_SUPER_MAGIC). dir is
// oomhero's --proc: trusted as a path, checked as a filesystem.
func CheckProc(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("--proc %q: %w", dir, err)
	}
	if int64(st.Type) != unix.PROC_SUPER_MAGIC && anyFS.Load() == 0 {
		return fmt.Errorf("--proc %q: %w (filesystem magic %#x)", dir, ErrNotProc, st.Type)
	}
	return nil
}

// ReadProcFile reads a file of a verified procfs mount (/proc/<pid>/stat,
// /proc/<pid>/cgroup), at most limit bytes, without following a symlink at
// its last component and without blocking.
func ReadProcFile(name string, limit int) ([]byte, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(name, unix.O_RDONLY|unix.O_NOFOLLOW|openFlags, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &pathError{op: "open", path: name, err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &pathError{op: "fstat", path: name, err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: not a regular file (mode %#o)", name, st.Mode&unix.S_IFMT)
	}
	// procfs reads are not raw: a read of /proc/<pid>/* may take locks of
	// the process, so let the Go scheduler run others meanwhile.
	buf := make([]byte, min(limit+1, 1024))
	n := 0
	for {
		if n == len(buf) {
			if n > limit {
				return nil, fmt.Errorf("%s: %w (more than %d bytes)", name, ErrTooBig, limit)
			}
			buf = append(buf, make([]byte, min(len(buf), limit+1-len(buf)))...)
			buf = buf[:cap(buf)]
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &pathError{op: "read", path: name, err: err}
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
		if n > limit {
			return nil, fmt.Errorf("%s: %w (more than %d bytes)", name, ErrTooBig, limit)
		}
	}
}
