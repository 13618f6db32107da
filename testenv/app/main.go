package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

type config struct {
	mode           string
	rate           float64 // MiB/s
	chunk          int     // KiB
	capMiB         float64
	capPercent     float64
	percent        float64
	anonMiB        float64
	file           string
	fileSizeMiB    float64
	hotMiB         float64
	probe          time.Duration
	children       int
	handle         bool
	signals        string
	listen         string
	cgroupRoot     string
	cgroupDir      string
	sampleInterval time.Duration
	startSignal    string
	delay          time.Duration
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		logf("event=error msg=%s", strings.ReplaceAll(err.Error(), " ", "_"))
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("testapp", flag.ContinueOnError)
	fs.StringVar(&c.mode, "mode", "leak", "leak, hold, churn, idle (child: internal)")
	fs.Float64Var(&c.rate, "rate", 20, "leak rate in MiB/s (0: as fast as possible)")
	fs.IntVar(&c.chunk, "chunk", 64, "leak step in KiB; a sample is logged after each")
	fs.Float64Var(&c.capMiB, "cap", 0, "leak: stop at this many MiB leaked and hold (0: no cap)")
	fs.Float64Var(&c.capPercent, "cap-percent", 0, "leak: stop when the working set reaches this percent of the limit and hold (0: no cap)")
	fs.Float64Var(&c.percent, "percent", 80, "hold: working set to reach, percent of the memory limit")
	fs.Float64Var(&c.anonMiB, "anon", 16, "churn: anonymous memory to hold, MiB")
	fs.StringVar(&c.file, "file", "", "churn: file to write and re-read (default $TMPDIR/testapp-churn.dat)")
	fs.Float64Var(&c.fileSizeMiB, "file-size", 0, "churn: file size in MiB (default twice the memory limit, 512 without a limit)")
	fs.Float64Var(&c.hotMiB, "hot", 0, "churn: also a file of this many MiB read after every pass over -file, so its pages are active (0: none)")
	fs.DurationVar(&c.probe, "probe", 0, "churn: read the cgroup this often and log the highest working set of each pass (0: no probe)")
	fs.IntVar(&c.children, "children", 0, "child processes without SIGUSR1/SIGUSR2 handlers")
	fs.BoolVar(&c.handle, "handle", true, "handle the -signals (false: reset them to their default action)")
	fs.StringVar(&c.signals, "signals", "SIGUSR1,SIGUSR2", "signals to handle and log, comma-separated")
	fs.StringVar(&c.listen, "listen", "", "address for GET /healthz (empty: none)")
	fs.StringVar(&c.cgroupRoot, "cgroup-root", "/sys/fs/cgroup", "where cgroupfs is mounted")
	fs.StringVar(&c.cgroupDir, "cgroup-dir", "", "memory cgroup directory to read (default: found from /proc/self/cgroup)")
	fs.StringVar(&c.startSignal, "start-signal", "", "wait for this signal (e.g. SIGWINCH) before starting the mode's work")
	fs.DurationVar(&c.delay, "delay", 0, "wait this long before starting the mode's work")
	fs.DurationVar(&c.sampleInterval, "sample-interval", 100*time.Millisecond, "sample period outside leak steps (0: none)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch c.mode {
	case "leak", "hold", "churn", "idle", "child":
	default:
		return c, fmt.Errorf("unknown -mode %q (accepted: leak, hold, churn, idle)", c.mode)
	}
	if c.chunk <= 0 || c.rate < 0 || c.children < 0 || c.capMiB < 0 || c.capPercent < 0 || c.capPercent > 100 {
		return c, errors.New("-chunk must be > 0; -rate, -children, -cap must be >= 0; -cap-percent within 0..100")
	}
	if c.mode == "hold" && (c.percent <= 0 || c.percent > 100) && c.capMiB == 0 {
		return c, fmt.Errorf("-percent %v outside 0..100", c.percent)
	}
	return c, nil
}

