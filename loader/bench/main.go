//go:build linux

// Command bench measures the BPF source on this host against a real leaking
// process in a real memory cgroup, and prints three tables:
//
//   - per-hit cost of the BPF program (kernel.bpf_stats_enabled run_time_ns /
//     run_cnt) for unwatched and watched cgroups, with the leaker's extra
//     system time;
//   - reaction latency, from the kernel's threshold crossing to the reading
//     reaching its consumer, of the BPF source and of the cgroupfs polling
//     source (package fallback, --interval 100ms --min-interval 2ms) watching
//     the same cgroup in the same run;
//   - usage leads the working set: page cache of 0, 100 KiB, 4 MiB and 30%
//     of the limit stays beside anonymous growth at 20 and 200 MiB/s; the
//     reaction of both sources from the working-set crossing (see
//     leadTable), p50/p90/p99/max and the spread of the run medians.
//
// It needs root. Run it with `go run ./loader/bench` (flags: -cycles,
// -cgroupfs, -lead-runs, -lead-only, -cache-dir).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/fallback"
	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/watch"
	"github.com/oomhero/oomhero/loader"
	"github.com/oomhero/oomhero/loader/lead"
)

func main() {
	lab.MaybeLeaker()
	lead.MaybeChild()
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	cgroupfs string
	cycles   int
	leakMiB  uint64
	costOnly bool
	leadRuns int
	leadOnly bool
	cacheDir string
}

