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
		// The node agent (host PID namespace): the processes of containers,
		// in namespaces of their own, trigger rescans too.
		Logger: log.With("component", "bpf"),
	})
	if err != nil {
		return nil, err // not a typed nil *loader.Source
	}
	return s, nil
}
