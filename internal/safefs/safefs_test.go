package safefs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hostile lays out a fake cgroup directory the way a root process in a
// container can: good control files next to a FIFO, symlinks to a device,
// to a file outside and to a directory outside, a huge sparse file and a
// device node. It returns the tree's root, the directory's path relative
// to it, and the outside file that must never change.
func hostile(t *testing.T) (root, rel, outside string) {
	t.Helper()
	root, out := t.TempDir(), t.TempDir()
	rel = "sys/fs/cgroup/memory"
	d := filepath.Join(root, rel)
	must(t, os.MkdirAll(d, 0o755))
	outside = filepath.Join(out, "precious")
	must(t, os.WriteFile(outside, []byte("do not touch\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(out, "dir"), 0o755))
	must(t, os.WriteFile(filepath.Join(out, "dir", "memory.max"), []byte("1\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(d, "memory.max"), []byte("1048576\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(d, "cgroup.event_control"), nil, 0o644))
	must(t, unix.Mkfifo(filepath.Join(d, "cgroup.procs"), 0o644))
	must(t, os.Symlink("/dev/zero", filepath.Join(d, "memory.stat")))
	must(t, os.Symlink(outside, filepath.Join(d, "memory.oom_control")))
	must(t, os.Symlink(outside, filepath.Join(d, "memory.events")))
	must(t, os.Symlink(filepath.Join(out, "dir"), filepath.Join(d, "evil")))
	must(t, os.Symlink("../../../../../../..", filepath.Join(d, "up")))
	f, err := os.Create(filepath.Join(d, "memory.current"))
	must(t, err)
	must(t, f.Truncate(1<<40)) // 1 TiB, sparse
	f.Close()
	if os.Geteuid() == 0 {
		must(t, unix.Mknod(filepath.Join(d, "memory.pressure"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5)))) // /dev/zero
	}
	return root, rel, outside
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// within runs f and fails the test if it takes more than a second (a
// FIFO or a device would block it).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatalf("%s: blocked", what)
	}
}

// bothWalks runs f with openat2 and with the openat walk used where
// openat2 is missing: both keep the same rules.
func bothWalks(t *testing.T, f func(t *testing.T)) {
	for _, fallback := range []bool{false, true} {
		name := "openat2"
		if fallback {
			name = "walk"
		}
		t.Run(name, func(t *testing.T) {
			old := noOpenat2.Load()
			noOpenat2.Store(fallback)
			defer noOpenat2.Store(old)
			f(t)
		})
	}
}

func TestHostileTree(t *testing.T) { bothWalks(t, testHostileTree) }

func testHostileTree(t *testing.T) {
	t.Cleanup(AllowAnyFilesystem())
	root, rel, outside := hostile(t)
	d, err := OpenDir(root, rel)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if b, err := d.ReadFile("memory.max", LimitValue); err != nil || string(b) != "1048576\n" {
		t.Fatalf("good file: %q %v", b, err)
	}
	for _, tc := range []struct {
		name string
		want error
	}{
		{"cgroup.procs", ErrNotRegular},    // FIFO: opened O_NONBLOCK, refused by type
		{"memory.stat", unix.ELOOP},        // symlink to /dev/zero: not followed
		{"memory.oom_control", unix.ELOOP}, // symlink to a file outside
		{"memory.events", unix.ELOOP},
		{"memory.current", ErrTooBig}, // 1 TiB sparse: refused after LimitSmall+1 bytes
		{"evil/memory.max", ErrBadName},
		{"../memory/memory.max", ErrBadName},
		{"..", ErrBadName},
		{"up", unix.ELOOP},
		{"missing", fs.ErrNotExist},
	} {
		within(t, tc.name, func() {
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			b, err := d.ReadFile(tc.name, LimitSmall)
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: read %d bytes, err %v; want %v", tc.name, len(b), err, tc.want)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
				t.Errorf("%s: allocated %d bytes", tc.name, grew)
			}
		})
	}
	if os.Geteuid() == 0 {
		within(t, "device node", func() {
			if _, err := d.ReadFile("memory.pressure", LimitSmall); !errors.Is(err, ErrNotRegular) {
				t.Errorf("device node: %v, want ErrNotRegular", err)
			}
		})
	}
	// Writes: only to a regular file of the directory, never through a
	// link, never blocking, never creating.
	for _, name := range []string{"memory.oom_control", "memory.events", "cgroup.procs", "memory.stat", "new-file", "evil/memory.max"} {
		within(t, "write "+name, func() {
			if err := d.WriteControl(name, []byte("3 4")); err == nil {
				t.Errorf("WriteControl(%s) succeeded", name)
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(root, rel, "new-file")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteControl created a file: %v", err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "do not touch\n" {
		t.Fatalf("the outside file changed: %q", b)
	}
	if err := d.WriteControl("cgroup.event_control", []byte("3 4")); err != nil {
		t.Errorf("WriteControl to the real control file: %v", err)
	}
}

// TestDirectoryWalkStaysInRoot: symlinked directories are not followed and
// ".." cannot climb above the root.
func TestDirectoryWalkStaysInRoot(t *testing.T) { bothWalks(t, testDirectoryWalkStaysInRoot) }

func testDirectoryWalkStaysInRoot(t *testing.T) {
	t.Cleanup(AllowAnyFilesystem())
	root, rel, _ := hostile(t)
	for _, bad := range []string{rel + "/evil", rel + "/up", rel + "/up/etc"} {
		if d, err := OpenDir(root, bad); err == nil {
			d.Close()
			t.Errorf("OpenDir(%s) followed a symlink", bad)
		}
	}
	// ".." at the root stays at the root: this names root/sys, never /sys.
	d, err := OpenDir(root, "../../../sys")
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	must(t, unix.Stat(filepath.Join(root, "sys"), &st))
	if d.Ino() != st.Ino {
		t.Errorf("../../../sys resolved outside the root")
	}
	d.Close()
	// The whole container view may be a symlink farm: sys -> /sys.
	root2 := t.TempDir()
	must(t, os.Symlink("/sys", filepath.Join(root2, "sys")))
	if d, err := OpenDir(root2, "sys/fs/cgroup/memory"); err == nil {
		d.Close()
		t.Error("OpenDir through a symlink to /sys succeeded")
	}
}

// TestFakeCgroupOnOtherFilesystem: a directory laid out like a cgroup on
// any filesystem but cgroupfs (a container's tmpfs, its overlay root) is
// refused, and so are its files.
func TestFakeCgroupOnOtherFilesystem(t *testing.T) {
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		// A real tmpfs, as a container would mount over its /sys/fs/cgroup.
		must(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"))
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	}
	must(t, os.WriteFile(filepath.Join(dir, "memory.max"), []byte("1\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("1\n"), 0o644))
	if _, err := OpenDir(dir, ""); !errors.Is(err, ErrNotCgroup) {
		t.Fatalf("OpenDir on a fake tree: %v, want ErrNotCgroup", err)
	}
	if err := CheckProc(dir); !errors.Is(err, ErrNotProc) {
		t.Fatalf("CheckProc on a fake tree: %v, want ErrNotProc", err)
	}
	if err := CheckProc("/sys"); !errors.Is(err, ErrNotProc) {
		t.Fatalf("CheckProc(/sys): %v, want ErrNotProc", err)
	}
	if err := CheckProc("/proc"); err != nil {
		t.Fatalf("CheckProc(/proc): %v", err)
	}
}

// TestRealCgroupfs opens this host's cgroup mounts through the same calls
// oomhero uses, and refuses the symlinks cgroupfs hosts carry (v1 "cpu" ->
// "cpu,cpuacct").
func TestRealCgroupfs(t *testing.T) { bothWalks(t, testRealCgroupfs) }

func testRealCgroupfs(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Skip(err)
	}
	found := false
	for _, rel := range []string{"sys/fs/cgroup/memory", "sys/fs/cgroup/unified", "sys/fs/cgroup"} {
		d, err := OpenDir("/", rel)
		if err != nil {
			continue
		}
		found = true
		names := []string{"cgroup.procs", "memory.limit_in_bytes", "memory.stat", "memory.max", "cgroup.controllers"}
		for _, n := range names {
			if !d.Has(n) {
				continue
			}
			b, err := d.ReadFile(n, LimitProcs)
			if err != nil {
				t.Errorf("%s/%s: %v", d.Name(), n, err)
			}
			t.Logf("%s/%s: %d bytes", d.Name(), n, len(b))
		}
		d.Close()
	}
	if !found {
		if os.Getenv("CI") == "true" {
			t.Fatal("no cgroupfs under /sys/fs/cgroup (CI=true)")
		}
		t.Skip("no cgroupfs under /sys/fs/cgroup")
	}
	if fi, err := os.Lstat("/sys/fs/cgroup/cpu"); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if d, err := OpenDir("/", "sys/fs/cgroup/cpu"); err == nil {
			d.Close()
			t.Error("OpenDir followed the cpu -> cpu,cpuacct symlink")
		}
	}
}

// TestBindMountOverControlFile: a file bind-mounted over a control file
// (another container's file, a host file) is on another mount: refused
// for reading and writing.
func TestBindMountOverControlFile(t *testing.T) { bothWalks(t, testBindMountOverControlFile) }

func testBindMountOverControlFile(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (CI=true)")
		}
		t.Skip("needs root")
	}
	var cg string
	for _, c := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var st unix.Statfs_t
		if unix.Statfs(c, &st) == nil && IsCgroupMagic(int64(st.Type)) {
			cg = c
			break
		}
	}
	if cg == "" {
		t.Skip("no cgroupfs")
	}
	dir := filepath.Join(cg, "oomhero-safefs-test")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	defer os.Remove(dir)
	victim := filepath.Join(t.TempDir(), "precious")
	must(t, os.WriteFile(victim, []byte("do not touch\n"), 0o644))
	target := filepath.Join(dir, "cgroup.procs")
	must(t, unix.Mount(victim, target, "", unix.MS_BIND, ""))
	defer unix.Unmount(target, unix.MNT_DETACH)
	d, err := OpenDir(cg, "oomhero-safefs-test")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// openat2 says EXDEV (RESOLVE_NO_XDEV); the walk sees another st_dev.
	if _, err := d.ReadFile("cgroup.procs", LimitProcs); !errors.Is(err, unix.EXDEV) && !errors.Is(err, ErrNotRegular) {
		t.Errorf("read through a bind mount: %v, want EXDEV or ErrNotRegular", err)
	}
	if err := d.WriteControl("cgroup.procs", []byte("1")); !errors.Is(err, unix.EXDEV) && !errors.Is(err, ErrNotRegular) {
		t.Errorf("write through a bind mount: %v, want EXDEV or ErrNotRegular", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "do not touch\n" {
		t.Fatalf("the bind-mounted file changed: %q", b)
	}
}

func TestReadProcFile(t *testing.T) {
	b, err := ReadProcFile("/proc/self/stat", LimitProcStat)
	if err != nil || !strings.Contains(string(b), ")") {
		t.Fatalf("/proc/self/stat: %q %v", b, err)
	}
	if _, err := ReadProcFile("/proc/self/exe", LimitProcStat); err == nil {
		t.Fatal("/proc/self/exe (a magic link) was followed")
	}
	if _, err := ReadProcFile("/proc/self/maps", 16); !errors.Is(err, ErrTooBig) {
		t.Fatalf("/proc/self/maps over 16 bytes: %v, want ErrTooBig", err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	must(t, unix.Mkfifo(fifo, 0o644))
	within(t, "FIFO", func() {
		if _, err := ReadProcFile(fifo, 16); err == nil {
			t.Error("FIFO read")
		}
	})
}

func TestJoinAndNames(t *testing.T) {
	for _, tc := range []struct{ root, rel, want string }{
		{"/proc/1/root", "sys/fs/cgroup", "/proc/1/root/sys/fs/cgroup"},
		{"/proc/1/root", "/sys/../../etc", "/proc/1/root/etc"},
		{"/", "sys/fs/cgroup/memory", "/sys/fs/cgroup/memory"},
		{"/host", "", "/host"},
	} {
		if got := Join(tc.root, tc.rel); got != tc.want {
			t.Errorf("Join(%q, %q) = %q, want %q", tc.root, tc.rel, got, tc.want)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "/x", "a\x00b"} {
		if validName(bad) == nil {
			t.Errorf("validName(%q) accepted", bad)
		}
	}
}

// FuzzOpenDirStaysInRoot: whatever relative path a container's view or a
// cgroup path holds, what OpenDir opens is a directory of the tree beneath
// the root, never one outside it.
func FuzzOpenDirStaysInRoot(f *testing.F) {
	for _, s := range []string{"", ".", "..", "sys/fs/cgroup/memory", "../../..", "sys/fs/cgroup/memory/evil",
		"sys/fs/cgroup/memory/up/tmp", "/proc/self/root", "sys//fs/./cgroup/../cgroup", "\x00", "a/\xff/b"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, rel string, fallback bool) {
		t.Cleanup(AllowAnyFilesystem())
		old := noOpenat2.Load()
		noOpenat2.Store(fallback)
		defer noOpenat2.Store(old)
		root, _, _ := hostileOnce(t)
		inside := map[uint64]bool{}
		filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				var st unix.Stat_t
				if unix.Lstat(p, &st) == nil {
					inside[st.Ino] = true
				}
			}
			return nil
		})
		d, err := OpenDir(root, rel)
		if err != nil {
			return
		}
		defer d.Close()
		if !inside[d.Ino()] {
			t.Fatalf("OpenDir(root, %q) opened %s (inode %d), not a directory of the tree", rel, d.Name(), d.Ino())
		}
	})
}

var hostileRoot string

// hostileOnce builds one hostile tree for the whole fuzz run.
func hostileOnce(t *testing.T) (string, string, string) {
	if hostileRoot == "" {
		dir, err := os.MkdirTemp("", "safefs-fuzz-")
		if err != nil {
			t.Fatal(err)
		}
		hostileRoot = dir
		must(t, os.MkdirAll(filepath.Join(dir, "sys/fs/cgroup/memory"), 0o755))
		os.Symlink("/tmp", filepath.Join(dir, "sys/fs/cgroup/memory/evil"))
		os.Symlink("../../../../..", filepath.Join(dir, "sys/fs/cgroup/memory/up"))
	}
	return hostileRoot, "sys/fs/cgroup/memory", ""
}

func TestMain(m *testing.M) {
	code := m.Run()
	if hostileRoot != "" {
		os.RemoveAll(hostileRoot)
	}
	os.Exit(code)
}