func run(args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if c.mode == "child" {
		return runChild()
	}

	sigs, err := parseSignals(c.signals)
	if err != nil {
		return err
	}
	if !c.handle {
		for _, s := range sigs {
			if err := defaultAction(s); err != nil {
				return err
			}
		}
	}

	cg, err := openSelfCgroup(c.cgroupRoot, c.cgroupDir)
	if err != nil {
		return err
	}
	defer cg.Close()
	limit, err := cg.Limit()
	if err != nil {
		return err
	}
	logf("event=start pid=%d mode=%s cgroup_dir=%s version=%s limit=%d mono_ns=%d", os.Getpid(), c.mode, cg.dir, cg.version, limit, mono())

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	a := &app{c: c, cg: cg, limit: limit}

	// Signals: the handled ones are logged; SIGTERM/SIGINT end the process.
	handled := make(map[syscall.Signal]bool)
	if c.handle {
		for _, s := range sigs {
			handled[s] = true
		}
	}
	sigc := make(chan os.Signal, 64)
	notify := []os.Signal{}
	for s := range handled {
		notify = append(notify, s)
	}
	if !handled[syscall.SIGTERM] {
		notify = append(notify, syscall.SIGTERM)
	}
	if !handled[syscall.SIGINT] {
		notify = append(notify, syscall.SIGINT)
	}
	signal.Notify(sigc, notify...)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		counts := make(map[syscall.Signal]int)
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigc:
				sig := s.(syscall.Signal)
				if !handled[sig] {
					logf("event=exit reason=%s", signalName(sig))
					stop()
					return
				}
				t := mono()
				counts[sig]++
				u, ws, _, err := cg.Read()
				if err != nil {
					logf("event=signal signal=%s signo=%d n=%d mono_ns=%d read_error=%s", signalName(sig), int(sig), counts[sig], t, strings.ReplaceAll(err.Error(), " ", "_"))
					continue
				}
				logf("event=signal signal=%s signo=%d n=%d mono_ns=%d usage=%d working_set=%d", signalName(sig), int(sig), counts[sig], t, u, ws)
			}
		}
	}()

	if c.listen != "" {
		srv, err := serveHealthz(c.listen)
		if err != nil {
			return err
		}
		defer srv.Close()
	}

	if c.children > 0 {
		kids, err := startChildren(ctx, c.children)
		if err != nil {
			stop()
			return err
		}
		defer kids.stopAll()
	}

	if err := waitStart(ctx, c); err != nil {
		stop()
		wg.Wait()
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}

	var workErr error
	switch c.mode {
	case "leak", "hold":
		workErr = a.leak(ctx)
	case "churn":
		workErr = a.churn(ctx)
	}
	if workErr == nil {
		workErr = a.idle(ctx)
	}
	stop()
	wg.Wait()
	if errors.Is(workErr, context.Canceled) {
		return nil
	}
	return workErr
}

// waitStart waits for -start-signal and -delay.
func waitStart(ctx context.Context, c config) error {
	if c.startSignal != "" {
		sigs, err := parseSignals(c.startSignal)
		if err != nil {
			return err
		}
		if len(sigs) != 1 {
			return fmt.Errorf("-start-signal %q: want one signal", c.startSignal)
		}
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, sigs[0])
		logf("event=waiting signal=%s mono_ns=%d", signalName(sigs[0]), mono())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
		signal.Stop(ch)
	}
	if c.delay > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.delay):
		}
	}
	logf("event=go mono_ns=%d", mono())
	return nil
}

// logf writes one line with a single write(2) call.
func logf(format string, args ...any) {
	b := fmt.Appendf(nil, format, args...)
	b = append(b, '\n')
	os.Stdout.Write(b)
}

func mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime: %v", err))
	}
	return ts.Nano()
}

type app struct {
	c      config
	cg     *selfCgroup
	limit  uint64
	leaked uint64
}

func (a *app) sample() (usage, ws uint64) {
	t := mono()
	u, w, inact, err := a.cg.Read()
	if err != nil {
		logf("event=sample mono_ns=%d read_error=%s", t, strings.ReplaceAll(err.Error(), " ", "_"))
		return 0, 0
	}
	logf("event=sample mono_ns=%d usage=%d working_set=%d inactive_file=%d leaked=%d", t, u, w, inact, a.leaked)
	return u, w
}

// leak touches anonymous memory at the configured rate, in chunks, until the
// cap (if any) is reached.
func (a *app) leak(ctx context.Context) error {
	const reserve = 1 << 40 // address space only: pages cost memory when touched
	mem, err := unix.Mmap(-1, 0, reserve, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return fmt.Errorf("reserve leak area: %w", err)
	}
	// No munmap: the memory is held until the process ends.
	capBytes := uint64(a.c.capMiB * (1 << 20))
	var wsTarget uint64
	pct := a.c.capPercent
	if a.c.mode == "hold" && a.c.capMiB == 0 {
		pct = a.c.percent
	}
	if pct > 0 {
		if a.limit == 0 {
			return errors.New("a percent of the limit was asked but the cgroup has no memory limit")
		}
		wsTarget = uint64(pct / 100 * float64(a.limit))
	}
	chunk := uint64(a.c.chunk) << 10
	page := uint64(os.Getpagesize())
	p := pacer{rate: a.c.rate * (1 << 20), start: time.Now(), base: a.leaked}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if capBytes > 0 && a.leaked >= capBytes {
			break
		}
		if d := p.wait(time.Now(), a.leaked, chunk); d > 0 {
			time.Sleep(d)
		}
		end := a.leaked + chunk
		if capBytes > 0 && end > capBytes {
			end = capBytes
		}
		if end > reserve {
			return errors.New("leak area exhausted")
		}
		for off := a.leaked; off < end; off += page {
			mem[off] = 1
		}
		a.leaked = end
		_, ws := a.sample()
		if wsTarget > 0 && ws >= wsTarget {
			break
		}
	}
	logf("event=cap mono_ns=%d leaked=%d", mono(), a.leaked)
	return nil
}

