package signals

// Fuzz targets for the procfs text this package parses: /proc/<pid>/stat
// (start time, which guards every signal against a recycled PID; command
// and sigcatch, checked just before a signal) and /proc/<pid>/status (Name
// and SigCgt). A process chooses its own name, which the kernel prints
// unescaped in stat and escaped in status: the round trips put any name
// there. Run by `make fuzz` (testenv/fuzz.sh) for a bounded time.

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// fuzzStat is /proc/<pid>/stat as kernel 6.x writes it (fs/proc/array.c,
// do_task_stat: "%d (%s) %c" then 49 numbers; the name is not escaped),
// with start time (field 22) set.
func fuzzStat(pid int, comm string, start uint64) string {
	return fuzzStatCatch(pid, comm, start, 0)
}

// fuzzStatCatch is fuzzStat with sigcatch (field 34) set.
func fuzzStatCatch(pid int, comm string, start, sigcatch uint64) string {
	return fmt.Sprintf("%d (%s) S 25366 25366 15074 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 %d 3133440 359 "+
		"18446744073709551615 94530657218560 94530657238441 140725374433232 0 0 0 0 0 %d 0 0 0 17 0 0 0 0 0 0 "+
		"94530657254448 94530657256064 94530665701376 140725374433987 140725374434007 140725374434007 140725374435307 0\n",
		pid, comm, start, sigcatch)
}

// fuzzStatus is /proc/<pid>/status as the kernel writes it: the name
// escaped (fs/proc/array.c, proc_task_name with escape: string_escape_str
// with ESCAPE_SPACE|ESCAPE_SPECIAL restricted to "\n\\", so only newline
// and backslash are escaped), SigCgt as 16 hex digits.
func fuzzStatus(name string, cgt uint64) string {
	esc := strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(name)
	return fmt.Sprintf("Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\nNgid:\t0\nPid:\t7\nPPid:\t1\n"+
		"SigQ:\t0/96365\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\n"+
		"SigIgn:\t0000000000001000\nSigCgt:\t%016x\nCapInh:\t0000000000000000\n", esc, cgt)
}

