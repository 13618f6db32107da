//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/oomhero/oomhero/fallback"
	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/watch"
	"github.com/oomhero/oomhero/loader"
	"github.com/oomhero/oomhero/loader/lead"
)

// leadRow is one gap and rate of the usage-leads-working-set table, for one
// source.
type leadRow struct {
	gap, rate uint64
	source    string
	lat       []time.Duration // reaction from the working-set crossing
	runMed    []time.Duration // median reaction of each run
	missed    int             // crossings not reported within 2 s
	reclaim   int             // crossings under reclaim (not timed)
	readings  []int           // BPF: readings caused by ring records, per run
}

// leadTable measures, for page cache that stays beside anonymous growth
// (usage leading the working set by gap), how long after the working set
// crossed each threshold the BPF source and the cgroupfs source (same run,
// same cgroup) delivered the reading that shows it. The crossing is the
// page after which usage less the inactive file cache reached the
// threshold (package lead). Crossings that need reclaim of the cache
// (threshold + gap above 95% of the limit) are counted, not timed.
func leadTable(w io.Writer, root string, v watch.CgroupVersion, runs int, cacheDir string, log *slog.Logger) error {
	const limit = 256 * lab.MiB
	warn, crit := uint64(limit*65/100), uint64(limit*90/100)
	fmt.Fprintf(w, "Usage leads the working set: reaction from the working-set crossing to the reading received\n")
	fmt.Fprintf(w, "(256 MiB v%d cgroup, WARNING=65 CRITICAL=90 of the working set, page cache that stays + anonymous growth paced in 64 KiB steps;\n", v)
	fmt.Fprintf(w, " %d runs per row, warning and critical crossings pooled; load average before: %s)\n", runs, loadavg())
	var rows []*leadRow
	for _, gap := range []uint64{0, 100 << 10, 4 * lab.MiB, limit * 30 / 100} {
		for _, rate := range []uint64{20 * lab.MiB, 200 * lab.MiB} {
			bpfRow := &leadRow{gap: gap, rate: rate, source: "bpf"}
			fsRow := &leadRow{gap: gap, rate: rate, source: "cgroupfs (100ms, min 2ms)"}
			for i := range runs {
				if err := leadRun(root, v, limit, warn, crit, gap, rate, cacheDir, i, bpfRow, fsRow, log); err != nil {
					return err
				}
			}
			rows = append(rows, bpfRow, fsRow)
			fmt.Fprintf(os.Stderr, "bench: lead gap %s at %d MiB/s done (load %s)\n", sizeName(gap), rate/lab.MiB, loadavg())
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "gap\trate\tsource\tcrossings\tmissed\tunder reclaim\tp50\tp90\tp99\tmax\tspread of run medians\tBPF readings/run\t")
	for _, r := range rows {
		d := slices.Clone(r.lat)
		slices.Sort(d)
		q := quantiles(d)
		recs := "-"
		if len(r.readings) > 0 {
			slices.Sort(r.readings)
			recs = fmt.Sprintf("%d-%d", r.readings[0], r.readings[len(r.readings)-1])
		}
		fmt.Fprintf(tw, "%s\t%d MiB/s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", sizeName(r.gap), r.rate/lab.MiB, r.source,
			len(d), r.missed, r.reclaim, q[0], q[1], q[2], q[3], spread(r.runMed), recs)
	}
	tw.Flush()
	fmt.Fprintf(w, "load average after: %s\n\n", loadavg())
	return nil
}

// spread returns the range of the run medians, or "-" for fewer than two.
func spread(meds []time.Duration) string {
	if len(meds) < 2 {
		return "-"
	}
	meds = slices.Clone(meds)
	slices.Sort(meds)
	return round3(meds[0]).String() + ".." + round3(meds[len(meds)-1]).String()
}

func sizeName(b uint64) string {
	switch {
	case b == 0:
		return "0"
	case b%lab.MiB == 0:
		return fmt.Sprintf("%d MiB", b/lab.MiB)
	case b >= lab.MiB:
		return fmt.Sprintf("%.1f MiB", float64(b)/lab.MiB)
	}
	return fmt.Sprintf("%d KiB", b>>10)
}

type stamped struct {
	rd watch.Reading
	at uint64 // CLOCK_MONOTONIC ns of receipt
}

func leadRun(root string, v watch.CgroupVersion, limit, warn, crit, gap, rate uint64, cacheDir string, run int,
	bpfRow, fsRow *leadRow, log *slog.Logger) error {
	c, err := lab.NewCgroup(root, v, fmt.Sprintf("oomhero-bench-%d-lead-%d", os.Getpid(), run), limit)
	if err != nil {
		return err
	}
	defer c.Remove()
	usageFile := "memory.current"
	if v == watch.V1 {
		usageFile = "memory.usage_in_bytes"
	}
	child, err := lead.Start(fmt.Sprint(c.Dir), usageFile)
	if err != nil {
		return err
	}
	defer child.Stop()
	if gap > 0 {
		file := filepath.Join(cacheDir, fmt.Sprintf("oomhero-bench-lead-%d", os.Getpid()))
		defer os.Remove(file)
		if err := child.Cache(file, gap); err != nil {
			return err
		}
	}
	bpf, err := loader.New(loader.Options{Logger: log})
	if err != nil {
		return err
	}
	records := 0
	var recMu sync.Mutex
	sources := []struct {
		row *leadRow
		src watch.Source
	}{{bpfRow, bpf}, {fsRow, fallback.New(100*time.Millisecond, 2*time.Millisecond)}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := make([][]stamped, len(sources))
	var errs []error
	target := c.Target(warn, crit, watch.WorkingSet)
	for i, s := range sources {
		out := make(chan watch.Reading)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := s.src.Run(ctx, out); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
		go func() {
			defer wg.Done()
			for {
				select {
				case rd := <-out:
					at := lead.Mono()
					mu.Lock()
					got[i] = append(got[i], stamped{rd, at})
					mu.Unlock()
					if i == 0 && rd.Origin == loader.OriginBPF {
						recMu.Lock()
						records++
						recMu.Unlock()
					}
				case <-ctx.Done():
					return
				}
			}
		}()
		s.src.Update([]watch.Target{target})
	}
	defer func() { cancel(); wg.Wait() }()
	n0 := []int{len(bpfRow.lat), len(fsRow.lat)}
	defer func() {
		for i, r := range []*leadRow{bpfRow, fsRow} {
			if run := slices.Clone(r.lat[n0[i]:]); len(run) > 0 {
				slices.Sort(run)
				r.runMed = append(r.runMed, run[(len(run)-1)/2])
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)

	reader, err := newReader(c)
	if err != nil {
		return err
	}
	defer reader.Close()
	for _, th := range []uint64{warn, crit} {
		now, err := reader.Read()
		if err != nil {
			return err
		}
		ws := now.WorkingSet()
		if th > ws+4*lab.MiB {
			if _, err := child.Grow(th-4*lab.MiB-ws, 0); err != nil {
				return err
			}
		}
		mu.Lock()
		from := []int{len(got[0]), len(got[1])}
		mu.Unlock()
		tr, err := child.Grow(8*lab.MiB, rate)
		if err != nil {
			return err
		}
		underReclaim := th+gap > limit*95/100
		for i, s := range sources {
			var hit *stamped
			for deadline := time.Now().Add(2 * time.Second); hit == nil && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				mu.Lock()
				for k := from[i]; k < len(got[i]); k++ {
					if got[i][k].rd.ID == c.ID && got[i][k].rd.Err == nil && got[i][k].rd.WorkingSet() >= th {
						h := got[i][k]
						hit = &h
						break
					}
				}
				mu.Unlock()
			}
			switch {
			case hit == nil:
				s.row.missed++
			case underReclaim:
				s.row.reclaim++
			default:
				crossed, ok := tr.Crossing(hit.rd, th)
				if !ok {
					s.row.missed++
					continue
				}
				s.row.lat = append(s.row.lat, time.Duration(int64(hit.at-crossed)))
			}
		}
	}
	recMu.Lock()
	bpfRow.readings = append(bpfRow.readings, records)
	recMu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("lead run: %v", errs)
	}
	return nil
}

func newReader(c *lab.Cgroup) (*cgroup.Reader, error) { return cgroup.NewReader(c.Dir, c.Version, 0) }
