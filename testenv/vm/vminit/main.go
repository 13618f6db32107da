// Command vminit is the guest side of testenv/vm: the VM's pid 1, the pid 1
// of each pod ("pause"), and the set-up of each container before it execs the
// container's command. See the package documentation of testenv/vm.
//
// Usage (inside the VM only):
//
//	/init                         boot: mount, read /spec.json, run it, power off
//	/init pod INDEX               pid 1 of a pod's PID namespace
//	/init container INDEX NAME    enter the container's namespaces and exec its command
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/testenv/vm"
)

const (
	specPath  = "/spec.json"
	cgRoot    = "/sys/fs/cgroup"
	podsCg    = cgRoot + "/pods"
	dataMount = "/data"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 2 && os.Args[1] == "pod":
		err = podMain(os.Args[2])
	case len(os.Args) > 3 && os.Args[1] == "container":
		err = containerMain(os.Args[2], os.Args[3])
	case os.Getpid() == 1:
		bootMain()
		return
	default:
		err = errors.New("usage: /init | /init pod INDEX | /init container INDEX NAME (inside the test VM only)")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vminit:", err)
		os.Exit(1)
	}
}

func mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// emitter writes events as JSON lines, one write per line. An asynchronous
// emitter (newQueue) queues lines in memory and writes them from its own
// goroutine, so a slow channel never blocks a container writing its log.
type emitter struct {
	mu    sync.Mutex
	w     io.Writer
	queue *queue
}

type queue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	lines   [][]byte
	writing bool
}

func newQueue(w io.Writer) *emitter {
	q := &queue{}
	q.cond = sync.NewCond(&q.mu)
	go func() {
		for {
			q.mu.Lock()
			for len(q.lines) == 0 {
				q.writing = false
				q.cond.Broadcast()
				q.cond.Wait()
			}
			batch := q.lines
			q.lines = nil
			q.writing = true
			q.mu.Unlock()
			var buf []byte
			for _, l := range batch {
				buf = append(buf, l...)
			}
			w.Write(buf)
		}
	}()
	return &emitter{w: w, queue: q}
}

// flush waits until every queued line is written.
func (e *emitter) flush() {
	if e.queue == nil {
		return
	}
	q := e.queue
	q.mu.Lock()
	for len(q.lines) > 0 || q.writing {
		q.cond.Wait()
	}
	q.mu.Unlock()
}

