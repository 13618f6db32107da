package discover

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

// fakeProc builds a procfs-like tree: each process has stat, status, cgroup
// and a root/ whose sys/fs/cgroup shows its container's cgroup.
type fakeProc struct {
	t    *testing.T
	root string
}

// newFake makes a fake procfs tree in a temporary directory; the test lets
// safefs accept its filesystem (every other check still applies).
func newFake(t *testing.T) fakeProc {
	t.Cleanup(safefs.AllowAnyFilesystem())
	// Its start times are a few seconds after boot: no process is old by
	// age, only by scans (TestYoungByAge sets a clock).
	clock := bootClock
	bootClock = func() uint64 { return 0 }
	t.Cleanup(func() { bootClock = clock })
	// One revalidation slot per full scan (as the scans of a real
	// procfs a second apart).
	slots, scans := slotClock, int64(0)
	slotClock = func() int64 { scans++; return scans }
	t.Cleanup(func() { slotClock = slots })
	return fakeProc{t: t, root: t.TempDir()}
}

func (f fakeProc) write(rel, content string) {
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// proc adds a process. cg is its /proc/<pid>/cgroup content.
func (f fakeProc) proc(pid, ppid int, comm, cg string) {
	d := fmt.Sprint(pid)
	// Fields 3.. of a real stat line: start time is field 22.
	rest := fmt.Sprintf("S %d %d %d 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 1000 10 18446744073709551615", ppid, pid, pid, 1000+pid)
	for range 30 {
		rest += " 0"
	}
	f.write(d+"/stat", fmt.Sprintf("%d (%s) %s\n", pid, comm, rest))
	f.write(d+"/cgroup", cg)
	f.write(d+"/status", fmt.Sprintf("Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t%d\nNgid:\t0\nPid:\t%d\nPPid:\t%d\n", comm, pid, pid, ppid))
}

// thread makes tid a thread of process pid: its directory opens (as a
// thread's does in a real procfs, though no listing shows it).
func (f fakeProc) thread(pid, tid int, comm, cg string) {
	f.proc(tid, 0, comm, cg)
	f.write(fmt.Sprint(tid)+"/status", fmt.Sprintf("Name:\t%s\nTgid:\t%d\nPid:\t%d\n", comm, pid, tid))
}

// scan lists the fake procfs as process self (oomhero) sees it.
func (f fakeProc) scan(self int) map[string]*Group {
	f.t.Helper()
	s, err := NewScanner(f.root, self)
	if err != nil {
		f.t.Fatal(err)
	}
	groups, err := s.Scan()
	if err != nil {
		f.t.Fatal(err)
	}
	return groups
}

// v1dir fills a cgroup v1 memory directory seen through pid's root.
func (f fakeProc) v1dir(rel string, limit uint64, hier uint64, pids ...int) {
	procs := ""
	for _, p := range pids {
		procs += fmt.Sprintf("%d\n", p)
	}
	f.write(rel+"/cgroup.procs", procs)
	f.write(rel+"/memory.usage_in_bytes", "1000\n")
	f.write(rel+"/memory.limit_in_bytes", fmt.Sprintf("%d\n", limit))
	f.write(rel+"/memory.stat", fmt.Sprintf("cache 1\nrss 2\nhierarchical_memory_limit %d\ntotal_rss 3\ntotal_inactive_file 4\n", hier))
	f.write(rel+"/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
}

func (f fakeProc) v2dir(rel, max string, pids ...int) {
	procs := ""
	for _, p := range pids {
		procs += fmt.Sprintf("%d\n", p)
	}
	f.write(rel+"/cgroup.procs", procs)
	f.write(rel+"/memory.current", "1000\n")
	f.write(rel+"/memory.max", max+"\n")
	f.write(rel+"/memory.stat", "anon 3\nfile 9\ninactive_file 4\n")
	f.write(rel+"/memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
}

const unlimitedV1 = 9223372036854771712

func TestScanAndResolve(t *testing.T) {
	f := newFake(t)
	// Pod infrastructure (pid 1), oomhero itself (pid 50), an app with a
	// child (v1, limited), a v2 container, an unlimited one.
	f.proc(1, 0, "catatonit", "4:memory:/pod/infra\n0::/pod/infra\n")
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n0::/\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n1:name=systemd:/x\n0::/pod/app\n")
	f.proc(11, 10, "worker", "4:memory:/pod/app\n0::/pod/app\n")
	f.proc(20, 0, "v2app", "0::/pod/v2\n")
	f.proc(30, 0, "free", "4:memory:/pod/free\n0::/pod/free\n")
	f.v1dir("10/root/sys/fs/cgroup/memory", 256<<20, unlimitedV1, 10, 11)
	f.v1dir("11/root/sys/fs/cgroup/memory", 256<<20, unlimitedV1, 10, 11)
	f.v2dir("20/root/sys/fs/cgroup", "134217728", 20)
	f.v1dir("30/root/sys/fs/cgroup/memory", unlimitedV1, unlimitedV1, 30)

	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range groups {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(got, []string{"/pod/app", "/pod/free", "/pod/v2"}) {
		t.Fatalf("groups %v: want app, free, v2 (infra pid 1 and oomhero's own cgroup left out)", got)
	}
	app := groups["/pod/app"]
	if !slices.Equal(app.PIDs(), []int{10, 11}) || app.Main().PID != 10 || app.Version != watch.V1 {
		t.Fatalf("app group %+v", app)
	}
	if app.Procs[0].Start != 1010 {
		t.Fatalf("start time %d", app.Procs[0].Start)
	}
	r := Resolver{Proc: f.root}
	c, err := r.Resolve(app)
	if err != nil {
		t.Fatal(err)
	}
	wantDir := filepath.Join(f.root, "10/root/sys/fs/cgroup/memory")
	id, _ := cgroup.ID(watch.CgroupDir{Root: wantDir})
	if c.Dir.String() != wantDir || c.ID != id || c.Limit != 256<<20 || c.Version != watch.V1 || c.Name != "app@app" {
		t.Fatalf("app container %+v", c)
	}
	c, err = r.Resolve(groups["/pod/v2"])
	if err != nil || c.Version != watch.V2 || c.Limit != 128<<20 {
		t.Fatalf("v2 container %+v %v", c, err)
	}
	if _, err = r.Resolve(groups["/pod/free"]); !errors.Is(err, watch.ErrNoLimit) {
		t.Fatalf("unlimited container: want ErrNoLimit, got %v", err)
	}

	// A process exits, a new one arrives: the next scan sees both changes.
	os.RemoveAll(filepath.Join(f.root, "11"))
	f.proc(12, 10, "worker2", "4:memory:/pod/app\n0::/pod/app\n")
	groups, err = s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if got := groups["/pod/app"].PIDs(); !slices.Equal(got, []int{10, 12}) {
		t.Fatalf("after churn: %v", got)
	}
}

func TestResolveParentLimitV1(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n")
	// The container has no limit of its own; the pod-level parent has 64 MiB.
	f.v1dir("10/root/sys/fs/cgroup/memory", unlimitedV1, 64<<20, 10)
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := s.Scan()
	c, err := Resolver{Proc: f.root}.Resolve(g["/pod/app"])
	if err != nil || c.Limit != 64<<20 {
		t.Fatalf("got %+v %v", c, err)
	}
}

func TestResolveParentLimitV2HostRoot(t *testing.T) {
	f := newFake(t)
	host := t.TempDir()
	f.proc(50, 0, "oomhero", "0::/agent\n")
	f.proc(10, 0, "app", "0::/kubepods/pod1/ctr\n")
	hp := fakeProc{t: t, root: host}
	hp.v2dir("kubepods/pod1/ctr", "max", 10)
	hp.write("kubepods/pod1/memory.max", "100000000\n")
	hp.write("kubepods/memory.max", "max\n")
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := s.Scan()
	c, err := Resolver{Proc: f.root, CgroupRoot: host}.Resolve(g["/kubepods/pod1/ctr"])
	if err != nil || c.Limit != 100000000 || c.Dir.String() != filepath.Join(host, "kubepods/pod1/ctr") {
		t.Fatalf("got %+v %v", c, err)
	}
}

func TestName(t *testing.T) {
	for _, tc := range []struct{ comm, path, want string }{
		{"java", "/machine.slice/libpod-0123456789abcdef0123.scope", "java@0123456789ab"},
		{"app", "/kubepods/burstable/podX/cri-containerd-abcdef.scope", "app@abcdef"},
		{"app", "/", "app"},
	} {
		if got := Name(tc.comm, tc.path); got != tc.want {
			t.Errorf("Name(%q, %q) = %q, want %q", tc.comm, tc.path, got, tc.want)
		}
	}
}

// A container's first process execs after discovery met it (runc's init
// becomes the application): the next scan names the new command, whatever
// the PID's turn in the revalidation.
func TestScanFollowsExec(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n0::/\n")
	f.proc(13, 0, "runc:[2:INIT]", "4:memory:/pod/app\n0::/pod/app\n")
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	comm := func() string {
		t.Helper()
		groups, err := s.Scan()
		if err != nil {
			t.Fatal(err)
		}
		return groups["/pod/app"].Main().Comm
	}
	if c := comm(); c != "runc:[2:INIT]" {
		t.Fatalf("first scan: comm %q", c)
	}
	f.proc(13, 0, "testapp", "4:memory:/pod/app\n0::/pod/app\n") // exec: same PID and start time
	if c := comm(); c != "testapp" {
		t.Errorf("scan after the exec: comm %q, want testapp", c)
	}
	// Past its young scans a process is reread once in revalidateEvery.
	for range youngScans + 1 {
		comm()
	}
	f.proc(13, 0, "renamed", "4:memory:/pod/app\n0::/pod/app\n")
	n := 0
	for comm() != "renamed" {
		if n++; n > revalidateEvery {
			t.Fatalf("a rename not seen within %d scans", revalidateEvery)
		}
	}
}

// TestResolveV1HierarchicalLimit: on v1 the kernel's hierarchical limit is
// the effective one (an ancestor's, even one the container cannot see), and
// the ancestors are not walked when it is set: an ancestor whose limit
// cannot be read does not fail the resolve.
func TestResolveV1HierarchicalLimit(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n0::/\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n0::/pod/app\n")
	// A node agent's view of the whole hierarchy (--cgroup-root).
	f.v1dir("cg/memory/pod/app", 256<<20, 96<<20, 10)
	f.write("cg/memory/pod/memory.limit_in_bytes", "garbage\n")
	c, err := Resolver{Proc: f.root, CgroupRoot: filepath.Join(f.root, "cg")}.Resolve(f.scan(50)["/pod/app"])
	if err != nil || c.Limit != 96<<20 || c.Dir.Rel != "memory/pod/app" {
		t.Fatalf("container %+v, %v: want the hierarchical limit, 96 MiB", c, err)
	}
}

// TestRuntimeInitExecSeenAtAnyAge: a container runtime's init that waits
// for its start longer than a process stays young (podman starts a pod's
// containers one by one; one waited 20 s in CI) is still reread at every
// scan, so its exec names the group at the next scan, with or without the
// marks of quiet scans.
func TestRuntimeInitExecSeenAtAnyAge(t *testing.T) {
	for _, marks := range []bool{false, true} {
		t.Run(fmt.Sprintf("marks=%v", marks), func(t *testing.T) {
			f := newFake(t)
			f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n0::/\n")
			f.proc(10, 0, "runc:[2:INIT]", "4:memory:/pod/app\n0::/pod/app\n")
			if marks {
				f.loadavg(10, 50)
			}
			s, err := NewScanner(f.root, 50)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 * youngScans {
				if _, err := s.Scan(); err != nil {
					t.Fatal(err)
				}
			}
			f.proc(10, 0, "app", "4:memory:/pod/app\n0::/pod/app\n") // the exec: same PID, same start
			groups, err := s.Scan()
			if err != nil {
				t.Fatal(err)
			}
			if g := groups["/pod/app"]; g == nil || g.Main().Comm != "app" {
				t.Fatalf("group after the exec: %+v, want its main process named app", g)
			}
		})
	}
}

// TestResolveExited: a group whose processes exited since the scan (stat
// gone, or a zombie, whose root no longer opens) is ErrExited, not a
// reason to report; a live process whose cgroup cannot be found is not.
func TestResolveExited(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n")
	f.proc(11, 10, "worker", "4:memory:/pod/app\n")
	f.proc(20, 0, "live", "4:memory:/pod/live\n")
	g := f.scan(50)
	r := Resolver{Proc: f.root}
	if _, err := r.Resolve(g["/pod/live"]); err == nil || errors.Is(err, ErrExited) {
		t.Fatalf("live process without a cgroup directory: %v, want a reason", err)
	}
	if _, err := r.Resolve(g["/pod/app"]); err == nil || errors.Is(err, ErrExited) {
		t.Fatalf("live processes: %v, want a reason", err)
	}
	// 10 is a zombie now, 11 is gone.
	stat, err := os.ReadFile(filepath.Join(f.root, "10", "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f.write("10/stat", strings.Replace(string(stat), ") S ", ") Z ", 1))
	if err := os.RemoveAll(filepath.Join(f.root, "11")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(g["/pod/app"]); !errors.Is(err, ErrExited) {
		t.Fatalf("exited processes: %v, want ErrExited", err)
	}
}
