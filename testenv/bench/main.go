// Command bench measures oomhero's reaction latency and idle cost in real
// pods (podman kube play, see testenv/pods), and prints them as tables.
//
//	go run ./testenv/bench [-source cgroupfs[,bpf,...]] [-runs 5] [-idle 60s]
//
// For each source given (passed to oomhero as --source; "" for its default):
//
//   - Reaction latency: a test app leaks at 20 MiB/s (capped at 95% of its
//     256 MiB limit) and at 200 MiB/s (until the kernel OOM-kills it), -runs
//     times each, with WARNING=65 CRITICAL=90. The latency of a level is the
//     app's receipt of the signal minus its first own sample at or above the
//     threshold oomhero logged (samples follow every 64 KiB step: within
//     3.1 ms of the crossing at 20 MiB/s, 0.3 ms at 200 MiB/s). Both times
//     are CLOCK_MONOTONIC in the app. The table gives p50/p90/p99/max
//     (nearest rank: with few runs p99 is the maximum), and for 200 MiB/s how
//     many runs got the critical signal before the OOM kill.
//
//   - Idle cost: oomhero next to 3 containers (256 MiB limits, idle) holding
//     200 processes in all. Over -idle, its CPU time (the scheduler's exact
//     run time, /proc/<pid>/task/*/schedstat, summed over threads; utime and
//     stime are tick samples that overcharge a process waking on a period)
//     as percent of one core, its resident
//     memory (VmRSS, and VmHWM peak) and its log lines per minute.
//
//   - Idle shapes: oomhero next to one app that holds 30% of its limit
//     with N-1 idle child processes (N from -shapes: 200 in 256 MiB, 2,000
//     in 1 GiB; the children are a static C sleeper, a few pages each). CPU
//     from the cgroup accounting of oomhero's container (cpuacct.usage on
//     v1, cpu.stat usage_usec on v2) over -shape-windows consecutive steady
//     windows of -shape-window (median and range), the start-up CPU (from
//     the pod's start until the app and all its processes were seen, plus
//     12 s and at least 17 s after the start: past the processes' young
//     rereads and oomhero's start-up trim) apart, and RSS.
//
//   - Ratios against the previous release's figures (-baseline, default
//     testenv/bench/baseline.json) for every figure both have.
//
// Each table is headed by the machine and followed by the load average.
// Needs root, podman, runc and clang with libc6-dev (the sleeper). Each
// source is one row per table, so other sources (bpf) add rows.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/oomhero/oomhero/testenv/pods"

	"github.com/oomhero/oomhero/testenv/benchstat"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type latencyRow struct {
	source, rate, level string
	lat                 []time.Duration
	inside              []time.Duration // in oomhero: its kernel event (BPF) or reading (cgroupfs) to the signal sent
	missed              int             // runs without the signal
	beforeKill, runs    int             // 200 MiB/s: critical received before the OOM kill
	killed              bool
}

type idleRow struct {
	source            string
	window            time.Duration
	cpuPct            float64
	rssKiB, hwmKiB    uint64
	linesPerMin       float64
	procs, containers int
}

