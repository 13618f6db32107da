package runtimes

import (
	"debug/buildinfo"
	"errors"
	"io"
	"os"
	"time"
)

// maxGoRead bounds what goVersion reads of an executable. Go's build information
// sits in the data segment, near its start; debug/buildinfo reads the ELF headers
// and then searches the data in 1 MiB chunks.
const maxGoRead = 16 << 20

// goReads bounds the executables being read at once. A container can put its
// binary on a filesystem whose reads never return (a FUSE daemon that hangs): such
// a read keeps its slot forever, and once every slot is stuck, Go detection is
// skipped (the process stays unknown, judged by SigCgt alone) instead of blocking
// the caller.
var goReads = make(chan struct{}, 4)

// goReadTimeout is how long goVersion waits for one executable.
var goReadTimeout = 2 * time.Second

// goVersion reports whether the executable at exe (a /proc/<pid>/exe link, which
// the kernel resolves to the very file the process runs, not to a path inside
// the container) is a Go program, and with which Go version it was built. It
// never waits more than goReadTimeout.
func goVersion(exe string) (string, bool) {
	select {
	case goReads <- struct{}{}:
	default:
		return "", false // every slot taken by reads that do not return
	}
	type result struct {
		v  string
		ok bool
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-goReads }()
		v, ok := readGoVersion(exe)
		done <- result{v, ok}
	}()
	select {
	case r := <-done:
		return r.v, r.ok
	case <-time.After(goReadTimeout):
		return "", false
	}
}

func readGoVersion(exe string) (string, bool) {
	fh, err := os.Open(exe)
	if err != nil {
		return "", false
	}
	defer fh.Close()
	bi, err := buildinfo.Read(&boundedReaderAt{r: fh, left: maxGoRead})
	if err != nil || bi.GoVersion == "" {
		return "", false
	}
	return bi.GoVersion, true
}

var errTooMuch = errors.New("read bound reached")

// boundedReaderAt fails every read once left bytes have been read in total.
type boundedReaderAt struct {
	r    io.ReaderAt
	left int64
}

func (b *boundedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if int64(len(p)) > b.left {
		return 0, errTooMuch
	}
	n, err := b.r.ReadAt(p, off)
	b.left -= int64(n)
	return n, err
}
