package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// host is the cgroup layout of this machine and what the benchmark made
// in it. Every directory made is also appended to a state file under
// stateDir, so that a run killed without its clean-up (SIGKILL) is swept
// by the next one.
type host struct {
	v2      bool
	memRoot string // memory hierarchy: /sys/fs/cgroup/memory (v1) or /sys/fs/cgroup (v2)
	cpuRoot string // cpuacct hierarchy (v1) or the unified one (v2)
	// parent holds this run's kubepods (oomhero runs with --cgroup-match
	// on it): node-mode agents of other programs on this host neither see
	// nor are seen by this run's.
	parent string

	mu    sync.Mutex
	made  []string // directories made, in order (removed in reverse)
	state *os.File

	reaped map[int]unix.WaitStatus // tracked pids that ended
	track  map[int]bool
}

const stateDir = "/run/oomhero-nodebench"

// newHost finds the memory and cpuacct hierarchies, sweeps what a dead
// earlier run left, and makes this process the reaper of the processes it
// starts and their orphans (the host's PID 1 may not reap).
func newHost() (*host, error) {
	h := &host{reaped: map[int]unix.WaitStatus{}, track: map[int]bool{}}
	switch {
	case exists("/sys/fs/cgroup/memory/memory.limit_in_bytes") || exists("/sys/fs/cgroup/memory/memory.usage_in_bytes"):
		h.memRoot = "/sys/fs/cgroup/memory"
		h.cpuRoot = "/sys/fs/cgroup/cpuacct"
		if !exists(filepath.Join(h.cpuRoot, "cpuacct.usage")) {
			return nil, fmt.Errorf("cgroup v1 memory at %s but no cpuacct hierarchy at %s (cpuacct.usage missing)", h.memRoot, h.cpuRoot)
		}
	case exists("/sys/fs/cgroup/cgroup.controllers"):
		b, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		if !strings.Contains(" "+string(b)+" ", " memory") {
			return nil, errors.New("/sys/fs/cgroup is cgroup v2 without the memory controller and there is no v1 memory hierarchy")
		}
		h.v2, h.memRoot, h.cpuRoot = true, "/sys/fs/cgroup", "/sys/fs/cgroup"
	default:
		return nil, errors.New("no memory cgroup hierarchy: neither /sys/fs/cgroup/memory (v1) nor /sys/fs/cgroup/cgroup.controllers (v2)")
	}
	h.parent = fmt.Sprintf("oomhero-nodebench-%d", os.Getpid())
	if err := sweepDead(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(stateDir, strconv.Itoa(os.Getpid())), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	h.state = f
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl PR_SET_CHILD_SUBREAPER: %w", err)
	}
	go h.reap()
	if err := h.mkdir(filepath.Join(h.memRoot, h.parent)); err != nil {
		return nil, err
	}
	if h.v2 {
		if err := os.WriteFile(filepath.Join(h.memRoot, h.parent, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			return nil, fmt.Errorf("enable memory in %s: %w", h.parent, err)
		}
	}
	return h, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// reap waits for every child and orphan. The benchmark starts its
// processes with exec.Cmd.Start and never calls Wait: this loop is the only
// waiter, so nothing stays a zombie.
func (h *host) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case err == unix.ECHILD:
			time.Sleep(100 * time.Millisecond)
		case err != nil:
		case pid > 0:
			h.mu.Lock()
			if h.track[pid] {
				h.reaped[pid] = ws
			}
			h.mu.Unlock()
		}
	}
}

// ended tells whether the tracked pid ended, and how.
func (h *host) ended(pid int) (unix.WaitStatus, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws, ok := h.reaped[pid]
	return ws, ok
}

// mkdir makes dir (not its parents) and records it; an existing directory
// is not ours and is not recorded.
func (h *host) mkdir(dir string) error {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("make cgroup %s: %w", dir, err)
	}
	h.mu.Lock()
	h.made = append(h.made, dir)
	fmt.Fprintln(h.state, dir)
	h.mu.Unlock()
	return nil
}

// container is one kubelet-shaped container cgroup.
type container struct {
	podUID, id string
	dir        string // memory cgroup directory (absolute)
	path       string // cgroup path as oomhero logs it (relative to the hierarchy root)
	pid        int    // main process
	log        string // main process's stdout and stderr
}

// newContainer makes kubepods/burstable/pod<uid>/<64hex> (cgroupfs driver)
// on v1, or the systemd driver's kubepods.slice/... scope on v2, with a
// memory limit.
func (h *host) newContainer(limit uint64) (*container, error) {
	var u [16]byte
	rand.Read(u[:])
	uid := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	var b [32]byte
	rand.Read(b[:])
	id := fmt.Sprintf("%x", b)
	parts := []string{h.parent}
	if h.v2 {
		parts = append(parts, "kubepods.slice", "kubepods-burstable.slice",
			"kubepods-burstable-pod"+strings.ReplaceAll(uid, "-", "_")+".slice", "cri-containerd-"+id+".scope")
	} else {
		parts = append(parts, "kubepods", "burstable", "pod"+uid, id)
	}
	dir := filepath.Join(h.memRoot, h.parent)
	for i, p := range parts[1:] {
		dir = filepath.Join(dir, p)
		if err := h.mkdir(dir); err != nil {
			return nil, err
		}
		if h.v2 && i < len(parts)-2 {
			if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
				return nil, fmt.Errorf("enable memory in %s: %w", dir, err)
			}
		}
	}
	file, val := "memory.limit_in_bytes", strconv.FormatUint(limit, 10)
	if h.v2 {
		file = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0); err != nil {
		return nil, fmt.Errorf("set %s of %s: %w", file, dir, err)
	}
	return &container{podUID: uid, id: id, dir: dir, path: "/" + strings.Join(parts, "/")}, nil
}

