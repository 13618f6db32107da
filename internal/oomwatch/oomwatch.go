// Package oomwatch notices OOM kills in watched cgroups as they happen: the
// oom_kill counter of memory.events (v2) or memory.oom_control (v1).
//
// On v2 the kernel wakes pollers of memory.events when it changes; on v1 an
// eventfd registered in cgroup.event_control is signalled on OOM. Where the
// registration is refused (a read-only cgroupfs seen through a container's
// root), the counter is read every PollInterval instead. Files are kept open,
// so a count can still be read in the moment between the kill and the
// runtime removing the cgroup.
package oomwatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

// PollInterval is how often counters without kernel notification are read
// while their cgroup is hot (near its limit, see SetHot); ColdPollInterval
// while it is not.
const (
	PollInterval     = 50 * time.Millisecond
	ColdPollInterval = time.Second
)

// Kill reports OOM kills in one cgroup.
type Kill struct {
	ID    uint64
	Kills uint64 // new kills since the last report
	Total uint64 // the counter
	Time  time.Time
}

type entry struct {
	id     uint64
	file   *safefs.File // oom counter file, kept open
	key    []byte       // the counter's "key " in file
	efd    int          // v1 eventfd, or -1
	fd     int32        // the descriptor in epoll, or -1
	polled bool
	gone   bool // the cgroup was removed: nothing is read any more
	hot    bool
	due    time.Time // next read of a polled counter
	count  uint64
	buf    []byte
}

// Watcher watches the OOM counters of a set of cgroups. Add and Remove are
// safe to call concurrently with Run.
type Watcher struct {
	epfd int
	wake int // eventfd to wake Run on changes

	mu      sync.Mutex
	byID    map[uint64]*entry
	byFD    map[int32]*entry
	changed bool

	wakeups atomic.Uint64 // epoll_wait returns, for tests (no busy loop)
	// Gone, when not nil, is told (from Run's goroutine) of a cgroup whose
	// counter can no longer be read: it is no longer watched.
	Gone func(id uint64, err error)
}

// New returns a Watcher.
func New() (*Watcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, err
	}
	return &Watcher{epfd: epfd, wake: wake, byID: map[uint64]*entry{}, byFD: map[int32]*entry{}}, nil
}

func counterFile(v watch.CgroupVersion) string {
	if v == watch.V1 {
		return "memory.oom_control"
	}
	return "memory.events"
}

// Add starts watching cgroup id in directory d (opened through package
// safefs: a verified cgroupfs directory; its counter file and, on v1, its
// cgroup.event_control are regular files of that directory, reached without
// following links). It returns the current count and whether the kernel
// will notify (false: polled).
func (w *Watcher) Add(id uint64, d watch.CgroupDir, v watch.CgroupVersion) (notified bool, err error) {
	return w.add(id, d, v, counterFile(v), "oom_kill")
}

func (w *Watcher) add(id uint64, d watch.CgroupDir, v watch.CgroupVersion, name, key string) (notified bool, err error) {
	w.mu.Lock()
	_, ok := w.byID[id]
	w.mu.Unlock()
	if ok {
		return false, nil
	}
	dir, err := cgroup.OpenDir(d)
	if err != nil {
		return false, err
	}
	defer dir.Close()
	f, err := dir.Open(name)
	if err != nil {
		return false, err
	}
	e := &entry{id: id, file: f, key: []byte(key + " "), efd: -1, fd: -1, buf: make([]byte, 1024)}
	if e.count, err = e.read(); err != nil {
		f.Close()
		return false, err
	}
	var fd int
	var events uint32
	switch v {
	case watch.V2:
		// EPOLLPRI: the kernel's notification of a change (kernfs_notify).
		// A removed cgroup's file polls as EPOLLERR for good: Run drops it.
		fd, events = f.Fd(), unix.EPOLLPRI|unix.EPOLLERR
	default:
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			f.Close()
			return false, fmt.Errorf("eventfd: %w", err)
		}
		ctl := fmt.Sprintf("%d %d", efd, f.Fd())
		if werr := dir.WriteControl("cgroup.event_control", []byte(ctl)); werr != nil {
			unix.Close(efd)
			e.polled = true
		} else {
			e.efd = efd
			fd, events = efd, unix.EPOLLIN
		}
	}
	if !e.polled {
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)}); err != nil {
			e.close()
			return false, fmt.Errorf("epoll_ctl: %w", err)
		}
		e.fd = int32(fd)
	}
	w.mu.Lock()
	w.byID[id] = e
	if !e.polled {
		w.byFD[int32(fd)] = e
	}
	w.changed = true
	w.mu.Unlock()
	w.poke()
	return !e.polled, nil
}

// SetHot tells whether cgroup id is near its limit: a polled counter is
// read every PollInterval while hot, every ColdPollInterval otherwise.
func (w *Watcher) SetHot(id uint64, hot bool) {
	w.mu.Lock()
	e, ok := w.byID[id]
	changed := ok && e.polled && e.hot != hot
	if changed {
		e.hot = hot
		if hot {
			e.due = time.Time{}
		}
	}
	w.mu.Unlock()
	if changed && hot {
		w.poke()
	}
}