func run(w io.Writer) error {
	var cfg config
	flag.StringVar(&cfg.cgroupfs, "cgroupfs", "/sys/fs/cgroup", "where cgroupfs is mounted")
	flag.BoolVar(&cfg.costOnly, "cost-only", false, "skip the latency table")
	flag.IntVar(&cfg.cycles, "cycles", 50, "leak cycles per latency scenario")
	flag.Uint64Var(&cfg.leakMiB, "cost-leak", 512, "MiB the leaker touches per cost round")
	flag.IntVar(&cfg.leadRuns, "lead-runs", 10, "runs per gap and rate of the usage-leads-working-set table (0: skip it)")
	flag.BoolVar(&cfg.leadOnly, "lead-only", false, "only the usage-leads-working-set table")
	flag.StringVar(&cfg.cacheDir, "cache-dir", "/var/tmp", "disk-backed directory for the page cache of the usage-leads-working-set table")
	flag.Parse()

	root, v, err := lab.MemoryRoot(cfg.cgroupfs)
	if err != nil {
		return err
	}
	name := func(s string) string { return fmt.Sprintf("oomhero-bench-%d-%s", os.Getpid(), s) }
	leakCg, err := lab.NewCgroup(root, v, name("leak"), 1024*lab.MiB)
	if err != nil {
		return err
	}
	defer leakCg.Remove()
	idleCg, err := lab.NewCgroup(root, v, name("idle"), 1024*lab.MiB)
	if err != nil {
		return err
	}
	defer idleCg.Remove()
	leaker, err := lab.StartLeaker(leakCg)
	if err != nil {
		return err
	}
	defer leaker.Stop()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fmt.Fprintf(w, "oomhero BPF benchmark: kernel %s, cgroup %s, %d CPUs (%s), load average %s\n\n", kernelRelease(), v, numCPU(), cpuModel(), loadavg())
	if cfg.leadRuns > 0 {
		if err := leadTable(w, root, v, cfg.leadRuns, cfg.cacheDir, quiet); err != nil {
			return err
		}
	}
	if cfg.leadOnly {
		return nil
	}

	// Per-hit cost.
	base, err := leakRound(leaker, cfg.leakMiB)
	if err != nil {
		return err
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable bpf stats: %w", err)
	}
	defer stats.Close()
	src, err := loader.New(loader.Options{Logger: quiet})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan watch.Reading, 1024)
	runDone := make(chan error, 1)
	go func() { runDone <- src.Run(ctx, out) }()
	go func() {
		for {
			select {
			case <-out:
			case <-ctx.Done():
				return
			}
		}
	}()

	limit := leakCg.Limit
	phases := []struct {
		name    string
		targets []watch.Target
	}{
		{"unwatched (another cgroup watched)", []watch.Target{idleCg.Target(limit/2, limit*9/10, watch.Usage)}},
		{"watched, below thresholds", []watch.Target{leakCg.Target(limit*9/10, limit*95/100, watch.Usage)}},
		{"watched, above lower threshold", []watch.Target{leakCg.Target(lab.MiB, limit*95/100, watch.Usage)}},
	}
	fmt.Fprintf(w, "Per-hit cost of the BPF program at %s (bpf_stats run_time_ns/run_cnt; leaker touches and frees %d MiB x3; hits include every other cgroup of the node)\n", src.Attach(), cfg.leakMiB)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\thits\thits/MiB\tns/hit\tnet of floor\tleaker sys ms/GiB\t")
	fmt.Fprintf(tw, "no BPF program\t-\t-\t-\t-\t%.0f\t\n", base.sysPerGiB())
	floor, err := floorCost(src.Attach(), leaker, cfg.leakMiB)
	if err != nil {
		return fmt.Errorf("empty program: %w", err)
	}
	fmt.Fprintf(tw, "empty program (stats floor)\t%d\t%.0f\t%.1f\t0\t%.0f\t\n", floor.hits, float64(floor.hits)/float64(3*cfg.leakMiB), floor.ns, floor.round.sysPerGiB())
	for _, p := range phases {
		src.Update(p.targets)
		time.Sleep(200 * time.Millisecond)
		runs0, rt0, err := src.ProgramStats()
		if err != nil {
			return err
		}
		r, err := leakRound(leaker, cfg.leakMiB)
		if err != nil {
			return err
		}
		runs1, rt1, err := src.ProgramStats()
		if err != nil {
			return err
		}
		hits := runs1 - runs0
		ns := 0.0
		if hits > 0 {
			ns = float64(rt1-rt0) / float64(hits)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%.1f\t%.0f\t\n", p.name, hits, float64(hits)/float64(3*cfg.leakMiB),
			ns, ns-floor.ns, r.sysPerGiB())
	}
	tw.Flush()
	fmt.Fprintln(w)
	cancel()
	if err := <-runDone; err != nil {
		return err
	}
	if cfg.costOnly {
		return nil
	}

	// Reaction latency, both sources on the same cgroup.
	latCg, err := lab.NewCgroup(root, v, name("latency"), 256*lab.MiB)
	if err != nil {
		return err
	}
	defer latCg.Remove()
	latLeaker, err := lab.StartLeaker(latCg)
	if err != nil {
		return err
	}
	defer latLeaker.Stop()
	fmt.Fprintf(w, "Reaction latency: kernel crossing -> reading received, %d-MiB cgroup, warning 75%%, critical 90%% of the limit (usage), %d cycles per row\n", latCg.Limit/lab.MiB, cfg.cycles)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "leak\tsource\tcrossings\tmissed\tp50\tp90\tp99\tmax\tin-source p50/p99/max\treadings/cycle\t")
	for _, sc := range []struct {
		rate, peak uint64
		mode       string
	}{
		{0, 93, modeBPF}, {0, 93, modeRealtime}, {0, 93, modeBoth},
		{100 * lab.MiB, 93, modeBPF}, {100 * lab.MiB, 93, modeRealtime}, {100 * lab.MiB, 93, modeBoth},
	} {
		res, err := latency(latCg, latLeaker, sc.rate, sc.peak, cfg.cycles, sc.mode, quiet)
		if err != nil {
			return err
		}
		label := "unpaced"
		if sc.rate > 0 {
			label = fmt.Sprintf("%d MiB/s", sc.rate/lab.MiB)
		}
		label += fmt.Sprintf(" to %d%%, %s (load %s)", sc.peak, sc.mode, strings.Fields(loadavg())[0])
		for _, r := range res {
			q, o := quantiles(r.lat), quantiles(r.own)
			own := "-"
			if len(r.own) > 0 {
				own = o[0] + "/" + o[2] + "/" + o[3]
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%.1f\t\n", label, r.name, len(r.lat), r.missed,
				q[0], q[1], q[2], q[3], own, float64(r.readings)/float64(cfg.cycles))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "load average at the end: %s\n", loadavg())
	return nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

type floorResult struct {
	hits  uint64
	ns    float64
	round round
}

// floorCost measures an empty program (r0 = 0; exit) at the same attach
// point: what bpf_stats reports for a program that does nothing.
func floorCost(a loader.AttachPoint, l *lab.Leaker, n uint64) (floorResult, error) {
	spec := &ebpf.ProgramSpec{
		Name:         "empty",
		Type:         ebpf.Tracing,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	}
	switch a {
	case loader.LruvecBTF:
		spec.AttachType, spec.AttachTo = ebpf.AttachTraceRawTp, "mod_memcg_lruvec_state"
	case loader.ChargeFexit:
		spec.AttachType, spec.AttachTo = ebpf.AttachTraceFExit, "try_charge_memcg"
	case loader.LruvecTracepoint:
		spec.Type = ebpf.TracePoint
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		return floorResult{}, err
	}
	defer prog.Close()
	var lk link.Link
	if a == loader.LruvecTracepoint {
		lk, err = link.Tracepoint("memcg", "mod_memcg_lruvec_state", prog, nil)
	} else {
		lk, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: spec.AttachType})
	}
	if err != nil {
		return floorResult{}, err
	}
	defer lk.Close()
	s0, err := prog.Stats()
	if err != nil {
		return floorResult{}, err
	}
	r, err := leakRound(l, n)
	if err != nil {
		return floorResult{}, err
	}
	s1, err := prog.Stats()
	if err != nil {
		return floorResult{}, err
	}
	f := floorResult{hits: s1.RunCount - s0.RunCount, round: r}
	if f.hits > 0 {
		f.ns = float64(s1.Runtime-s0.Runtime) / float64(f.hits)
	}
	return f, nil
}

// round is the leaker's cost of one leak round.
type round struct {
	sys   time.Duration
	bytes uint64
}

func (r round) sysPerGiB() float64 {
	return float64(r.sys.Milliseconds()) / (float64(r.bytes) / (1 << 30))
}

