//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/watch"
)

// loaded is the collection of one attach point, attached.
type loaded struct {
	attach AttachPoint
	coll   *ebpf.Collection
	prog   *ebpf.Program
	link   link.Link

	// The process-event programs (nil when they did not load or attach),
	// sharing coll's maps, and why they are missing.
	procColl  *ebpf.Collection
	procLinks []link.Link
	procErr   error

	// Why the program cannot send signals itself (nil: it can).
	sendErr error
}

func (l *loaded) close() error {
	var errs []error
	for _, pl := range l.procLinks {
		errs = append(errs, pl.Close())
	}
	if l.procColl != nil {
		l.procColl.Close()
	}
	if l.link != nil {
		errs = append(errs, l.link.Close())
	}
	if l.coll != nil {
		l.coll.Close()
	}
	return errors.Join(errs...)
}

// errClear marks a probe failure that says "cannot work here" for sure.
type errClear struct{ err error }

func (e errClear) Error() string { return e.err.Error() }
func (e errClear) Unwrap() error { return e.err }

func clearErr(format string, a ...any) error { return errClear{fmt.Errorf(format, a...)} }

// classify marks kernel refusals that are about the host, not about us.
func classify(what string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return clearErr("%s: permission denied (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN; some hosts refuse this program type): %w", what, err)
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.Errno(524)) /* ENOTSUPP */, errors.Is(err, unix.EOPNOTSUPP):
		return clearErr("%s: not supported by this kernel: %w", what, err)
	case errors.Is(err, os.ErrNotExist):
		return clearErr("%s: missing: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// tracefsDirs are where the classic tracepoint's tracefs may be mounted.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// targetExists tells whether the kernel has the attach point's target.
func targetExists(a AttachPoint, kernel *btf.Spec) error {
	switch a {
	case LruvecBTF:
		var td *btf.Typedef
		if err := kernel.TypeByName("btf_trace_mod_memcg_lruvec_state", &td); err != nil {
			return clearErr("%s: kernel has no tracepoint mod_memcg_lruvec_state in BTF: %w", a, err)
		}
	case ChargeFexit:
		var fn *btf.Func
		if err := kernel.TypeByName("try_charge_memcg", &fn); err != nil {
			return clearErr("%s: kernel has no function try_charge_memcg in BTF: %w", a, err)
		}
	case LruvecTracepoint:
		// link.Tracepoint looks in the same places.
		for _, dir := range tracefsDirs {
			if _, err := os.Stat(filepath.Join(dir, "events/memcg/mod_memcg_lruvec_state")); err == nil {
				return nil
			}
		}
		return clearErr("%s: no tracefs with events/memcg/mod_memcg_lruvec_state in %s", a, strings.Join(tracefsDirs, " or "))
	default:
		return fmt.Errorf("unknown attach point %q", a)
	}
	return nil
}

// load loads and attaches the program of one attach point. ringSize, when not
// zero, overrides the ring buffer size.
func load(a AttachPoint, types *btf.Cache, ringSize uint32) (*loaded, error) {
	kernel, err := types.Kernel()
	if err != nil {
		return nil, err
	}
	if err := targetExists(a, kernel); err != nil {
		return nil, err
	}
	spec, err := loadMemwatch()
	if err != nil {
		return nil, fmt.Errorf("parse embedded bpf object: %w", err)
	}
	keep := a.program()
	for name := range spec.Programs {
		if name != keep {
			delete(spec.Programs, name)
		}
	}
	delete(spec.Maps, memwatchMapEventType) // declares a type, never used
	if ringSize != 0 {
		spec.Maps[memwatchMapEvents].MaxEntries = ringSize
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Cache: types})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			// The verifier refused the program: a bug or a kernel this
			// program does not fit, never "just unavailable".
			return nil, fmt.Errorf("%s: verifier: %w", a, err)
		}
		return nil, classify(fmt.Sprintf("%s: load", a), err)
	}
	l := &loaded{attach: a, coll: coll, prog: coll.Programs[keep]}
	switch a {
	case LruvecBTF:
		l.link, err = link.AttachTracing(link.TracingOptions{Program: l.prog, AttachType: ebpf.AttachTraceRawTp})
	case ChargeFexit:
		l.link, err = link.AttachTracing(link.TracingOptions{Program: l.prog, AttachType: ebpf.AttachTraceFExit})
	case LruvecTracepoint:
		l.link, err = link.Tracepoint("memcg", "mod_memcg_lruvec_state", l.prog, nil)
	}
	if err != nil {
		l.close()
		return nil, classify(fmt.Sprintf("%s: attach", a), err)
	}
	return l, nil
}

