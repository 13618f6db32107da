//go:build linux && (amd64 || arm64 || 386)

package loader

import "time"

// SinceProgress implements heartbeat.Progress: how long ago Run's loop last
// turned. It turns at least once a Heartbeat (attach points that see frees)
// or a PollInterval; a cgroupfs read that blocks stops it, and /healthz then
// fails.
func (s *Source) SinceProgress() time.Duration { return s.heart.SinceProgress() }
