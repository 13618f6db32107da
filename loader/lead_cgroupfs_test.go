//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/fallback"
	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
	"github.com/oomhero/oomhero/internal/watch"
	"github.com/oomhero/oomhero/loader/lead"
)

// TestUsageLeadsWorkingSetCgroupfs is TestUsageLeadsWorkingSet for the
// polling source (the fallback where BPF cannot load), in the same shapes:
// page cache that stays puts usage ahead of the working set by 0, 100 KiB,
// 4 MiB and 30 % of the limit, and anonymous memory grows at 20 and
// 200 MiB/s through both thresholds. The poller judges the working set
// (usage less inactive file), so its reading must come within a few polls
// of the page that made the working set cross: at 20 MiB/s within
// OOMHERO_LEAD_BOUND_CGROUPFS (default 100ms: shared CI machines; the
// polls themselves are 2 ms apart near a threshold, and loader/bench
// reports the real p50/p99, under 20 ms on a quiet machine); at 200 MiB/s
// within twice that. It runs here so that the VM (cgroup v2) runs it too.
func TestUsageLeadsWorkingSetCgroupfs(t *testing.T) {
	labtest.Root(t)
	dir := cacheDir(t)
	bound := 100 * time.Millisecond
	if v := os.Getenv("OOMHERO_LEAD_BOUND_CGROUPFS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("OOMHERO_LEAD_BOUND_CGROUPFS=%q: %v", v, err)
		}
		bound = d
	}
	const limit = 256 * lab.MiB
	warn, crit := uint64(limit*65/100), uint64(limit*90/100)
	s := fallback.New(100*time.Millisecond, 2*time.Millisecond)
	r := run(t, s)
	var all []time.Duration
	for _, gap := range []uint64{0, 100 << 10, 4 * lab.MiB, limit * 30 / 100} {
		for _, rate := range []uint64{20 * lab.MiB, 200 * lab.MiB} {
			name := fmt.Sprintf("gap %s at %d MiB/s", size(gap), rate/lab.MiB)
			c := labtest.Cgroup(t, limit)
			child, err := lead.Start(fmt.Sprint(c.Dir), usageFile(c.Version))
			if err != nil {
				t.Fatal(err)
			}
			if gap > 0 {
				file := filepath.Join(dir, fmt.Sprintf("oomhero-lead-fs-%d-%d", os.Getpid(), c.ID))
				if err := child.Cache(file, gap); err != nil {
					t.Fatal(err)
				}
				defer os.Remove(file)
			}
			n := len(r.readings())
			s.Update([]watch.Target{c.Target(warn, crit, watch.WorkingSet)})
			r.wait(t, n, 2*time.Second, name+": after Update", func(rd watch.Reading) bool { return rd.ID == c.ID })
			// The poller's first reading is usage alone (far below the
			// thresholds it skips memory.stat): the working set comes
			// from a full read.
			reader, err := cgroup.NewReader(c.Dir, c.Version, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer reader.Close()
			now, err := reader.Read()
			if err != nil {
				t.Fatal(err)
			}
			ws := now.WorkingSet()
			for _, th := range []struct {
				what string
				at   uint64
			}{{"warning", warn}, {"critical", crit}} {
				if th.at+gap > limit*95/100 {
					continue // the crossing needs reclaim of the cache: not timed (as in the BPF test)
				}
				if th.at > ws+4*lab.MiB {
					if _, err := child.Grow(th.at-4*lab.MiB-ws, 0); err != nil {
						t.Fatal(err)
					}
				}
				n := len(r.readings())
				tr, err := child.Grow(8*lab.MiB, rate)
				if err != nil {
					t.Fatal(err)
				}
				rd, i := r.wait(t, n, 2*time.Second, name+": working set at "+th.what, func(rd watch.Reading) bool {
					return rd.ID == c.ID && rd.WorkingSet() >= th.at
				})
				r.mu.Lock()
				got := r.recvAt[i]
				r.mu.Unlock()
				crossed, ok := tr.Crossing(rd, th.at)
				if !ok {
					t.Errorf("%s: %s crossing (working set %d KiB) not within the paced growth", name, th.what, rd.WorkingSet()>>10)
					continue
				}
				late := time.Duration(int64(got - crossed))
				all = append(all, late)
				t.Logf("%s: %s crossing reported %s after the working set crossed (working set %d KiB over, usage %d KiB, inactive file %d KiB)",
					name, th.what, late, (rd.WorkingSet()-th.at)>>10, rd.Usage>>10, rd.InactiveFile>>10)
				want := bound
				if rate > 20*lab.MiB {
					want = 2 * bound
				}
				if late > want {
					t.Errorf("%s: %s crossing reported %s after the working set crossed, want <= %s", name, th.what, late, want)
				}
				now, err := reader.Read()
				if err != nil {
					t.Fatal(err)
				}
				ws = now.WorkingSet()
			}
			child.Stop()
			s.Update(nil)
		}
	}
	slices.Sort(all)
	if len(all) == 0 {
		t.Fatal("no crossing timed")
	}
	t.Logf("cgroupfs reaction from the working-set crossing: p50 %s, max %s over %d crossings (load %s)",
		all[len(all)/2], all[len(all)-1], len(all), strings.TrimSpace(loadavg()))
}