// pacer spaces the chunks of a leak at a rate in bytes per second (0: no
// pacing).
type pacer struct {
	rate  float64
	start time.Time // when the leak had base bytes
	base  uint64
}

// maxLag is how far behind its schedule a leak may be: the most it leaks at
// once to catch up.
const maxLag = 250 * time.Millisecond

// wait returns how long to sleep before leaking the chunk after leaked
// bytes. The chunk is due when the leak, at the rate, reaches its end. A
// leak behind schedule catches up at once (a sleep of a few milliseconds
// often wakes tens of milliseconds late on a loaded machine: dropping that
// time made a 16 MiB/s leak a 2 MiB/s one in CI), but by no more than
// maxLag's worth: a stall of seconds (the app not scheduled, or in reclaim)
// paid in one burst leaks faster than the rate a test asked for (a loaded
// CI machine saw 15 MiB in 100 ms at -rate 6, from 75 to 100 % of a 64 MiB
// limit between two polls).
func (p *pacer) wait(now time.Time, leaked, chunk uint64) time.Duration {
	if p.rate <= 0 {
		return 0
	}
	per := func(n uint64) time.Duration { return time.Duration(float64(n) / p.rate * float64(time.Second)) }
	d := p.start.Add(per(leaked - p.base + chunk)).Sub(now)
	if -d > maxLag {
		// The schedule moves so that this chunk is maxLag late.
		p.start, p.base = now.Add(-maxLag-per(chunk)), leaked
		return -maxLag
	}
	return d
}

// idle waits for the end, logging samples every sample interval.
func (a *app) idle(ctx context.Context) error {
	if a.c.sampleInterval <= 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	t := time.NewTicker(a.c.sampleInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			a.sample()
		}
	}
}

// churn holds a little anonymous memory and writes then re-reads a file
// larger than the limit, forever, so page cache fills the cgroup.
func (a *app) churn(ctx context.Context) error {
	anon := uint64(a.c.anonMiB * (1 << 20))
	if anon > 0 {
		mem, err := unix.Mmap(-1, 0, int(anon), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("allocate anon: %w", err)
		}
		for off := 0; off < len(mem); off += os.Getpagesize() {
			mem[off] = 1
		}
		a.leaked = anon
	}
	size := uint64(a.c.fileSizeMiB * (1 << 20))
	if size == 0 {
		size = 2 * a.limit
		if size == 0 {
			size = 512 << 20
		}
	}
	name := a.c.file
	if name == "" {
		name = os.TempDir() + "/testapp-churn.dat"
	}
	if i := strings.LastIndexByte(name, '/'); i > 0 {
		if err := os.MkdirAll(name[:i], 0o755); err != nil {
			return fmt.Errorf("churn directory: %w", err)
		}
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("churn file: %w", err)
	}
	defer os.Remove(name)
	defer f.Close()

	// Samples on their own goroutine, so they keep their period while I/O blocks.
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.idle(sctx) }()
	defer func() { cancel(); wg.Wait() }()

	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	var hot *os.File
	if h := uint64(a.c.hotMiB * (1 << 20)); h > 0 {
		if hot, err = os.OpenFile(name+".hot", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
			return fmt.Errorf("hot file: %w", err)
		}
		defer os.Remove(name + ".hot")
		defer hot.Close()
		for off := uint64(0); off < h; off += uint64(len(buf)) {
			if _, err := hot.WriteAt(buf[:min(uint64(len(buf)), h-off)], int64(off)); err != nil {
				return fmt.Errorf("hot write: %w", err)
			}
		}
		// Read twice more: its pages go to the active list.
		for range 2 {
			if err := readAll(ctx, hot, buf, nil); err != nil {
				return err
			}
		}
	}
	var maxWS atomic.Uint64
	if a.c.probe > 0 {
		go a.probe(sctx, &maxWS)
	}
	for pass := 1; ; pass++ {
		// Write the file (rewrite in place after the first pass), syncing
		// every 32 MiB so dirty pages never pile up.
		for off := uint64(0); off < size; off += uint64(len(buf)) {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := uint64(len(buf))
			if size-off < n {
				n = size - off
			}
			if _, err := f.WriteAt(buf[:n], int64(off)); err != nil {
				return fmt.Errorf("churn write: %w", err)
			}
			if (off/uint64(len(buf)))%32 == 31 {
				if err := f.Sync(); err != nil {
					return fmt.Errorf("churn sync: %w", err)
				}
			}
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("churn sync: %w", err)
		}
		// Re-read it twice.
		for r := 0; r < 2; r++ {
			if err := readAll(ctx, f, buf, hot); err != nil {
				return err
			}
		}
		probe := ""
		if a.c.probe > 0 {
			probe = fmt.Sprintf(" max_working_set=%d", maxWS.Swap(0))
		}
		logf("event=churn-pass n=%d mono_ns=%d bytes=%d%s", pass, mono(), size, probe)
	}
}

