//go:build !linux || !(amd64 || arm64 || 386)

package loader

import (
	"fmt"
	"runtime"

	"github.com/oomhero/oomhero/internal/watch"
)

// New reports that the BPF source does not exist on this platform.
func New(Options) (*Source, error) {
	return nil, fmt.Errorf("bpf source on %s/%s: %w", runtime.GOOS, runtime.GOARCH, watch.ErrUnavailable)
}

// Source is never built on this platform.
type Source struct{ watch.Source }

// Attach returns the empty attach point.
func (s *Source) Attach() AttachPoint { return "" }

// Close does nothing.
func (s *Source) Close() error { return nil }
