package discover

// Fuzz targets for what discover parses of procfs and cgroupfs text:
// /proc/<pid>/stat (ParseStat), /proc/<pid>/cgroup (ParseCgroup), a
// cgroup.procs listing (lists), and what it derives from them a container
// chooses: names (Name) and the cgroup directories to try (candidates).
// Run by `make fuzz` (testenv/fuzz.sh) for a bounded time.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// fuzzStatLine is /proc/<pid>/stat as kernel 6.x writes it
// (fs/proc/array.c, do_task_stat: the name unescaped between parentheses).
func fuzzStatLine(pid, ppid int, comm string, start uint64) string {
	return fmt.Sprintf("%d (%s) S %d 25366 15074 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 %d 3133440 359 "+
		"18446744073709551615 94530657218560 94530657238441 140725374433232 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 "+
		"94530657254448 94530657256064 94530665701376 140725374433987 140725374434007 140725374434007 140725374435307 0\n",
		pid, comm, ppid, start)
}

// fuzzReplace writes name anew (rewriting a file in place makes ext4
// flush it on close, a millisecond per input).
func fuzzReplace(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseStat checks ParseStat alone and against signals.StartTime: the
// sender compares the start time it reads with the one discover recorded,
// so a line discover accepts must read the same there, or the process
// could never be signalled.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte(fuzzStatLine(25374, 25366, "cat", 33859)), "cat", uint32(1), uint64(33859))
	f.Add([]byte("1 (a) b)"), ") ) (", uint32(0), uint64(1))
	f.Add([]byte("7 (x) R -1"+strings.Repeat(" 1", 18)+" 5"), "a\nb c", uint32(1<<31), uint64(1)<<63)
	f.Add([]byte("7 (x)) R 1"+strings.Repeat(" 1", 18)+" 18446744073709551616"), "(x) R 1 2", uint32(5), uint64(0))
	f.Add([]byte("7 ) x ( R 1 2 3"), "\xff\xfex", uint32(7), uint64(42))
	proc := f.TempDir()
	if err := os.Mkdir(filepath.Join(proc, "7"), 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, comm string, ppid uint32, start uint64) {
		startTime := func(b []byte) (uint64, error) {
			fuzzReplace(t, filepath.Join(proc, "7", "stat"), b)
			return signals.StartTime(proc, 7)
		}
		st, err := ParseStat(b)
		if err == nil {
			if st.PPID < 0 {
				t.Fatalf("ParseStat(%q): PPID %d", b, st.PPID)
			}
			if !bytes.Contains(b, []byte("("+st.Comm+")")) {
				t.Fatalf("ParseStat(%q): command %q is not between parentheses", b, st.Comm)
			}
			if n, serr := startTime(b); serr != nil || n != st.Start {
				t.Fatalf("ParseStat(%q): start %d, signals.StartTime reads %d, %v", b, st.Start, n, serr)
			}
		}
		// Whatever name a process gives itself (no NUL, up to 63 bytes
		// for workqueue workers), the line reads back.
		comm = strings.ReplaceAll(comm, "\x00", "")
		if len(comm) > 63 {
			comm = comm[:63]
		}
		pp := int(ppid >> 1)
		line := []byte(fuzzStatLine(7, pp, comm, start))
		st, err = ParseStat(line)
		if err != nil || st.Comm != comm || st.PPID != pp || st.Start != start {
			t.Fatalf("ParseStat(%q) = %+v, %v", line, st, err)
		}
		if n, err := startTime(line); err != nil || n != start {
			t.Fatalf("signals.StartTime of %q = %d, %v; want %d", line, n, err, start)
		}
	})
}

// fuzzCgroupLines splits a /proc/<pid>/cgroup content into its
// "hierarchy-ID:controller-list:path" lines (the path may hold ':').
func fuzzCgroupLines(b []byte) (lines [][3]string) {
	for _, l := range strings.Split(string(b), "\n") {
		id, rest, ok1 := strings.Cut(l, ":")
		ctrl, p, ok2 := strings.Cut(rest, ":")
		if ok1 && ok2 {
			lines = append(lines, [3]string{id, ctrl, p})
		}
	}
	return lines
}

