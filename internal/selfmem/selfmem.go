// Package selfmem gives back the memory oomhero only needed to start.
//
// A Go binary's text and read-only data are mapped from the file, and the
// pages start-up touched (package initialisation, flag parsing, loading the
// BPF object and the kernel's BTF) stay in oomhero's page tables for good:
// about 11 MB of an 11.8 MB binary was resident in a sidecar that, once
// running, uses a few hundred kilobytes of that code. Trim drops those
// pages from oomhero's mapping with madvise(MADV_DONTNEED) on the binary's
// read-only private mappings: the pages it still uses fault back in from
// the page cache (the same bytes: a private mapping never written to
// reads through to the file), and the ones it does not become ordinary
// unmapped page cache that the kernel can reclaim, which also lowers the
// working set the kubelet judges the sidecar's container by. Writable
// mappings (data, bss, heap) are never touched: MADV_DONTNEED on them
// would lose what was written. It then returns the heap's free pages to the
// kernel (debug.FreeOSMemory), which the BTF parse left behind.
package selfmem

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"

	"golang.org/x/sys/unix"
)

// Mapping is one line of /proc/<pid>/maps, the fields Trim uses.
type Mapping struct {
	Start, End   uint64
	Perms        string // "r-xp"
	Major, Minor uint32
	Inode        uint64
}

// limitMaps bounds the read of /proc/self/maps (oomhero's own: a few
// dozen lines).
const limitMaps = 1 << 20

// Trim drops the binary's read-only pages from oomhero's mapping and returns
// free heap to the kernel. It returns the bytes of mappings advised.
func Trim() (int, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return 0, fmt.Errorf("selfmem: stat /proc/self/exe: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("selfmem: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limitMaps))
	if err != nil {
		return 0, fmt.Errorf("selfmem: read /proc/self/maps: %w", err)
	}
	maps, err := ParseMaps(b)
	if err != nil {
		return 0, fmt.Errorf("selfmem: /proc/self/maps: %w", err)
	}
	n := 0
	for _, m := range Trimmable(maps, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino) {
		size := m.End - m.Start
		// The range is not Go memory: madvise by address, no slice over it.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.Start), uintptr(size), unix.MADV_DONTNEED); errno != 0 {
			return n, fmt.Errorf("selfmem: madvise %x-%x: %w", m.Start, m.End, errno)
		}
		n += int(size)
	}
	debug.FreeOSMemory()
	return n, nil
}

// Trimmable returns the mappings of the file (device major:minor, inode)
// that are private and not writable: the ones MADV_DONTNEED may drop
// without losing anything.
func Trimmable(maps []Mapping, major, minor uint32, ino uint64) []Mapping {
	var out []Mapping
	for _, m := range maps {
		if m.Inode != ino || m.Major != major || m.Minor != minor || ino == 0 {
			continue
		}
		if len(m.Perms) != 4 || m.Perms[0] != 'r' || m.Perms[1] != '-' || m.Perms[3] != 'p' || m.End <= m.Start {
			continue
		}
		out = append(out, m)
	}
	return out
}

var errLine = errors.New("want \"start-end perms offset major:minor inode [path]\"")

// ParseMaps parses /proc/<pid>/maps content (proc(5)).
func ParseMaps(b []byte) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for line := 1; sc.Scan(); line++ {
		m, err := parseLine(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseLine(l []byte) (Mapping, error) {
	f := bytes.Fields(l)
	if len(f) < 5 {
		return Mapping{}, errLine
	}
	lo, hi, ok := bytes.Cut(f[0], []byte("-"))
	if !ok {
		return Mapping{}, errLine
	}
	var m Mapping
	var err error
	if m.Start, err = strconv.ParseUint(string(lo), 16, 64); err != nil {
		return Mapping{}, errLine
	}
	if m.End, err = strconv.ParseUint(string(hi), 16, 64); err != nil || m.End < m.Start {
		return Mapping{}, errLine
	}
	m.Perms = string(f[1])
	maj, min, ok := bytes.Cut(f[3], []byte(":"))
	if !ok {
		return Mapping{}, errLine
	}
	ma, err1 := strconv.ParseUint(string(maj), 16, 32)
	mi, err2 := strconv.ParseUint(string(min), 16, 32)
	if err1 != nil || err2 != nil {
		return Mapping{}, errLine
	}
	m.Major, m.Minor = uint32(ma), uint32(mi)
	if m.Inode, err = strconv.ParseUint(string(f[4]), 10, 64); err != nil {
		return Mapping{}, errLine
	}
	return m, nil
}
