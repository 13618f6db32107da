// Package signals sends signals to processes safely: through a pidfd, after
// checking that the PID still names the process that was discovered (same
// start time), so a recycled PID is never hit. On kernels without pidfds it
// falls back to kill(2) after the same check.
package signals

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrGone is returned when the process exited (or its PID was reused) before
// the signal could be sent. It is not a failure of oomhero.
var ErrGone = errors.New("process gone")

// Sender sends a signal to the process (pid, start). start is the process
// start time in clock ticks since boot, field 22 of /proc/<pid>/stat.
type Sender interface {
	Send(pid int, start uint64, sig unix.Signal) error
}

// PidfdSender is the real Sender. Proc is the procfs mount the PIDs come
// from.
type PidfdSender struct {
	Proc string
}

// Send implements Sender.
func (s PidfdSender) Send(pid int, start uint64, sig unix.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return ErrGone
	case errors.Is(err, unix.ENOSYS):
		// No pidfds (kernel < 5.3): check, then kill. The window between
		// the two is as small as it can be made without pidfds.
		if err := s.check(pid, start); err != nil {
			return err
		}
		if err := unix.Kill(pid, sig); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return ErrGone
			}
			return fmt.Errorf("kill %d: %w", pid, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	// The pidfd pins the process: if the start time matches now, the signal
	// goes to the process that was discovered.
	if err := s.check(pid, start); err != nil {
		return err
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return ErrGone
		}
		return fmt.Errorf("pidfd_send_signal %d: %w", pid, err)
	}
	return nil
}

func (s PidfdSender) check(pid int, start uint64) error {
	got, err := StartTime(s.Proc, pid)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return ErrGone
	}
	if err != nil {
		return err
	}
	if got != start {
		return ErrGone
	}
	return nil
}

// StartTime reads the start time of pid (clock ticks since boot) from
// <proc>/<pid>/stat.
func StartTime(proc string, pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	n, err := parseStartTime(b)
	if err != nil {
		return 0, fmt.Errorf("parse %s/%d/stat: %w", proc, pid, err)
	}
	return n, nil
}

// parseStartTime returns the start time (field 22) of a /proc/<pid>/stat
// content.
func parseStartTime(b []byte) (uint64, error) {
	// The command may hold spaces and parentheses: fields start after the
	// last ')'. Field 3 (state) is the first after it; start time is 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no ')'")
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("%d fields", len(f)+2)
	}
	n, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("start time %q", f[19])
	}
	return n, nil
}

// Caught returns the set of signals pid has a handler for (SigCgt in
// <proc>/<pid>/status), bit sig-1 for signal sig.
func Caught(proc string, pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	n, err := parseSigCgt(b)
	if err != nil {
		return 0, fmt.Errorf("parse %s/%d/status: %w", proc, pid, err)
	}
	return n, nil
}

// parseSigCgt returns the SigCgt mask of a /proc/<pid>/status content.
func parseSigCgt(b []byte) (uint64, error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("SigCgt:")); ok {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("SigCgt %q", v)
			}
			return n, nil
		}
	}
	return 0, errors.New("no SigCgt line")
}

// Handles reports whether a SigCgt mask includes sig.
func Handles(mask uint64, sig unix.Signal) bool {
	return sig >= 1 && sig <= 64 && mask&(1<<(uint(sig)-1)) != 0
}
