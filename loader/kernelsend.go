//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/express"
	"github.com/oomhero/oomhero/internal/watch"
)

// Kernel sends (memwatch.c, "Kernel sends"): the program itself signals
// the processes the agent armed for a level, on the page that crosses it,
// with bpf_send_signal_task. kernelSends is the user-space half: it writes
// the armed levels into the program's slot array, which it shares with the
// kernel through mmap(2), and takes back, with the same compare-and-swap
// as the program, what user space is about to send itself. It implements
// express.Kernel.

// Send states and flags, as in memwatch.c.
const (
	sendIdle  = 0
	sendArmed = 1
	sendTaken = 2
	sendDone  = 3

	sendHandler  = 1
	sendComm     = 2
	sendGateFile = 1

	sendTargets = 4
	sendSlots   = 1024
	sendProbe   = 8 // the slots a cgroup's may be: (id + 0..7) mod sendSlots
)

// kernelSendFuncs are the kfuncs the kernel sends call (kernel 6.13).
var kernelSendFuncs = []string{"bpf_task_from_pid", "bpf_task_from_vpid", "bpf_task_release", "bpf_send_signal_task"}

// kernelSendsMissing says why this kernel cannot send from the program,
// or nil when it can.
func kernelSendsMissing(a AttachPoint, kernel *btf.Spec) error {
	if a != LruvecBTF {
		return fmt.Errorf("attach point %s does not follow the working set itself", a)
	}
	for _, name := range kernelSendFuncs {
		var fn *btf.Func
		if err := kernel.TypeByName(name, &fn); err != nil {
			return fmt.Errorf("kernel has no kfunc %s (Linux 6.13 or later)", name)
		}
	}
	return nil
}

type kernelSends struct {
	mu     sync.Mutex
	mem    []byte // the slot array, shared with the program; nil once closed
	ns     uint64 // inode of oomhero's PID namespace (the targets' PIDs)
	page   uint64
	metric map[uint64]watch.Metric // targets' metrics, by cgroup id (Source.apply)

	owner map[uint32]uint64             // slot: the cgroup it is armed for
	index map[uint64]uint32             // cgroup: its slot (owner's inverse)
	armed map[uint64]*[2]*express.Level // what each level of a cgroup was armed with
}

// newKernelSends maps the program's slot array.
func newKernelSends(m *ebpf.Map, page uint64) (*kernelSends, error) {
	size := int(m.ValueSize()) * int(m.MaxEntries())
	if m.ValueSize() != uint32(unsafe.Sizeof(memwatchSendSlot{})) || m.MaxEntries() != sendSlots {
		return nil, fmt.Errorf("sends map of %d entries of %d bytes, want %d of %d", m.MaxEntries(), m.ValueSize(), sendSlots, unsafe.Sizeof(memwatchSendSlot{}))
	}
	pg := os.Getpagesize()
	mem, err := unix.Mmap(m.FD(), 0, (size+pg-1)/pg*pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap sends map: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("own PID namespace: %w", err)
	}
	return &kernelSends{mem: mem, ns: st.Ino, page: page, metric: map[uint64]watch.Metric{},
		owner: map[uint32]uint64{}, index: map[uint64]uint32{}, armed: map[uint64]*[2]*express.Level{}}, nil
}

func (k *kernelSends) close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mem == nil {
		return nil
	}
	err := unix.Munmap(k.mem)
	k.mem = nil
	return err
}

// setMetrics records the watched cgroups' metrics: only the usage and the
// working set (which the program follows) are judged in the kernel.
func (k *kernelSends) setMetrics(m map[uint64]watch.Metric) {
	k.mu.Lock()
	k.metric = m
	k.mu.Unlock()
}

func (k *kernelSends) slot(i uint32) *memwatchSendSlot {
	return (*memwatchSendSlot)(unsafe.Pointer(&k.mem[uintptr(i)*unsafe.Sizeof(memwatchSendSlot{})]))
}

// place returns cgroup id's slot, and gives it the first free one of its
// sendProbe slots if it has none (false: others hold all of them; its
// levels go from user space). The program looks at the same slots, in the
// same order, for the one that names id.
func (k *kernelSends) place(id uint64) (uint32, bool) {
	if i, ok := k.index[id]; ok {
		return i, true
	}
	for p := range uint64(sendProbe) {
		i := uint32((id + p) & (sendSlots - 1))
		s := k.slot(i)
		if _, held := k.owner[i]; held || !idle(s) {
			continue
		}
		// The id is written while no level is armed, and before one is:
		// the program checks it again after it takes a level.
		atomic.StoreUint64(&s.Id, id)
		s.Ns = k.ns
		k.owner[i], k.index[id] = id, i
		k.armed[id] = &[2]*express.Level{}
		return i, true
	}
	return 0, false
}

// release frees cgroup id's slot i (idle): its id goes, so the program's
// search for another cgroup's slot does not stop there.
func (k *kernelSends) release(id uint64, i uint32) {
	atomic.StoreUint64(&k.slot(i).Id, 0)
	delete(k.owner, i)
	delete(k.index, id)
	delete(k.armed, id)
}

// idle tells whether no level of slot s is armed or in the kernel's hands.
func idle(s *memwatchSendSlot) bool {
	for l := range s.Lv {
		if atomic.LoadUint32(&s.Lv[l].State) != sendIdle {
			return false
		}
	}
	return true
}