func run() error {
	sources := flag.String("source", "cgroupfs", "comma-separated oomhero --source values (auto, bpf, cgroupfs); one table row each")
	runs := flag.Int("runs", 5, "leak runs per rate")
	idle := flag.Duration("idle", 60*time.Second, "idle measurement window")
	rates := flag.String("rates", "20,200", "leak rates in MiB/s; rates under 100 are capped at 95% of the limit, others run until the OOM kill")
	noBuild := flag.Bool("no-build", false, "use the images already built")
	shapes := flag.String("shapes", "200,2000", "idle shapes: processes of the one app (empty: none)")
	shapeWindows := flag.Int("shape-windows", 3, "steady windows per idle shape")
	shapeWindow := flag.Duration("shape-window", 20*time.Second, "length of one steady window")
	baselinePath := flag.String("baseline", "", "previous release's figures (default testenv/bench/baseline.json)")
	flag.StringVar(&logDir, "logs", "", "directory to keep every run's app and oomhero logs in (empty: none)")
	flag.Func("env", "NAME=VALUE added to oomhero's environment in the leak runs and idle shapes (repeatable), e.g. OOMHERO_LOG_LEVEL=debug with -logs", func(v string) error {
		name, value, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return fmt.Errorf("want NAME=VALUE, got %q", v)
		}
		extraEnv = append(extraEnv, pods.EnvVar{Name: name, Value: value})
		return nil
	})
	flag.StringVar(&profileDir, "profile", "", "directory for CPU profiles of oomhero over each idle shape's steady windows (its profiling variant: go build -tags profile, image "+profileImage+"); empty: none")
	flag.Parse()

	if err := pods.Check(); err != nil {
		return err
	}
	root, err := pods.FindRoot()
	if err != nil {
		return err
	}
	lab, err := pods.NewLab(root)
	if err != nil {
		return err
	}
	defer lab.Close()
	lab.Log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer pods.DownAll()
	if err := lab.SweepOrphans(ctx); err != nil {
		return err
	}
	if !*noBuild {
		if err := lab.BuildImages(ctx); err != nil {
			return err
		}
	}
	if *baselinePath == "" {
		*baselinePath = filepath.Join(root, "testenv", "bench", "baseline.json")
	}
	bl, err := loadBaseline(*baselinePath)
	if err != nil {
		return err
	}
	var shapeN []int
	for _, f := range strings.Split(*shapes, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return fmt.Errorf("-shapes: %q is not a process count", f)
		}
		shapeN = append(shapeN, n)
	}
	if len(shapeN) > 0 && *shapeWindows > 0 {
		if err := buildIdleImage(ctx, lab); err != nil {
			return err
		}
		if profileDir != "" {
			if err := lab.BuildOomheroImage(ctx, profileImage, "profile"); err != nil {
				return err
			}
		}
	}
	fmt.Printf("oomhero pod benchmark on %s; load average at the start %s\n", machine(), loadavg())
	var srows []shapeRow

	var lrows []latencyRow
	var irows []idleRow
	for _, src := range strings.Split(*sources, ",") {
		src = strings.TrimSpace(src)
		for _, rs := range strings.Split(*rates, ",") {
			if strings.TrimSpace(rs) == "" {
				continue
			}
			rate, err := strconv.ParseFloat(strings.TrimSpace(rs), 64)
			if err != nil {
				return fmt.Errorf("-rates: %w", err)
			}
			rows, err := latency(ctx, lab, src, rate, *runs)
			if err != nil {
				return err
			}
			lrows = append(lrows, rows...)
		}
		if *idle > 0 {
			row, err := idleCost(ctx, lab, src, *idle)
			if err != nil {
				return err
			}
			irows = append(irows, row)
		}
		for _, n := range shapeN {
			if *shapeWindows <= 0 {
				break
			}
			row, err := idleShape(ctx, lab, src, n, *shapeWindows, *shapeWindow)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "bench: idle shape %s %d processes: %v %% of a core (load %s)\n", row.source, row.procs, row.cpuPct, row.load)
			srows = append(srows, row)
		}
	}
	ms := printTables(os.Stdout, lrows, irows, *runs)
	ms = append(ms, printShapes(os.Stdout, srows)...)
	printRatios(os.Stdout, bl, ms)
	fmt.Printf("\nload average at the end %s\n", loadavg())
	return nil
}

