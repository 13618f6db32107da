// Package lab makes real memory cgroups and a real allocating process for the
// privileged tests and benchmarks: the leaker is the calling binary re-executed
// (tests and the benchmark call MaybeLeaker first thing).
package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/watch"
)

const leakerEnv = "OOMHERO_LAB_LEAKER"

// MiB is a mebibyte in bytes.
const MiB = 1 << 20

// MemoryRoot finds the memory controller's hierarchy under cgroupfs (the
// directory where /sys/fs/cgroup is mounted): v1's memory directory, or the
// v2 unified root with the memory controller enabled for children.
func MemoryRoot(cgroupfs string) (string, watch.CgroupVersion, error) {
	v1 := filepath.Join(cgroupfs, "memory")
	if _, err := os.Stat(filepath.Join(v1, "memory.limit_in_bytes")); err == nil {
		return v1, watch.V1, nil
	}
	b, err := os.ReadFile(filepath.Join(cgroupfs, "cgroup.controllers"))
	if err != nil {
		return "", 0, fmt.Errorf("no cgroup memory controller under %s: %w", cgroupfs, err)
	}
	if !strings.Contains(" "+string(b)+" ", " memory") {
		return "", 0, fmt.Errorf("no memory controller in %s", filepath.Join(cgroupfs, "cgroup.controllers"))
	}
	ctl := filepath.Join(cgroupfs, "cgroup.subtree_control")
	if cur, err := os.ReadFile(ctl); err == nil && !strings.Contains(string(cur), "memory") {
		if err := os.WriteFile(ctl, []byte("+memory"), 0); err != nil {
			return "", 0, fmt.Errorf("enable memory controller: %w", err)
		}
	}
	return cgroupfs, watch.V2, nil
}

// Cgroup is a memory cgroup made for a test.
type Cgroup struct {
	// Dir is the cgroup directory: Root is the hierarchy the test chose,
	// Rel the cgroup's name (Dir.String() is the path).
	Dir     watch.CgroupDir
	Version watch.CgroupVersion
	ID      uint64
	Limit   uint64
}

// NewCgroup creates root/name with a memory limit in bytes.
func NewCgroup(root string, v watch.CgroupVersion, name string, limit uint64) (*Cgroup, error) {
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	c := &Cgroup{Dir: watch.CgroupDir{Root: root, Rel: name}, Version: v, Limit: limit}
	file := "memory.max"
	if v == watch.V1 {
		file = "memory.limit_in_bytes"
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.FormatUint(limit, 10)), 0); err != nil {
		c.Remove()
		return nil, fmt.Errorf("set limit: %w", err)
	}
	if v == watch.V2 {
		// No swap: the limit is the limit.
		os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
	} else {
		os.WriteFile(filepath.Join(dir, "memory.swappiness"), []byte("0"), 0)
	}
	id, err := cgroup.ID(c.Dir)
	if err != nil {
		c.Remove()
		return nil, err
	}
	c.ID, c.Dir.Ino = id, id
	return c, nil
}

// Target returns a watch target for c with thresholds in bytes.
func (c *Cgroup) Target(warn, crit uint64, m watch.Metric) watch.Target {
	return watch.Target{
		Container: watch.Container{ID: c.ID, Name: filepath.Base(c.Dir.Rel), Path: c.Dir.String(), Dir: c.Dir,
			Version: c.Version, Limit: c.Limit},
		Warn: warn, Crit: crit, Metric: m,
	}
}