// fuzzComm makes a name as the kernel shows it: no NUL, at most 15 bytes
// (TASK_COMM_LEN - 1), 63 for workqueue workers (proc_task_name's tcomm[64]).
func fuzzComm(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

func FuzzStartTime(f *testing.F) {
	f.Add([]byte(fuzzStat(25374, "cat", 33859)), "cat", uint64(33859))
	f.Add([]byte("1 (a) b)"), ") ) )", uint64(1))
	f.Add([]byte("7 (x) R"+strings.Repeat(" 1", 19)+" -5"), "a\nb c", uint64(1)<<63)
	f.Add([]byte("7 (x) R"+strings.Repeat(" 1", 19)+" 18446744073709551616"), "(x) R 1 2", uint64(0))
	f.Add([]byte("7 x R 1 2 3"), "\xff\xfex", uint64(42))
	f.Fuzz(func(t *testing.T, b []byte, comm string, start uint64) {
		n, err := parseStartTime(b)
		if err == nil {
			// Field 22 counted after the last ')', a decimal number.
			var fields [][]byte
			if i := bytes.LastIndexByte(b, ')'); i >= 0 {
				fields = bytes.Fields(b[i+1:])
			}
			if len(fields) < 20 || strings.Trim(string(fields[19]), "0123456789") != "" {
				t.Fatalf("parseStartTime(%q) = %d: no decimal field 22", b, n)
			}
			if m, _ := strconv.ParseUint(string(fields[19]), 10, 64); m != n {
				t.Fatalf("parseStartTime(%q) = %d: field 22 is %s", b, n, fields[19])
			}
		}
		// Whatever name a process gives itself, the start time reads back.
		line := fuzzStat(7, fuzzComm(comm), start)
		if n, err := parseStartTime([]byte(line)); err != nil || n != start {
			t.Fatalf("parseStartTime(%q) = %d, %v; want %d", line, n, err, start)
		}
	})
}

func FuzzCaught(f *testing.F) {
	f.Add([]byte(fuzzStatus("cat", 0x400)), "cat", uint64(0x400))
	f.Add([]byte("SigCgt:\n"), "SigCgt:\tffff", ^uint64(0))
	f.Add([]byte("SigCgt:\t1ffffffffffffffff\n"), "a\nSigCgt:\t0", uint64(1))
	f.Add([]byte("Name:\tx\nSigCgt: 0x10\n"), `a\b`, uint64(0))
	f.Add([]byte("SigCgt:\t-1\n"), "", uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, name string, cgt uint64) {
		n, err := parseSigCgt(b)
		if err == nil {
			found := false
			for _, line := range bytes.Split(b, []byte{'\n'}) {
				if v, ok := bytes.CutPrefix(line, []byte("SigCgt:")); ok {
					m, perr := strconv.ParseUint(string(bytes.TrimSpace(v)), 16, 64)
					found = perr == nil && m == n
					break
				}
			}
			if !found {
				t.Fatalf("parseSigCgt(%q) = %#x: not the first SigCgt line", b, n)
			}
		}
		if h, err := parseStatus(b); err == nil && (h.Caught != n || strings.Contains(h.Name, "\n")) {
			t.Fatalf("parseStatus(%q) = %+v: SigCgt %#x, or a name of more than a line", b, h, n)
		}
		// A name cannot forge the mask: the kernel escapes it in status.
		// It reads back as status writes it.
		comm := fuzzComm(name)
		text := fuzzStatus(comm, cgt)
		if n, err := parseSigCgt([]byte(text)); err != nil || n != cgt {
			t.Fatalf("parseSigCgt(%q) = %#x, %v; want %#x", text, n, err, cgt)
		}
		esc := strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(comm)
		if h, err := parseStatus([]byte(text)); err != nil || h.Caught != cgt || h.Name != esc {
			t.Fatalf("parseStatus(%q) = %+v, %v; want %q %#x", text, h, err, esc, cgt)
		}
	})
}

func FuzzStat(f *testing.F) {
	f.Add([]byte(fuzzStatCatch(25374, "cat", 33859, 0x2a00)), "cat", uint64(33859), uint64(0x2a00))
	f.Add([]byte("1 (a) b) S"+strings.Repeat(" 1", 31)), ") ) (", uint64(1), uint64(1)<<31)
	f.Add([]byte("7 (x) R"+strings.Repeat(" 1", 30)+" 2147483648"), "a\nb c", uint64(1)<<63, ^uint64(0))
	f.Add([]byte("7 x) (y R"+strings.Repeat(" 1", 32)), "\xff\xfe(x", uint64(42), uint64(0x7fffffff))
	f.Fuzz(func(t *testing.T, b []byte, comm string, start, catch uint64) {
		if st, err := parseStat(b); err == nil {
			n, serr := parseStartTime(b)
			i := bytes.IndexByte(b, '(')
			if serr != nil || n != st.start || st.sigcatch > 0x7fffffff || i < 0 || !bytes.HasPrefix(b[i+1:], st.comm) {
				t.Fatalf("parseStat(%q) = start %d sigcatch %#x comm %q; parseStartTime %d, %v", b, st.start, st.sigcatch, st.comm, n, serr)
			}
		}
		// Whatever name a process gives itself, it reads back as it is,
		// and so do its start time and handlers.
		c, catch := fuzzComm(comm), catch&0x7fffffff
		line := fuzzStatCatch(7, c, start, catch)
		st, err := parseStat([]byte(line))
		if err != nil || st.start != start || st.sigcatch != catch || string(st.comm) != c {
			t.Fatalf("parseStat(%q) = %d %#x %q, %v; want %d %#x %q", line, st.start, st.sigcatch, st.comm, err, start, catch, c)
		}
	})
}
