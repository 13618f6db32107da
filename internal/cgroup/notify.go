package cgroup

// Memory threshold notifications of cgroup v1: the kernel signals an eventfd
// when the usage counter crosses a registered threshold, in either
// direction (cgroup.event_control with memory.usage_in_bytes: Linux
// mm/memcontrol-v1.c, memcg_write_event_control,
// mem_cgroup_usage_register_event and __mem_cgroup_threshold; in older
// kernels the same functions in mm/memcontrol.c). A poller can then leave a
// container that sits below the threshold alone until the kernel says it
// moved.
//
// What the kernel promises, and what it does not:
//   - The check runs on the charge and uncharge paths of user pages, once
//     every 128 page events of the memcg on each CPU
//     (THRESHOLDS_EVENTS_TARGET, mem_cgroup_event_ratelimit): usage can
//     pass a threshold by up to 128 pages per CPU before the eventfd is
//     signalled (ThresholdLag). Kernel memory charged without a page event
//     (slab, page tables) is not checked at all until the next page event.
//   - A registration compares the threshold with the usage of that moment,
//     so a threshold already below usage signals nothing: read usage after
//     registering.
//   - Registering waits for an RCU grace period (synchronize_rcu): about
//     10 ms each, not to be done on a loop that must poll on time.
//   - Closing the eventfd unregisters the threshold (EPOLLHUP on the
//     eventfd, memcg_event_wake, in a workqueue).
//   - PREEMPT_RT kernels refuse the registration (EOPNOTSUPP).
//   - cgroup v2 has nothing like it: memory.events notifies only of
//     memory.high/max/oom events (setting memory.high would throttle the
//     container), and PSI triggers (memory.pressure) report stall time,
//     not usage. On v2 a poller keeps polling.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/watch"
)

// ErrNoNotify is wrapped when a threshold notification cannot be registered
// (cgroup v2, a read-only or unwritable cgroup.event_control, a kernel that
// refuses it): the caller polls instead.
var ErrNoNotify = errors.New("memory threshold notification not available")

// thresholdsEventsTarget is the kernel's THRESHOLDS_EVENTS_TARGET: page
// events of a memcg on one CPU between two threshold checks.
const thresholdsEventsTarget = 128

// UsageEvent is a registered cgroup v1 usage threshold: its eventfd becomes
// readable each time usage crosses At, up or down. Close unregisters it.
type UsageEvent struct {
	fd int
	// At is the threshold in bytes, a whole number of pages (the kernel
	// keeps thresholds in pages, rounded down).
	At   uint64
	name string
}

// NotifyUsage registers a usage threshold at bytes (rounded down to a
// whole page) on the cgroup v1 memory directory d. The directory is opened
// through package safefs (verified cgroupfs, no link followed, the inode d
// was resolved to); the only write goes to its cgroup.event_control. It
// blocks for an RCU grace period. An error wraps ErrNoNotify when the
// kernel or the directory offers no notification (v2, read-only, refused).
func NotifyUsage(d watch.CgroupDir, bytes uint64) (*UsageEvent, error) {
	dir, err := OpenDir(d)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	if !dir.Has("memory.usage_in_bytes") {
		return nil, fmt.Errorf("%s: %w (no memory.usage_in_bytes: not cgroup v1)", dir.Name(), ErrNoNotify)
	}
	u, err := dir.Open("memory.usage_in_bytes")
	if err != nil {
		return nil, err
	}
	defer u.Close()
	page := uint64(os.Getpagesize())
	at := bytes / page * page
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	line := fmt.Appendf(nil, "%d %d %d", efd, u.Fd(), at)
	if err := dir.WriteControl("cgroup.event_control", line); err != nil {
		unix.Close(efd)
		return nil, fmt.Errorf("%w: %w", ErrNoNotify, err)
	}
	return &UsageEvent{fd: efd, At: at, name: dir.Name()}, nil
}

// NewUsageEvent wraps an eventfd registered by other means (tests signal
// one themselves); at is the threshold it stands for.
func NewUsageEvent(fd int, at uint64, name string) *UsageEvent {
	return &UsageEvent{fd: fd, At: at, name: name}
}

// Fd returns the eventfd, for epoll (EPOLLIN).
func (e *UsageEvent) Fd() int { return e.fd }

// Name returns the cgroup directory, for messages.
func (e *UsageEvent) Name() string { return e.name }

// Drain reads and resets the eventfd's count: the crossings signalled since
// the last Drain (0 when none).
func (e *UsageEvent) Drain() (uint64, error) {
	var b [8]byte
	for {
		_, err := unix.Read(e.fd, b[:])
		switch err {
		case nil:
			return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
				uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		}
		return 0, fmt.Errorf("%s: read threshold eventfd: %w", e.name, err)
	}
}

// Close closes the eventfd, which unregisters the threshold.
func (e *UsageEvent) Close() error {
	if e == nil || e.fd < 0 {
		return nil
	}
	err := unix.Close(e.fd)
	e.fd = -1
	return err
}

// ThresholdLag returns how far, in bytes, cgroup v1 usage can run past a
// registered threshold before the kernel checks it: 128 page events per
// possible CPU (/sys/devices/system/cpu/possible; the CPUs oomhero may run
// on where that cannot be read) of the page size. A poller arms its
// threshold at least this far below the figure it must not miss.
func ThresholdLag() uint64 {
	lagOnce.Do(func() {
		n := 0
		if b, err := os.ReadFile("/sys/devices/system/cpu/possible"); err == nil {
			n, _ = ParseCPUList(string(b))
		}
		if n <= 0 {
			n = cpuCount()
		}
		lag = uint64(n) * thresholdsEventsTarget * uint64(os.Getpagesize())
	})
	return lag
}

var (
	lagOnce sync.Once
	lag     uint64
)

func cpuCount() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil && set.Count() > 0 {
		return set.Count()
	}
	return 1
}

// maxCPUs bounds a CPU list (the kernel's NR_CPUS is at most 8192).
const maxCPUs = 1 << 16

// ParseCPUList counts the CPUs of a kernel CPU list ("0-63", "0,2-5,8",
// with a trailing newline), as in /sys/devices/system/cpu/possible. A
// malformed list, a range that runs backwards or a CPU number of maxCPUs
// or more is an error wrapping ErrParse.
func ParseCPUList(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("%w: empty CPU list", ErrParse)
	}
	n := 0
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil || a >= maxCPUs {
			return 0, fmt.Errorf("%w: CPU list %q: %q", ErrParse, s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b >= maxCPUs || b < a {
				return 0, fmt.Errorf("%w: CPU list %q: %q", ErrParse, s, part)
			}
		}
		n += int(b-a) + 1
		if n > maxCPUs {
			return 0, fmt.Errorf("%w: CPU list %q: more than %d CPUs", ErrParse, s, maxCPUs)
		}
	}
	return n, nil
}
