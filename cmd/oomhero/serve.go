package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/oomhero/oomhero/fallback"
	"github.com/oomhero/oomhero/internal/agent"
	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/events"
	"github.com/oomhero/oomhero/internal/heartbeat"
	"github.com/oomhero/oomhero/internal/metrics"
	"github.com/oomhero/oomhero/internal/notify"
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The node agent's first list of its node's pods (a round trip to the
	// API server) runs while the BPF program loads: a restarted agent
	// watches its containers again after the slower of the two, not after
	// both.
	idents := make(chan agent.Identifier, 1)
	if cfg.Node() {
		go func() { idents <- newIdentifier(ctx, cfg, log) }() // node.go
	} else {
		idents <- nil
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
	m := metrics.New(metrics.Options{Pod: os.Getenv("POD_NAME"), PodNamespace: os.Getenv("POD_NAMESPACE")})
	m.SetSource(src.Name())
	// Liveness: the agent's loop finishes a discovery scan once a rescan
	// period (metricsObserver.Scanned beats), the source's loop turns at
	// least once every 10 poll intervals, at most 3 s (BPF: once a second).
	loop := heartbeat.New(nil)
	live := livenessLimit(cfg)
	m.Watch("agent", loop, live)
	if p, ok := src.(heartbeat.Progress); ok {
		m.Watch("source", p, live)
	}
	go trimAfterStart(ctx, log)
	httpDone := make(chan error, 1)
	if cfg.Listen != "" {
		if err := checkListen(cfg.Listen); err != nil {
			return err
		}
		go func() { httpDone <- m.ServeRetrying(ctx, cfg.Listen, httpRetry(log, cfg.Listen)) }()
	} else {
		httpDone <- nil
	}
	sockDone := make(chan struct{})
	if cfg.HealthSocket != "" {
		go func() {
			defer close(sockDone)
			// Not fatal: without it an exec probe fails and says why.
			if err := m.ServeUnix(ctx, cfg.HealthSocket); err != nil {
				log.Error("cannot serve the health socket; exec probes will fail", "error", err)
			}
		}()
	} else {
		close(sockDone)
	}
	mo := &metricsObserver{m: m, loop: loop}
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
			ecfg.AnyNamespace = cfg.Node()
			rec := events.New(ecfg)
			m.CountEvents(rec)
			go rec.Run(ctx)
			observers = append(observers, &eventsObserver{rec: rec, node: cfg.Node()})
		}
	} else {
		log.Info("kubernetes events off", "reason", "--events off")
	}
	a := &agent.Agent{
		Identifier:   <-idents,
		PodName:      os.Getenv("POD_NAME"),
		PodNamespace: os.Getenv("POD_NAMESPACE"),
		Config:       cfg,
		Log:          log,
		Scanner:      scanner,
		Resolver:     discover.Resolver{Proc: cfg.Proc, CgroupRoot: cfg.CgroupRoot},
		Source:       src,
		Sender:       signals.PidfdSender{Proc: cfg.Proc},
		Notifier:     notify.New(notify.Options{UserAgent: "oomhero/" + version, Remote: cfg.NotifyRemote}),
		OOM:          oom,
		Self:         self,
		Observer:     observers,
	}
	err = a.Run(ctx)
	a.Notifier.Close()
	cancel()
	<-sockDone // the socket file is gone
	if herr := <-httpDone; herr != nil && err == nil {
		err = fmt.Errorf("http server: %w", herr)
	}
	return err
}

// livenessLimit is how long the agent's loop or the source may make no
// progress before /healthz fails: three periods of the slowest loop, at
// least 10 s (metrics.LivenessLimit).
func livenessLimit(cfg *config.Config) time.Duration {
	return metrics.LivenessLimit(cfg.Rescan, cfg.Interval)
}

// checkListen refuses an address no retry can ever bind, so a typo fails
// at start instead of being retried for ever.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		if n, perr := strconv.ParseUint(port, 10, 16); perr != nil && port != "" || n > 65535 {
			err = fmt.Errorf("port %q is not a number from 0 to 65535", port)
		}
	}
	if err != nil {
		return fmt.Errorf("--listen %q: want host:port or :port: %w", addr, err)
	}
	return nil
}

// httpRetry logs what the HTTP server does: a port another process holds is
// a warning, retried with back-off, while readings and signals go on.
func httpRetry(log *slog.Logger, addr string) metrics.Retry {
	return metrics.Retry{
		Failed: func(err error, in time.Duration) {
			log.Warn("cannot serve /healthz, /readyz and /metrics; retrying, signals go on",
				"listen", addr, "error", err, "retry_in", in)
		},
		Listening: func(a net.Addr) {
			log.Info("serving /healthz, /readyz and /metrics", "address", a.String())
		},
	}
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
		attrs := []any{"source", s.Name()}
		if ks, ok := s.(interface{ KernelSends() (bool, string) }); ok {
			on, why := ks.KernelSends()
			attrs = append(attrs, "kernel_send", on)
			if !on {
				attrs = append(attrs, "kernel_send_off", why)
			}
		}
		log.Info("source active", attrs...)
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
