package fallback

import "time"

// Clock is the time the poller schedules on. Tests inject a fake one.
type Clock interface {
	// Now is the wall-clock time; it only stamps readings.
	Now() time.Time
	// Mono is the time elapsed on a monotonic clock since an arbitrary
	// start. Every poll is scheduled on it.
	Mono() time.Duration
	// NewTimer returns a stopped-or-running timer firing after d of
	// monotonic time.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the poller uses.
type Timer interface {
	C() <-chan time.Time
	// Reset makes the timer fire after d; no value of an earlier arming
	// is received after Reset returns (time.Timer's behaviour since Go
	// 1.23).
	Reset(d time.Duration)
	Stop()
}

// SystemClock returns the system clock: Mono is time.Since of a time.Now
// taken at the call, which reads the monotonic clock (package time,
// "Monotonic Clocks"); timers are timerfds on CLOCK_MONOTONIC (timerfd.go),
// or time.Timer, which runs on it too, where none can be made.
func SystemClock() Clock { return systemClock{start: time.Now()} }

type systemClock struct{ start time.Time }

func (c systemClock) Now() time.Time      { return time.Now() }
func (c systemClock) Mono() time.Duration { return time.Since(c.start) }
func (c systemClock) NewTimer(d time.Duration) Timer {
	if t := newFDTimer(d); t != nil {
		return t
	}
	return sysTimer{time.NewTimer(d)}
}

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time   { return t.t.C }
func (t sysTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t sysTimer) Stop()                 { t.t.Stop() }
