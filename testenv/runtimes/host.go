package runtimes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Proc is one process of a container, seen from the host.
type Proc struct {
	HostPID int
	PodPID  int // pid in the pod's namespace (what oomhero logs)
	Comm    string
	Cmdline string
	Start   uint64 // start time, clock ticks after boot
}

func (p Proc) String() string {
	return fmt.Sprintf("%d(%s)", p.PodPID, p.Cmdline)
}

// memCgroupDir returns the host directory of the memory cgroup of hostPID
// (cgroup v1 memory controller, else the unified hierarchy).
func memCgroupDir(hostPID int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", hostPID))
	if err != nil {
		return "", fmt.Errorf("memory cgroup of %d: %w", hostPID, err)
	}
	var unified string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "memory" {
				return filepath.Join("/sys/fs/cgroup/memory", f[2]), nil
			}
		}
		if f[0] == "0" && f[1] == "" {
			unified = filepath.Join("/sys/fs/cgroup", f[2])
		}
	}
	if unified == "" {
		return "", fmt.Errorf("memory cgroup of %d: no memory controller in /proc/%d/cgroup", hostPID, hostPID)
	}
	return unified, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 1<<63 - 1, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number: %w", path, s, err)
	}
	return n, nil
}

func statField(path, key string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %q", path, key)
}

// WorkingSet returns the cgroup's working set (usage minus inactive file
// cache, as oomhero and kubelet judge) and its limit, in bytes.
func WorkingSet(dir string) (ws, limit uint64, err error) {
	if _, err := os.Stat(filepath.Join(dir, "memory.usage_in_bytes")); err == nil { // v1
		usage, err := readUint(filepath.Join(dir, "memory.usage_in_bytes"))
		if err != nil {
			return 0, 0, err
		}
		if limit, err = readUint(filepath.Join(dir, "memory.limit_in_bytes")); err != nil {
			return 0, 0, err
		}
		inactive, err := statField(filepath.Join(dir, "memory.stat"), "total_inactive_file")
		if err != nil {
			return 0, 0, err
		}
		return usage - min(inactive, usage), limit, nil
	}
	usage, err := readUint(filepath.Join(dir, "memory.current"))
	if err != nil {
		return 0, 0, err
	}
	if limit, err = readUint(filepath.Join(dir, "memory.max")); err != nil {
		return 0, 0, err
	}
	inactive, err := statField(filepath.Join(dir, "memory.stat"), "inactive_file")
	if err != nil {
		return 0, 0, err
	}
	return usage - min(inactive, usage), limit, nil
}

// Procs returns the processes of the cgroup dir.
func Procs(dir string) ([]Proc, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("processes of %s: %w", dir, err)
	}
	var out []Proc
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		p, err := readProc(pid)
		if err != nil {
			continue // gone
		}
		out = append(out, p)
	}
	return out, nil
}

func readProc(pid int) (Proc, error) {
	p := Proc{HostPID: pid}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				p.PodPID, _ = strconv.Atoi(f[len(f)-1])
			}
		}
		if v, ok := strings.CutPrefix(line, "Name:"); ok {
			p.Comm = strings.TrimSpace(v)
		}
	}
	cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	p.Cmdline = strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	if i := bytes.LastIndexByte(s, ')'); i > 0 {
		f := strings.Fields(string(s[i+1:]))
		if len(f) > 19 {
			p.Start, _ = strconv.ParseUint(f[19], 10, 64)
		}
	}
	return p, nil
}

// DialIn connects to addr (TCP) from inside the network namespace of
// hostPID (the pod's: its containers share one). The connection stays in
// that namespace.
func DialIn(ctx context.Context, hostPID int, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// This thread changes namespace and is never given back to the
		// scheduler (the goroutine exits with the thread locked).
		runtime.LockOSThread()
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", hostPID), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{nil, fmt.Errorf("network namespace of %d: %w", hostPID, err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns into the network namespace of %d: %w", hostPID, err)}
			return
		}
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// HTTPGet sends GET path to addr inside the pod of hostPID and returns the
// status line.
func HTTPGet(ctx context.Context, hostPID int, addr, path string) (string, error) {
	c, err := DialIn(ctx, hostPID, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("GET http://%s%s: %w", addr, path, err)
	}
	return strings.TrimSpace(line), nil
}

// RedisPing sends PING to redis at addr inside the pod of hostPID.
func RedisPing(ctx context.Context, hostPID int, addr string) (string, error) {
	c, err := DialIn(ctx, hostPID, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "PING\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("redis PING: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// FastCGIPing sends a FastCGI request for path (php-fpm's ping.path) to
// addr inside the pod of hostPID and returns the response's standard output.
func FastCGIPing(ctx context.Context, hostPID int, addr, path string) (string, error) {
	c, err := DialIn(ctx, hostPID, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	const id = 1
	rec := func(typ byte, content []byte) []byte {
		h := []byte{1, typ, 0, id, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(h[4:], uint16(len(content)))
		return append(h, content...)
	}
	var params []byte
	for _, kv := range [][2]string{{"SCRIPT_FILENAME", path}, {"SCRIPT_NAME", path}, {"REQUEST_METHOD", "GET"}, {"SERVER_PROTOCOL", "HTTP/1.0"}} {
		params = append(params, byte(len(kv[0])), byte(len(kv[1])))
		params = append(params, kv[0]...)
		params = append(params, kv[1]...)
	}
	var req []byte
	req = append(req, rec(1, []byte{0, 1, 0, 0, 0, 0, 0, 0})...) // BEGIN_REQUEST, responder
	req = append(req, rec(4, params)...)                         // PARAMS
	req = append(req, rec(4, nil)...)
	req = append(req, rec(5, nil)...) // STDIN, empty
	if _, err := c.Write(req); err != nil {
		return "", fmt.Errorf("fastcgi %s: %w", path, err)
	}
	var out []byte
	h := make([]byte, 8)
	for {
		if _, err := io.ReadFull(c, h); err != nil {
			return "", fmt.Errorf("fastcgi %s: %w", path, err)
		}
		n := int(binary.BigEndian.Uint16(h[4:])) + int(h[6])
		body := make([]byte, n)
		if _, err := io.ReadFull(c, body); err != nil {
			return "", fmt.Errorf("fastcgi %s: %w", path, err)
		}
		switch h[1] {
		case 6: // STDOUT
			out = append(out, body[:len(body)-int(h[6])]...)
		case 3: // END_REQUEST
			return string(out), nil
		}
	}
}

// writeInRoot creates the file name in the root file system of hostPID's
// container (through /proc/<pid>/root).
func writeInRoot(hostPID int, name string) error {
	p := filepath.Join(fmt.Sprintf("/proc/%d/root", hostPID), name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		return fmt.Errorf("create %s in the container: %w", name, err)
	}
	return nil
}

var errNoProc = errors.New("no such process in the container")

// findProc returns the first process whose comm is comm.
func findProc(ps []Proc, comm string) (Proc, error) {
	for _, p := range ps {
		if p.Comm == comm {
			return p, nil
		}
	}
	return Proc{}, fmt.Errorf("%w: %s", errNoProc, comm)
}
