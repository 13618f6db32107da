package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Machine describes one qemu boot.
type Machine struct {
	// Kernel to boot (FetchKernel).
	Kernel *Kernel
	// Init is the host path of the static guest runner (./vminit).
	Init string
	// Busybox is the host path of a static busybox (default /bin/busybox
	// from Debian's busybox-static).
	Busybox string
	// Files maps guest paths to host files, added executable (binaries
	// under test, test binaries).
	Files map[string]string
	// MemoryMiB is the guest's memory (default 2048).
	MemoryMiB int
	// CPUs is the number of virtual CPUs (default 2).
	CPUs int
	// CPU is qemu's -cpu model (default DefaultCPU).
	CPU string
	// Append is added to the kernel command line.
	Append []string
	// WorkDir receives the initramfs and the console log (required).
	WorkDir string
}

// Result is what one boot reported.
type Result struct {
	// Release is the guest kernel's release (uname -r).
	Release string
	// Events are the guest's events in the order they arrived.
	Events []Event
	// Console is the kernel console (ttyS0) output.
	Console []byte
	// ConsolePath is where the console log was written.
	ConsolePath string
	// BootTime is the host time from starting qemu to the guest runner's
	// first event; Wall is the time from starting qemu to its exit.
	BootTime, Wall time.Duration
	// Ended tells that the guest reached its end and powered off.
	Ended bool
}

// DefaultCPU is the virtual CPU model. Under TCG the plain qemu64 model
// (plus RDRAND, so the guest's random pool is ready at once) takes page
// faults several times faster than "max" (whose 5-level paging, SMAP, PKU
// and the like all cost in emulation): measured here, an anonymous-memory
// leak reached 133-207 MiB/s with qemu64 and 67-124 MiB/s with max variants.
const DefaultCPU = "qemu64,+rdrand"

// KernelCommandLine is the guest's kernel command line before Machine.Append:
// serial console, cgroup v2 only, PSI on, transparent huge pages only on
// request (so memory grows page by page, as on most nodes), reboot on panic
// (qemu runs with -no-reboot, so a panic ends the run).
var KernelCommandLine = []string{
	"console=ttyS0", "rdinit=/init", "panic=-1", "oops=panic",
	"psi=1", "cgroup_no_v1=all", "transparent_hugepage=madvise",
	"random.trust_cpu=on", "loglevel=4",
}