func FuzzParseCgroup(f *testing.F) {
	hybrid := "9:name=systemd:/\n8:pids:/\n7:blkio:/\n4:memory:/process_api/dfb1ee9b3a086e2586edbb6dcb21f7ea\n3:cpuset:/\n1:cpu:/\n0::/\n"
	f.Add([]byte(hybrid), "/kubepods/burstable/pod1/abc", false)
	f.Add([]byte("0::/system.slice/libpod-3f4e.scope\n"), "/", true)
	f.Add([]byte("0::/../../a:b\n"), "/a:b:c", true)
	for _, s := range []string{"", "\n", "0::", "x::/a\n", "4:memory\n", "4294967296:memory:/a\n", "3:cpu,memory:/x\n0::/y\n", "0::/a\n0::/b\n", "-1:memory:/a\n", "1:memory,:/\n"} {
		f.Add([]byte(s), "", false)
	}
	f.Fuzz(func(t *testing.T, b []byte, p string, v1 bool) {
		got, v, err := ParseCgroup(b)
		if err == nil {
			var ok bool
			for _, l := range fuzzCgroupLines(b) {
				if l[2] != got {
					continue
				}
				if v == watch.V1 && l[0] != "0" && slices.Contains(strings.Split(l[1], ","), "memory") ||
					v == watch.V2 && l[0] == "0" {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("ParseCgroup(%q) = %q %v: no such line", b, got, v)
			}
		}
		// Round trip: a cgroup name cannot hold a newline (the kernel
		// refuses it to keep /proc/<pid>/cgroup parsable: kernel/cgroup
		// cgroup_mkdir, cgroup1_rename); anything else can be in a path.
		p = strings.ReplaceAll(p, "\n", "")
		text, want := "0::"+p+"\n", watch.V2
		if v1 {
			text, want = "9:name=systemd:/\n8:pids:/x\n4:memory:"+p+"\n1:cpu:/\n0::/\n", watch.V1
		}
		if got, v, err := ParseCgroup([]byte(text)); err != nil || got != p || v != want {
			t.Fatalf("ParseCgroup(%q) = %q %v, %v; want %q %v", text, got, v, err, p, want)
		}
	})
}

// FuzzLists reads a cgroup.procs through lists. extra holds more PIDs
// (4 bytes each) for a listing as the kernel writes it.
func FuzzLists(f *testing.F) {
	f.Add([]byte("1\n25374\n25375\n"), uint32(25374), []byte{1, 0, 0, 0, 7, 0, 0, 0})
	for _, s := range []string{"", "7", "07\n", " 7\n", "7 \n", "7\r\n", "17\n", "-7\n", "\n\n7"} {
		f.Add([]byte(s), uint32(7), []byte{})
	}
	f.Cleanup(safefs.AllowAnyFilesystem())
	d := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte, pid uint32, extra []byte) {
		p := int(pid % (1 << 22)) // PID_MAX_LIMIT
		has := func(b []byte) bool {
			fuzzReplace(t, filepath.Join(d, "cgroup.procs"), b)
			dir, err := safefs.OpenDir(d, "")
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()
			return lists(dir, p)
		}
		want := slices.Contains(strings.Split(string(b), "\n"), strconv.Itoa(p))
		if len(b) > safefs.LimitProcs {
			want = false // over the read limit: not read at all
		}
		if got := has(b); got != want {
			t.Fatalf("lists(%q, %d) = %v", b, p, got)
		}
		var text strings.Builder
		want = false
		for i := 0; i+4 <= len(extra); i += 4 {
			q := int(binary.LittleEndian.Uint32(extra[i:]) % (1 << 22))
			want = want || q == p
			fmt.Fprintf(&text, "%d\n", q)
		}
		if got := has([]byte(text.String())); got != want {
			t.Fatalf("lists(%q, %d) = %v", text.String(), p, got)
		}
	})
}

// FuzzName: whatever a container names its process and cgroup, its name in
// logs, labels and Events is valid UTF-8 without control characters.
func FuzzName(f *testing.F) {
	for _, s := range [][2]string{{"java", "/kubepods/pod1/cri-containerd-0123456789abcdef.scope"}, {"\xff\xfex", "/a"},
		{"a\nb", "/libpod-ééééééé.scope"}, {"", ""}, {"x", "/"}, {"x", "."}, {"\x1b[31m", "/\x00\x7f"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, comm, p string) {
		got := Name(comm, p)
		if !utf8.ValidString(got) {
			t.Fatalf("Name(%q, %q) = %q: not valid UTF-8", comm, p, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("Name(%q, %q) = %q: control character %U", comm, p, got, r)
			}
		}
	})
}

// FuzzCandidates: whatever cgroup path a process shows (a cgroup namespace
// shows paths above its root as "/.."), every directory tried stays beneath
// the container's root or the cgroupfs mount, and the limit walk's top is
// the directory itself or one of its parents.
func FuzzCandidates(f *testing.F) {
	for _, s := range []string{"/kubepods/pod1/abc", "/", "", "/../../etc", "..", "a/../../b", "//x//y/", "/./memory/../.."} {
		f.Add(s, true, true)
		f.Add(s, false, false)
	}
	f.Fuzz(func(t *testing.T, p string, v1, hostRoot bool) {
		r := Resolver{Proc: "/proc"}
		if hostRoot {
			r.CgroupRoot = "/host/sys/fs/cgroup"
		}
		g := &Group{Path: p, Version: watch.V2}
		if v1 {
			g.Version = watch.V1
		}
		for _, c := range r.candidates(42, g) {
			if c.d.Root != r.CgroupRoot && c.d.Root != "/proc/42/root" {
				t.Fatalf("path %q: candidate root %q", p, c.d.Root)
			}
			rel := path.Clean(c.d.Rel)
			if rel == ".." || strings.HasPrefix(rel, "../") || strings.HasPrefix(rel, "/") {
				t.Fatalf("path %q: candidate %q leaves its root", p, c.d.Rel)
			}
			if v1 && !(rel == "memory" || strings.HasPrefix(rel, "memory/") || rel == "sys/fs/cgroup/memory" || strings.HasPrefix(rel, "sys/fs/cgroup/memory/")) {
				t.Fatalf("path %q: v1 candidate %q outside the memory hierarchy", p, c.d.Rel)
			}
			top := path.Clean(c.top)
			if top != "." && top != rel && !strings.HasPrefix(rel, top+"/") {
				t.Fatalf("path %q: candidate %q with top %q, not one of its parents", p, c.d.Rel, c.top)
			}
		}
	})
}
