// Package labtest wraps package lab for tests: a real memory cgroup removed
// at cleanup, a leaker stopped at cleanup, and the skip-or-fail rule of
// privileged tests (skip with a reason on a laptop, fail when CI=true).
package labtest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/watch"
)

// SkipOrFail skips the test, or fails it when CI=true: in CI a privileged
// test that cannot get its environment must not pass silently.
func SkipOrFail(t testing.TB, format string, a ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: "+format, a...)
	}
	t.Skipf(format, a...)
}

// Root returns the memory hierarchy to make test cgroups in
// ($OOMHERO_CGROUPFS, default /sys/fs/cgroup).
func Root(t testing.TB) (string, watch.CgroupVersion) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root for real cgroups")
	}
	fs := os.Getenv("OOMHERO_CGROUPFS")
	if fs == "" {
		fs = "/sys/fs/cgroup"
	}
	root, v, err := lab.MemoryRoot(fs)
	if err != nil {
		SkipOrFail(t, "no memory cgroup: %v", err)
	}
	return root, v
}

// Cgroup makes a memory cgroup with the given limit in bytes, removed when
// the test ends.
func Cgroup(t testing.TB, limit uint64) *lab.Cgroup {
	t.Helper()
	root, v := Root(t)
	name := fmt.Sprintf("oomhero-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c, err := lab.NewCgroup(root, v, name, limit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Remove(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// Leaker starts a leaker in c, stopped when the test ends. The test binary
// must call lab.MaybeLeaker first thing in TestMain.
func Leaker(t testing.TB, c *lab.Cgroup) *lab.Leaker {
	t.Helper()
	l, err := lab.StartLeaker(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	return l
}