// printShapes prints the idle shapes and returns their figures.
func printShapes(w *os.File, rows []shapeRow) []measured {
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nIdle cost next to one app holding 30%% of its limit with idle child processes (%s)\n\n", machine())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "source\tprocesses\tlimit\tCPU % of one core (median, range)\tmean\twindows\tstart-up CPU\tRSS\tpeak RSS\tload after\t")
	var ms []measured
	for _, r := range rows {
		med, lo, hi := benchstat.MedianRange(r.cpuPct)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.3f%% (%.3f..%.3f)\t%.3f%%\t%d x %v\t%v in %v\t%.1f MiB\t%.1f MiB\t%s\t\n", r.source, r.seenProcs, r.limit,
			med, lo, hi, benchstat.Mean(r.cpuPct), len(r.cpuPct), r.window, r.startCPU.Round(time.Millisecond), r.startTook.Round(time.Second),
			float64(r.rssKiB)/1024, float64(r.hwmKiB)/1024, r.load)
		ms = append(ms, measured{fmt.Sprintf("idle app with %d processes at 30%%, %s: CPU %% of one core", r.procs, r.source), med, lo, hi, ""},
			measured{fmt.Sprintf("idle app with %d processes at 30%%, %s: RSS MiB", r.procs, r.source),
				float64(r.rssKiB) / 1024, float64(r.rssKiB) / 1024, float64(r.rssKiB) / 1024, ""})
	}
	tw.Flush()
	return ms
}

// logDir, when set, receives each run's logs.
var logDir string

func keepLogs(name string, res *pods.LeakResult) {
	if logDir == "" || res == nil {
		return
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return
	}
	os.WriteFile(filepath.Join(logDir, name+"-app.log"), []byte(res.AppLog), 0o644)
	os.WriteFile(filepath.Join(logDir, name+"-oomhero.log"), []byte(res.OomheroLog), 0o644)
}

// profileDir, when set, receives a CPU profile of each idle shape's
// steady windows (-profile).
var profileDir string

// profileImage is the image of oomhero's profiling variant.
const profileImage = "localhost/oomhero:profile"

// extraEnv is added to oomhero's environment in the leak runs and the idle
// shapes (-env).
var extraEnv []pods.EnvVar

func latency(ctx context.Context, lab *pods.Lab, src string, rate float64, runs int) ([]latencyRow, error) {
	capPct := 0.0
	if rate < 100 {
		capPct = 95
	}
	rateS := strconv.FormatFloat(rate, 'f', -1, 64) + " MiB/s"
	warn := latencyRow{source: srcName(src), rate: rateS, level: "warning"}
	crit := latencyRow{source: srcName(src), rate: rateS, level: "critical", killed: capPct == 0}
	for i := 1; i <= runs; i++ {
		name := fmt.Sprintf("bench-%s-%g-%d", srcName(src), rate, i)
		res, err := lab.RunLeak(ctx, pods.LeakSpec{
			Name: name, Rate: rate, Memory: "256Mi", Cap: capPct,
			Env: append([]pods.EnvVar{{Name: "WARNING", Value: "65"}, {Name: "CRITICAL", Value: "90"}}, extraEnv...), Source: src,
		})
		keepLogs(name, res)
		if err != nil {
			return nil, fmt.Errorf("leak run %s %s #%d: %w", srcName(src), rateS, i, err)
		}
		if res.Watched.Limit == 0 {
			return nil, fmt.Errorf("leak run %s %s #%d: no thresholds in oomhero's log", srcName(src), rateS, i)
		}
		if want := src; want != "" && want != "auto" {
			act := pods.Select(res.Oomhero, "source active", "")
			if len(act) == 0 || !strings.HasPrefix(act[len(act)-1].Str("source"), want) {
				return nil, fmt.Errorf("leak run %s #%d: --source %s is not the active source", rateS, i, want)
			}
		}
		for _, p := range []struct {
			row *latencyRow
			r   pods.Reaction
		}{{&warn, res.Warn}, {&crit, res.Crit}} {
			if p.r.Crossed && p.r.Received {
				p.row.lat = append(p.row.lat, p.r.Latency())
			} else {
				p.row.missed++
			}
			if d, ok := pods.SignalTimeInside(res.Oomhero, p.row.level); ok {
				p.row.inside = append(p.row.inside, d)
			}
		}
		if capPct == 0 {
			crit.runs++
			if res.AppState.ExitCode == 137 && res.Crit.Received {
				crit.beforeKill++
			}
		}
		fmt.Fprintf(os.Stderr, "bench: %s %s run %d: %v; %v; app exit %d\n", srcName(src), rateS, i, res.Warn, res.Crit, res.AppState.ExitCode)
	}
	return []latencyRow{warn, crit}, nil
}