// Run builds the initramfs with spec, boots it and collects the guest's
// events until it powers off or ctx ends. The error is not nil when qemu
// could not run or the guest did not reach its end; the Result holds what
// arrived anyway.
func (m *Machine) Run(ctx context.Context, spec Spec) (*Result, error) {
	if m.Kernel == nil || m.Init == "" || m.WorkDir == "" {
		return nil, errors.New("vm: Machine needs Kernel, Init and WorkDir")
	}
	mem, cpus, busybox, cpu := m.MemoryMiB, m.CPUs, m.Busybox, m.CPU
	if cpu == "" {
		cpu = DefaultCPU
	}
	if mem == 0 {
		mem = 2048
	}
	if cpus == 0 {
		cpus = 2
	}
	if busybox == "" {
		busybox = "/bin/busybox"
	}
	var ir Initramfs
	ir.AddFile("init", m.Init, 0o755)
	if err := ir.AddBusybox(ctx, busybox); err != nil {
		return nil, err
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "etc", "data"} {
		ir.AddDir(d)
	}
	ir.AddBytes("etc/passwd", []byte("root:x:0:0:root:/:/bin/sh\n"), 0o644)
	ir.AddBytes("etc/group", []byte("root:x:0:\n"), 0o644)
	for name, p := range m.Kernel.Modules {
		ir.AddFile("lib/modules/"+name+".ko", p, 0o644)
	}
	for guest, host := range m.Files {
		ir.AddFile(guest, host, 0o755)
	}
	sb, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	ir.AddBytes("spec.json", sb, 0o644)
	initrd := filepath.Join(m.WorkDir, "initramfs.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		return nil, err
	}
	if _, err := ir.WriteTo(f); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}

	res := &Result{ConsolePath: filepath.Join(m.WorkDir, "console.log")}
	sock := filepath.Join(m.WorkDir, "data.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("data socket: %w", err)
	}
	defer ln.Close()
	args := []string{
		"-accel", "tcg", "-cpu", cpu, "-smp", fmt.Sprint(cpus), "-m", fmt.Sprint(mem),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", m.Kernel.Vmlinuz, "-initrd", initrd,
		"-append", strings.Join(append(append([]string{}, KernelCommandLine...), m.Append...), " "),
		"-serial", "file:" + res.ConsolePath, "-monitor", "none",
		// The guest's reports: a virtio-serial port (/dev/vport*p1 in the
		// guest), about 10 times faster than a second UART under TCG.
		"-device", "virtio-serial-pci,id=vser",
		// A socket, not stdio: with stdin closed qemu reports the port
		// disconnected and guest writes block.
		"-chardev", "socket,id=data,path=" + sock + ",server=off",
		"-device", "virtserialport,bus=vser.0,chardev=data,name=data",
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	exited := make(chan struct{})
	var werr error
	go func() { werr = cmd.Wait(); close(exited) }()
	go func() {
		// Unblock Accept when qemu ends without connecting.
		<-exited
		ln.Close()
	}()
	conn, err := ln.Accept()
	if err != nil {
		<-exited
		return res, fmt.Errorf("qemu did not connect to the data socket: %v: %s", werr, tail(stderr.Bytes()))
	}
	defer conn.Close()
	go func() {
		<-exited
		// Whatever qemu wrote is readable until EOF; don't wait forever.
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	}()
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := bytes.TrimRight(sc.Bytes(), "\r")
		i := bytes.IndexByte(line, '{')
		if i < 0 {
			continue
		}
		var ev Event
		if err := json.Unmarshal(line[i:], &ev); err != nil {
			continue
		}
		switch ev.Kind {
		case KindBoot:
			res.BootTime = time.Since(start)
			res.Release = ev.Text
		case KindEnd:
			res.Ended = true
		}
		res.Events = append(res.Events, ev)
	}
	<-exited
	res.Wall = time.Since(start)
	res.Console, _ = os.ReadFile(res.ConsolePath)
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("qemu: %w (guest did not finish)", ctx.Err())
	case werr != nil:
		return res, fmt.Errorf("qemu: %w: %s", werr, tail(stderr.Bytes()))
	case !res.Ended:
		return res, fmt.Errorf("guest powered off before its end (kernel panic?); console: %s", tail(res.Console))
	}
	return res, nil
}

// Lines returns the output lines of one container (pod "" for commands).
func (r *Result) Lines(pod, container string) []Event {
	var out []Event
	for _, e := range r.Events {
		if e.Kind == KindLine && e.Pod == pod && e.Container == container {
			out = append(out, e)
		}
	}
	return out
}

// Text returns the output of one container as text, one line per line.
func (r *Result) Text(pod, container string) string {
	var b strings.Builder
	for _, e := range r.Lines(pod, container) {
		b.WriteString(e.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// Find returns the first event of kind for the container, or nil.
func (r *Result) Find(kind, pod, container string) *Event {
	for i, e := range r.Events {
		if e.Kind == kind && e.Pod == pod && e.Container == container {
			return &r.Events[i]
		}
	}
	return nil
}

// File returns the content of a container cgroup file reported at pod end
// (memory.events, memory.peak, memory.pressure), and whether it was.
func (r *Result) File(pod, container, name string) (string, bool) {
	for _, e := range r.Events {
		if e.Kind == KindFile && e.Pod == pod && e.Container == container && e.Stream == name {
			return e.Text, true
		}
	}
	return "", false
}

// Errors returns the runner's error events.
func (r *Result) Errors() []Event {
	var out []Event
	for _, e := range r.Events {
		if e.Kind == KindError {
			out = append(out, e)
		}
	}
	return out
}

// Kmsg returns the kernel log lines logged while the spec ran.
func (r *Result) Kmsg() []Event {
	var out []Event
	for _, e := range r.Events {
		if e.Kind == KindKmsg {
			out = append(out, e)
		}
	}
	return out
}

// CPU returns a container's CPU time (cpu.stat usage_usec at pod end), or
// -1 when it was not reported.
func (r *Result) CPU(pod, container string) time.Duration {
	s, ok := r.File(pod, container, "cpu.stat")
	if !ok {
		return -1
	}
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
			var us int64
			if _, err := fmt.Sscan(v, &us); err == nil {
				return time.Duration(us) * time.Microsecond
			}
		}
	}
	return -1
}
