package loader

import (
	"log/slog"
	"time"
)

// AttachPoint names where the BPF program runs.
type AttachPoint string

// Attach points, in probing order.
const (
	// LruvecBTF is the BTF-enabled memcg lruvec tracepoint (charges and frees).
	LruvecBTF AttachPoint = "tp_btf/mod_memcg_lruvec_state"
	// ChargeFexit runs after try_charge_memcg (charges only).
	ChargeFexit AttachPoint = "fexit/try_charge_memcg"
	// LruvecTracepoint is the classic memcg lruvec tracepoint (needs tracefs).
	LruvecTracepoint AttachPoint = "tracepoint/memcg/mod_memcg_lruvec_state"
)

// AttachPoints lists every attach point in probing order.
var AttachPoints = []AttachPoint{LruvecBTF, ChargeFexit, LruvecTracepoint}

// SeesFrees tells whether the program also runs when memory is uncharged.
func (a AttachPoint) SeesFrees() bool { return a != ChargeFexit }

func (a AttachPoint) program() string {
	switch a {
	case LruvecBTF:
		return "on_lruvec"
	case ChargeFexit:
		return "on_charge"
	case LruvecTracepoint:
		return "on_lruvec_tp"
	}
	return ""
}

// Options configure a Source. The zero value is valid.
type Options struct {
	// Attach lists the attach points to try, in order (default AttachPoints).
	Attach []AttachPoint
	// PollInterval is how often cgroupfs is read while a container is at or
	// above its lower threshold and the attach point does not see frees
	// (default 100ms).
	PollInterval time.Duration
	// Heartbeat is how often cgroupfs is read while a container is at or
	// above its lower threshold and no event came, on attach points that see
	// frees (default 1s).
	Heartbeat time.Duration
	// ProgressGap is the minimum time between two progress events of one
	// container (default 5ms).
	ProgressGap time.Duration
	// ProgressStep is the change, as a fraction of the limit, that justifies
	// a progress event (default 1/64).
	ProgressStep float64
	// ProcessGap is the minimum time between two notifications on
	// ProcessEvents (default 100ms): a storm of processes costs at most
	// one rescan a ProcessGap.
	ProcessGap time.Duration
	// RingSize is the ring buffer size in bytes: a power of two, a multiple
	// of the page size (default 256 KiB).
	RingSize uint32
	// Realtime runs the ring-buffer reader on its own thread at SCHED_FIFO
	// priority 1 (needs CAP_SYS_NICE; without it a warning is logged and the
	// thread stays SCHED_OTHER). On a busy node the woken reader otherwise
	// waits for the running task's time slice: milliseconds.
	Realtime bool
	// NoKernelSend keeps the program from sending armed levels itself
	// (kernel sends, memwatch.c): every signal then goes from user space.
	NoKernelSend bool
	// Logger receives debug and warning messages (default slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if len(o.Attach) == 0 {
		o.Attach = AttachPoints
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = time.Second
	}
	if o.ProgressGap <= 0 {
		o.ProgressGap = 5 * time.Millisecond
	}
	if o.ProcessGap <= 0 {
		o.ProcessGap = 100 * time.Millisecond
	}
	if o.ProgressStep <= 0 {
		o.ProgressStep = 1.0 / 64
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