func srcName(s string) string {
	if s == "" {
		return "default"
	}
	return s
}

// idleCost runs 3 idle containers with 200 processes in all next to oomhero
// and measures oomhero over window.
func idleCost(ctx context.Context, lab *pods.Lab, src string, window time.Duration) (idleRow, error) {
	row := idleRow{source: srcName(src), window: window, containers: 3}
	const total = 200
	var cs []pods.Container
	left := total
	for i := 0; i < 3; i++ {
		n := left / (3 - i) // processes in this container, the app included
		left -= n
		cs = append(cs, pods.Container{Name: fmt.Sprintf("idle%d", i+1), Image: pods.AppImage, Memory: "256Mi",
			Args: []string{"-mode", "idle", "-children", strconv.Itoa(n - 1), "-sample-interval", "0"}})
	}
	cs = append(cs, pods.OomheroContainer(pods.OomheroImage, src,
		pods.EnvVar{Name: "WARNING", Value: "65"}, pods.EnvVar{Name: "CRITICAL", Value: "90"}))
	r, err := lab.Play(ctx, pods.Pod{Name: pods.PodName("bench-idle-" + srcName(src)), Containers: cs})
	if err != nil {
		return row, err
	}
	defer r.Down()
	// Wait until oomhero watches the three containers and every child runs.
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := r.WaitLog(wctx, "oomhero", func(s string) bool {
		return len(pods.Select(pods.ParseOomheroLog(s), "container watched", "")) >= 3
	}); err != nil {
		return row, fmt.Errorf("idle: oomhero does not watch the 3 containers: %w", err)
	}
	for _, c := range cs[:3] {
		if _, err := r.WaitLog(wctx, c.Name, func(s string) bool { return strings.Count(s, "event=child-start") >= 1 }); err != nil {
			return row, fmt.Errorf("idle: %s: %w", c.Name, err)
		}
	}
	time.Sleep(10 * time.Second) // start-up settles, several rescans
	st, err := r.State(ctx, "oomhero")
	if err != nil {
		return row, err
	}
	pid := st.Pid
	row.procs, err = podProcs(ctx, r, cs[:3])
	if err != nil {
		return row, err
	}
	log0, err := r.Logs(ctx, "oomhero")
	if err != nil {
		return row, err
	}
	t0, err := cpuTime(pid)
	if err != nil {
		return row, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return row, ctx.Err()
	case <-time.After(window):
	}
	t1, err := cpuTime(pid)
	if err != nil {
		return row, err
	}
	el := time.Since(start)
	log1, err := r.Logs(ctx, "oomhero")
	if err != nil {
		return row, err
	}
	row.rssKiB, row.hwmKiB, err = rss(pid)
	if err != nil {
		return row, err
	}
	row.cpuPct = 100 * (t1 - t0).Seconds() / el.Seconds()
	row.linesPerMin = float64(strings.Count(log1, "\n")-strings.Count(log0, "\n")) / el.Minutes()
	if after := pods.ParseOomheroLog(log1[len(log0):]); len(after) > 0 {
		fmt.Fprintf(os.Stderr, "bench: oomhero logged during the idle window:\n%s", pods.Short(after))
	}
	return row, nil
}

// podProcs counts the processes in the app containers' memory cgroups
// (host cgroupfs, v1 memory hierarchy or v2).
func podProcs(ctx context.Context, r *pods.Running, cs []pods.Container) (int, error) {
	n := 0
	for _, c := range cs {
		st, err := r.State(ctx, c.Name)
		if err != nil {
			return 0, err
		}
		var b []byte
		for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
			if b, err = os.ReadFile(filepath.Join(root, st.Cgroup, "cgroup.procs")); err == nil {
				break
			}
		}
		if err != nil {
			return 0, fmt.Errorf("count processes of %s: %w", c.Name, err)
		}
		n += len(strings.Fields(string(b)))
	}
	return n, nil
}

