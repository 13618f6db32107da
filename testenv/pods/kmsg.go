package pods

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// KernelOOMKill is a kernel log record of an OOM kill.
type KernelOOMKill struct {
	Pid int
	// At is the record's timestamp (the kernel's local clock, close to but
	// not the same as CLOCK_MONOTONIC).
	At   time.Duration
	Line string
}

// KernelOOMKills returns the kernel's "Killed process PID" records for the
// given host pids, read from kmsg (normally /dev/kmsg). It returns an error
// when the kernel log cannot be read.
func KernelOOMKills(kmsg string, pids ...int) ([]KernelOOMKill, error) {
	// Raw system calls: an *os.File would park a non-blocking read in the
	// poller instead of returning EAGAIN at the end of the log.
	fd, err := syscall.Open(kmsg, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("read kernel log: open %s: %w", kmsg, err)
	}
	defer syscall.Close(fd)
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	var out []KernelOOMKill
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			return out, nil
		}
		if errors.Is(err, syscall.EPIPE) {
			continue // records overwritten while reading
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("read kernel log: %w", err)
		}
		if n <= 0 {
			return out, nil
		}
		rec := string(buf[:n])
		head, msg, ok := strings.Cut(rec, ";")
		if !ok {
			continue
		}
		// "Memory cgroup out of memory: Killed process 1234 (testapp) ..."
		i := strings.Index(msg, "Killed process ")
		if i < 0 {
			continue
		}
		fs := strings.Fields(msg[i+len("Killed process "):])
		if len(fs) == 0 {
			continue
		}
		pid, err := strconv.Atoi(fs[0])
		if err != nil || !want[pid] {
			continue
		}
		k := KernelOOMKill{Pid: pid, Line: strings.TrimSpace(strings.SplitN(msg, "\n", 2)[0])}
		if h := strings.Split(head, ","); len(h) >= 3 {
			if us, err := strconv.ParseUint(h[2], 10, 64); err == nil {
				k.At = time.Duration(us) * time.Microsecond
			}
		}
		out = append(out, k)
	}
}
