package oomwatch

import (
	"testing"

	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
)

// TestCountSeesTheKillAtOnce: Count reads the counter now, without Run:
// 0 before, 1 right after a real OOM kill; unknown cgroups are an error.
func TestCountSeesTheKillAtOnce(t *testing.T) {
	c := labtest.Cgroup(t, 32*lab.MiB)
	w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if _, err := w.Add(c.ID, c.Dir, c.Version); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Count(c.ID); err != nil || n != 0 {
		t.Fatalf("before: %d %v", n, err)
	}
	l := labtest.Leaker(t, c)
	if err := l.Anon(64*lab.MiB, 0); err == nil {
		t.Fatal("leaker survived 64 MiB in a 32 MiB cgroup")
	}
	if n, err := w.Count(c.ID); err != nil || n != 1 {
		t.Fatalf("after the kill: %d %v", n, err)
	}
	if _, err := w.Count(c.ID + 1); err == nil {
		t.Fatal("Count of an unknown cgroup")
	}
}
