package discover

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
	"github.com/oomhero/oomhero/internal/watch"
)

// TestHostileNeighbours: next to a good container, processes whose view is
// hostile (FIFOs, symlinks to /dev/zero, to another container's cgroup and
// up out of their root, a huge sparse cgroup.procs), a process whose stat
// is malformed and one that names itself with invalid UTF-8 and control
// characters. The scan goes on, the bad process is reported once, every
// hostile resolve fails fast, and the good container resolves unchanged.
func TestHostileNeighbours(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n")
	f.v1dir("10/root/sys/fs/cgroup/memory", 256<<20, unlimitedV1, 10)

	// 20: FIFOs and device symlinks where the control files are.
	f.proc(20, 0, "fifo", "4:memory:/pod/fifo\n")
	d20 := filepath.Join(f.root, "20/root/sys/fs/cgroup/memory")
	must(t, os.MkdirAll(d20, 0o755))
	must(t, unix.Mkfifo(filepath.Join(d20, "cgroup.procs"), 0o644))
	must(t, os.Symlink("/dev/zero", filepath.Join(d20, "memory.stat")))
	must(t, os.Symlink("/dev/zero", filepath.Join(d20, "memory.limit_in_bytes")))
	must(t, os.MkdirAll(filepath.Join(d20, "pod/fifo"), 0o755))
	must(t, os.Symlink("/dev/zero", filepath.Join(d20, "pod/fifo/cgroup.procs")))
	// 21: its cgroup view is a symlink into the good container's, and
	// its cgroup path climbs.
	f.proc(21, 0, "thief", "4:memory:/../../10/root/sys/fs/cgroup/memory\n")
	must(t, os.MkdirAll(filepath.Join(f.root, "21/root/sys/fs"), 0o755))
	must(t, os.Symlink(filepath.Join(f.root, "10/root/sys/fs/cgroup"), filepath.Join(f.root, "21/root/sys/fs/cgroup")))
	// 22: a 1 TiB sparse cgroup.procs.
	f.proc(22, 0, "sparse", "4:memory:/pod/sparse\n")
	f.v1dir("22/root/sys/fs/cgroup/memory", 256<<20, unlimitedV1)
	must(t, os.Truncate(filepath.Join(f.root, "22/root/sys/fs/cgroup/memory/cgroup.procs"), 1<<40))
	// 30: malformed stat. 40: a name with invalid UTF-8 and a newline.
	f.proc(30, 0, "bad", "4:memory:/pod/bad\n")
	f.write("30/stat", "30 bad S 1 2\n")
	f.proc(40, 0, "\xff\xfex\nlevel=critical", "4:memory:/pod/evil\n")
	f.v1dir("40/root/sys/fs/cgroup/memory", 64<<20, unlimitedV1, 40)

	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := s.Scan()
	if err != nil {
		t.Fatalf("one bad process failed the scan: %v", err)
	}
	sk := s.Skipped()
	if len(sk) != 1 || sk[0].PID != 30 {
		t.Fatalf("skipped %v, want pid 30 once", sk)
	}
	if _, err := s.Scan(); err != nil || len(s.Skipped()) != 0 {
		t.Fatalf("second scan: %v, skipped again %v", err, s.Skipped())
	}
	r := Resolver{Proc: f.root}
	for _, path := range []string{"/pod/fifo", "/../../10/root/sys/fs/cgroup/memory", "/pod/sparse"} {
		g := groups[path]
		if g == nil {
			t.Fatalf("group %s missing: %v", path, groups)
		}
		start := time.Now()
		done := make(chan error, 1)
		go func() { _, err := r.Resolve(g); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s resolved", path)
			}
			t.Logf("%s: %v (%v)", path, err, time.Since(start).Round(time.Microsecond))
		case <-time.After(2 * time.Second):
			t.Fatalf("Resolve(%s) blocked", path)
		}
	}
	c, err := r.Resolve(groups["/pod/app"])
	if err != nil || c.Limit != 256<<20 || c.Version != watch.V1 {
		t.Fatalf("good container: %+v %v", c, err)
	}
	evil := groups["/pod/evil"]
	if comm := evil.Procs[0].Comm; !utf8.ValidString(comm) || strings.ContainsAny(comm, "\n\r") {
		t.Fatalf("comm not cleaned: %q", comm)
	}
	c, err = r.Resolve(evil)
	if err != nil || !utf8.ValidString(c.Name) || strings.ContainsAny(c.Name, "\n\r") {
		t.Fatalf("evil container: name %q, %v", c.Name, err)
	}
}

