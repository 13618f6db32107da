//go:build linux

// Package lead stages the case where a container's usage leads its working
// set: a child process in a real memory cgroup keeps page cache (the gap
// between usage and working set) and grows anonymous memory at a set rate,
// recording when it touched each page and the cgroup's usage right after,
// so that the moment the working set crossed a threshold (the charge that
// took it there, with the kernel's per-CPU charge batching) can be told from
// the reading that reported it.
//
// The child is the calling binary re-executed: tests and benchmarks call
// MaybeChild first thing.
package lead

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/watch"
)

const childEnv = "OOMHERO_LEAD_CHILD"

// chunk is how much the child touches between two checks of its pace.
const chunk = 64 << 10

// Child is a process in a cgroup that keeps page cache and grows anonymous
// memory on command.
type Child struct {
	*lab.SelfChild
}

// Start starts the calling binary as a child and moves it into the cgroup
// directory dir before it allocates anything. usageFile names the cgroup's
// usage file in dir (memory.usage_in_bytes on v1, memory.current on v2).
func Start(dir, usageFile string) (*Child, error) {
	s, err := lab.StartSelf(childEnv, dir, "lead child")
	if err != nil {
		return nil, err
	}
	c := &Child{s}
	if _, err := c.do("usage " + filepath.Join(dir, usageFile)); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Child) do(cmd string) ([]byte, error) {
	if _, err := fmt.Fprintln(c.In, cmd); err != nil {
		return nil, fmt.Errorf("lead child %q: %w", cmd, err)
	}
	line, err := c.Out.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("lead child %q: %w", cmd, err)
	}
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "ok" {
		return nil, fmt.Errorf("lead child %q: %s", cmd, strings.TrimSpace(line))
	}
	if len(f) == 1 {
		return nil, nil
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 0 {
		return nil, fmt.Errorf("lead child %q: bad reply %q", cmd, line)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.Out, b); err != nil {
		return nil, fmt.Errorf("lead child %q: %w", cmd, err)
	}
	return b, nil
}

// Cache writes n bytes to a new file at path (page cache charged to the
// child's cgroup) (inactive file cache as long as nothing reclaims it).
func (c *Child) Cache(path string, n uint64) error {
	_, err := c.do(fmt.Sprintf("cache %s %d", path, n))
	return err
}

// Grow maps n more bytes of anonymous memory and touches them one page
// after the other at rate bytes per second (0: as fast as it can). It
// returns a Trace of when each page was touched and the usage after it.
func (c *Child) Grow(n, rate uint64) (Trace, error) {
	b, err := c.do(fmt.Sprintf("grow %d %d", n, rate))
	if err != nil {
		return nil, err
	}
	tr := make(Trace, len(b)/16)
	for i := range tr {
		tr[i].At = binary.LittleEndian.Uint64(b[16*i:])
		tr[i].Usage = binary.LittleEndian.Uint64(b[16*i+8:])
	}
	return tr, nil
}

// Touch is one page of a Grow: when it was touched (CLOCK_MONOTONIC ns)
// and the cgroup's usage in bytes read right after.
type Touch struct {
	At, Usage uint64
}

// Trace holds the pages of one Grow, in order.
type Trace []Touch

// Crossing returns when the working set crossed threshold: the first page
// after which usage less rd's inactive file cache reached it. rd is the
// cgroupfs reading that reported the crossing; its inactive file cache is
// the gap (page cache that stays). ok is false when the crossing is not
// within tr.
func (tr Trace) Crossing(rd watch.Reading, threshold uint64) (at uint64, ok bool) {
	i := sort.Search(len(tr), func(i int) bool { return tr[i].Usage >= threshold+rd.InactiveFile })
	if i == 0 || i == len(tr) {
		// Not crossed within tr, or already crossed before it.
		return 0, false
	}
	return tr[i].At, true
}

// MaybeChild turns the process into a child when Start started it;
// otherwise it returns at once.
func MaybeChild() {
	if os.Getenv(childEnv) == "" {
		return
	}
	if err := serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lead child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serve(in io.Reader, out io.Writer) error {
	var usage *os.File
	page := os.Getpagesize()
	buf := make([]byte, 32)
	readUsage := func() uint64 {
		if usage == nil {
			return 0
		}
		n, _ := usage.ReadAt(buf, 0)
		v, _ := strconv.ParseUint(strings.TrimSpace(string(buf[:n])), 10, 64)
		return v
	}
	sc := bufio.NewScanner(in)
	w := bufio.NewWriter(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		var reply []byte
		switch f[0] {
		case "usage":
			if len(f) != 2 {
				err = errors.New("usage: usage PATH")
				break
			}
			usage, err = os.Open(f[1])
		case "grow":
			if len(f) != 3 {
				err = errors.New("usage: grow BYTES RATE")
				break
			}
			n, _ := strconv.ParseUint(f[1], 10, 64)
			rate, _ := strconv.ParseUint(f[2], 10, 64)
			n = (n + uint64(page) - 1) / uint64(page) * uint64(page)
			var m []byte
			if m, err = unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
				break
			}
			unix.Madvise(m, unix.MADV_NOHUGEPAGE) // kept mapped until the child exits
			// The trace is allocated and touched before the first page.
			reply = make([]byte, 16*(len(m)/page))
			for i := 0; i < len(reply); i += page {
				reply[i] = 0
			}
			start := mono()
			for off := 0; off < len(m); off += page {
				if rate > 0 && off%chunk == 0 {
					due := start + uint64(float64(off)/float64(rate)*1e9)
					for now := mono(); now < due; now = mono() {
						if d := due - now; d > 100_000 {
							time.Sleep(time.Duration(d - 50_000))
						}
					}
				}
				m[off] = 1
				at := mono()
				binary.LittleEndian.PutUint64(reply[16*(off/page):], at)
				if rate > 0 {
					binary.LittleEndian.PutUint64(reply[16*(off/page)+8:], readUsage())
				}
			}
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
		switch {
		case err != nil:
			fmt.Fprintf(w, "error: %v\n", err)
		case reply != nil:
			fmt.Fprintf(w, "ok %d\n", len(reply))
			w.Write(reply)
		default:
			fmt.Fprintln(w, "ok")
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Mono returns CLOCK_MONOTONIC in ns (the clock of the Trace).
func Mono() uint64 { return mono() }

func mono() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}

func writeFile(path string, n uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	for w := uint64(0); w < n; {
		k := min(uint64(len(buf)), n-w)
		if _, err := f.Write(buf[:k]); err != nil {
			return err
		}
		w += k
	}
	return f.Sync()
}