// Arm implements express.Kernel.
func (k *kernelSends) Arm(id uint64, plan *express.Plan) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mem == nil {
		return
	}
	// What the program can send of each level (none for the rss metric,
	// more than four targets, ...).
	var wants [2]*express.Level
	var next [2]memwatchSendLevel
	var can [2]bool
	if metric, known := k.metric[id]; plan != nil && known && plan.Metric == metric && (metric == watch.Usage || metric == watch.WorkingSet) {
		for l := range wants {
			wants[l] = plan.Levels[watch.Warning+watch.Level(l)]
			next[l], can[l] = k.build(wants[l], metric)
		}
	}
	i, ok := k.index[id]
	if !ok {
		if !can[0] && !can[1] {
			return // nothing of id's to take back, nothing to arm
		}
		if i, ok = k.place(id); !ok {
			return
		}
	}
	s := k.slot(i)
	copies := k.armed[id]
	for l := range s.Lv {
		lv := &s.Lv[l]
		want, ok := wants[l], can[l]
		// The agent re-arms after every decision, mostly with the same
		// sends: a level armed with them stays armed, never taken back
		// and refilled, so the program cannot find it idle meanwhile
		// (and leave a crossing to user space).
		if ok && atomic.LoadUint32(&lv.State) == sendArmed && sameSends(lv, &next[l]) {
			copies[l] = want
			continue
		}
		if !atomic.CompareAndSwapUint32(&lv.State, sendArmed, sendIdle) && atomic.LoadUint32(&lv.State) != sendIdle {
			continue // the kernel took it: Collect books it first
		}
		copies[l] = nil
		if !ok {
			continue
		}
		lv.Sig, lv.N, lv.Sent, lv.AtNs = next[l].Sig, next[l].N, 0, 0
		lv.Threshold, lv.Flags, lv.T = next[l].Threshold, next[l].Flags, next[l].T
		copies[l] = want
		atomic.StoreUint32(&lv.State, sendArmed)
	}
	if idle(s) { // nothing armed: another cgroup may have the slot
		k.release(id, i)
	}
}

// build returns level want as the program reads it, when the program can
// send all of it: at most four targets, each with a command the kernel can
// compare.
func (k *kernelSends) build(want *express.Level, metric watch.Metric) (memwatchSendLevel, bool) {
	var lv memwatchSendLevel
	if want == nil || len(want.Targets) == 0 || len(want.Targets) > sendTargets || want.Signal < 1 || want.Signal > 64 {
		return lv, false
	}
	for i, tg := range want.Targets {
		name := tg.Want.Name
		if tg.PID <= 0 || tg.PID > 1<<31-1 || len(name) > 15 || strings.ContainsAny(name, "\\\n") {
			// A command status escapes cannot be compared with comm.
			return lv, false
		}
		lv.T[i] = memwatchSendTarget{Pid: int32(tg.PID), Start: tg.Want.Start}
		if name != "" {
			lv.T[i].Flags |= sendComm
			for j := 0; j < len(name); j++ {
				lv.T[i].Comm[j] = int8(name[j])
			}
		}
		if tg.Want.Handler {
			lv.T[i].Flags |= sendHandler
		}
	}
	lv.Sig, lv.N = uint32(want.Signal), uint32(len(want.Targets))
	lv.Threshold = (want.Threshold + k.page - 1) / k.page
	if metric == watch.WorkingSet {
		lv.Flags = sendGateFile
	}
	return lv, true
}

// sameSends tells whether armed level lv sends what next does (the fields
// only user space writes).
func sameSends(lv, next *memwatchSendLevel) bool {
	return lv.Sig == next.Sig && lv.N == next.N && lv.Threshold == next.Threshold && lv.Flags == next.Flags && lv.T == next.T
}

// Take implements express.Kernel.
func (k *kernelSends) Take(id uint64, l watch.Level) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	i, ok := k.index[id]
	if k.mem == nil || !ok || l < watch.Warning || l > watch.Critical {
		return true
	}
	lv := &k.slot(i).Lv[l-watch.Warning]
	if atomic.CompareAndSwapUint32(&lv.State, sendArmed, sendIdle) {
		k.armed[id][l-watch.Warning] = nil
		return true
	}
	return atomic.LoadUint32(&lv.State) == sendIdle
}

// Collect implements express.Kernel.
func (k *kernelSends) Collect(id uint64) (out []express.Collected) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i, ok := k.index[id]
	if k.mem == nil || !ok {
		return nil
	}
	s := k.slot(i)
	for l := range s.Lv {
		lv := &s.Lv[l]
		level := watch.Warning + watch.Level(l)
		switch atomic.LoadUint32(&lv.State) {
		case sendTaken:
			out = append(out, express.Collected{Level: level, Busy: true})
		case sendDone:
			c := express.Collected{Level: level, At: monoTime(lv.AtNs)}
			if want := k.armed[id][l]; want != nil {
				c.Signal = want.Signal
				for t := range want.Targets {
					if lv.Sent&(1<<t) != 0 {
						c.Sent = append(c.Sent, want.Targets[t])
					}
				}
			}
			k.armed[id][l] = nil
			atomic.StoreUint32(&lv.State, sendIdle)
			out = append(out, c)
		}
	}
	return out
}

// monoTime converts a CLOCK_MONOTONIC time (bpf_ktime_get_ns) to wall time.
func monoTime(ns uint64) time.Time {
	now, mono := time.Now(), monoNow()
	if ns > mono {
		return now
	}
	return now.Add(-time.Duration(mono - ns))
}

var _ express.Kernel = (*kernelSends)(nil)
