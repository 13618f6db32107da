// Package heartbeat stamps the progress of a loop on the monotonic clock, so
// the liveness probe can tell a working oomhero from a stuck one.
//
// A loop calls Beat on every turn (an atomic store of a monotonic reading:
// a few nanoseconds, no allocation); /healthz asks SinceProgress and fails
// when it exceeds a bound. Readings come from time.Since on a time.Time taken
// with time.Now, which Go documents as using the monotonic clock (package
// time, "Monotonic Clocks"), so a step of the wall clock neither raises nor
// hides an alarm.
package heartbeat

import (
	"sync/atomic"
	"time"
)

// Progress is implemented by whatever can tell how long ago it last made
// progress: a Heart, the cgroupfs poller, the BPF source.
type Progress interface {
	SinceProgress() time.Duration
}

// Monotonic returns a clock reading the monotonic time elapsed since the
// call.
func Monotonic() func() time.Duration {
	start := time.Now()
	return func() time.Duration { return time.Since(start) }
}

// processStart anchors the monotonic clock of a zero Heart.
var processStart = time.Now()

// Heart holds the last beat. The zero value reads the monotonic clock and
// counts as a beat at process start; New beats at once. A nil *Heart ignores
// Beat, so a loop can beat unconditionally.
type Heart struct {
	mono func() time.Duration
	last atomic.Int64 // mono() at the last beat, in nanoseconds
}

// New returns a Heart that beats once now. mono is the monotonic clock
// (nil means Monotonic()); tests inject their own.
func New(mono func() time.Duration) *Heart {
	if mono == nil {
		mono = Monotonic()
	}
	h := &Heart{mono: mono}
	h.Beat()
	return h
}

// Beat records progress now.
func (h *Heart) Beat() {
	if h == nil {
		return
	}
	h.last.Store(int64(h.now()))
}

func (h *Heart) now() time.Duration {
	if h.mono == nil {
		return time.Since(processStart)
	}
	return h.mono()
}

// SinceProgress returns how long ago the last Beat was (never negative).
func (h *Heart) SinceProgress() time.Duration {
	return max(h.now()-time.Duration(h.last.Load()), 0)
}