// cpuTime returns the time pid's threads ran on a CPU: the first field of
// /proc/<pid>/task/<tid>/schedstat (nanoseconds), summed.
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("oomhero's cpu time: no threads of pid %d (%v)", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			return 0, fmt.Errorf("oomhero's cpu time: %w", err)
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return 0, fmt.Errorf("oomhero's cpu time: empty %s", t)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("oomhero's cpu time: %s: %q", t, f[0])
		}
		sum += time.Duration(n)
	}
	return sum, nil
}

// rss returns VmRSS and VmHWM of pid in KiB.
func rss(pid int) (rss, hwm uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("oomhero's rss: %w", err)
	}
	var found int
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("oomhero's rss: %s: %q", k, v)
		}
		if k == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("oomhero's rss: no VmRSS/VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// percentile returns the nearest-rank p-th percentile of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	k := int(p/100*float64(len(d))+0.999999) - 1
	k = max(0, min(k, len(d)-1))
	return d[k]
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond && d > -time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	default:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
}

func printTables(w *os.File, lrows []latencyRow, irows []idleRow, runs int) []measured {
	var ms []measured
	if len(lrows) == 0 && len(irows) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nReaction latency: signal receipt in the app - its first sample at or above the threshold\n")
	fmt.Fprintf(w, "(256 MiB limit, WARNING=65 CRITICAL=90, %d runs per rate; nearest-rank percentiles; in oomhero: from the kernel event (BPF)\n", runs)
	fmt.Fprintf(w, "or the reading (cgroupfs) behind the first signal of the level to its send, from oomhero's log: the rest is the kernel and the app)\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "source\trate\tlevel\tn\tp50\tp90\tp99\tmax\tmissed\tcritical before OOM kill\tin oomhero p50 / max\t")
	for _, r := range lrows {
		d := slices.Clone(r.lat)
		slices.Sort(d)
		var mx time.Duration
		if len(d) > 0 {
			mx = d[len(d)-1]
		}
		kill := "-"
		if r.killed {
			kill = fmt.Sprintf("%d/%d", r.beforeKill, r.runs)
		}
		in := slices.Clone(r.inside)
		slices.Sort(in)
		inside := "-"
		if len(in) > 0 {
			inside = fmtDur(percentile(in, 50)) + " / " + fmtDur(in[len(in)-1])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", r.source, r.rate, r.level, len(d),
			fmtDur(percentile(d, 50)), fmtDur(percentile(d, 90)), fmtDur(percentile(d, 99)), fmtDur(mx), r.missed, kill, inside)
		if len(d) > 0 {
			ms = append(ms, measured{fmt.Sprintf("reaction %s %s p50 ms", r.rate, r.level),
				float64(percentile(d, 50)) / 1e6, float64(d[0]) / 1e6, float64(mx) / 1e6, r.source})
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "load average after the reaction runs: %s\n", loadavg())
	if len(irows) == 0 {
		return ms
	}
	fmt.Fprintf(w, "\nIdle cost of oomhero next to %d containers / %d processes\n\n", irows[0].containers, irows[0].procs)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "source\twindow\tCPU (% of one core)\tRSS\tpeak RSS\tlog lines/min\t")
	for _, r := range irows {
		fmt.Fprintf(tw, "%s\t%v\t%.3f%%\t%.1f MiB\t%.1f MiB\t%.1f\t\n", r.source, r.window.Round(time.Second), r.cpuPct,
			float64(r.rssKiB)/1024, float64(r.hwmKiB)/1024, r.linesPerMin)
		ms = append(ms, measured{fmt.Sprintf("idle %d containers/%d processes, %s: CPU %% of one core", r.containers, r.procs, r.source),
			r.cpuPct, r.cpuPct, r.cpuPct, ""})
	}
	tw.Flush()
	fmt.Fprintf(w, "load average after the idle window: %s\n", loadavg())
	return ms
}
