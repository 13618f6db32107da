package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

// fake names a fake cgroup directory in a temporary directory: the test
// lets safefs accept its filesystem (every other check still applies).
func fake(t *testing.T, dir string) watch.CgroupDir {
	t.Helper()
	t.Cleanup(safefs.AllowAnyFilesystem())
	return watch.CgroupDir{Root: dir}
}

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// memory.stat fixtures hold distinct values 1..N so a figure read from the
// wrong key shows up.
const v1Stat = "cache 1\nrss 2\nrss_huge 3\nshmem 4\nmapped_file 5\ninactive_anon 6\nactive_anon 7\ninactive_file 8\n" +
	"active_file 9\nhierarchical_memory_limit 10\ntotal_cache 11\ntotal_rss 12\ntotal_inactive_anon 13\n" +
	"total_inactive_file 14\ntotal_active_file 15\n"
const v2Stat = "anon 21\nfile 22\nkernel 23\nshmem 24\ninactive_anon 25\nactive_anon 26\ninactive_file 27\nactive_file 28\n"

func TestReaderV1(t *testing.T) {
	d := t.TempDir()
	write(t, d, map[string]string{"memory.usage_in_bytes": "1000\n", "memory.limit_in_bytes": "268435456\n", "memory.stat": v1Stat})
	v, err := Detect(fake(t, d))
	if err != nil || v != watch.V1 {
		t.Fatalf("Detect: %v %v", v, err)
	}
	r, err := NewReader(fake(t, d), v, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if rd.Usage != 1000 || rd.InactiveFile != 14 || rd.Anon != 12 || rd.ActiveFile != 15 || rd.Limit != 268435456 || rd.WorkingSet() != 986 {
		t.Fatalf("got %+v", rd)
	}
	// Rereading picks up new content.
	write(t, d, map[string]string{"memory.usage_in_bytes": "2000\n"})
	if u, err := r.Usage(); err != nil || u != 2000 {
		t.Fatalf("reread: %d %v", u, err)
	}
}

func TestReaderV2AndLimitOverride(t *testing.T) {
	d := t.TempDir()
	write(t, d, map[string]string{"memory.current": "500\n", "memory.max": "max\n", "memory.stat": v2Stat})
	r, err := NewReader(fake(t, d), watch.V2, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd, err := r.Read()
	if err != nil || rd.Usage != 500 || rd.InactiveFile != 27 || rd.Anon != 21 || rd.ActiveFile != 28 || rd.Limit != 4096 {
		t.Fatalf("got %+v %v", rd, err)
	}
	if _, err := Limit(fake(t, d), watch.V2); !errors.Is(err, watch.ErrNoLimit) {
		t.Fatalf("memory.max=max: want ErrNoLimit, got %v", err)
	}
}

func TestReadErrorsAreErrors(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"garbage usage":   {"memory.current": "lots\n", "memory.max": "10\n", "memory.stat": v2Stat},
		"stat lacks keys": {"memory.current": "5\n", "memory.max": "10\n", "memory.stat": "anon 1\n"},
		"bad stat value":  {"memory.current": "5\n", "memory.max": "10\n", "memory.stat": "anon x\ninactive_file 1\n"},
		"bad limit":       {"memory.current": "5\n", "memory.max": "-1\n", "memory.stat": v2Stat},
	} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			write(t, d, files)
			r, err := NewReader(fake(t, d), watch.V2, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if rd, err := r.Read(); err == nil {
				t.Fatalf("want an error, got %+v", rd)
			}
		})
	}
	// A vanished cgroup is an error too, never a zero.
	d := t.TempDir()
	if _, err := NewReader(fake(t, d), watch.V1, 0); err == nil {
		t.Fatal("NewReader on an empty dir succeeded")
	}
}

func TestLimitsV1(t *testing.T) {
	d := t.TempDir()
	write(t, d, map[string]string{"memory.limit_in_bytes": "9223372036854771712\n",
		"memory.stat": strings.Replace(v1Stat, "hierarchical_memory_limit 10", "hierarchical_memory_limit 67108864", 1)})
	if _, err := Limit(fake(t, d), watch.V1); !errors.Is(err, watch.ErrNoLimit) {
		t.Fatalf("want ErrNoLimit, got %v", err)
	}
	if l, err := HierarchicalLimit(fake(t, d)); err != nil || l != 67108864 {
		t.Fatalf("HierarchicalLimit = %d, %v", l, err)
	}
}

func TestEffectiveLimitV2(t *testing.T) {
	root := t.TempDir()
	child := filepath.Join(root, "pod", "ctr")
	os.MkdirAll(child, 0o755)
	write(t, filepath.Join(root, "pod"), map[string]string{"memory.max": "1000\n"})
	write(t, child, map[string]string{"memory.max": "5000\n"})
	if l, err := EffectiveLimit(watch.CgroupDir{Root: fake(t, root).Root, Rel: "pod/ctr"}, ".", watch.V2); err != nil || l != 1000 {
		t.Fatalf("got %d %v, want the parent's 1000", l, err)
	}
	write(t, child, map[string]string{"memory.max": "max\n"})
	write(t, filepath.Join(root, "pod"), map[string]string{"memory.max": "max\n"})
	if _, err := EffectiveLimit(watch.CgroupDir{Root: fake(t, root).Root, Rel: "pod/ctr"}, ".", watch.V2); !errors.Is(err, watch.ErrNoLimit) {
		t.Fatalf("want ErrNoLimit, got %v", err)
	}
}

func TestOOMKills(t *testing.T) {
	d := t.TempDir()
	write(t, d, map[string]string{"memory.events": "low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\noom_group_kill 6\n",
		"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n"})
	if n, err := OOMKills(fake(t, d), watch.V2); err != nil || n != 5 {
		t.Fatalf("v2: %d %v", n, err)
	}
	if n, err := OOMKills(fake(t, d), watch.V1); err != nil || n != 7 {
		t.Fatalf("v1: %d %v", n, err)
	}
}