// readAll reads f from start to end through buf, and all of hot (when not
// nil) after every 16 MiB of f: hot's pages stay on the active list.
func readAll(ctx context.Context, f *os.File, buf []byte, hot *os.File) error {
	for off := int64(0); ; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if hot != nil && off%(16<<20) == 0 {
			if err := readAll(ctx, hot, buf, nil); err != nil {
				return err
			}
		}
		n, err := f.ReadAt(buf, off)
		if errors.Is(err, io.EOF) || n == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("churn read %s: %w", f.Name(), err)
		}
	}
}

// probe reads the cgroup every -probe and keeps the highest working set in
// max: the moments a sampler at -sample-interval misses (reclaim at the
// limit drains the inactive file list for a few milliseconds).
func (a *app) probe(ctx context.Context, max *atomic.Uint64) {
	t := time.NewTicker(a.c.probe)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, ws, _, err := a.cg.Read(); err == nil && ws > max.Load() {
			max.Store(ws)
		}
	}
}

func serveHealthz(addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) // returns when srv.Close is called
	return srv, nil
}

// children are the child processes and their waiters.
type children struct {
	cmds []*exec.Cmd
	wg   sync.WaitGroup
	done chan struct{}
}

func startChildren(ctx context.Context, n int) (*children, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	k := &children{done: make(chan struct{})}
	for i := 0; i < n; i++ {
		cmd := exec.Command(self, "-mode", "child")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			k.stopAll()
			return nil, fmt.Errorf("start child: %w", err)
		}
		k.cmds = append(k.cmds, cmd)
		logf("event=child-start pid=%d", cmd.Process.Pid)
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			err := cmd.Wait()
			sig, code := "none", 0
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
				code = ws.ExitStatus()
				if ws.Signaled() {
					sig = signalName(ws.Signal())
				}
			}
			select {
			case <-k.done: // stopped by us: not news
			default:
				logf("event=child-exit pid=%d signal=%s code=%d mono_ns=%d err=%s", cmd.Process.Pid, sig, code, mono(), strings.ReplaceAll(fmt.Sprint(err), " ", "_"))
			}
		}()
	}
	return k, nil
}

func (k *children) stopAll() {
	close(k.done)
	for _, c := range k.cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	k.wg.Wait()
}

// runChild is a child process: default action for SIGUSR1 and SIGUSR2 (one
// of them kills it), SIGTERM ends it.
func runChild() error {
	for _, s := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2} {
		if err := defaultAction(s); err != nil {
			return err
		}
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
	return nil
}

// defaultAction sets sig's disposition to SIG_DFL with rt_sigaction. The Go
// runtime installs its own handler for every signal at start, which shows in
// SigCgt even without signal.Notify; this removes it, as in a process that
// never handled the signal.
func defaultAction(sig syscall.Signal) error {
	// struct kernel_sigaction { handler, flags, restorer, mask } with
	// handler SIG_DFL (0).
	var act [4]uint64
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
	if errno != 0 {
		return fmt.Errorf("rt_sigaction %s: %w", signalName(sig), errno)
	}
	return nil
}

func parseSignals(s string) ([]syscall.Signal, error) {
	var out []syscall.Signal
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if n, err := strconv.Atoi(f); err == nil && n > 0 && n < 65 {
			out = append(out, syscall.Signal(n))
			continue
		}
		sig := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(f), "SIG"))
		if sig == 0 {
			return nil, fmt.Errorf("unknown signal %q", f)
		}
		out = append(out, sig)
	}
	return out, nil
}

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return strconv.Itoa(int(s))
}
