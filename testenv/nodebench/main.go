// Command nodebench measures the node agent (oomhero node) at the scale of
// a busy node, on real cgroups and processes of this host, and prints the
// figures as tables (issue 10, item 4).
//
//	go run ./testenv/nodebench [-source bpf,cgroupfs] [-containers 100] [-procs 5000]
//	    [-runs 20] [-rates 20,200] [-windows 5] [-window 20s]
//
// The node: -containers memory cgroups in the kubelet's layout (cgroupfs
// driver kubepods/burstable/pod<uid>/<64 hex> on cgroup v1; the systemd
// driver's kubepods.slice/.../cri-containerd-<64 hex>.scope on v2), each
// with a 256 MiB limit, holding -procs processes in all: each container's
// main process is testenv/bench/sleeper (a static C program: a few pages
// per process) that forks its idle children and then becomes /bin/sleep,
// or, in one container, the test app (testenv/app) in leak mode waiting
// for its start signal. Every main process has OOMHERO=on in its
// environment (opted in), the children inherit it.
//
// For each source, one oomhero node (--kube=off --proc=/proc
// --cgroup-root=/sys/fs/cgroup, WARNING 65, CRITICAL 90, defaults
// otherwise), built from this checkout, runs in a cgroup of its own:
//
//   - Start-up: CPU time (cgroup accounting: cpuacct.usage on v1, cpu.stat
//     usage_usec on v2) from its start until it logged "container watched"
//     for every container, plus 5 s.
//   - Idle: CPU time over -windows consecutive windows of -window (median
//     and range, percent of one core), then VmRSS, RssAnon, RssFile and
//     VmHWM (/proc/<pid>/status).
//   - Reaction: -runs times per rate, the leaking container is replaced by
//     a new one (new pod UID and container id, its 50 processes, the app
//     waiting for SIGWINCH); once oomhero logged "container watched" for
//     it, the app leaks at the rate up to 95% of its limit. As in
//     testenv/bench (testenv/pods.React), the latency of a level is the
//     app's receipt of the signal minus its own first sample at or above
//     the threshold oomhero logged (CLOCK_MONOTONIC both, samples after
//     every 64 KiB step). Nearest-rank percentiles: with 20 runs p99 is the
//     maximum.
//
// The sidecar's figures shown next to them are the previous release's
// (testenv/bench/baseline.json); `make bench` measures today's sidecar in
// pods just before (testenv/bench).
//
// Every cgroup and process it made is removed on exit, on error and on
// SIGINT/SIGTERM; a run killed with SIGKILL is swept by the next one
// (state under /run/oomhero-nodebench). Needs root, Go, clang with
// libc6-dev (the sleeper).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/oomhero/oomhero/testenv/app/applog"
	"github.com/oomhero/oomhero/testenv/pods"
	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/testenv/benchstat"
)

const (
	mib   = 1 << 20
	limit = 256 * mib
)

func main() {
	err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nodebench:", err)
		os.Exit(1)
	}
}

type opts struct {
	sources              []string
	containers, procs    int
	runs                 int
	rates                []float64
	windows              int
	window               time.Duration
	keep                 string
	tags                 string // oomhero build tags (-tags)
	bin, app, sleeper    string
	scratch              string
	perContainer, extras int
}

type idleRow struct {
	source                string
	watched, procs        int
	startCPU, startTook   time.Duration
	cpuPct                []float64
	forks, reads          []float64 // per window: host forks/s (/proc/stat processes), oomhero's read syscalls/s (/proc/<pid>/io syscr)
	rss, anon, file, hwm  uint64    // KiB
	loadBefore, loadAfter string
	active                string
}

type latRow struct {
	source, level string
	rate          float64
	lat           []time.Duration
	inside        []time.Duration // in oomhero: the kernel event (BPF) or reading behind the first signal of the level to its send
	missed        int
	discover      []time.Duration // start of the leaker's main process to "container watched"
	floor         []time.Duration // the app's own floor at this rate (appFloor)
}

