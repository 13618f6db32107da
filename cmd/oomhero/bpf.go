package main

import (
	"log/slog"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/watch"
	"github.com/oomhero/oomhero/loader"
)

// newBPFSource loads the BPF source. Its error wraps watch.ErrUnavailable
// when BPF cannot work on this host.
func newBPFSource(cfg *config.Config, log *slog.Logger) (watch.Source, error) {
	s, err := loader.New(loader.Options{
		PollInterval: cfg.Interval,
		Realtime:     cfg.Realtime,
		NoKernelSend: !cfg.KernelSend,
		RingSize:     ringSize(cfg),
		Logger:       log.With("component", "bpf"),
	})
	if err != nil {
		return nil, err // not a typed nil *loader.Source
	}
	return s, nil
}

// ringSize is the BPF ring buffer's size: a sidecar's few containers send
// few records (progress events at most one per 5 ms each), and the ring's
// pages, mapped twice, count in its resident memory (the default 256 KiB
// ring was 0.5 MiB of a sidecar's 14); the node agent keeps the default.
// A full ring loses records, and a loss resynchronizes from cgroupfs.
func ringSize(cfg *config.Config) uint32 {
	if cfg.Node() {
		return 0
	}
	return 64 << 10
}
