// Command example is a small Go service that reacts to oomhero's signals.
//
// oomhero, running as a sidecar in the same pod (shareProcessNamespace:
// true), sends this process
//
//   - the warning signal (SIGUSR1 by default) when the container's working
//     set crosses WARNING percent of its memory limit, and
//   - the critical signal (SIGUSR2 by default) when it crosses CRITICAL
//     percent,
//
// and again every COOLDOWN (default 1s) while the level lasts. Nothing is sent
// when memory goes back down: the absence of signals is the all-clear.
//
// What to do with them is the application's business. This example keeps a
// cache that grows with its "work", and:
//
//   - on warning, drops the cache and hands the freed memory back to the
//     kernel at once (runtime/debug.FreeOSMemory), instead of waiting for the
//     garbage collector and the scavenger;
//   - on critical, also stops caching until the pressure is gone and writes
//     a heap profile (at most one a minute) so the leak can be found after
//     the fact, even if the OOM killer strikes next.
//
// Two things worth knowing about Go and these signals:
//
//   - A Go program that never calls signal.Notify for SIGUSR1/SIGUSR2 is not
//     killed by them: the runtime's own handler drops them. Its
//     /proc/<pid>/status still shows them in SigCgt, so oomhero's default
//     --targets=handlers sends them anyway; they are just lost.
//   - Handlers must be quick and must not allocate much: they run when memory
//     is short. Do the work on the goroutine that receives from the channel,
//     not in a new goroutine per signal.
//
// Run it next to oomhero (see the README's pod YAML), or locally:
//
//	go run ./examples/go -grow 20 &
//	kill -USR1 %1; kill -USR2 %1
//
// Flags: -grow MiB/s of cache growth (default 5), -profile-dir (default the
// temporary directory). WARNING_SIGNAL and CRITICAL_SIGNAL, oomhero's own
// variables, select other signals (names with or without SIG, or numbers).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); err != nil {
		slog.Error("example failed", "err", err)
		os.Exit(1)
	}
}

func run() error {
	grow := flag.Float64("grow", 5, "cache growth, MiB per second")
	profileDir := flag.String("profile-dir", os.TempDir(), "where heap profiles are written on critical")
	flag.Parse()

	warnSig, err := signalFromEnv("WARNING_SIGNAL", syscall.SIGUSR1)
	if err != nil {
		return err
	}
	critSig, err := signalFromEnv("CRITICAL_SIGNAL", syscall.SIGUSR2)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cache := &Cache{}
	r := &Reactions{Cache: cache, ProfileDir: *profileDir, Log: slog.Default()}
	done := Watch(ctx, warnSig, critSig, r)
	slog.Info("example running", "pid", os.Getpid(), "warning_signal", unix.SignalName(warnSig), "critical_signal", unix.SignalName(critSig))

	// The "work": cache 256 KiB entries at the requested rate.
	const entry = 256 << 10
	t := time.NewTicker(time.Duration(float64(time.Second) * entry / (*grow * (1 << 20))))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return nil
		case <-t.C:
			cache.Add(entry)
		}
	}
}

// Cache is a stand-in for what a real service keeps in memory because it is
// cheaper than recomputing it: safe to drop at any time.
type Cache struct {
	mu      sync.Mutex
	entries [][]byte
	bytes   int
	frozen  bool
}

// Add caches n bytes, unless the cache is frozen.
func (c *Cache) Add(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen {
		return
	}
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = 1 // touch every page: memory the kernel really charges
	}
	c.entries = append(c.entries, b)
	c.bytes += n
}

// Drop empties the cache and returns how many bytes it held.
func (c *Cache) Drop() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.bytes
	c.entries, c.bytes = nil, 0
	return n
}

// Freeze stops (true) or resumes (false) caching.
func (c *Cache) Freeze(f bool) {
	c.mu.Lock()
	c.frozen = f
	c.mu.Unlock()
}

// Bytes returns the cached size.
func (c *Cache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Frozen tells whether caching is stopped.
func (c *Cache) Frozen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frozen
}

// Reactions is what the application does at each level.
type Reactions struct {
	Cache      *Cache
	ProfileDir string
	Log        *slog.Logger

	lastProfile time.Time
	lastSignal  time.Time
}

// Warning frees what can be freed cheaply.
func (r *Reactions) Warning() {
	freed := r.Cache.Drop()
	// Return the freed heap to the kernel now: the working set oomhero and
	// the OOM killer look at only goes down when pages are released.
	debug.FreeOSMemory()
	r.Log.Warn("memory warning: cache dropped", "freed_bytes", freed)
}

// Critical does what Warning does, stops caching and leaves evidence.
func (r *Reactions) Critical() {
	r.Cache.Freeze(true)
	freed := r.Cache.Drop()
	debug.FreeOSMemory()
	r.Log.Error("memory critical: cache dropped and frozen", "freed_bytes", freed)
	if time.Since(r.lastProfile) < time.Minute {
		return
	}
	r.lastProfile = time.Now()
	path, err := r.writeHeapProfile()
	if err != nil {
		r.Log.Error("heap profile not written", "err", err)
		return
	}
	r.Log.Error("heap profile written", "path", path)
}

func (r *Reactions) writeHeapProfile() (string, error) {
	path := filepath.Join(r.ProfileDir, fmt.Sprintf("heap-%d-%s.pprof", os.Getpid(), time.Now().UTC().Format("20060102T150405Z")))
	// Written under a temporary name and renamed when complete: whatever
	// collects profiles from the directory never takes a half-written one.
	f, err := os.CreateTemp(r.ProfileDir, ".heap-*.tmp")
	if err != nil {
		return "", fmt.Errorf("create heap profile: %w", err)
	}
	err = f.Chmod(0o644) // as os.Create would: a collector may run as another user
	if err == nil {
		err = pprof.Lookup("heap").WriteTo(f, 0)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write heap profile: %w", err)
	}
	return path, nil
}

// calm is how long without signals means the pressure is over (oomhero
// repeats its signal every COOLDOWN while a level lasts).
const calm = 10 * time.Second

// Watch calls r.Warning and r.Critical for each signal received until ctx
// ends; the returned channel is closed when it has stopped. After calm
// without any signal it resumes caching.
func Watch(ctx context.Context, warnSig, critSig os.Signal, r *Reactions) <-chan struct{} {
	ch := make(chan os.Signal, 4) // buffered: signals arriving while busy are not lost
	signal.Notify(ch, warnSig, critSig)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(ch)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-ch:
				r.lastSignal = time.Now()
				switch s {
				case critSig:
					r.Critical()
				case warnSig:
					r.Warning()
				}
			case <-tick.C:
				if r.Cache.Frozen() && time.Since(r.lastSignal) > calm {
					r.Cache.Freeze(false)
					r.Log.Info("memory pressure over: caching again")
				}
			}
		}
	}()
	return done
}

// signalFromEnv reads a signal from the environment variable name: a name
// with or without SIG, any case, or a number.
func signalFromEnv(name string, def syscall.Signal) (syscall.Signal, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def, nil
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	s := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(v), "SIG"))
	if s == 0 {
		return 0, fmt.Errorf("%s=%q: not a signal name or number", name, v)
	}
	return s, nil
}
