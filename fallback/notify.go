package fallback

import (
	"context"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/watch"
)

// notifier gathers the cgroup v1 threshold eventfds of every quiet
// container in one epoll instance, itself waited on through the Go
// netpoller: an idle node costs no wake-up and no blocked thread, however
// many containers it has. The eventfds are read and closed by the poll loop
// only; the waiter goroutine only learns that something is ready.
type notifier struct {
	ep      *os.File
	ready   chan struct{} // the epoll instance has events (or the waiter failed)
	drained chan struct{} // the loop read them: the waiter may wait again
	failed  atomic.Bool
	evs     []unix.EpollEvent
	// kick wakes the poll loop after a send on ready (Run sets it before
	// the waiter starts; a no-op where the loop selects on ready).
	kick func()
}

// newNotifier returns a notifier whose wait the caller runs, or nil when
// none can be made (every container is then polled).
func newNotifier() *notifier {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil
	}
	// Non-blocking, so os.NewFile registers it with the netpoller (an
	// epoll instance is pollable: readable while it has events).
	n := &notifier{ep: os.NewFile(uintptr(fd), "epoll"), ready: make(chan struct{}, 1),
		drained: make(chan struct{}, 1), evs: make([]unix.EpollEvent, 64), kick: func() {}}
	return n
}

// wait tells the loop each time the epoll instance has events, and waits
// until the loop read them (their eventfds stay readable until then).
func (n *notifier) wait(ctx context.Context) {
	rc, err := n.ep.SyscallConn()
	if err != nil {
		n.fail(ctx)
		return
	}
	var probe [1]unix.EpollEvent
	for {
		err := rc.Read(func(fd uintptr) bool {
			// A look that consumes nothing: the eventfds are
			// level-triggered and only the loop reads them.
			k, err := unix.EpollWait(int(fd), probe[:], 0)
			return k > 0 || err != nil && err != unix.EINTR
		})
		if err != nil {
			if ctx.Err() == nil {
				n.fail(ctx) // not closed by the loop: no netpoller for it
			}
			return
		}
		select {
		case n.ready <- struct{}{}:
			n.kick()
		case <-ctx.Done():
			return
		}
		select {
		case <-n.drained:
		case <-ctx.Done():
			return
		}
	}
}

func (n *notifier) fail(ctx context.Context) {
	n.failed.Store(true)
	select {
	case n.ready <- struct{}{}:
		n.kick()
	case <-ctx.Done():
	}
}

// add puts a container's eventfd into the epoll instance.
func (n *notifier) add(fd int, id uint64) error {
	rc, err := n.ep.SyscallConn()
	if err != nil {
		return err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var cerr error
	if err := rc.Control(func(ep uintptr) { cerr = unix.EpollCtl(int(ep), unix.EPOLL_CTL_ADD, fd, &ev) }); err != nil {
		return err
	}
	return cerr
}

// collect calls fn with the id of every container whose eventfd is ready,
// then lets the waiter wait again. fn must drain the eventfd (or close it).
// It returns false when the notifier failed for good.
func (n *notifier) collect(fn func(id uint64)) bool {
	if n.failed.Load() {
		return false
	}
	rc, err := n.ep.SyscallConn()
	if err != nil {
		return false
	}
	for {
		k := 0
		var werr error
		if err := rc.Control(func(ep uintptr) { k, werr = unix.EpollWait(int(ep), n.evs, 0) }); err != nil {
			return false
		}
		if werr == unix.EINTR {
			continue
		}
		if werr != nil {
			return false
		}
		for _, ev := range n.evs[:k] {
			fn(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		}
		if k < len(n.evs) {
			break
		}
	}
	select {
	case n.drained <- struct{}{}:
	default:
	}
	return true
}

// close ends the waiter (the caller cancelled its context first) and closes
// the epoll instance; the eventfds are the loop's to close.
func (n *notifier) close() { n.ep.Close() }

// registration asks for, and answers with, one container's threshold
// registration (cgroup.NotifyUsage blocks for an RCU grace period, so it
// runs in a goroutine of its own, never in the poll loop).
type registration struct {
	id, gen uint64
	dir     watch.CgroupDir
	at      uint64
	ev      *cgroup.UsageEvent
	err     error
}

// registrar makes registrations one at a time: reqs holds at most the one
// the loop has in flight.
func registrar(ctx context.Context, register func(watch.CgroupDir, uint64) (*cgroup.UsageEvent, error),
	reqs <-chan registration, out chan<- registration, kick func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-reqs:
			r.ev, r.err = register(r.dir, r.at)
			select {
			case out <- r:
				kick()
			case <-ctx.Done():
				r.ev.Close()
				return
			}
		}
	}
}
