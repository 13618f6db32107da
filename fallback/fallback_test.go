package fallback

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
	"github.com/oomhero/oomhero/loader/lead"
)

func TestMain(m *testing.M) {
	lab.MaybeLeaker()
	lead.MaybeChild()
	os.Exit(m.Run())
}

// waitFor returns the first reading of id that satisfies ok.
func waitFor(t *testing.T, out <-chan watch.Reading, id uint64, d time.Duration, what string, ok func(watch.Reading) bool) watch.Reading {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case r := <-out:
			if r.Err != nil {
				t.Fatalf("reading error: %v", r.Err)
			}
			if r.ID == id && ok(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("no reading with %s within %v", what, d)
		}
	}
}

// TestRealCgroup polls a real cgroup while a real process allocates and
// frees, and writes page cache.
func TestRealCgroup(t *testing.T) {
	c := labtest.Cgroup(t, 128*lab.MiB)
	l := labtest.Leaker(t, c)
	tg := c.Target(64*lab.MiB, 96*lab.MiB, watch.WorkingSet)
	s := New(100*time.Millisecond, 2*time.Millisecond)
	s.Update([]watch.Target{tg})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan watch.Reading, 256)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()

	waitFor(t, out, c.ID, 2*time.Second, "a first reading", func(r watch.Reading) bool { return r.Limit == 128*lab.MiB })
	if err := l.Anon(80*lab.MiB, 200*lab.MiB); err != nil {
		t.Fatal(err)
	}
	r := waitFor(t, out, c.ID, 2*time.Second, "working set above 64 MiB", func(r watch.Reading) bool { return r.WorkingSet() >= 64*lab.MiB })
	// Usage also holds page tables and kernel memory: anon is most of it.
	if r.Anon < 56*lab.MiB || r.Usage < r.WorkingSet() {
		t.Fatalf("reading %+v: anon should hold the leak", r)
	}
	if err := l.Free(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, c.ID, 2*time.Second, "the drop after free", func(r watch.Reading) bool { return r.WorkingSet() < 16*lab.MiB })

	// Page cache: usage climbs, the working set does not.
	dir := os.Getenv("OOMHERO_CACHE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := l.Cache(filepath.Join(dir, "cache"), 100*lab.MiB); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filepath.Join(dir, "cache"))
	r = waitFor(t, out, c.ID, 2*time.Second, "usage above 64 MiB from page cache", func(r watch.Reading) bool { return r.Usage >= 64*lab.MiB })
	if r.InactiveFile == 0 && r.WorkingSet() >= 64*lab.MiB {
		t.Logf("page cache counted as active: %+v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestVanishedCgroupIsAnError: a cgroup that disappears yields an error
// reading, once, never a zero.
func TestVanishedCgroupIsAnError(t *testing.T) {
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "memory.current"), []byte("100\n"), 0o644)
	os.WriteFile(filepath.Join(d, "memory.stat"), []byte("anon 1\ninactive_file 2\n"), 0o644)
	s := New(5*time.Millisecond, time.Millisecond)
	t.Cleanup(safefs.AllowAnyFilesystem()) // a fake cgroup directory in a temporary directory
	s.Update([]watch.Target{{Container: watch.Container{ID: 9, Dir: watch.CgroupDir{Root: d}, Version: watch.V2, Limit: 1000}, Warn: 10, Crit: 20}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan watch.Reading, 16)
	go s.Run(ctx, out)
	r := <-out
	if r.Err != nil || r.Usage != 100 || r.InactiveFile != 2 {
		t.Fatalf("first reading %+v", r)
	}
	// Rewritten in place (the source keeps the file open).
	os.WriteFile(filepath.Join(d, "memory.current"), []byte("garbage\n"), 0o644)
	deadline := time.After(2 * time.Second)
	for r.Err == nil {
		select {
		case r = <-out:
		case <-deadline:
			t.Fatal("no error reading")
		}
	}
	select {
	case r := <-out:
		t.Fatalf("error repeated or zero reported: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
}