// leakRound touches and frees n MiB three times and returns the leaker's
// system time.
func leakRound(l *lab.Leaker, n uint64) (round, error) {
	s0, err := sysTime(l.Pid())
	if err != nil {
		return round{}, err
	}
	for range 3 {
		if err := l.Anon(n*lab.MiB, 0); err != nil {
			return round{}, err
		}
		if err := l.Free(); err != nil {
			return round{}, err
		}
	}
	s1, err := sysTime(l.Pid())
	if err != nil {
		return round{}, err
	}
	return round{sys: s1 - s0, bytes: 3 * n * lab.MiB}, nil
}

// sysTime reads a process's system CPU time from /proc/<pid>/stat.
func sysTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ticks, err := strconv.ParseUint(f[12], 10, 64) // field 15, stime
	if err != nil {
		return 0, fmt.Errorf("parse stime: %w", err)
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}

type received struct {
	rd watch.Reading
	at time.Time
}

type result struct {
	name     string
	lat      []time.Duration
	own      []time.Duration // Reading.Latency: kernel event to the source's send
	missed   int
	readings int
}

// latency runs the sources on c and leaks to peak percent of its limit
// `cycles` times.
// Latency modes: which sources run together.
const (
	modeBPF      = "bpf alone"
	modeRealtime = "bpf alone, Realtime"
	modeBoth     = "bpf + cgroupfs"
)

func latency(c *lab.Cgroup, l *lab.Leaker, rate, peak uint64, cycles int, mode string, log *slog.Logger) ([]result, error) {
	warn, crit := c.Limit*75/100, c.Limit*90/100
	type labeled struct {
		name string
		src  watch.Source
	}
	// The first source gives the crossing instants, so it is always BPF.
	bpf, err := loader.New(loader.Options{Logger: log, Realtime: mode == modeRealtime})
	if err != nil {
		return nil, err
	}
	name := bpf.Name()
	if mode == modeRealtime {
		name += " (Realtime)"
	}
	sources := []labeled{{name, bpf}}
	if mode == modeBoth {
		sources = append(sources, labeled{"cgroupfs (100ms, min 2ms)", fallback.New(100*time.Millisecond, 2*time.Millisecond)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string][]received{}
	var errs []error
	for _, ls := range sources {
		s, name := ls.src, ls.name
		out := make(chan watch.Reading)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx, out); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
			}
		}()
		go func() {
			defer wg.Done()
			for {
				select {
				case rd := <-out:
					at := time.Now()
					mu.Lock()
					got[name] = append(got[name], received{rd, at})
					mu.Unlock()
				case <-ctx.Done():
					return
				}
			}
		}()
		s.Update([]watch.Target{c.Target(warn, crit, watch.Usage)})
	}
	time.Sleep(300 * time.Millisecond)
	type window struct{ from, to time.Time }
	var windows []window
	for range cycles {
		from := time.Now()
		if err := l.Anon(c.Limit*peak/100, rate); err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		time.Sleep(150 * time.Millisecond)
		if err := l.Free(); err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		time.Sleep(250 * time.Millisecond)
		windows = append(windows, window{from, time.Now()})
	}
	cancel()
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// The BPF readings give the crossing instants: reading time minus the
	// kernel-to-delivery latency.
	var names []string
	for _, ls := range sources {
		names = append(names, ls.name)
	}
	res := make([]result, len(names))
	for i, n := range names {
		res[i].name = n
	}
	for _, win := range windows {
		in := func(name string) []received {
			var rs []received
			for _, r := range got[name] {
				if !r.at.Before(win.from) && r.at.Before(win.to) {
					rs = append(rs, r)
				}
			}
			return rs
		}
		b := in(names[0])
		for i, n := range names {
			res[i].readings += len(in(n))
		}
		for _, th := range []uint64{warn, crit} {
			var crossing time.Time
			for _, r := range b {
				if r.rd.Origin == loader.OriginBPF && r.rd.Usage >= th && r.rd.Latency > 0 {
					crossing = r.at.Add(-r.rd.Latency)
					break
				}
			}
			if crossing.IsZero() {
				res[0].missed++
				continue
			}
			for i, n := range names {
				idx := slices.IndexFunc(in(n), func(r received) bool { return r.rd.Usage >= th })
				if idx < 0 {
					res[i].missed++
					continue
				}
				r := in(n)[idx]
				res[i].lat = append(res[i].lat, r.at.Sub(crossing))
				if r.rd.Latency > 0 {
					res[i].own = append(res[i].own, r.rd.Latency)
				}
			}
		}
	}
	return res, nil
}

// quantiles returns p50, p90, p99 and max.
func quantiles(d []time.Duration) [4]string {
	var q [4]string
	if len(d) == 0 {
		return [4]string{"-", "-", "-", "-"}
	}
	slices.Sort(d)
	for i, p := range []float64{0.5, 0.9, 0.99, 1} {
		k := int(p*float64(len(d)-1) + 0.5)
		q[i] = round3(d[k]).String()
	}
	return q
}

func round3(d time.Duration) time.Duration {
	switch {
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func numCPU() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0
	}
	return set.Count()
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