// TestRecycledPID: a PID that now names another process (new start time,
// command and cgroup) is noticed by a later scan within revalidateEvery
// scans, and a group still holding the old process does not resolve
// through the new one.
func TestRecycledPID(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n")
	f.proc(11, 10, "worker", "4:memory:/pod/app\n")
	f.v1dir("10/root/sys/fs/cgroup/memory", 256<<20, unlimitedV1, 10)
	f.v1dir("11/root/sys/fs/cgroup/memory", 256<<20, unlimitedV1, 10, 11)
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	groups, _ := s.Scan()
	old := groups["/pod/app"]
	if !slices.Equal(old.PIDs(), []int{10, 11}) {
		t.Fatalf("%v", old.PIDs())
	}
	// 11 exits; its PID goes to a process of another container.
	f.write("11/stat", fmt.Sprintf("11 (intruder) S 1 11 11 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 1000 10 0", 999999))
	f.write("11/cgroup", "4:memory:/pod/other\n")
	f.v1dir("11/root/sys/fs/cgroup/memory", 32<<20, unlimitedV1, 11)
	// Resolving the stale group through 11 would find the other
	// container's cgroup: refused, and 10 still resolves it.
	stale := &Group{Path: "/pod/app", Version: watch.V1, Procs: []Process{old.Procs[1]}}
	// Its process is gone (the PID names another one now): ErrExited.
	if c, err := (Resolver{Proc: f.root}).Resolve(stale); err == nil || !errors.Is(err, ErrExited) {
		t.Fatalf("stale process resolved: %+v %v", c, err)
	}
	for i := 0; ; i++ {
		groups, _ = s.Scan()
		if o := groups["/pod/other"]; o != nil && o.Procs[0].Comm == "intruder" && o.Procs[0].Start == 999999 {
			if !slices.Equal(groups["/pod/app"].PIDs(), []int{10}) {
				t.Fatalf("app still holds %v", groups["/pod/app"].PIDs())
			}
			t.Logf("noticed after %d scans", i+1)
			break
		}
		if i > revalidateEvery {
			t.Fatalf("recycled PID not noticed after %d scans", i)
		}
	}
}

// TestRealScanAndResolve scans this host's procfs and resolves a real
// memory cgroup holding a real process, through its /proc/<pid>/root and
// through the host's cgroupfs (node mode).
func TestRealScanAndResolve(t *testing.T) {
	c := labtest.Cgroup(t, 48*lab.MiB)
	l := labtest.Leaker(t, c)
	s, err := NewScanner("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	groups, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range s.Skipped() {
		t.Logf("skipped: %d: %v", k.PID, k.Err)
	}
	var g *Group
	for _, x := range groups {
		if slices.Contains(x.PIDs(), l.Pid()) {
			g = x
		}
	}
	if g == nil {
		t.Fatalf("leaker %d not in any group (%d groups)", l.Pid(), len(groups))
	}
	cgroupfs := c.Dir.Root // v2: the unified root
	if c.Version == watch.V1 {
		cgroupfs = filepath.Dir(c.Dir.Root) // above "memory"
	}
	for _, r := range []Resolver{{Proc: "/proc"}, {Proc: "/proc", CgroupRoot: cgroupfs}} {
		got, err := r.Resolve(g)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if got.ID != c.ID || got.Limit != c.Limit || got.Version != c.Version {
			t.Fatalf("%+v: resolved %+v, want id %d limit %d", r, got, c.ID, c.Limit)
		}
		t.Logf("%s resolved through %s (id %d)", g.Path, got.Dir, got.ID)
	}
	// The same group with a start time that is not the process's: refused.
	bad := *g
	bad.Procs = []Process{{PID: l.Pid(), Start: g.Procs[0].Start + 1}}
	if _, err := (Resolver{Proc: "/proc"}).Resolve(&bad); err == nil {
		t.Fatal("a group with a wrong start time resolved")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	lab.MaybeLeaker()
	os.Exit(m.Run())
}

func TestCleanErr(t *testing.T) {
	long := strings.Repeat("x", 600)
	for in, want := range map[string]string{"a\nb\xffc": "a?b?c", "ok é": "ok é", "\x1b[31m" + long: "?[31m" + long} {
		if got := cleanErr(fmt.Errorf("%s", in)); got != want {
			t.Errorf("cleanErr(%q) = %q, want %q", in, got, want)
		}
	}
}
