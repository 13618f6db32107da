package oomwatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

func TestMain(m *testing.M) {
	lab.MaybeLeaker()
	os.Exit(m.Run())
}

// TestRealOOMKill OOM-kills a real process in a real cgroup and expects
// the report, on this host's cgroup version (v1 here, v2 in the VM).
func TestRealOOMKill(t *testing.T) {
	c := labtest.Cgroup(t, 32*lab.MiB)
	w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Kill, 4)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	notified, err := w.Add(c.ID, c.Dir, c.Version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cgroup %s (%v): kernel notification %v", c.Dir, c.Version, notified)

	l := labtest.Leaker(t, c)
	start := time.Now()
	// 64 MiB into a 32 MiB cgroup without swap: the kernel kills the leaker.
	if err := l.Anon(64*lab.MiB, 0); err == nil {
		t.Fatal("leaker survived 64 MiB in a 32 MiB cgroup")
	}
	select {
	case k := <-out:
		if k.ID != c.ID || k.Kills != 1 || k.Total != 1 {
			t.Fatalf("kill report %+v, want one kill in cgroup %d", k, c.ID)
		}
		t.Logf("kill reported %v after the leak began", k.Time.Sub(start))
	case <-time.After(5 * time.Second):
		t.Fatal("no kill report within 5 s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPolledCounter covers cgroups where notification cannot be registered:
// the counter file is read every PollInterval.
func TestPolledCounter(t *testing.T) {
	d := t.TempDir()
	f := d + "/memory.events"
	os.WriteFile(f, []byte("oom 0\noom_kill 0\n"), 0o644)
	w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	// A regular file under v1 naming has no cgroup.event_control: polled.
	os.WriteFile(d+"/memory.oom_control", []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 0o644)
	t.Cleanup(safefs.AllowAnyFilesystem())
	notified, err := w.Add(7, watch.CgroupDir{Root: d}, 1)
	if err != nil || notified {
		t.Fatalf("Add: notified %v, %v; want polled", notified, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Kill, 1)
	w.SetHot(7, true)
	go w.Run(ctx, out)
	// In place, one byte changed, as the kernel's counter moves: a
	// truncate-and-write (os.WriteFile) could be read empty in between, an
	// unreadable counter (taken for a removed cgroup) that is no longer
	// polled. (The watcher keeps the file open: a rename would not show.)
	ctl, err := os.OpenFile(d+"/memory.oom_control", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ctl.WriteAt([]byte("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"), 0)
	if cerr := ctl.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-out:
		if k.ID != 7 || k.Kills != 3 || k.Total != 5 {
			t.Fatalf("got %+v", k)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("polled counter change not reported")
	}
	w.Remove(7)
}

// TestEventControlSymlinkNotWritten: a fake v1 directory whose
// cgroup.event_control is a symlink to another file (another container's,
// a host file) must not get the registration written into it; the counter
// is polled instead.
func TestEventControlSymlinkNotWritten(t *testing.T) {
	t.Cleanup(safefs.AllowAnyFilesystem())
	d, other := t.TempDir(), t.TempDir()
	victim := filepath.Join(other, "precious")
	const content = "do not touch\n"
	os.WriteFile(victim, []byte(content), 0o644)
	os.WriteFile(filepath.Join(d, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"), 0o644)
	if err := os.Symlink(victim, filepath.Join(d, "cgroup.event_control")); err != nil {
		t.Fatal(err)
	}
	w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	notified, err := w.Add(3, watch.CgroupDir{Root: d}, watch.V1)
	if err != nil || notified {
		t.Fatalf("Add: notified %v, %v; want polled", notified, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != content {
		t.Fatalf("the symlink's target was written: %q", b)
	}
	// A counter file that is a FIFO is refused at once, without blocking.
	os.Remove(filepath.Join(d, "memory.oom_control"))
	if err := unix.Mkfifo(filepath.Join(d, "memory.oom_control"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := w.Add(4, watch.CgroupDir{Root: d}, watch.V1); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, safefs.ErrNotRegular) {
			t.Fatalf("FIFO counter: %v, want ErrNotRegular", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Add blocked on a FIFO")
	}
}

// TestRemovedCgroupIsDropped removes a real watched cgroup: the watcher
// drops it and does not spin. On v1 (this host's memory controller) the
// kernel signals the eventfd as the cgroup goes; on a cgroup2 hierarchy
// the removed cgroup's files poll as EPOLLERR forever (kernfs_fop_poll).
// Both are tried where the host has them.
func TestRemovedCgroupIsDropped(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		c := labtest.Cgroup(t, 32*lab.MiB)
		removedCgroupCase(t, func(w *Watcher) error {
			_, err := w.Add(c.ID, c.Dir, c.Version)
			return err
		}, c.ID, func(*Watcher) error { return c.Remove() })
	})
	t.Run("cgroup2", func(t *testing.T) {
		mnt := cgroup2Mount(t)
		if mnt == "" {
			if os.Getenv("CI") == "true" {
				t.Fatal("no cgroup2 mount (CI=true)")
			}
			t.Skip("no cgroup2 mount")
		}
		name := fmt.Sprintf("oomhero-oomwatch-%d", os.Getpid())
		p := filepath.Join(mnt, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal(err)
			}
			t.Skipf("cannot create a cgroup2 cgroup: %v", err)
		}
		defer os.Remove(p)
		d := watch.CgroupDir{Root: mnt, Rel: name}
		id, err := cgroup.ID(d)
		if err != nil {
			t.Fatal(err)
		}
		// cgroup.events polls like memory.events (both kernfs files the
		// kernel notifies); the memory controller may be on v1 here.
		removedCgroupCase(t, func(w *Watcher) error {
			_, err := w.add(id, d, watch.V2, "cgroup.events", "populated")
			return err
		}, id, func(w *Watcher) error {
			// A notification the watcher cannot read before the cgroup
			// is gone (w.mu held stalls its read): a process enters
			// and dies ("populated" changes twice), then rmdir. The
			// file then polls EPOLLERR|EPOLLPRI for good.
			w.mu.Lock()
			defer w.mu.Unlock()
			cmd := exec.Command("sleep", "30")
			if err := cmd.Start(); err != nil {
				return err
			}
			werr := os.WriteFile(filepath.Join(p, "cgroup.procs"), []byte(fmt.Sprint(cmd.Process.Pid)), 0)
			cmd.Process.Kill()
			cmd.Wait()
			if werr != nil {
				return werr
			}
			time.Sleep(50 * time.Millisecond)
			for range 100 {
				if err = os.Remove(p); err == nil {
					return nil
				}
				time.Sleep(10 * time.Millisecond)
			}
			return err
		})
	})
}

func removedCgroupCase(t *testing.T, add func(*Watcher) error, id uint64, remove func(*Watcher) error) {
	w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	gone := make(chan error, 1)
	w.Gone = func(gid uint64, err error) {
		if gid == id {
			select {
			case gone <- err:
			default: // told more than once: the wakeup count below says it
			}
		}
	}
	if err := add(w); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, make(chan Kill, 1)) }()
	time.Sleep(50 * time.Millisecond)
	if err := remove(w); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-gone:
		t.Logf("dropped: %v", err)
	case <-time.After(3 * time.Second):
		t.Log("no notification of the removal (none is needed: nothing spins)")
	}
	before := w.wakeups.Load()
	time.Sleep(500 * time.Millisecond)
	if n := w.wakeups.Load() - before; n > 5 {
		t.Fatalf("%d epoll wakeups in 500 ms after the cgroup was removed: busy loop", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func cgroup2Mount(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(sf) >= 1 && sf[0] == "cgroup2" && pf[3] == "/" {
			return pf[4]
		}
	}
	return ""
}
