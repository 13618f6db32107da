// Package signals sends signals to processes safely: through a pidfd, after
// checking that the PID still names the process that was discovered (same
// start time), so a recycled PID is never hit. On kernels without pidfds it
// falls back to kill(2) after the same check.
package signals

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
	return s.SendExpected(pid, Expect{Start: start}, sig)
}

// Expect is what a process must still be for a signal to go: checked by
// SendExpected once the process is pinned, just before the signal.
type Expect struct {
	// Start is its start time (field 22 of /proc/<pid>/stat): another one
	// is another process on a recycled PID (ErrGone).
	Start uint64
	// Name, when not empty, is the Name line of its status when it was
	// vetted: another one means it exec'ed since (ErrChanged), and what was
	// learned of its runtime no longer holds.
	Name string
	// Handler asks that it has a handler for the signal now (SigCgt;
	// ErrNoHandler otherwise): an exec resets every handler, and a program
	// can reset its own, so a handler seen earlier never turns a signal
	// into a kill.
	Handler bool
}

// ErrNoHandler is returned by SendExpected when the process has no handler
// for the signal (any more): nothing was sent.
var ErrNoHandler = errors.New("no handler for the signal")

// ErrChanged is returned by SendExpected when the process's command is not
// the one it was vetted under (it exec'ed): nothing was sent.
var ErrChanged = errors.New("process changed its command since it was vetted")

// CheckedSender is a Sender that checks an Expect with the process pinned
// before it sends.
type CheckedSender interface {
	SendExpected(pid int, want Expect, sig unix.Signal) error
}

