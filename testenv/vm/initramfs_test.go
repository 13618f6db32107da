package vm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// readNewc parses a newc cpio archive into name -> (mode, data).
func readNewc(t *testing.T, b []byte) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad header at %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header field %d at %d: %v", i, off, err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		data := align(off + 110 + namesize)
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = entry{mode: uint32(mode), data: b[data : data+size]}
		off = align(data + size)
	}
}

func TestInitramfs(t *testing.T) {
	host := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(host, []byte("#!/bin/sh\necho hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var ir Initramfs
	ir.AddFile("/bin/prog", host, 0o755)
	ir.AddBytes("etc/odd", []byte("12345"), 0o644) // length not a multiple of 4
	ir.AddSymlink("bin/sh", "busybox")
	ir.AddDir("data")
	var buf bytes.Buffer
	if _, err := ir.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not 4-aligned", buf.Len())
	}
	got := readNewc(t, buf.Bytes())
	var names []string
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	if want := "bin bin/prog bin/sh data etc etc/odd"; strings.Join(names, " ") != want {
		t.Errorf("entries %q, want %q", strings.Join(names, " "), want)
	}
	for name, want := range map[string]struct {
		mode uint32
		data string
	}{
		"bin":      {modeDir | 0o755, ""},
		"bin/prog": {modeFile | 0o755, "#!/bin/sh\necho hi\n"},
		"bin/sh":   {modeSymlink | 0o777, "busybox"},
		"etc/odd":  {modeFile | 0o644, "12345"},
		"data":     {modeDir | 0o755, ""},
	} {
		e := got[name]
		if e.mode != want.mode || string(e.data) != want.data {
			t.Errorf("%s: mode %o data %q, want %o %q", name, e.mode, e.data, want.mode, want.data)
		}
	}
	// GNU cpio, when installed, must read it too.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cpio -it: %v: %s", err, out)
		}
		if n := len(strings.Fields(string(out))); n != len(names) {
			t.Errorf("cpio -it lists %d entries, want %d:\n%s", n, len(names), out)
		}
	}
}

func TestInitramfsMissingFile(t *testing.T) {
	var ir Initramfs
	ir.AddFile("bin/x", filepath.Join(t.TempDir(), "missing"), 0o755)
	if _, err := ir.WriteTo(&bytes.Buffer{}); err == nil {
		t.Fatal("WriteTo succeeded with a missing host file")
	}
}