func run() (err error) {
	var o opts
	sources := flag.String("source", "bpf,cgroupfs", "comma-separated oomhero --source values, one row each")
	flag.IntVar(&o.containers, "containers", 100, "containers (memory cgroups in the kubelet's layout)")
	flag.IntVar(&o.procs, "procs", 5000, "processes in all the containers")
	flag.IntVar(&o.runs, "runs", 20, "leak runs per rate (0: idle figures only)")
	rates := flag.String("rates", "20,200", "leak rates, MiB/s (each run stops at 95% of the limit)")
	flag.IntVar(&o.windows, "windows", 5, "steady idle windows")
	flag.DurationVar(&o.window, "window", 20*time.Second, "length of one idle window")
	flag.StringVar(&o.keep, "logs", "", "directory to keep oomhero's and the leaking apps' logs in (empty: none)")
	flag.StringVar(&o.tags, "tags", "", "build tags for oomhero (profile: the profiling variant, which writes a CPU profile when OOMHERO_CPUPROFILE is set in this command's environment)")
	flag.Parse()
	for _, s := range strings.Split(*sources, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.sources = append(o.sources, s)
		}
	}
	for _, s := range strings.Split(*rates, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		r, err := strconv.ParseFloat(s, 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("-rates: %q is not a rate in MiB/s", s)
		}
		o.rates = append(o.rates, r)
	}
	if o.containers < 1 || o.procs < o.containers || len(o.sources) == 0 {
		return fmt.Errorf("-containers %d, -procs %d, -source %q: want at least one container, a process for each, one source", o.containers, o.procs, *sources)
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (cgroups, BPF, every process's /proc files)")
	}
	root, err := pods.FindRoot()
	if err != nil {
		return err
	}
	if o.scratch, err = os.MkdirTemp("", "oomhero-nodebench-"); err != nil {
		return err
	}
	defer os.RemoveAll(o.scratch)
	if err := build(root, &o); err != nil {
		return err
	}

	// From here on the benchmark reaps every process itself.
	h, err := newHost()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop() // after the clean-up: a second Ctrl-C does not cut it short
	defer func() {
		fmt.Fprintln(os.Stderr, "nodebench: removing every process and cgroup it made")
		if cerr := h.cleanup(); cerr != nil {
			fmt.Fprintln(os.Stderr, "nodebench: clean-up:", cerr)
			if err == nil {
				err = cerr
			}
		}
	}()

	layout := "cgroup v1, cgroupfs driver: " + h.parent + "/kubepods/burstable/pod<uid>/<64 hex>"
	if h.v2 {
		layout = "cgroup v2, systemd driver: " + h.parent + "/kubepods.slice/.../cri-containerd-<64 hex>.scope"
	}
	fmt.Printf("oomhero node benchmark on %s\n%d containers (%s, 256 MiB limits), %d processes; load average at the start %s\n",
		machine(), o.containers, layout, o.procs, loadavg())

	// The node: containers-1 idle ones and the leaker's.
	o.perContainer = o.procs / o.containers
	o.extras = o.procs - o.perContainer*o.containers
	env := append(os.Environ(), "OOMHERO=on")
	for i := 0; i < o.containers-1; i++ {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		c, err := h.newContainer(limit)
		if err != nil {
			return err
		}
		n := o.perContainer
		if i < o.extras {
			n++
		}
		if c.pid, err = h.start([]string{filepath.Join(c.dir, "cgroup.procs")}, env, filepath.Join(o.scratch, "idle-"+c.id[:12]+".log"),
			o.sleeper, strconv.Itoa(n-1), "/bin/sleep", "infinity"); err != nil {
			return fmt.Errorf("container %d: %w", i+1, err)
		}
	}
	leaker, err := newLeaker(h, &o, 0)
	if err != nil {
		return err
	}
	defer func() { h.remove(leaker) }()
	if err := waitProcs(ctx, h, o.procs); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "nodebench: %d containers and %d processes up\n", o.containers, o.procs)

	var irows []idleRow
	var lrows []latRow
	for _, src := range o.sources {
		ir, lr, err := benchSource(ctx, h, &o, src, &leaker)
		if err != nil {
			return fmt.Errorf("--source %s: %w (%v)", src, err, context.Cause(ctx))
		}
		irows = append(irows, ir)
		lrows = append(lrows, lr...)
	}
	printTables(os.Stdout, &o, irows, lrows, filepath.Join(root, "testenv", "bench", "baseline.json"))
	fmt.Printf("\nload average at the end %s\n", loadavg())
	return nil
}

