package cgroup

import (
	"errors"
	"testing"

	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

func TestParseCPUList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"0\n", 1}, {"0-1\n", 2}, {"0-63", 64}, {"0,2-5,8\n", 6}, {"3", 1},
		{"", -1}, {"\n", -1}, {"a", -1}, {"1-0", -1}, {"0-", -1}, {"-1", -1},
		{"0,,1", -1}, {"0-65536", -1}, {"65536", -1}, {"0 - 1", -1},
	} {
		n, err := ParseCPUList(c.in)
		if c.want < 0 {
			if err == nil || !errors.Is(err, ErrParse) {
				t.Errorf("ParseCPUList(%q) = %d, %v; want an ErrParse", c.in, n, err)
			}
			continue
		}
		if err != nil || n != c.want {
			t.Errorf("ParseCPUList(%q) = %d, %v; want %d", c.in, n, err, c.want)
		}
	}
}

// On a fake tree (a temporary directory, as a hostile container could
// lay out) without memory.usage_in_bytes, or on v2, nothing is registered.
func TestNotifyUsageRefused(t *testing.T) {
	t.Cleanup(safefs.AllowAnyFilesystem())
	d := t.TempDir()
	write(t, d, map[string]string{"memory.current": "100\n"})
	if ev, err := NotifyUsage(watch.CgroupDir{Root: d}, 4096); err == nil || !errors.Is(err, ErrNoNotify) {
		ev.Close()
		t.Fatalf("v2 directory: %v, want ErrNoNotify", err)
	}
}
