package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"

	"github.com/oomhero/oomhero/fallback"
	"github.com/oomhero/oomhero/internal/agent"
	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/events"
	"github.com/oomhero/oomhero/internal/metrics"
	"github.com/oomhero/oomhero/internal/oomwatch"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// serve wires oomhero together and runs it until ctx ends.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	log.Info("oomhero starting", "version", version, "config", cfg)
	self, err := selfPID(cfg.Proc)
	if err != nil {
		return err
	}
	scanner, err := discover.NewScanner(cfg.Proc, self)
	if err != nil {
		return err
	}
	src, err := chooseSource(cfg, log)
	if err != nil {
		return err
	}
	// Loading BPF parses the kernel's BTF (megabytes, mapped and decoded);
	// none of it is needed afterwards. The sidecar runs in every pod: give
	// the memory back now rather than at the next GC cycle.
	debug.FreeOSMemory()
	oom, err := oomwatch.New()
	if err != nil {
		log.Warn("OOM kills will not be reported", "error", err)
		oom = nil
	}
	m := metrics.New(metrics.Options{Pod: os.Getenv("POD_NAME")})
	m.SetSource(src.Name())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	httpDone := make(chan error, 1)
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("--listen %q: %w", cfg.Listen, err)
		}
		log.Info("serving /healthz, /readyz and /metrics", "address", ln.Addr().String())
		go func() { httpDone <- m.Serve(ctx, ln) }()
	} else {
		httpDone <- nil
	}
	mo := &metricsObserver{m: m}
	if lc, ok := src.(lostCounter); ok {
		mo.lost = lc.Lost
	}
	observers := agent.Observers{mo}
	if cfg.Events {
		ecfg, err := events.ConfigFromEnv(os.Getenv, events.ServiceAccountDir)
		if err != nil {
			log.Info("kubernetes events off", "reason", err.Error())
		} else {
			ecfg.Logger = log
			rec := events.New(ecfg)
			go rec.Run(ctx)
			observers = append(observers, &eventsObserver{rec: rec})
		}
	} else {
		log.Info("kubernetes events off", "reason", "--events off")
	}
	a := &agent.Agent{
		Config:   cfg,
		Log:      log,
		Scanner:  scanner,
		Resolver: discover.Resolver{Proc: cfg.Proc, CgroupRoot: cfg.CgroupRoot},
		Source:   src,
		Sender:   signals.PidfdSender{Proc: cfg.Proc},
		OOM:      oom,
		Self:     self,
		Observer: observers,
	}
	err = a.Run(ctx)
	cancel()
	if herr := <-httpDone; herr != nil && err == nil {
		err = fmt.Errorf("http server: %w", herr)
	}
	return err
}

// chooseSource picks the memory source: BPF first (unless --source
// cgroupfs), the cgroupfs poller where BPF is unavailable (unless --source
// bpf). The choice, and why, is one log line.
func chooseSource(cfg *config.Config, log *slog.Logger) (watch.Source, error) {
	poller := func(reason string) watch.Source {
		s := fallback.New(cfg.Interval, cfg.MinInterval)
		attrs := []any{"source", s.Name(), "interval", cfg.Interval, "min_interval", cfg.MinInterval}
		if reason != "" {
			attrs = append(attrs, "reason", reason)
		}
		log.Info("source active", attrs...)
		return s
	}
	if cfg.Source == "cgroupfs" {
		return poller("--source cgroupfs"), nil
	}
	s, err := newBPFSource(cfg, log)
	switch {
	case err == nil:
		log.Info("source active", "source", s.Name())
		return s, nil
	case cfg.Source == "bpf":
		return nil, fmt.Errorf("--source bpf: %w", err)
	case errors.Is(err, watch.ErrUnavailable):
		return poller("BPF unavailable: " + err.Error()), nil
	default:
		// Inconclusive: report it loudly, then keep the pod protected.
		log.Error("BPF source failed for an unexpected reason; falling back to cgroupfs polling", "error", err)
		return poller("BPF failed: " + err.Error()), nil
	}
}
