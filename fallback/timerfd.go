package fallback

import (
	"errors"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fdTimer is a Timer on a timerfd(2) (CLOCK_MONOTONIC) read through the Go
// netpoller. A time.Timer wakes the process twice per firing: the runtime
// sleeps in epoll_wait with a timeout in whole milliseconds, rounded down,
// so it wakes before the timer is due and sleeps again for the rest. At one
// poll every 100 ms that doubled an idle sidecar's wake-ups, each costing a
// scheduler pass and a round of the runtime's monitor thread. A timerfd
// becomes readable when it expires: one wake-up, at the time.
//
// A firing already read when Reset is called may still be received after
// it: the poll loop takes such a wake-up as a turn with nothing due.
//
// The poll loop does not take firings from C: it waits in Wait, which reads
// the timerfd itself, and whatever else has news for the loop Kicks it.
// Wait's read and Reset's timerfd_settime are raw system calls (they never
// block: the timerfd is non-blocking, the netpoller waits), like the poll's
// pread (safefs.File): a system call through the runtime's entersyscall
// wakes its monitor thread (sysmon) when it sleeps, and every poll did
// that, one more thread waking and sleeping each time. Measured on this
// project's 2-vCPU machine (a pread of memory.usage_in_bytes every 100 ms,
// CPU of the whole process, 1 Dec): a goroutine reading the timerfd and
// handing each firing over a channel, 242-256 µs a poll; the loop reading
// it itself, 143-146 µs; with the raw calls, 93-97 µs.
type fdTimer struct {
	f    *os.File
	once sync.Once
	c    chan time.Time // C's, fed by a goroutine started at the first C
}

// newFDTimer returns a running fdTimer firing after d, or nil if no
// timerfd can be made (the caller then uses a time.Timer).
func newFDTimer(d time.Duration) *fdTimer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil
	}
	t := &fdTimer{f: os.NewFile(uintptr(fd), "timerfd"), c: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Wait blocks until the timer fires or Kick is called (before or during
// the wait). An error other than a kick (the timer stopped) is returned.
func (t *fdTimer) Wait() error {
	rc, err := t.f.SyscallConn()
	if err != nil {
		return err
	}
	var buf [8]byte // the number of expirations
	err = rc.Read(func(fd uintptr) bool {
		for {
			_, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			if errno != unix.EINTR {
				return errno != unix.EAGAIN // else: wait for the netpoller
			}
		}
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Kicked: the deadline is cleared before the caller looks at
		// what the kicker sent, so a later kick is not lost.
		return t.f.SetReadDeadline(time.Time{})
	}
	return err
}

// Kick makes the current or next Wait return. Safe for concurrent use.
func (t *fdTimer) Kick() { _ = t.f.SetReadDeadline(time.Unix(1, 0)) }

func (t *fdTimer) read() {
	var buf [8]byte // the number of expirations
	for {
		if _, err := t.f.Read(buf[:]); err != nil {
			return // closed by Stop
		}
		select {
		case t.c <- time.Now():
		default:
		}
	}
}

// C returns the firings, read by a goroutine of their own (for callers
// that select; mixing C and Wait on one timer loses firings).
func (t *fdTimer) C() <-chan time.Time {
	t.once.Do(func() { go t.read() })
	return t.c
}

// Reset arms the timer to fire once after d (at once when d <= 0).
func (t *fdTimer) Reset(d time.Duration) {
	select {
	case <-t.c:
	default:
	}
	d = max(d, time.Nanosecond) // a zero value would disarm it
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	rc, err := t.f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	})
}

// Stop ends the timer for good: Run stops it when it returns.
func (t *fdTimer) Stop() { t.f.Close() }