// build compiles oomhero (the full binary, as /oomhero-node in the image),
// the test app and the sleeper into the scratch directory.
func build(root string, o *opts) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is not on PATH: %w", err)
	}
	o.bin = filepath.Join(o.scratch, "oomhero")
	o.app = filepath.Join(o.scratch, "testapp")
	o.sleeper = filepath.Join(o.scratch, "sleeper")
	for _, c := range [][]string{
		{goBin, "build", "-trimpath", "-tags", o.tags, "-o", o.bin, "./cmd/oomhero"},
		{goBin, "build", "-trimpath", "-o", o.app, "./testenv/app"},
		{"clang", "-static", "-O2", "-o", o.sleeper, filepath.Join(root, "testenv", "bench", "sleeper", "sleeper.c")},
	} {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s (clang and libc6-dev: testenv/install-deps): %v: %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// newLeaker makes a container whose main process is the test app in leak
// mode (rate MiB/s; 0: not used before the first run) behind the sleeper's
// children, waiting for SIGWINCH.
func newLeaker(h *host, o *opts, rate float64) (*container, error) {
	c, err := h.newContainer(limit)
	if err != nil {
		return nil, err
	}
	if rate == 0 {
		rate = 20
	}
	c.log = filepath.Join(o.scratch, "leak-"+c.id[:12]+".log")
	if c.pid, err = h.start([]string{filepath.Join(c.dir, "cgroup.procs")}, append(os.Environ(), "OOMHERO=on"), c.log,
		o.sleeper, strconv.Itoa(o.perContainer-1), o.app, "-mode", "leak", "-rate", strconv.FormatFloat(rate, 'f', -1, 64),
		"-cap-percent", "95", "-start-signal", "SIGWINCH", "-sample-interval", "0"); err != nil {
		return nil, fmt.Errorf("leaking container: %w", err)
	}
	return c, nil
}

// waitProcs waits until the container cgroups hold n processes.
func waitProcs(ctx context.Context, h *host, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := 0
		h.mu.Lock()
		made := append([]string(nil), h.made...)
		h.mu.Unlock()
		for _, d := range made {
			if strings.HasPrefix(d, filepath.Join(h.memRoot, h.parent, "kubepods")) {
				ps, _ := procs(d)
				got += len(ps)
			}
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d processes in the containers after 2 minutes", got, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// benchSource runs one oomhero node with --source src over the node, then
// the leak runs.
func benchSource(ctx context.Context, h *host, o *opts, src string, leaker **container) (idleRow, []latRow, error) {
	row := idleRow{source: src, loadBefore: loadavg()}
	procsFile, acct, err := h.agentCgroup(fmt.Sprintf("oomhero-nodebench-%d-%s", os.Getpid(), src))
	if err != nil {
		return row, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return row, nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	logFile := filepath.Join(o.scratch, "oomhero-"+src+".log")
	cpu0, err := acct()
	if err != nil {
		return row, nil, err
	}
	start := time.Now()
	pid, err := h.start([]string{procsFile}, os.Environ(), logFile, o.bin, "node", "--kube=off", "--proc=/proc",
		"--cgroup-root=/sys/fs/cgroup", "--cgroup-match=/"+h.parent+"/", "--listen="+addr, "--source="+src, "--events=off", "--log-format=json", "--warning=65", "--critical=90")
	if err != nil {
		return row, nil, err
	}
	defer func() {
		unix.Kill(pid, unix.SIGTERM)
		for range 100 {
			if _, ok := h.ended(pid); ok {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		unix.Kill(pid, unix.SIGKILL)
		keep(o, logFile)
	}()
	agentLog := func() []pods.Entry {
		b, _ := os.ReadFile(logFile)
		return pods.ParseOomheroLog(string(b))
	}
	// Start-up: until every container is watched, plus 5 s.
	for {
		es := agentLog()
		seen := map[string]bool{}
		for _, e := range pods.Select(es, "container watched", "") {
			seen[e.Str("cgroup")] = true
		}
		if row.watched = len(seen); row.watched >= o.containers {
			for _, e := range pods.Select(es, "source active", "") {
				row.active = e.Str("source")
			}
			break
		}
		if ws, ok := h.ended(pid); ok {
			b, _ := os.ReadFile(logFile)
			return row, nil, fmt.Errorf("oomhero ended (%v): %s", ws, lastLines(b, 10))
		}
		if time.Since(start) > 3*time.Minute {
			return row, nil, fmt.Errorf("oomhero watches %d of %d containers after 3 minutes (log %s)", row.watched, o.containers, logFile)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return row, nil, err
		}
	}
	if !strings.HasPrefix(row.active, src) {
		return row, nil, fmt.Errorf("--source %s: the active source is %q", src, row.active)
	}
	row.startTook = time.Since(start)
	if err := sleep(ctx, 5*time.Second); err != nil {
		return row, nil, err
	}
	cpu1, err := acct()
	if err != nil {
		return row, nil, err
	}
	row.startCPU = cpu1 - cpu0
	fmt.Fprintf(os.Stderr, "nodebench: %s: %d containers watched after %v, start-up CPU %v\n", src, row.watched, row.startTook.Round(time.Millisecond), row.startCPU.Round(time.Millisecond))
	ps := 0
	for _, d := range kubeDirs(h) {
		p, _ := procs(d)
		ps += len(p)
	}
	row.procs = ps
	for w := range o.windows {
		c0, err := acct()
		if err != nil {
			return row, nil, err
		}
		f0, r0 := counter("/proc/stat", "processes "), counter(fmt.Sprintf("/proc/%d/io", pid), "syscr: ")
		t0 := time.Now()
		if err := sleep(ctx, o.window); err != nil {
			return row, nil, err
		}
		c1, err := acct()
		if err != nil {
			return row, nil, err
		}
		f1, r1 := counter("/proc/stat", "processes "), counter(fmt.Sprintf("/proc/%d/io", pid), "syscr: ")
		el := time.Since(t0).Seconds()
		pct := 100 * (c1 - c0).Seconds() / el
		row.cpuPct = append(row.cpuPct, pct)
		row.forks = append(row.forks, float64(f1-f0)/el)
		row.reads = append(row.reads, float64(r1-r0)/el)
		fmt.Fprintf(os.Stderr, "nodebench: %s: idle window %d: %.3f %% of one core, host forks %.0f/s, oomhero read syscalls %.0f/s (load %s)\n",
			src, w+1, pct, float64(f1-f0)/el, float64(r1-r0)/el, loadavg())
	}
	if row.rss, row.anon, row.file, row.hwm, err = memory(pid); err != nil {
		return row, nil, err
	}
	row.loadAfter = loadavg()

	var lrows []latRow
	for _, rate := range o.rates {
		if o.runs <= 0 {
			break
		}
		warn := latRow{source: src, level: "warning", rate: rate}
		crit := latRow{source: src, level: "critical", rate: rate}
		for i := 1; i <= o.runs; i++ {
			before, _ := os.ReadFile(logFile)
			w, c, disc, err := leakRun(ctx, h, o, logFile, leaker, rate)
			if err != nil {
				return row, nil, fmt.Errorf("leak run %g MiB/s #%d: %w", rate, i, err)
			}
			after, _ := os.ReadFile(logFile)
			var runLog []pods.Entry
			if len(after) >= len(before) {
				runLog = pods.ParseOomheroLog(string(after[len(before):]))
			}
			crit.discover = append(crit.discover, disc)
			for _, p := range []struct {
				row *latRow
				r   pods.Reaction
			}{{&warn, w}, {&crit, c}} {
				if p.r.Crossed && p.r.Received {
					p.row.lat = append(p.row.lat, p.r.Latency())
				} else {
					p.row.missed++
				}
				if d, ok := pods.SignalTimeInside(runLog, p.row.level); ok {
					p.row.inside = append(p.row.inside, d)
				}
			}
			fmt.Fprintf(os.Stderr, "nodebench: %s %g MiB/s run %d: watched %v after start; %v; %v\n", src, rate, i, disc.Round(time.Millisecond), w, c)
		}
		if fl, err := appFloor(ctx, h, o, rate); err != nil {
			fmt.Fprintf(os.Stderr, "nodebench: app floor at %g MiB/s: %v\n", rate, err)
		} else {
			warn.floor, crit.floor = fl, fl
		}
		lrows = append(lrows, warn, crit)
	}
	return row, lrows, nil
}

func kubeDirs(h *host) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, d := range h.made {
		if strings.HasPrefix(d, filepath.Join(h.memRoot, h.parent, "kubepods")) {
			out = append(out, d)
		}
	}
	return out
}

// leakRun replaces the leaking container with a new one, waits until
// oomhero watches it, lets the app leak at rate to 95% of its limit and
// returns the app's view of both signals and how long oomhero took to
// watch the new container.
func leakRun(ctx context.Context, h *host, o *opts, agentLog string, leaker **container, rate float64) (w, c pods.Reaction, disc time.Duration, err error) {
	if err := h.remove(*leaker); err != nil {
		return w, c, 0, err
	}
	t0 := time.Now()
	l, err := newLeaker(h, o, rate)
	if err != nil {
		return w, c, 0, err
	}
	*leaker = l
	defer keep(o, l.log)
	var watched pods.Watched
	for {
		b, _ := os.ReadFile(agentLog)
		ww, ok, werr := pods.FindWatched(pods.ParseOomheroLog(string(b)), l.id)
		if werr != nil {
			return w, c, 0, werr
		}
		if ok {
			watched, disc = ww, time.Since(t0)
			break
		}
		if time.Since(t0) > 30*time.Second {
			return w, c, 0, fmt.Errorf("oomhero did not log \"container watched\" for %s in 30 s", l.path)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return w, c, 0, err
		}
	}
	appLog := func() string { b, _ := os.ReadFile(l.log); return string(b) }
	if err := waitFor(ctx, 10*time.Second, func() bool { return strings.Contains(appLog(), "event=waiting") }); err != nil {
		return w, c, 0, fmt.Errorf("app not waiting for its start signal: %w\n%s", err, appLog())
	}
	if err := unix.Kill(l.pid, unix.SIGWINCH); err != nil {
		return w, c, 0, fmt.Errorf("start the leak: %w", err)
	}
	// Until the critical signal and the app's own sample over the critical
	// threshold, or 3 s after the cap. A signal the BPF program sent can
	// arrive before that sample (the crossing page is touched before it;
	// the app's figure reads memory.stat, which the kernel flushes in
	// batches): the app goes on to its cap, 500 ms is ample for that
	// sample. The log grows by a line per 64 KiB step: only its new lines
	// are read (a whole read every 50 ms was a few percent of a CPU, and
	// garbage collections, taken from the CPU oomhero reacts on).
	var capSeen, critSeen time.Time
	tail := &pods.FileTail{Path: l.log}
	if err := waitFor(ctx, 30*time.Second+time.Duration(float64(limit)/mib/rate*float64(time.Second)), func() bool {
		s := tail.Next()
		if critSeen.IsZero() && strings.Contains(s, "event=signal signal=SIGUSR2") {
			critSeen = time.Now()
		}
		if !critSeen.IsZero() && (strings.Contains(s, "event=cap") || time.Since(critSeen) > 500*time.Millisecond) {
			return true
		}
		if capSeen.IsZero() && strings.Contains(s, "event=cap") {
			capSeen = time.Now()
		}
		return !capSeen.IsZero() && time.Since(capSeen) > 3*time.Second
	}); err != nil {
		return w, c, 0, fmt.Errorf("leak: %w", err)
	}
	lg, err := applog.ParseLog(strings.NewReader(appLog()))
	if err != nil {
		return w, c, 0, fmt.Errorf("app log %s: %w", l.log, err)
	}
	return pods.React(lg, watched.Warning, "SIGUSR1"), pods.React(lg, watched.Critical, "SIGUSR2"), disc, nil
}

// appFloor measures the test app's own share of a reaction at a leak rate:
// the app leaks at rate in a container oomhero does not watch (no
// OOMHERO=on: node mode watches only opted-in containers), and the
// benchmark sends it SIGUSR1 with pidfd_send_signal every 25 ms, each after
// the previous one was logged, from 300 ms into the leak for 5 s or until
// its cap; each sample is the send to the app's logged receipt. A signal
// no sender can get into the app faster than this.
func appFloor(ctx context.Context, h *host, o *opts, rate float64) ([]time.Duration, error) {
	const span = 5 * time.Second
	capMiB := rate * (span + time.Second).Seconds()
	c, err := h.newContainer(uint64(capMiB+256) * mib)
	if err != nil {
		return nil, err
	}
	defer h.remove(c)
	c.log = filepath.Join(o.scratch, "floor-"+c.id[:12]+".log")
	pid, err := h.start([]string{filepath.Join(c.dir, "cgroup.procs")}, os.Environ(), c.log,
		o.app, "-mode", "leak", "-rate", strconv.FormatFloat(rate, 'f', -1, 64),
		"-cap", strconv.FormatFloat(capMiB, 'f', 0, 64), "-start-signal", "SIGWINCH", "-sample-interval", "0")
	if err != nil {
		return nil, err
	}
	defer unix.Kill(pid, unix.SIGKILL)
	defer keep(o, c.log)
	tail := &pods.FileTail{Path: c.log}
	if err := waitFor(ctx, 10*time.Second, func() bool { return strings.Contains(tail.Next(), "event=waiting") }); err != nil {
		return nil, fmt.Errorf("app not waiting for its start signal: %w", err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, unix.SIGWINCH, nil, 0); err != nil {
		return nil, err
	}
	if err := sleep(ctx, 300*time.Millisecond); err != nil {
		return nil, err
	}
	var out []time.Duration
	for end := time.Now().Add(span); time.Now().Before(end); {
		if err := sleep(ctx, 25*time.Millisecond); err != nil {
			return out, err
		}
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		sent := ts.Nano()
		if err := unix.PidfdSendSignal(fd, unix.SIGUSR1, nil, 0); err != nil {
			return out, fmt.Errorf("send: %w", err)
		}
		var got int64
		capped := false
		if err := waitFor(ctx, time.Second, func() bool {
			for _, line := range strings.Split(tail.Next(), "\n") {
				capped = capped || strings.Contains(line, "event=cap")
				if !strings.Contains(line, "event=signal signal=SIGUSR1") {
					continue
				}
				for _, f := range strings.Fields(line) {
					if v, ok := strings.CutPrefix(f, "mono_ns="); ok {
						got, _ = strconv.ParseInt(v, 10, 64)
					}
				}
			}
			return got != 0
		}); err != nil {
			return out, fmt.Errorf("SIGUSR1 not logged within 1 s of its send")
		}
		out = append(out, time.Duration(got-sent))
		if capped {
			break
		}
	}
	return out, nil
}

func keep(o *opts, file string) {
	if o.keep == "" {
		return
	}
	if err := os.MkdirAll(o.keep, 0o755); err != nil {
		return
	}
	if b, err := os.ReadFile(file); err == nil {
		os.WriteFile(filepath.Join(o.keep, filepath.Base(file)), b, 0o644)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// counter returns the number after prefix on a line of file (0 when
// missing).
func counter(file, prefix string) uint64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// memory returns VmRSS, RssAnon, RssFile and VmHWM of pid, KiB.
func memory(pid int) (rss, anon, file, hwm uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, 0, fmt.Errorf("oomhero's memory: %w", err)
	}
	want := map[string]*uint64{"VmRSS": &rss, "RssAnon": &anon, "RssFile": &file, "VmHWM": &hwm}
	found := 0
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		p := want[k]
		if !ok || p == nil {
			continue
		}
		if *p, err = strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("/proc/%d/status: %s: %q", pid, k, v)
		}
		found++
	}
	if found != len(want) {
		return 0, 0, 0, 0, fmt.Errorf("/proc/%d/status: want VmRSS, RssAnon, RssFile, VmHWM", pid)
	}
	return rss, anon, file, hwm, nil
}

// percentile returns the nearest-rank p-th percentile of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	k := int(p/100*float64(len(d))+0.999999) - 1
	return d[max(0, min(k, len(d)-1))]
}

func fmtDur(d time.Duration) string {
	if d < time.Millisecond && d > -time.Millisecond {
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	}
	return fmt.Sprintf("%.2fms", float64(d)/1e6)
}

// Targets of issue 10 at this size.
const (
	targetIdlePct = 0.2
	targetRSSMiB  = 64
	targetP99     = time.Millisecond
)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func printTables(w *os.File, o *opts, irows []idleRow, lrows []latRow, baselinePath string) {
	fmt.Fprintf(w, "\nIdle cost of oomhero node next to %d containers / %d processes (%s)\n", o.containers, o.procs, machine())
	fmt.Fprintf(w, "CPU from the cgroup accounting of oomhero's own cgroup over %d windows of %v; start-up (until every container was watched, plus 5 s) apart\n\n", o.windows, o.window)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "source\tcontainers watched\tprocesses\tCPU % of one core (median, range)\tmean\tstart-up CPU (all watched after)\tVmRSS\tRssAnon\tRssFile\tVmHWM\thost forks/s\toomhero reads/s\tload before\tload after\ttarget <0.2% / <64 MiB\t")
	for _, r := range irows {
		med, lo, hi := benchstat.MedianRange(r.cpuPct)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f%% (%.3f..%.3f)\t%.3f%%\t%v (%v)\t%.1f MiB\t%.1f MiB\t%.1f MiB\t%.1f MiB\t%.0f\t%.0f\t%s\t%s\tCPU %s, RSS %s\t\n",
			r.source, r.watched, r.procs, med, lo, hi, benchstat.Mean(r.cpuPct), r.startCPU.Round(time.Millisecond), r.startTook.Round(100*time.Millisecond),
			float64(r.rss)/1024, float64(r.anon)/1024, float64(r.file)/1024, float64(r.hwm)/1024, benchstat.Median(r.forks), benchstat.Median(r.reads), r.loadBefore, r.loadAfter,
			verdict(benchstat.Mean(r.cpuPct) < targetIdlePct), verdict(float64(r.rss)/1024 < targetRSSMiB))
	}
	tw.Flush()
	fmt.Fprintln(w, "(host forks/s: the node's new processes, /proc/stat \"processes\"; oomhero reads/s: its read syscalls, /proc/<pid>/io syscr; medians over the windows)")
	for _, r := range irows {
		fmt.Fprintf(w, "--source %s: active source %q\n", r.source, r.active)
	}
	if len(lrows) > 0 {
		fmt.Fprintf(w, "\nReaction of oomhero node to one leaking container among them: signal receipt in the app - its first sample at or above the threshold\n")
		fmt.Fprintf(w, "(256 MiB limit, WARNING=65 CRITICAL=90, leak to 95%%; %d runs per rate, a new container each run; nearest-rank percentiles: with %d runs p99 is the %s;\n", o.runs, o.runs, map[bool]string{true: "maximum", false: "99th"}[o.runs < 100])
		fmt.Fprintf(w, "in oomhero: from the kernel event (BPF) or the reading behind the first signal of the level to its send, from oomhero's log; the rest is the kernel and the app;\n")
		fmt.Fprintf(w, "app floor: the same app leaking at the same rate in a container oomhero does not watch, SIGUSR1 sent by the benchmark with pidfd_send_signal every 25 ms, send to logged receipt)\n\n")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "source\trate\tlevel\tn\tp50\tp90\tp99\tmax\tmissed\tnew container watched after (p50, max)\ttarget p99 <1ms (bpf)\tin oomhero p50 / p99\tapp floor p50 / p99 (n)\t")
		for _, r := range lrows {
			d := slices.Clone(r.lat)
			slices.Sort(d)
			var mx time.Duration
			if len(d) > 0 {
				mx = d[len(d)-1]
			}
			disc := "-"
			if len(r.discover) > 0 {
				dd := slices.Clone(r.discover)
				slices.Sort(dd)
				disc = fmt.Sprintf("%s, %s", fmtDur(percentile(dd, 50)), fmtDur(dd[len(dd)-1]))
			}
			target := "-"
			if r.source == "bpf" {
				target = verdict(len(d) > 0 && r.missed == 0 && percentile(d, 99) < targetP99)
			}
			inside := "-"
			if len(r.inside) > 0 {
				in := slices.Clone(r.inside)
				slices.Sort(in)
				inside = fmtDur(percentile(in, 50)) + " / " + fmtDur(percentile(in, 99))
			}
			floor := "-"
			if len(r.floor) > 0 {
				fl := slices.Clone(r.floor)
				slices.Sort(fl)
				floor = fmt.Sprintf("%s / %s (%d)", fmtDur(percentile(fl, 50)), fmtDur(percentile(fl, 99)), len(fl))
			}
			fmt.Fprintf(tw, "%s\t%g MiB/s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", r.source, r.rate, r.level, len(d),
				fmtDur(percentile(d, 50)), fmtDur(percentile(d, 90)), fmtDur(percentile(d, 99)), fmtDur(mx), r.missed, disc, target, inside, floor)
		}
		tw.Flush()
	}
	printSidecar(w, baselinePath)
}

// printSidecar prints the sidecar's figures of the previous release, for
// comparison.
func printSidecar(w *os.File, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(w, "\n(no sidecar figures: %v)\n", err)
		return
	}
	var bl struct {
		Release string `json:"release"`
		Figures []struct {
			Key   string  `json:"key"`
			Value float64 `json:"value"`
			Low   float64 `json:"low"`
			High  float64 `json:"high"`
		} `json:"figures"`
	}
	if err := json.Unmarshal(b, &bl); err != nil {
		fmt.Fprintf(w, "\n(no sidecar figures: %s: %v)\n", path, err)
		return
	}
	fmt.Fprintf(w, "\nThe sidecar, for comparison: %s (%s; `make bench` measures today's sidecar in pods before this table)\n\n", bl.Release, filepath.Base(path))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\trange\t")
	for _, f := range bl.Figures {
		if strings.HasPrefix(f.Key, "loader:") {
			continue
		}
		rg := "-"
		if f.Low != 0 || f.High != 0 {
			rg = fmt.Sprintf("%g..%g", f.Low, f.High)
		}
		fmt.Fprintf(tw, "%s\t%g\t%s\t\n", f.Key, f.Value, rg)
	}
	tw.Flush()
}

// loadavg returns the three load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// machine describes the host: CPUs, model, memory, kernel.
func machine() string {
	model, n := "?", 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			switch {
			case !ok:
			case strings.TrimSpace(k) == "processor":
				n++
			case strings.TrimSpace(k) == "model name" && model == "?":
				model = strings.TrimSpace(v)
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if kib, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				mem = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
			}
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d CPUs (%s), %s RAM, kernel %s", n, model, mem, kernel)
}