// Remove stops watching cgroup id.
func (w *Watcher) Remove(id uint64) {
	w.mu.Lock()
	e, ok := w.byID[id]
	if ok {
		delete(w.byID, id)
		w.unpoll(e)
		e.close()
		w.changed = true
	}
	w.mu.Unlock()
	w.poke()
}

// unpoll takes e out of epoll and out of the polled set. w.mu is held.
func (w *Watcher) unpoll(e *entry) {
	if e.fd >= 0 {
		unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(e.fd), nil)
		delete(w.byFD, e.fd)
		e.fd = -1
	}
	e.polled = false
}

// Count reads the OOM-kill counter of cgroup id now, from the file kept
// open since Add. It lets a caller learn of a kill before Run reports it
// (the kernel counts the kill before the victim's memory is freed).
func (w *Watcher) Count(id uint64) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.byID[id]
	if !ok || e.gone {
		return 0, fmt.Errorf("cgroup %d: OOM-kill counter not watched", id)
	}
	return e.read()
}

// Watching tells whether cgroup id is watched and its counter still read.
func (w *Watcher) Watching(id uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.byID[id]
	return ok && !e.gone
}

func (w *Watcher) poke() {
	var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}
	unix.Write(w.wake, one)
}

func (e *entry) close() {
	e.file.Close()
	e.file = nil
	if e.efd >= 0 {
		unix.Close(e.efd)
	}
}

func (e *entry) read() (uint64, error) {
	if e.file == nil {
		return 0, errors.New("closed")
	}
	b, err := e.file.ReadAll(e.buf, safefs.LimitSmall)
	if err != nil {
		return 0, err
	}
	if cap(b) > cap(e.buf) {
		e.buf = b[:cap(b)]
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, e.key); ok {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %q: %w", e.file.Name(), line, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s counter", e.file.Name(), bytes.TrimSpace(e.key))
}

// Run reports new kills until ctx ends, then closes every file.
func (w *Watcher) Run(ctx context.Context, out chan<- Kill) error {
	defer w.close()
	stop := context.AfterFunc(ctx, w.poke)
	defer stop()
	evs := make([]unix.EpollEvent, 16)
	for {
		timeout := -1
		now := time.Now()
		w.mu.Lock()
		for _, e := range w.byID {
			if e.polled {
				// Rounded up: a timeout rounded down to 0 would spin
				// until the due time.
				d := max(e.due.Sub(now), 0)
				ms := int((d + time.Millisecond - 1) / time.Millisecond)
				if timeout < 0 || ms < timeout {
					timeout = ms
				}
			}
		}
		w.mu.Unlock()
		n, err := unix.EpollWait(w.epfd, evs, timeout)
		w.wakeups.Add(1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		var check []*entry
		w.mu.Lock()
		for _, ev := range evs[:max(n, 0)] {
			if ev.Fd == int32(w.wake) {
				var b [8]byte
				unix.Read(w.wake, b[:])
				continue
			}
			if e, ok := w.byFD[ev.Fd]; ok {
				if e.efd >= 0 {
					var b [8]byte
					unix.Read(e.efd, b[:])
				}
				check = append(check, e)
			}
		}
		now = time.Now()
		for _, e := range w.byID {
			if e.polled && !e.due.After(now) {
				iv := ColdPollInterval
				if e.hot {
					iv = PollInterval
				}
				e.due = now.Add(iv)
				check = append(check, e)
			}
		}
		w.mu.Unlock()
		for _, e := range check {
			k, ok, err := w.check(e)
			if err != nil {
				// The cgroup was removed (its files read ENODEV and poll
				// EPOLLERR for good) or its counter is unreadable: stop
				// polling it, or epoll would return at once forever.
				w.mu.Lock()
				live := w.byID[e.id] == e && !e.gone
				if live {
					e.gone = true
					w.unpoll(e)
				}
				w.mu.Unlock()
				if live && w.Gone != nil {
					w.Gone(e.id, err)
				}
				continue
			}
			if !ok {
				continue
			}
			select {
			case out <- k:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// check reads a counter; after a v1 notification, which comes before the
// kill, it reads again for up to 200 ms until the counter moves. An error
// means the counter cannot be read (the cgroup is gone).
func (w *Watcher) check(e *entry) (Kill, bool, error) {
	deadline := time.Now().Add(200 * time.Millisecond)
	for {
		w.mu.Lock()
		if e.gone || w.byID[e.id] != e {
			w.mu.Unlock()
			return Kill{}, false, nil // removed meanwhile
		}
		c, err := e.read()
		w.mu.Unlock()
		if err != nil {
			return Kill{}, false, err
		}
		if c > e.count {
			k := Kill{ID: e.id, Kills: c - e.count, Total: c, Time: time.Now()}
			e.count = c
			return k, true, nil
		}
		if e.efd < 0 || time.Now().After(deadline) {
			return Kill{}, false, nil
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (w *Watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.byID {
		e.close()
	}
	w.byID, w.byFD = map[uint64]*entry{}, map[int32]*entry{}
	unix.Close(w.epfd)
	unix.Close(w.wake)
}
