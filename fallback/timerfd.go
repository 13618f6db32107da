package fallback

import (
	"os"
	"time"

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
type fdTimer struct {
	f *os.File
	c chan time.Time
}

// newFDTimer returns a running fdTimer firing after d, or nil if no
// timerfd can be made (the caller then uses a time.Timer).
func newFDTimer(d time.Duration) *fdTimer {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil
	}
	t := &fdTimer{f: os.NewFile(uintptr(fd), "timerfd"), c: make(chan time.Time, 1)}
	go t.read()
	t.Reset(d)
	return t
}

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

func (t *fdTimer) C() <-chan time.Time { return t.c }

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
	rc.Control(func(fd uintptr) { unix.TimerfdSettime(int(fd), 0, &spec, nil) })
}

// Stop ends the timer for good: Run stops it when it returns.
func (t *fdTimer) Stop() { t.f.Close() }
