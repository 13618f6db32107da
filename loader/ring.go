//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// ring is the ring-buffer reader with a guarded view of what is queued.
// ringbuf.Reader.AvailableBytes reads the mapped producer and consumer
// positions without the reader's lock, so once Close has unmapped them it
// faults (SIGSEGV, the whole process) instead of failing. The reader's
// goroutine asks between records while Run's return closes the reader from
// another goroutine: available and Close exclude each other, and nothing is
// queued once closed. ReadInto needs no guard: the reader's own lock and
// Close's interrupt of its wait cover it.
type ring struct {
	*ringbuf.Reader
	mu     sync.Mutex
	closed bool
}

func newRing(m *ebpf.Map) (*ring, error) {
	r, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, err
	}
	return &ring{Reader: r}, nil
}

// available returns how many bytes of records are queued: 0 once closed.
func (r *ring) available() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0
	}
	return r.Reader.AvailableBytes()
}

// Close closes the reader once; later calls return nil.
func (r *ring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	return r.Reader.Close()
}