// probe loads the first attach point of order that works. The error wraps
// watch.ErrUnavailable when every attempt failed for a clear reason.
func probe(order []AttachPoint, ringSize uint32) (*loaded, error) {
	// One decoding of the kernel's BTF for every load: without a shared
	// cache each collection decodes it again for its kfuncs and attach
	// targets (tens of milliseconds of CPU each, at every start).
	types := btf.NewCache()
	kernel, err := types.Kernel()
	if err != nil {
		return nil, fmt.Errorf("%w: kernel BTF not available (/sys/kernel/btf/vmlinux): %w", watch.ErrUnavailable, err)
	}
	var errs joined
	inconclusive := false
	for _, a := range order {
		l, err := load(a, types, ringSize)
		if err == nil {
			l.procErr = loadProcs(l, types)
			l.sendErr = kernelSendsMissing(a, kernel)
			return l, nil
		}
		errs = append(errs, err)
		var c errClear
		if !errors.As(err, &c) {
			inconclusive = true
		}
	}
	if inconclusive {
		return nil, fmt.Errorf("no bpf attach point could be loaded: %w", errs)
	}
	return nil, fmt.Errorf("%w: no bpf attach point: %w", watch.ErrUnavailable, errs)
}

// joined is errors.Join on one line.
type joined []error

func (j joined) Error() string {
	s := make([]string, len(j))
	for i, e := range j {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func (j joined) Unwrap() []error { return j }

// procTracepoints are the process-event programs and their BTF tracepoints.
var procTracepoints = map[string]string{
	memwatchProgOnFork: "sched_process_fork",
	memwatchProgOnExec: "sched_process_exec",
	memwatchProgOnExit: "sched_process_exit",
}

// loadProcs loads and attaches the process-event programs next to l's
// program, on l's maps. They are optional: the error says why they are
// missing, and l is unchanged then.
func loadProcs(l *loaded, types *btf.Cache) error {
	kernel, err := types.Kernel()
	if err != nil {
		return err
	}
	for _, tp := range procTracepoints {
		var td *btf.Typedef
		if err := kernel.TypeByName("btf_trace_"+tp, &td); err != nil {
			return fmt.Errorf("kernel has no tracepoint %s in BTF: %w", tp, err)
		}
	}
	spec, err := loadMemwatch()
	if err != nil {
		return fmt.Errorf("parse embedded bpf object: %w", err)
	}
	for name := range spec.Programs {
		if _, ok := procTracepoints[name]; !ok {
			delete(spec.Programs, name)
		}
	}
	delete(spec.Maps, memwatchMapEventType)
	repl := map[string]*ebpf.Map{}
	for name, ms := range spec.Maps {
		m := l.coll.Maps[name]
		if m == nil {
			return fmt.Errorf("map %s missing from the loaded object", name)
		}
		ms.MaxEntries = m.MaxEntries()
		repl[name] = m
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Cache:           types,
		MapReplacements: repl,
	})
	if err != nil {
		return classify("process-event programs: load", err)
	}
	var links []link.Link
	for name := range procTracepoints {
		pl, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[name], AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			for _, x := range links {
				x.Close()
			}
			coll.Close()
			return classify("process-event program "+name+": attach", err)
		}
		links = append(links, pl)
	}
	l.procColl, l.procLinks = coll, links
	return nil
}
