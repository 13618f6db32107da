package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// selfCgroup reads the memory figures of the process's own memory cgroup.
// It is safe for concurrent use. It is independent of oomhero's readers on purpose: the test app checks
// oomhero, it must not share its mistakes.
type selfCgroup struct {
	mu                 sync.Mutex // the signal logger and the sampler share buf
	dir, version       string
	usage, stat, limit *os.File
	inactiveKey        []byte
	buf                []byte
}

// openSelfCgroup finds the memory cgroup of this process under root (or uses
// dir when not empty) and opens its files.
func openSelfCgroup(root, dir string) (*selfCgroup, error) {
	if dir == "" {
		d, err := findSelfCgroup(root)
		if err != nil {
			return nil, err
		}
		dir = d
	}
	c := &selfCgroup{dir: dir, buf: make([]byte, 16384)}
	usage, limit, inactive := "memory.usage_in_bytes", "memory.limit_in_bytes", "total_inactive_file"
	c.version = "v1"
	if _, err := os.Stat(filepath.Join(dir, usage)); err != nil {
		usage, limit, inactive = "memory.current", "memory.max", "inactive_file"
		c.version = "v2"
	}
	c.inactiveKey = []byte(inactive)
	var err error
	if c.usage, err = os.Open(filepath.Join(dir, usage)); err != nil {
		return nil, fmt.Errorf("open own cgroup: %w", err)
	}
	if c.stat, err = os.Open(filepath.Join(dir, "memory.stat")); err != nil {
		c.Close()
		return nil, fmt.Errorf("open own cgroup: %w", err)
	}
	if c.limit, err = os.Open(filepath.Join(dir, limit)); err != nil {
		c.Close()
		return nil, fmt.Errorf("open own cgroup: %w", err)
	}
	return c, nil
}

// findSelfCgroup returns the first directory holding memory files among: the
// v1 memory hierarchy at the path /proc/self/cgroup lists, its mount root,
// the unified hierarchy at the listed path, its root.
func findSelfCgroup(root string) (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("find own cgroup: %w", err)
	}
	defer f.Close()
	var v1path, v2path string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" && parts[0] == "0" {
			v2path = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				v1path = parts[2]
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("find own cgroup: %w", err)
	}
	var cands []string
	if v1path != "" {
		cands = append(cands, filepath.Join(root, "memory", v1path), filepath.Join(root, "memory"))
	}
	if v2path != "" {
		cands = append(cands, filepath.Join(root, v2path), filepath.Join(root, "unified", v2path))
	}
	cands = append(cands, root)
	for _, d := range cands {
		for _, n := range []string{"memory.usage_in_bytes", "memory.current"} {
			if _, err := os.Stat(filepath.Join(d, n)); err == nil {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("find own cgroup: no memory cgroup among %q", cands)
}

func (c *selfCgroup) Close() {
	for _, f := range []*os.File{c.usage, c.stat, c.limit} {
		if f != nil {
			f.Close()
		}
	}
}

func (c *selfCgroup) readAll(f *os.File) ([]byte, error) {
	n := 0
	for {
		if n == len(c.buf) {
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
		m, err := f.ReadAt(c.buf[n:], int64(n))
		n += m
		if errors.Is(err, io.EOF) {
			return c.buf[:n], nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Name(), err)
		}
	}
}

func (c *selfCgroup) readUint(f *os.File) (uint64, error) {
	b, err := c.readAll(f)
	if err != nil {
		return 0, err
	}
	s := string(bytes.TrimSpace(b))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %q", f.Name(), s)
	}
	return n, nil
}

// Limit returns the memory limit in bytes, 0 when there is none.
func (c *selfCgroup) Limit() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, err := c.readAll(c.limit)
	if err != nil {
		return 0, err
	}
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %q", c.limit.Name(), s)
	}
	if n >= 1<<62 { // v1's "unlimited"
		return 0, nil
	}
	return n, nil
}

// Read returns usage, working set (usage - inactive file) and inactive file.
func (c *selfCgroup) Read() (usage, ws, inactive uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if usage, err = c.readUint(c.usage); err != nil {
		return 0, 0, 0, err
	}
	b, err := c.readAll(c.stat)
	if err != nil {
		return 0, 0, 0, err
	}
	found := false
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, ok := bytes.Cut(line, []byte(" "))
		if !ok || !bytes.Equal(k, c.inactiveKey) {
			continue
		}
		if inactive, err = strconv.ParseUint(string(v), 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("parse %s: %q", c.stat.Name(), line)
		}
		found = true
		break
	}
	if !found {
		return 0, 0, 0, fmt.Errorf("parse %s: no %s", c.stat.Name(), c.inactiveKey)
	}
	ws = usage
	if inactive < usage {
		ws = usage - inactive
	} else {
		ws = 0
	}
	return usage, ws, inactive, nil
}
