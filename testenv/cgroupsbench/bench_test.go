package cgroupsbench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup1"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/watch"
)

func TestMain(m *testing.M) {
	lab.MaybeLeaker()
	os.Exit(m.Run())
}

// setup makes a v1 memory cgroup with a leaker holding 32 MiB of anonymous
// memory and 8 MiB of page cache in it, so memory.stat has real figures.
func setup(tb testing.TB) *lab.Cgroup {
	tb.Helper()
	if os.Getuid() != 0 {
		tb.Skip("needs root (creates a memory cgroup)")
	}
	root, v, err := lab.MemoryRoot("/sys/fs/cgroup")
	if err != nil || v != watch.V1 {
		tb.Skipf("no cgroup v1 memory hierarchy under /sys/fs/cgroup (%v, %v): containerd/cgroups' cgroup1 is measured on v1", v, err)
	}
	c, err := lab.NewCgroup(root, v, "oomhero-cgroupsbench", 256*lab.MiB)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Remove() })
	l, err := lab.StartLeaker(c)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Stop() })
	if err := l.Anon(32*lab.MiB, 0); err != nil {
		tb.Fatal(err)
	}
	if err := l.Cache(filepath.Join(tb.TempDir(), "cache"), 8*lab.MiB); err != nil {
		tb.Fatal(err)
	}
	return c
}

// BenchmarkOomheroReader is one reading by oomhero's reader: files kept
// open, reread with pread.
func BenchmarkOomheroReader(b *testing.B) {
	c := setup(b)
	r, err := cgroup.NewReader(c.Dir, c.Version, c.Limit)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ReportAllocs()
	var last watch.Reading
	for b.Loop() {
		if last, err = r.Read(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(last.WorkingSet())/(1<<20), "ws_MiB")
}

// BenchmarkContainerdCgroup1Stat is one reading by containerd/cgroups:
// Stat of the memory subsystem alone (memory.stat, memory.oom_control and
// the usage/limit/max/failcnt files of memory, memsw, kmem, kmem.tcp), the
// working set computed as kubelet does (usage - total_inactive_file).
func BenchmarkContainerdCgroup1Stat(b *testing.B) {
	c := setup(b)
	ctrl, err := cgroup1.Load(cgroup1.StaticPath("/"+c.Dir.Rel),
		cgroup1.WithHierarchy(cgroup1.SingleSubsystem(cgroup1.Default, cgroup1.Memory)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var ws uint64
	for b.Loop() {
		st, err := ctrl.Stat(cgroup1.IgnoreNotExist)
		if err != nil {
			b.Fatal(err)
		}
		u, inact := st.Memory.Usage.Usage, st.Memory.TotalInactiveFile
		ws = u - min(u, inact)
	}
	b.ReportMetric(float64(ws)/(1<<20), "ws_MiB")
}

// Both read the same figures.
func TestSameFigures(t *testing.T) {
	c := setup(t)
	r, err := cgroup.NewReader(c.Dir, c.Version, c.Limit)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ours, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := cgroup1.Load(cgroup1.StaticPath("/"+c.Dir.Rel),
		cgroup1.WithHierarchy(cgroup1.SingleSubsystem(cgroup1.Default, cgroup1.Memory)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := ctrl.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		t.Fatal(err)
	}
	theirs := st.Memory.Usage.Usage - min(st.Memory.Usage.Usage, st.Memory.TotalInactiveFile)
	t.Logf("oomhero: usage %d working set %d; containerd/cgroups: usage %d working set %d, limit %d",
		ours.Usage, ours.WorkingSet(), st.Memory.Usage.Usage, theirs, st.Memory.Usage.Limit)
	const slack = 4 << 20 // the leaker's runtime moves a little between reads
	if d := int64(ours.WorkingSet()) - int64(theirs); d > slack || d < -slack {
		t.Errorf("working sets differ by %d bytes", d)
	}
	if st.Memory.Usage.Limit != c.Limit {
		t.Errorf("containerd/cgroups limit %d, want %d", st.Memory.Usage.Limit, c.Limit)
	}
}
