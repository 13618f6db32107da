package selfmem

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

const sample = `00400000-0094c000 r-xp 00000000 fe:01 1315033                            /usr/local/bin/oomhero
0094c000-00e1d000 r--p 0054c000 fe:01 1315033                            /usr/local/bin/oomhero
00e1d000-00e6b000 rw-p 00a1d000 fe:01 1315033                            /usr/local/bin/oomhero
00e6b000-00ea4000 rw-p 00000000 00:00 0 
c000000000-c000800000 rw-p 00000000 00:00 0 
7f5e2c000000-7f5e2c021000 rw-p 00000000 00:00 0 
7ffd3b7c1000-7ffd3b7e2000 rw-p 00000000 00:00 0                          [stack]
7ffd3b7f4000-7ffd3b7f8000 r--p 00000000 00:00 0                          [vvar]
7ffd3b7f8000-7ffd3b7fa000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`

func TestTrimmable(t *testing.T) {
	maps, err := ParseMaps([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 10 {
		t.Fatalf("%d mappings", len(maps))
	}
	got := Trimmable(maps, 0xfe, 1, 1315033)
	if len(got) != 2 || got[0].Perms != "r-xp" || got[1].Perms != "r--p" || got[1].End != 0xe1d000 {
		t.Fatalf("trimmable: %+v (want the text and rodata, never the writable data)", got)
	}
	if got := Trimmable(maps, 0xfe, 2, 1315033); got != nil {
		t.Fatalf("another device's file: %+v", got)
	}
	if got := Trimmable(maps, 0, 0, 0); got != nil {
		t.Fatalf("anonymous mappings: %+v", got)
	}
}

// TestTrimRealProcess trims this test binary's own mappings: code keeps
// running (the pages fault back), data keeps its values, and the resident
// file pages drop.
func TestTrimRealProcess(t *testing.T) {
	keep := []int{1, 2, 3}
	before := rssFile(t)
	n, err := Trim()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no mapping of the binary trimmed")
	}
	after := rssFile(t)
	if fmt.Sprint(keep) != "[1 2 3]" || strings.Repeat("x", 3) != "xxx" {
		t.Fatal("data lost")
	}
	t.Logf("trimmed %d bytes of mappings; RssFile %d kB -> %d kB", n, before, after)
	if after >= before {
		t.Errorf("RssFile did not drop: %d kB -> %d kB", before, after)
	}
}

func rssFile(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("RssFile:")); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte(sample))
	for _, s := range []string{"", "\n", "0-1 r-xp 0 0:0 0", "1-0 r-xp 0 0:0 0", "x-1 r 0 0:0 0", "0-1 r-xp 0 00 0", "0-1 r-xp 0 0:0 -1", "0-ffffffffffffffffff r 0 0:0 1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		maps, err := ParseMaps(b)
		if err != nil {
			return
		}
		for _, m := range maps {
			if m.End < m.Start {
				t.Fatalf("%q: end before start: %+v", b, m)
			}
		}
		for _, m := range Trimmable(maps, 1, 2, 3) {
			if m.Perms[0] != 'r' || m.Perms[1] == 'w' || m.Perms[3] != 'p' || m.Inode != 3 {
				t.Fatalf("%q: trimmable %+v", b, m)
			}
		}
	})
}
