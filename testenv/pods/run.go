package pods

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Running is a pod started by Play. Down must be called (it is safe to call
// more than once).
type Running struct {
	Lab  *Lab
	Pod  Pod
	YAML string // path of the YAML file played

	mu   sync.Mutex
	down bool
}

var (
	liveMu sync.Mutex
	live   = map[*Running]bool{}
)

// DownAll tears down every pod of this process still up (for signal
// handlers and TestMain).
func DownAll() {
	liveMu.Lock()
	rs := make([]*Running, 0, len(live))
	for r := range live {
		rs = append(rs, r)
	}
	liveMu.Unlock()
	for _, r := range rs {
		r.Down()
	}
}

// PodName returns a pod name unique to this process: oomhero-e2e-<pid>-<name>.
func PodName(name string) string {
	name = strings.ToLower(name)
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, name)
	return fmt.Sprintf("oomhero-e2e-%d-%s", os.Getpid(), name)
}

// Play writes the pod's YAML and runs `podman kube play` on it. The pod is
// labelled with this process's pid (see SweepOrphans). When Play fails after
// podman created anything, it tears it down.
func (l *Lab) Play(ctx context.Context, p Pod) (*Running, error) {
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[ownerLabel] = strconv.Itoa(os.Getpid())
	path := filepath.Join(l.Dir, p.Name+".yaml")
	if err := os.WriteFile(path, p.YAML(), 0o644); err != nil {
		return nil, fmt.Errorf("play %s: %w", p.Name, err)
	}
	r := &Running{Lab: l, Pod: p, YAML: path}
	liveMu.Lock()
	live[r] = true
	liveMu.Unlock()
	l.logf("playing pod %s", p.Name)
	if _, err := l.Podman(ctx, "kube", "play", path); err != nil {
		r.Down()
		return nil, fmt.Errorf("play %s: %w", p.Name, err)
	}
	return r, nil
}

// ContainerName returns podman's name of the pod's container c.
func (r *Running) ContainerName(c string) string { return r.Pod.Name + "-" + c }

// Logs returns the container's log (standard output and error).
func (r *Running) Logs(ctx context.Context, c string) (string, error) {
	out, err := r.Lab.PodmanCombined(ctx, "logs", r.ContainerName(c))
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// State is what podman tells of a container.
type State struct {
	Status    string // running, exited, ...
	ExitCode  int
	OOMKilled bool // always false on this host, see the package doc
	Pid       int  // host pid of the container's first process (0 once exited)
	ID        string
	Cgroup    string // cgroup path
}

// State inspects container c.
func (r *Running) State(ctx context.Context, c string) (State, error) {
	out, err := r.Lab.Inspect(ctx, "--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}} {{.State.Pid}} {{.Id}} {{.State.CgroupPath}}", r.ContainerName(c))
	if err != nil {
		return State{}, err
	}
	f := strings.Fields(string(out))
	if len(f) < 5 {
		return State{}, fmt.Errorf("inspect %s: unexpected output %q", r.ContainerName(c), out)
	}
	var s State
	s.Status = f[0]
	if s.ExitCode, err = strconv.Atoi(f[1]); err != nil {
		return s, fmt.Errorf("inspect %s: exit code %q: %w", r.ContainerName(c), f[1], err)
	}
	s.OOMKilled = f[2] == "true"
	if s.Pid, err = strconv.Atoi(f[3]); err != nil {
		return s, fmt.Errorf("inspect %s: pid %q: %w", r.ContainerName(c), f[3], err)
	}
	s.ID = f[4]
	if len(f) > 5 {
		s.Cgroup = f[5]
	}
	return s, nil
}

// States returns one line per container: name, status, exit code (for
// diagnostics).
func (r *Running) States(ctx context.Context) string {
	var b strings.Builder
	for _, c := range r.Pod.Containers {
		s, err := r.State(ctx, c.Name)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", c.Name, err)
			continue
		}
		fmt.Fprintf(&b, "%s: %s exit=%d oomkilled=%v\n", c.Name, s.Status, s.ExitCode, s.OOMKilled)
	}
	return b.String()
}

// WaitExited waits until container c is no longer running and returns its
// state.
func (r *Running) WaitExited(ctx context.Context, c string) (State, error) {
	for {
		s, err := r.State(ctx, c)
		if err != nil {
			return s, err
		}
		if s.Status != "running" && s.Status != "created" && s.Status != "configured" && s.Status != "initialized" {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("wait for %s to exit: %w", r.ContainerName(c), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitLog polls container c's log every 200 ms until cond returns true for
// it, and returns that log.
func (r *Running) WaitLog(ctx context.Context, c string, cond func(log string) bool) (string, error) {
	for {
		log, err := r.Logs(ctx, c)
		if err == nil && cond(log) {
			return log, nil
		}
		select {
		case <-ctx.Done():
			return log, fmt.Errorf("wait for %s's log: %w", r.ContainerName(c), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Down removes the pod and all its containers, with a fresh context (the
// caller's may have expired), unless OOMHERO_E2E_KEEP=1.
func (r *Running) Down() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return nil
	}
	r.down = true
	liveMu.Lock()
	delete(live, r)
	liveMu.Unlock()
	if os.Getenv("OOMHERO_E2E_KEEP") == "1" {
		r.Lab.logf("keeping pod %s (OOMHERO_E2E_KEEP=1)", r.Pod.Name)
		return nil
	}
	return r.Lab.RemovePod(r.Pod.Name)
}

// RemovePod removes pod name and all its containers, with a fresh context.
// A pod that is already gone is not an error. podman can refuse while a
// container of the pod is between two states (one restarting in a loop:
// "container not running"), and under a dozen pods going at once one
// `pod rm` was seen to hang past a minute (killed, the pod then removed by
// the next sweep): each of up to 3 tries has a minute of its own.
func (l *Lab) RemovePod(name string) error {
	var err error
	for try := 1; try <= 3; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err = l.Podman(ctx, "pod", "rm", "-f", "-t", "0", name)
		cancel()
		if err == nil {
			return nil
		}
		if strings.Contains(err.Error(), "no such pod") || strings.Contains(err.Error(), "no pod with name") {
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("tear down %s: %w", name, err)
}

// WaitLogFile is WaitLog without podman while it waits: it reads container
// c's log file as it grows (Lab.WaitLogFile, every 20 ms). A podman
// command costs tens of milliseconds of CPU: polled every 200 ms during a
// leak, it took a good part of one of this host's two CPUs from the
// reaction being measured. Where the log file cannot be read it falls back
// to WaitLog.
func (r *Running) WaitLogFile(ctx context.Context, c string, cond func(log string) bool) (string, error) {
	s, err := r.Lab.WaitLogFile(ctx, r.ContainerName(c), 20*time.Millisecond, cond)
	if errors.Is(err, ErrNoLogFile) {
		return r.WaitLog(ctx, c, cond)
	}
	return s, err
}

// WaitPidExit waits until host process pid has exited (WaitPid: no podman
// while a leak is measured), then for container c to be no longer running,
// and returns its state.
func (r *Running) WaitPidExit(ctx context.Context, c string, pid int) (State, error) {
	WaitPid(ctx, pid)
	return r.WaitExited(ctx, c)
}

// WaitPid waits until host process pid has exited, through a pidfd polled
// by the kernel, and reports whether it did before ctx ended. A process
// already gone (no pidfd) has exited.
func WaitPid(ctx context.Context, pid int) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 200); n > 0 || (err != nil && err != unix.EINTR) {
			return true
		}
	}
	return false
}
