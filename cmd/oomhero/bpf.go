package main

import (
	"fmt"
	"log/slog"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/watch"
)

// newBPFSource loads the BPF source.
func newBPFSource(cfg *config.Config, log *slog.Logger) (watch.Source, error) {
	return nil, fmt.Errorf("%w: this build has no BPF source yet", watch.ErrUnavailable)
}
