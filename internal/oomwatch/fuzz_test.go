package oomwatch

// Fuzz target for the counter the watcher rereads: oom_kill in memory.events
// (v2) or memory.oom_control (v1), read through the same open-file path the
// watcher uses. Run by `make fuzz` (testenv/fuzz.sh) for a bounded time.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

func FuzzCounter(f *testing.F) {
	f.Add(false, []byte("low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 0\n"), uint64(1))
	f.Add(true, []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), uint64(math.MaxUint64))
	for _, s := range []string{"", "oom_kill\n", "oom_kill x\n", "oom_kill  7 \n", "oom_kill_disable 0\n", "oom_kill 1\noom_kill 2\n",
		"oom_kill 18446744073709551616\n", "oom_kill -1\n", string(bytes.Repeat([]byte("x 1\n"), 255)) + "oom_kill 12345\n"} {
		f.Add(false, []byte(s), uint64(0))
	}
	f.Cleanup(safefs.AllowAnyFilesystem())
	// One directory per fuzzing process; inputs run one at a time in it.
	d := f.TempDir()
	f.Fuzz(func(t *testing.T, v1 bool, b []byte, n uint64) {
		v := watch.V2
		if v1 {
			v = watch.V1
		}
		name := counterFile(v)
		read := func(b []byte) (uint64, error) {
			// A new file each time: rewriting one in place makes ext4
			// flush it on close (auto_da_alloc).
			p := filepath.Join(d, name)
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			dir, err := safefs.OpenDir(d, "")
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()
			file, err := dir.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			e := &entry{file: file, key: []byte("oom_kill "), efd: -1, fd: -1, buf: make([]byte, 1024)}
			defer e.file.Close()
			return e.read()
		}
		got, err := read(b)
		if err == nil {
			// The figure is the value of an oom_kill line of the file.
			ok := false
			for _, line := range bytes.Split(b, []byte{'\n'}) {
				if v, found := bytes.CutPrefix(line, []byte("oom_kill ")); found {
					if m, perr := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64); perr == nil && m == got {
						ok = true
					}
				}
			}
			if !ok {
				t.Fatalf("%s %q read as %d: no such oom_kill line", name, b, got)
			}
		}
		text := fmt.Sprintf("low 0\nhigh 0\nmax 17\noom %d\noom_kill %d\noom_group_kill 0\n", n/2, n)
		if v1 {
			text = fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", n)
		}
		if got, err := read([]byte(text)); err != nil || got != n {
			t.Fatalf("%s with oom_kill %d read back as %d, %v", name, n, got, err)
		}
	})
}