func (e *emitter) emit(ev vm.Event) {
	if ev.T == 0 {
		ev.T = mono()
	}
	b, err := json.Marshal(ev)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"k":"error","x":%q}`, err.Error()))
	}
	e.raw(b)
}

func (e *emitter) raw(line []byte) {
	buf := make([]byte, 0, len(line)+1)
	buf = append(append(buf, line...), '\n')
	if q := e.queue; q != nil {
		q.mu.Lock()
		q.lines = append(q.lines, buf)
		q.cond.Broadcast()
		q.mu.Unlock()
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.w.Write(buf)
}

func (e *emitter) errorf(format string, a ...any) {
	e.emit(vm.Event{Kind: vm.KindError, Text: fmt.Sprintf(format, a...)})
}

func readSpec() (*vm.Spec, error) {
	b, err := os.ReadFile(specPath)
	if err != nil {
		return nil, err
	}
	var s vm.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", specPath, err)
	}
	return &s, nil
}

// ---- boot ----

func bootMain() {
	console, _ := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	logf := func(format string, a ...any) {
		if console != nil {
			fmt.Fprintf(console, "vminit: "+format+"\n", a...)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			logf("panic: %v", r)
		}
		unix.Sync()
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}()
	if err := mountAll(); err != nil {
		logf("%v", err)
		return
	}
	if console == nil {
		console, _ = os.OpenFile("/dev/console", os.O_WRONLY, 0)
	}
	out, err := openDataPort()
	if err != nil {
		logf("%v", err)
		return
	}
	em := newQueue(out)
	var uts unix.Utsname
	unix.Uname(&uts)
	em.emit(vm.Event{Kind: vm.KindBoot, Text: unix.ByteSliceToString(uts.Release[:])})
	if err := boot(em); err != nil {
		em.errorf("%v", err)
	}
	em.emit(vm.Event{Kind: vm.KindEnd})
	em.flush()
	out.Sync()
}

func mountAll() error {
	type m struct{ src, dst, fstype, data string }
	for _, x := range []m{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"cgroup2", cgRoot, "cgroup2", "nsdelegate"},
		{"debugfs", "/sys/kernel/debug", "debugfs", ""},
		{"tracefs", "/sys/kernel/tracing", "tracefs", ""},
		{"bpffs", "/sys/fs/bpf", "bpf", ""},
		{"tmpfs", "/tmp", "tmpfs", ""},
	} {
		if err := os.MkdirAll(x.dst, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", x.dst, err)
		}
		if err := unix.Mount(x.src, x.dst, x.fstype, unix.MS_NOSUID, x.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", x.fstype, x.dst, err)
		}
	}
	return nil
}

// virtioModules load the virtio-serial driver, in dependency order.
var virtioModules = []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_console"}

func insmod(name, params string) error {
	f, err := os.Open("/lib/modules/" + name + ".ko")
	if err != nil {
		return fmt.Errorf("insmod %s: %w", name, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("insmod %s: %w", name, err)
	}
	return nil
}

// openDataPort opens the virtio-serial port the host reads the events from.
func openDataPort() (*os.File, error) {
	for _, m := range virtioModules {
		if err := insmod(m, ""); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ports, _ := filepath.Glob("/dev/vport*p1")
		if len(ports) > 0 {
			return os.OpenFile(ports[0], os.O_WRONLY, 0)
		}
		if time.Now().After(deadline) {
			return nil, errors.New("no virtio-serial port /dev/vport*p1")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeFile(path, s string) error {
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		return fmt.Errorf("write %q to %s: %w", s, path, err)
	}
	return nil
}

func boot(em *emitter) error {
	spec, err := readSpec()
	if err != nil {
		return err
	}
	timeout := time.Duration(spec.Timeout)
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	if err := writeFile(cgRoot+"/cgroup.subtree_control", "+memory +pids +cpu"); err != nil {
		return err
	}
	if err := os.Mkdir(podsCg, 0o755); err != nil {
		return err
	}
	if err := writeFile(podsCg+"/cgroup.subtree_control", "+memory +pids +cpu"); err != nil {
		return err
	}
	for _, s := range spec.Sysctls {
		k, v, _ := strings.Cut(s, "=")
		if err := writeFile("/proc/sys/"+strings.ReplaceAll(k, ".", "/"), v); err != nil {
			return err
		}
	}
	if spec.DataMiB > 0 {
		if err := dataDisk(spec.DataMiB); err != nil {
			return err
		}
	}
	go kmsg(ctx, em)

	var wg sync.WaitGroup
	for i := range spec.Pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runPod(ctx, em, i, &spec.Pods[i]); err != nil {
				em.emit(vm.Event{Kind: vm.KindError, Pod: spec.Pods[i].Name, Text: err.Error()})
			}
			em.emit(vm.Event{Kind: vm.KindDone, Pod: spec.Pods[i].Name})
		}()
	}
	for i := range spec.Commands {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &spec.Commands[i]
			if err := runCommand(ctx, em, c); err != nil {
				em.emit(vm.Event{Kind: vm.KindError, Container: c.Name, Text: err.Error()})
			}
			em.emit(vm.Event{Kind: vm.KindDone, Container: c.Name})
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// Pods and commands are killed by their contexts; give them a moment
		// to report.
		select {
		case <-done:
		case <-time.After(3 * time.Second):
		}
		return fmt.Errorf("spec timeout %v reached", timeout)
	}
}

// dataDisk makes a RAM disk (brd: its pages are not charged to any memory
// cgroup) with an ext2 file system on /data, so page cache in the VM is real
// file cache (tmpfs pages would be shmem, never inactive_file).
func dataDisk(mib int) error {
	if err := insmod("brd", fmt.Sprintf("rd_nr=1 rd_size=%d max_part=0", mib*1024)); err != nil {
		return fmt.Errorf("data disk: %w", err)
	}
	var dev string
	for i := 0; i < 100; i++ {
		if _, err := os.Stat("/dev/ram0"); err == nil {
			dev = "/dev/ram0"
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if dev == "" {
		return errors.New("data disk: /dev/ram0 did not appear")
	}
	if out, err := exec.Command("/bin/busybox", "mke2fs", "-q", "-m", "0", dev).CombinedOutput(); err != nil {
		return fmt.Errorf("data disk: mke2fs: %w: %s", err, out)
	}
	if err := os.MkdirAll(dataMount, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, dataMount, "ext4", 0, ""); err != nil {
		return fmt.Errorf("data disk: mount: %w", err)
	}
	return nil
}

func kmsg(ctx context.Context, em *emitter) {
	f, err := os.Open("/dev/kmsg")
	if err != nil {
		em.errorf("kmsg: %v", err)
		return
	}
	// Only what happens from now on: the console log has the boot.
	f.Seek(0, io.SeekEnd)
	go func() { <-ctx.Done(); f.Close() }()
	buf := make([]byte, 8192)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if errors.Is(err, unix.EPIPE) { // records overwritten: carry on
				continue
			}
			return
		}
		// "prio,seq,usec,flags;message\n" then continuation lines.
		head, msg, ok := bytes.Cut(buf[:n], []byte{';'})
		if !ok {
			continue
		}
		fields := strings.Split(string(head), ",")
		var t int64
		if len(fields) >= 3 {
			us, _ := strconv.ParseInt(fields[2], 10, 64)
			t = us * 1000
		}
		line, _, _ := bytes.Cut(msg, []byte{'\n'})
		em.emit(vm.Event{Kind: vm.KindKmsg, T: t, Text: string(line)})
	}
}

func runPod(ctx context.Context, em *emitter, idx int, p *vm.Pod) error {
	dir := filepath.Join(podsCg, p.Name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if p.MemoryMax > 0 {
		if err := writeFile(dir+"/memory.max", strconv.FormatInt(p.MemoryMax, 10)); err != nil {
			return err
		}
	}
	if err := writeFile(dir+"/cgroup.subtree_control", "+memory +pids +cpu"); err != nil {
		return err
	}
	pause := filepath.Join(dir, "pause")
	if err := os.Mkdir(pause, 0o755); err != nil {
		return err
	}
	cg, err := os.Open(pause)
	if err != nil {
		return err
	}
	defer cg.Close()
	cmd := exec.Command("/init", "pod", strconv.Itoa(idx))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A pod has its own PID and network namespaces.
		Cloneflags:  syscall.CLONE_NEWPID | syscall.CLONE_NEWNET,
		UseCgroupFD: true,
		CgroupFD:    int(cg.Fd()),
		Pdeathsig:   syscall.SIGKILL,
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pod %s: %w", p.Name, err)
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			em.raw(sc.Bytes())
		}
	}()
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			em.emit(vm.Event{Kind: vm.KindError, Pod: p.Name, Text: sc.Text()})
		}
	}()
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("pod %s: %w", p.Name, err)
	}
	return nil
}

func runCommand(ctx context.Context, em *emitter, c *vm.Command) error {
	if t := time.Duration(c.Timeout); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Env = append([]string{"PATH=/bin", "HOME=/", "TMPDIR=/tmp"}, c.Env...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var wg sync.WaitGroup
	if err := pipeLines(cmd, em, "", c.Name, &wg); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.Name, err)
	}
	em.emit(vm.Event{Kind: vm.KindStart, Container: c.Name, PID: cmd.Process.Pid})
	wg.Wait()
	cmd.Wait()
	ev := exitEvent("", c.Name, cmd.ProcessState.Sys().(syscall.WaitStatus))
	if ctx.Err() != nil {
		ev.Text = "timeout"
	}
	em.emit(ev)
	return nil
}

func pipeLines(cmd *exec.Cmd, em *emitter, pod, name string, wg *sync.WaitGroup) error {
	return pipeLinesMatch(cmd, em, pod, name, wg, nil)
}

// pipeLinesMatch copies the command's output lines as events; match, when
// not nil, sees every line.
func pipeLinesMatch(cmd *exec.Cmd, em *emitter, pod, name string, wg *sync.WaitGroup, match func(string)) error {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	wg.Add(2)
	go copyLines(stdout, em, pod, name, "stdout", wg, match)
	go copyLines(stderr, em, pod, name, "stderr", wg, match)
	return nil
}

func copyLines(r io.Reader, em *emitter, pod, name, stream string, wg *sync.WaitGroup, match func(string)) {
	defer wg.Done()
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			text := strings.TrimSuffix(line, "\n")
			em.emit(vm.Event{Kind: vm.KindLine, Pod: pod, Container: name, Stream: stream, Text: text})
			if match != nil {
				match(text)
			}
		}
		if err != nil {
			return
		}
	}
}

func exitEvent(pod, name string, ws syscall.WaitStatus) vm.Event {
	ev := vm.Event{Kind: vm.KindExit, Pod: pod, Container: name}
	switch {
	case ws.Signaled():
		ev.Signal = unix.SignalName(ws.Signal())
		ev.Code = 128 + int(ws.Signal())
	default:
		ev.Code = ws.ExitStatus()
	}
	return ev
}

// ---- pod ----

type ctr struct {
	spec   *vm.Container
	dir    string
	pid    int
	exited chan struct{}
}

func podMain(idxArg string) error {
	spec, err := readSpec()
	if err != nil {
		return err
	}
	idx, err := strconv.Atoi(idxArg)
	if err != nil || idx < 0 || idx >= len(spec.Pods) {
		return fmt.Errorf("bad pod index %q", idxArg)
	}
	p := &spec.Pods[idx]
	em := &emitter{w: os.Stdout}
	base := filepath.Join(podsCg, p.Name)
	start := time.Now()

	var mu sync.Mutex
	byPID := map[int]*ctr{}
	// Reap every child, as a pod's pid 1 must: orphans of the containers
	// land here too.
	go func() {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, 0, nil)
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			mu.Lock()
			c := byPID[pid]
			mu.Unlock()
			if c != nil {
				em.emit(exitEvent(p.Name, c.spec.Name, ws))
				close(c.exited)
			}
		}
	}()

	var ctrs []*ctr
	var wg sync.WaitGroup
	mainLeft := 0
	mainDone := make(chan struct{}, len(p.Containers))
	// endOn receives the wait of the first EndOn match.
	endOn := make(chan time.Duration, 1)
	deadline := time.After(time.Duration(p.Duration))
	ended := false
	for i := range p.Containers {
		cs := &p.Containers[i]
		if d := time.Until(start.Add(time.Duration(cs.StartDelay))); d > 0 {
			select {
			case <-time.After(d):
			case <-deadline:
				ended = true
			}
		}
		if ended {
			break
		}
		c, err := startContainer(em, idx, p.Name, base, cs, &mu, byPID, &wg, endOn)
		if err != nil {
			em.emit(vm.Event{Kind: vm.KindError, Pod: p.Name, Container: cs.Name, Text: err.Error()})
			continue
		}
		ctrs = append(ctrs, c)
		if cs.Main {
			mainLeft++
			go func() { <-c.exited; mainDone <- struct{}{} }()
		}
	}
	if !ended {
		var linger <-chan time.Time
	wait:
		for {
			select {
			case <-deadline:
				break wait
			case <-linger:
				break wait
			case d := <-endOn:
				if linger == nil {
					em.emit(vm.Event{Kind: vm.KindLine, Pod: p.Name, Stream: "pod", Text: fmt.Sprintf("end condition met: ending in %v", d)})
					linger = time.After(d)
				}
			case <-mainDone:
				mainLeft--
				if mainLeft == 0 {
					linger = time.After(time.Duration(p.Linger))
				}
			}
		}
	}

	// Stop: SIGTERM to every process of the containers, SIGKILL after 1 s.
	for _, c := range ctrs {
		signalCgroup(c.dir, syscall.SIGTERM)
	}
	grace := time.After(time.Second)
	for _, c := range ctrs {
		select {
		case <-c.exited:
		case <-grace:
		}
	}
	for _, c := range ctrs {
		writeFile(c.dir+"/cgroup.kill", "1")
	}
	for _, c := range ctrs {
		select {
		case <-c.exited:
		case <-time.After(2 * time.Second):
			em.emit(vm.Event{Kind: vm.KindError, Pod: p.Name, Container: c.spec.Name, Text: "did not exit after SIGKILL"})
		}
	}
	for _, c := range ctrs {
		for _, name := range []string{"memory.events", "memory.peak", "memory.pressure", "cpu.stat"} {
			b, err := os.ReadFile(filepath.Join(c.dir, name))
			if err != nil {
				continue
			}
			em.emit(vm.Event{Kind: vm.KindFile, Pod: p.Name, Container: c.spec.Name, Stream: name, Text: string(b)})
		}
	}
	waitTimeout(&wg, 2*time.Second)
	return nil
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func signalCgroup(dir string, sig syscall.Signal) {
	b, err := os.ReadFile(dir + "/cgroup.procs")
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			syscall.Kill(pid, sig)
		}
	}
}

func startContainer(em *emitter, idx int, pod, base string, cs *vm.Container, mu *sync.Mutex, byPID map[int]*ctr, wg *sync.WaitGroup, endOn chan<- time.Duration) (*ctr, error) {
	dir := filepath.Join(base, cs.Name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	limit := "max"
	if cs.MemoryMax > 0 {
		limit = strconv.FormatInt(cs.MemoryMax, 10)
	}
	if err := writeFile(dir+"/memory.max", limit); err != nil {
		return nil, err
	}
	// No swap in the VM, but say it: a container's limit is its memory.
	writeFile(dir+"/memory.swap.max", "0")
	cg, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer cg.Close()
	cmd := exec.Command("/init", "container", strconv.Itoa(idx), cs.Name)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	var match func(string)
	if cs.EndOn != "" {
		var once sync.Once
		match = func(line string) {
			if strings.Contains(line, cs.EndOn) {
				once.Do(func() {
					select {
					case endOn <- time.Duration(cs.EndWait):
					default:
					}
				})
			}
		}
	}
	if err := pipeLinesMatch(cmd, em, pod, cs.Name, wg, match); err != nil {
		return nil, err
	}
	c := &ctr{spec: cs, dir: dir, exited: make(chan struct{})}
	mu.Lock()
	defer mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start container %s: %w", cs.Name, err)
	}
	c.pid = cmd.Process.Pid
	byPID[c.pid] = c
	em.emit(vm.Event{Kind: vm.KindStart, Pod: pod, Container: cs.Name, PID: c.pid})
	return c, nil
}

// ---- container ----

func containerMain(idxArg, name string) error {
	spec, err := readSpec()
	if err != nil {
		return err
	}
	idx, err := strconv.Atoi(idxArg)
	if err != nil || idx < 0 || idx >= len(spec.Pods) {
		return fmt.Errorf("bad pod index %q", idxArg)
	}
	var cs *vm.Container
	for i := range spec.Pods[idx].Containers {
		if spec.Pods[idx].Containers[i].Name == name {
			cs = &spec.Pods[idx].Containers[i]
		}
	}
	if cs == nil || len(cs.Args) == 0 {
		return fmt.Errorf("no container %q with a command in pod %d", name, idx)
	}
	// Namespaces belong to the thread; execve keeps the calling thread's.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// The container's view of cgroupfs: its own cgroup is the root.
	if err := unix.Unmount(cgRoot, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", cgRoot, err)
	}
	if err := unix.Mount("cgroup2", cgRoot, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount cgroup2: %w", err)
	}
	// A /proc of the pod's PID namespace.
	if err := unix.Unmount("/proc", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount /proc: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	env := append([]string{"PATH=/bin", "HOME=/", "TMPDIR=/tmp"}, cs.Env...)
	if err := unix.Exec(cs.Args[0], cs.Args, env); err != nil {
		return fmt.Errorf("exec %s: %w", cs.Args[0], err)
	}
	return nil
}