// Remove deletes the cgroup, waiting up to 5 s for its processes to leave.
func (c *Cgroup) Remove() error {
	var err error
	for range 100 {
		if err = os.Remove(c.Dir.String()); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup: %w", err)
}

// SelfChild is the running binary started again with env=1 set, moved
// into a cgroup directory before it runs anything of its own, and driven
// line by line over its stdin and stdout (the leaker here, loader/lead's
// child).
type SelfChild struct {
	Cmd *exec.Cmd
	In  io.WriteCloser
	Out *bufio.Reader
}

// StartSelf starts the current binary as a child with env=1 and writes
// its PID to dir's cgroup.procs; what names the child in errors.
func StartSelf(env, dir, what string) (*SelfChild, error) {
	return startSelfVia("", env, dir, what)
}

// SelfEnv names, in a wrapper's environment (StartLeakerVia), the binary
// it must exec.
const SelfEnv = "OOMHERO_LAB_SELF"

// startSelfVia is StartSelf through wrapper, when not "": wrapper runs
// first in the cgroup, with SelfEnv set, and must exec the binary.
func startSelfVia(wrapper, env, dir, what string) (*SelfChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	if wrapper != "" {
		cmd = exec.Command(wrapper)
	}
	cmd.Env = append(os.Environ(), env+"=1", SelfEnv+"="+exe)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	c := &SelfChild{Cmd: cmd, In: in, Out: bufio.NewReader(outp)}
	procs := filepath.Join(dir, "cgroup.procs")
	if err := os.WriteFile(procs, []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		c.Stop()
		return nil, fmt.Errorf("move %s into %s: %w", what, procs, err)
	}
	return c, nil
}

// Stop closes the child's stdin and waits for it to exit, killing it
// after 5 s.
func (c *SelfChild) Stop() error {
	c.In.Close()
	done := make(chan error, 1)
	go func() { done <- c.Cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		c.Cmd.Process.Kill()
		return <-done
	}
}

// StartLeakerVia starts wrapper in c; wrapper must exec the leaker (the
// program named by SelfEnv), when it chooses: a container runtime's init
// waiting for the container's start. Its first line of stdin is the
// wrapper's. Ready waits for the leaker.
func StartLeakerVia(c *Cgroup, wrapper string) (*Leaker, error) {
	s, err := startSelfVia(wrapper, leakerEnv, c.Dir.String(), "leaker")
	if err != nil {
		return nil, err
	}
	return &Leaker{s}, nil
}

// Ready waits until the leaker answers.
func (l *Leaker) Ready() error { return l.do("hello") }

// Leaker is a child process in a cgroup that allocates on command.
type Leaker struct {
	*SelfChild
}

// StartLeaker starts the current binary as a leaker and moves it into c
// before it allocates anything.
func StartLeaker(c *Cgroup) (*Leaker, error) {
	s, err := StartSelf(leakerEnv, c.Dir.String(), "leaker")
	if err != nil {
		return nil, err
	}
	l := &Leaker{s}
	if err := l.Ready(); err != nil {
		l.Stop()
		return nil, err
	}
	return l, nil
}

// Pid returns the leaker's process id.
func (l *Leaker) Pid() int { return l.Cmd.Process.Pid }

func (l *Leaker) do(cmd string) error {
	if _, err := fmt.Fprintln(l.In, cmd); err != nil {
		return fmt.Errorf("leaker %q: %w", cmd, err)
	}
	line, err := l.Out.ReadString('\n')
	if err != nil {
		return fmt.Errorf("leaker %q: %w", cmd, err)
	}
	if line = strings.TrimSpace(line); line != "ok" {
		return fmt.Errorf("leaker %q: %s", cmd, line)
	}
	return nil
}

// Anon maps and touches n bytes of anonymous memory at rate bytes per
// second (0: as fast as it can), then returns.
func (l *Leaker) Anon(n, rate uint64) error { return l.do(fmt.Sprintf("anon %d %d", n, rate)) }

// Free unmaps all the anonymous memory.
func (l *Leaker) Free() error { return l.do("free") }

// Cache writes n bytes into a new file at path (page cache charged to the
// leaker's cgroup).
func (l *Leaker) Cache(path string, n uint64) error { return l.do(fmt.Sprintf("cache %s %d", path, n)) }

// MaybeLeaker turns the process into a leaker when StartLeaker started it;
// otherwise it returns at once.
func MaybeLeaker() {
	if os.Getenv(leakerEnv) == "" {
		return
	}
	if err := leak(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "leaker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func leak(in io.Reader, out io.Writer) error {
	var maps [][]byte
	page := os.Getpagesize()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch f[0] {
		case "hello":
		case "anon":
			var n, rate uint64
			if len(f) != 3 {
				err = errors.New("usage: anon BYTES RATE")
				break
			}
			n, _ = strconv.ParseUint(f[1], 10, 64)
			rate, _ = strconv.ParseUint(f[2], 10, 64)
			var m []byte
			m, err = unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				break
			}
			unix.Madvise(m, unix.MADV_NOHUGEPAGE)
			maps = append(maps, m)
			start := time.Now()
			for off := 0; off < len(m); off += page {
				m[off] = 1
				if rate > 0 && off%MiB == 0 {
					due := start.Add(time.Duration(float64(off) / float64(rate) * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
				}
			}
		case "free":
			for _, m := range maps {
				if e := unix.Munmap(m); e != nil {
					err = e
				}
			}
			maps = nil
		case "cache":
			if len(f) != 3 {
				err = errors.New("usage: cache PATH BYTES")
				break
			}
			n, _ := strconv.ParseUint(f[2], 10, 64)
			err = writeFile(f[1], n)
		default:
			err = fmt.Errorf("unknown command %q", f[0])
		}
		if err != nil {
			fmt.Fprintf(out, "error: %v\n", err)
			continue
		}
		fmt.Fprintln(out, "ok")
	}
	return sc.Err()
}

func writeFile(path string, n uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, MiB)
	for i := range buf {
		buf[i] = byte(i)
	}
	for w := uint64(0); w < n; w += MiB {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
