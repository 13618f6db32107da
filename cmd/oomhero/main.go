// Command oomhero warns applications before the kernel OOM killer strikes.
//
// It runs next to the application (a sidecar in a pod with
// shareProcessNamespace: true), watches each container's memory against its
// limit and sends a warning signal and a critical signal as use crosses two
// percentages of the limit. See README.md and --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/safefs"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// oomhero's work is a few reads and decisions at a time: one processor
	// spares the runtime from waking a second thread on every timer, which
	// is most of an idle sidecar's CPU. GOMAXPROCS in the environment wins.
	// The node agent (oomhero node) takes two: its scans and resolves of a
	// hundred containers must not hold up the ring buffer's reader, which
	// on one processor waits for the running goroutine to block (node
	// bench, 100 containers: signals 3.4-3.9 ms after the kernel event in
	// 2 runs of 20 with one, at most 1.25 ms with two, idle CPU alike).
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		procs := 1
		if len(os.Args) > 1 && os.Args[1] == "node" {
			procs = min(2, runtime.NumCPU())
		}
		runtime.GOMAXPROCS(procs)
	}
	// Its heap is small and changes little once start-up is over: a
	// collection at half again the live heap, not twice it, keeps a
	// sidecar next to 2,000 processes 0.7 MiB smaller (13.4 against
	// 14.1 MiB) at no CPU it could measure. A node agent allocates with
	// every container that comes and goes (its scans, reads and logs): at
	// 50 it collected every 2-3 s while containers started, and a
	// collection's stop-the-world phase once held a critical signal 12 ms
	// on a loaded node (GODEBUG=gctrace=1 next to the node bench), so it
	// keeps Go's default. GOGC in the environment wins.
	if _, set := os.LookupEnv("GOGC"); !set && (len(os.Args) < 2 || os.Args[1] != "node") {
		debug.SetGCPercent(50)
	}
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run returns the exit status: 0 on a clean stop, 1 on a runtime error, 2 on
// bad configuration.
func run(args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "probe" {
		return probe(args[1:], stdout, stderr) // exec probes: probe.go
	}
	parse := config.Parse
	if len(args) > 0 && args[0] == "node" {
		parse, args = config.ParseNode, args[1:] // the node agent: node.go
	}
	cfg, err := parse(args, lookupEnv, stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	var ce *config.Error
	if errors.As(err, &ce) {
		fmt.Fprintf(stderr, "oomhero: %v\n", err)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "oomhero: %v\n", err)
		return 2
	}
	if cfg.Version {
		fmt.Fprintf(stdout, "oomhero %s\n", version)
		return 0
	}
	if _, err := selfPID(cfg.Proc); err != nil {
		fmt.Fprintf(stderr, "oomhero: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("oomhero stopped", "error", err)
		return 1
	}
	return 0
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// selfPID returns oomhero's PID as the procfs at proc numbers it. proc must
// be a procfs mount (PROC_SUPER_MAGIC) of oomhero's own PID namespace: PIDs
// read there are signalled through pidfd_open, which takes PIDs of the
// caller's namespace, so a procfs of another namespace would aim every
// signal at the wrong process. In another namespace oomhero is either not
// visible (a child namespace: no "self") or has another number (an ancestor
// namespace, such as the host's procfs mounted into a container).
func selfPID(proc string) (int, error) {
	if err := safefs.CheckProc(proc); err != nil {
		return 0, err
	}
	s, err := os.Readlink(filepath.Join(proc, "self"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("--proc %q is the procfs of another PID namespace: oomhero is not visible in it; "+
			"mount the procfs of oomhero's own PID namespace (shareProcessNamespace: true in a pod, hostPID: true on a node)", proc)
	}
	if err != nil {
		return 0, fmt.Errorf("find own pid in %q: %w", proc, err)
	}
	pid, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("find own pid in %q: %s/self -> %q", proc, proc, s)
	}
	if own := os.Getpid(); pid != own {
		return 0, fmt.Errorf("--proc %q is the procfs of another PID namespace: oomhero is PID %d there and %d in its own; "+
			"mount the procfs of oomhero's own PID namespace (shareProcessNamespace: true in a pod, hostPID: true on a node)", proc, pid, own)
	}
	return pid, nil
}