// SendExpected sends sig to pid if the process is still want (same start
// time and, as asked, same command and a handler for sig), checked after
// the pidfd pins it: ErrGone, ErrChanged or ErrNoHandler when it is not.
func (s PidfdSender) SendExpected(pid int, want Expect, sig unix.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return ErrGone
	case errors.Is(err, unix.ENOSYS):
		// No pidfds (kernel < 5.3): check, then kill. The window between
		// the two is as small as it can be made without pidfds.
		if err := s.check(pid, want, sig); err != nil {
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
	if err := s.check(pid, want, sig); err != nil {
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

// check reads /proc/<pid>/stat once: its start time, its command and (for
// signals 1 to 31) its handlers, which is what want asks for unless the
// signal is a real-time one or the command holds a byte that status
// escapes: then status is read as well.
func (s PidfdSender) check(pid int, want Expect, sig unix.Signal) error {
	var buf [1024]byte
	b, err := readSmall(filepath.Join(s.Proc, strconv.Itoa(pid), "stat"), buf[:0], maxStat)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return ErrGone
	}
	if err != nil {
		return err
	}
	st, err := parseStat(b)
	if err != nil {
		return fmt.Errorf("parse %s/%d/stat: %w", s.Proc, pid, err)
	}
	if st.start != want.Start {
		return ErrGone
	}
	status := false
	if want.Name != "" {
		switch {
		case bytes.ContainsAny(st.comm, "\\\n"):
			status = true // status escapes it: compared there
		case string(st.comm) != want.Name:
			return ErrChanged
		}
	}
	if want.Handler {
		switch {
		case sig < 1 || sig > 31:
			status = true // stat has signals 1-31 only
		case !Handles(st.sigcatch, sig):
			return ErrNoHandler
		}
	}
	if !status {
		return nil
	}
	h, err := ReadHandlers(s.Proc, pid)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return ErrGone
	}
	if err != nil {
		return err
	}
	return h.Check(want, sig)
}

// maxStat bounds a read of /proc/<pid>/stat (52 numbers and a command of
// at most 64 bytes).
const maxStat = 4 << 10

// readSmall reads the procfs file name into buf (its capacity first, more
// up to max), in as few reads as it takes.
func readSmall(name string, buf []byte, max int) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := buf[:0]
	for {
		if len(b) == cap(b) {
			if cap(b) >= max {
				return b, nil
			}
			b = append(b, make([]byte, min(max, 2*cap(b)+512)-cap(b))...)[:len(b)]
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		switch {
		case err == io.EOF, n == 0 && err == nil:
			return b, nil
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
	}
}

// procStat is what check reads of /proc/<pid>/stat.
type procStat struct {
	start    uint64 // field 22
	comm     []byte // field 2, as the kernel keeps it (not escaped)
	sigcatch uint64 // field 34: the handlers of signals 1-31 (bit sig-1)
}

// parseStat parses a /proc/<pid>/stat content: the command between the
// first '(' and the last ')' (it may hold anything but NUL), then the
// numbers. Field 34 is sigcatch, decimal, masked to signals 1-31
// (fs/proc/array.c do_task_stat: sigcatch.sig[0] & 0x7fffffffUL, "use
// /proc/#/status for real-time signals"), from the same
// collect_sigign_sigcatch as status's SigCgt.
func parseStat(b []byte) (procStat, error) {
	var st procStat
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return st, errors.New("no (command)")
	}
	st.comm = b[i+1 : j]
	f := bytes.Fields(b[j+1:])
	if len(f) < 32 {
		return st, fmt.Errorf("%d fields", len(f)+2)
	}
	var err error
	if st.start, err = strconv.ParseUint(string(f[19]), 10, 64); err != nil {
		return st, fmt.Errorf("start time %q", f[19])
	}
	if st.sigcatch, err = strconv.ParseUint(string(f[31]), 10, 64); err != nil || st.sigcatch > 0x7fffffff {
		return st, fmt.Errorf("sigcatch %q", f[31])
	}
	return st, nil
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
	h, err := ReadHandlers(proc, pid)
	return h.Caught, err
}

// Handlers is what /proc/<pid>/status says of a process's signal handlers.
type Handlers struct {
	// Name is the command, as status writes it (escaped: fs/proc/array.c
	// proc_task_name).
	Name string
	// Caught is SigCgt: bit sig-1 for each signal sig with a handler.
	Caught uint64
}

// Check reports whether a process whose status reads h is still want as
// far as status tells (its Name and handler; not its start time): nil,
// ErrChanged or ErrNoHandler.
func (h Handlers) Check(want Expect, sig unix.Signal) error {
	switch {
	case want.Name != "" && h.Name != want.Name:
		return ErrChanged
	case want.Handler && !Handles(h.Caught, sig):
		return ErrNoHandler
	}
	return nil
}

// maxStatus bounds a read of /proc/<pid>/status (about 1.5 KiB on kernel
// 6.x; SigCgt is in its first half).
const maxStatus = 16 << 10

// ReadHandlers reads the Name and SigCgt lines of <proc>/<pid>/status.
func ReadHandlers(proc string, pid int) (Handlers, error) {
	name := filepath.Join(proc, strconv.Itoa(pid), "status")
	var buf [4096]byte
	b, err := readSmall(name, buf[:0], maxStatus)
	if err != nil {
		return Handlers{}, err
	}
	h, err := parseStatus(b)
	if err != nil {
		return Handlers{}, fmt.Errorf("parse %s: %w", name, err)
	}
	return h, nil
}

// parseStatus returns the Name and SigCgt of a /proc/<pid>/status content.
// Name is the first line (a name cannot forge another line: status escapes
// its newlines).
func parseStatus(b []byte) (Handlers, error) {
	var h Handlers
	if v, ok := bytes.CutPrefix(b, []byte("Name:")); ok {
		if i := bytes.IndexByte(v, '\n'); i >= 0 {
			v = v[:i]
		}
		h.Name = string(bytes.TrimPrefix(v, []byte("\t")))
	}
	n, err := parseSigCgt(b)
	if err != nil {
		return Handlers{}, err
	}
	h.Caught = n
	return h, nil
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