// start runs argv with env, joined to the cgroups whose cgroup.procs files
// are given (a shell writes its own pid there, then execs argv), stdout and
// stderr to logFile. It returns once the process runs argv in its cgroups.
func (h *host) start(procsFiles []string, env []string, logFile string, argv ...string) (int, error) {
	out, err := os.Create(logFile)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	script := `for f in $NODEBENCH_CGROUPS; do echo $$ > "$f" || exit 97; done; unset NODEBENCH_CGROUPS; exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh"}, argv...)...)
	cmd.Env = append(env, "NODEBENCH_CGROUPS="+strings.Join(procsFiles, " "))
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a Ctrl-C on the terminal reaches the
	// benchmark alone, which then cleans up in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	h.mu.Lock() // the reaper must know the pid before it can end
	err = cmd.Start()
	if err == nil {
		h.track[cmd.Process.Pid] = true
	}
	h.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", argv[0], err)
	}
	pid := cmd.Process.Pid
	exe := argv[0]
	shell, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		return pid, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ws, ok := h.ended(pid); ok {
			b, _ := os.ReadFile(logFile)
			return 0, fmt.Errorf("%s ended at start (%s): %s", exe, status(ws), lastLines(b, 5))
		}
		// Past the shell: it joined the cgroups and exec'd argv.
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && l != shell {
			return pid, nil
		}
		if time.Now().After(deadline) {
			return pid, fmt.Errorf("%s (pid %d) did not start in 10 s", exe, pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func status(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

func lastLines(b []byte, n int) string {
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// procs returns the pids in the cgroup directory dir.
func procs(dir string) ([]int, error) {
	f, err := os.Open(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
			out = append(out, n)
		}
	}
	return out, sc.Err()
}

// empty kills every process of dir (SIGKILL, until cgroup.procs is empty)
// and removes it.
func empty(dir string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		ps, err := procs(dir)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(ps) == 0 {
			err := os.Remove(dir)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("remove cgroup %s: %w", dir, err)
			}
		}
		for _, p := range ps {
			unix.Kill(p, unix.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: %d processes left after 15 s of SIGKILL", dir, len(ps))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// remove empties and removes a container's cgroup and its pod's directory.
func (h *host) remove(c *container) error {
	if err := empty(c.dir); err != nil {
		return err
	}
	h.forget(c.dir)
	pod := filepath.Dir(c.dir)
	if err := empty(pod); err != nil {
		return err
	}
	h.forget(pod)
	return nil
}

func (h *host) forget(dir string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, d := range h.made {
		if d == dir {
			h.made = append(h.made[:i], h.made[i+1:]...)
			return
		}
	}
}

// cleanup kills every process in the directories made, deepest first, and
// removes them (a kubepods or kubepods.slice that another program also
// uses stays, with a note).
func (h *host) cleanup() error {
	h.mu.Lock()
	made := append([]string(nil), h.made...)
	h.mu.Unlock()
	var errs []error
	// Processes first, in every directory, so no main process forks
	// again while its siblings go.
	for i := len(made) - 1; i >= 0; i-- {
		if ps, err := procs(made[i]); err == nil {
			for _, p := range ps {
				unix.Kill(p, unix.SIGKILL)
			}
		}
	}
	for i := len(made) - 1; i >= 0; i-- {
		if err := empty(made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && h.state != nil {
		h.state.Close()
		os.Remove(h.state.Name())
	}
	return errors.Join(errs...)
}

// sweepDead removes what runs that died without their clean-up left: the
// directories listed in state files of pids that no longer run.
func sweepDead() error {
	ents, err := os.ReadDir(stateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if unix.Kill(pid, 0) == nil {
			continue // still running
		}
		file := filepath.Join(stateDir, e.Name())
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		dirs := strings.Fields(string(b))
		fmt.Fprintf(os.Stderr, "nodebench: sweeping %d cgroups left by run %d\n", len(dirs), pid)
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := empty(dirs[i]); err != nil {
				return fmt.Errorf("sweep what run %d left: %w", pid, err)
			}
		}
		os.Remove(file)
	}
	return nil
}

// agentCgroup makes oomhero's own CPU accounting cgroup and returns its
// cgroup.procs file and a reader of its CPU time.
func (h *host) agentCgroup(name string) (string, func() (time.Duration, error), error) {
	dir := filepath.Join(h.cpuRoot, name)
	if err := h.mkdir(dir); err != nil {
		return "", nil, err
	}
	if h.v2 {
		file := filepath.Join(dir, "cpu.stat")
		return filepath.Join(dir, "cgroup.procs"), func() (time.Duration, error) {
			b, err := os.ReadFile(file)
			if err != nil {
				return 0, err
			}
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
					n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
					return time.Duration(n) * time.Microsecond, err
				}
			}
			return 0, fmt.Errorf("%s: no usage_usec", file)
		}, nil
	}
	file := filepath.Join(dir, "cpuacct.usage")
	return filepath.Join(dir, "cgroup.procs"), func() (time.Duration, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q is not a count of nanoseconds", file, b)
		}
		return time.Duration(n), nil
	}, nil
}
