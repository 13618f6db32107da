package oomwatch

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
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
	notified, err := w.Add(7, d, 1)
	if err != nil || notified {
		t.Fatalf("Add: notified %v, %v; want polled", notified, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Kill, 1)
	w.SetHot(7, true)
	go w.Run(ctx, out)
	os.WriteFile(d+"/memory.oom_control", []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"), 0o644)
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
