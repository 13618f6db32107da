package cgroup

// Fuzz targets for the parsers of cgroupfs text: memory.stat, the limit
// files, memory.events / memory.oom_control and memory.pressure. `make fuzz`
// runs each for a bounded time (testenv/fuzz.sh); plain `go test` runs the
// seeds below and the corpus under testdata/fuzz.
//
// The properties, for any input: no panic; a figure is returned only when
// the input holds it (a malformed file is an error, never a zero); errors
// wrap ErrParse (or watch.ErrNoLimit); and what the kernel writes parses back
// to the figures it was written from.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

// fuzzDigits reports whether s is a non-empty run of ASCII digits.
func fuzzDigits(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// fuzzKeyValues is the reference reading of a "key value" file (memory.stat,
// memory.events, memory.oom_control): every value of key whose line is
// exactly "key <digits>", in order.
func fuzzKeyValues(b []byte, key string) []uint64 {
	var out []uint64
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		k, v, ok := bytes.Cut(line, []byte{' '})
		if !ok || string(k) != key || !fuzzDigits(v) {
			continue
		}
		if n, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"268435456\n", "max\n", "9223372036854771712\n", "0\n", "-1\n", " 42 ", "4611686018427387904", "18446744073709551616", "", "max max", "0x10", "+5", "1_000"} {
		f.Add([]byte(s), uint64(0))
	}
	f.Add([]byte("1\n"), uint64(math.MaxUint64))
	f.Add([]byte("1\n"), uint64(v1Unlimited-1))
	f.Fuzz(func(t *testing.T, b []byte, n uint64) {
		got, err := parseLimit(b, "memory.max")
		s := bytes.TrimSpace(b)
		switch {
		case err == nil:
			if !fuzzDigits(s) {
				t.Fatalf("parseLimit(%q) = %d: accepted a value that is not a decimal number", b, got)
			}
			if got >= v1Unlimited {
				t.Fatalf("parseLimit(%q) = %d: at or above the 'unlimited' mark", b, got)
			}
			if want := strconv.FormatUint(got, 10); string(bytes.TrimLeft(s, "0")) != want && !(got == 0 && len(bytes.Trim(s, "0")) == 0) {
				t.Fatalf("parseLimit(%q) = %d: not the figure written", b, got)
			}
		case errors.Is(err, watch.ErrNoLimit):
			if string(s) != "max" && !fuzzDigits(s) {
				t.Fatalf("parseLimit(%q): ErrNoLimit for a value that is neither max nor a number", b)
			}
		case !errors.Is(err, ErrParse):
			t.Fatalf("parseLimit(%q): error %v does not wrap ErrParse", b, err)
		}
		// Round trip: the kernel writes "%llu\n" (v1) or "%llu\n"/"max\n" (v2).
		got, err = parseLimit([]byte(strconv.FormatUint(n, 10)+"\n"), "memory.limit_in_bytes")
		if n >= v1Unlimited {
			if !errors.Is(err, watch.ErrNoLimit) {
				t.Fatalf("limit %d: want ErrNoLimit, got %d, %v", n, got, err)
			}
		} else if err != nil || got != n {
			t.Fatalf("limit %d read back as %d, %v", n, got, err)
		}
	})
}

// fuzzV2Stat is a cgroup v2 memory.stat as kernel 6.x writes it, with the
// keys oomhero reads set to the given figures.
func fuzzV2Stat(anon, inactive uint64) string {
	return fmt.Sprintf("anon %d\nfile 1052672\nkernel 446464\nkernel_stack 32768\npagetables 65536\nsec_pagetables 0\npercpu 0\n"+
		"sock 0\nvmalloc 0\nshmem 0\nzswap 0\nzswapped 0\nfile_mapped 0\nfile_dirty 0\nfile_writeback 0\nswapcached 0\n"+
		"anon_thp 0\nfile_thp 0\nshmem_thp 0\ninactive_anon %d\nactive_anon 4096\ninactive_file %d\nactive_file 0\n"+
		"unevictable 0\nslab_reclaimable 61528\nslab_unreclaimable 186944\nslab 248472\nworkingset_refault_anon 0\n"+
		"pgscan 0\npgsteal 0\npgfault 3301\npgmajfault 0\nthp_fault_alloc 0\n", anon, anon, inactive)
}

func fuzzV1Stat(rss, inactive uint64) string {
	return fmt.Sprintf("cache 0\nrss 0\nrss_huge 0\nshmem 0\nmapped_file 0\ninactive_anon 0\nactive_anon 0\ninactive_file 0\n"+
		"hierarchical_memory_limit 9223372036854771712\nhierarchical_memsw_limit 9223372036854771712\n"+
		"total_cache 3354386432\ntotal_rss %d\ntotal_rss_huge 0\ntotal_shmem 86016\ntotal_inactive_anon 305577984\n"+
		"total_active_anon 176128\ntotal_inactive_file %d\ntotal_active_file 1672818688\ntotal_unevictable 0\n", rss, inactive)
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(fuzzV2Stat(21, 27)), false, uint64(0), uint64(0))
	f.Add([]byte(fuzzV1Stat(12, 14)), true, uint64(1), uint64(math.MaxUint64))
	for _, s := range []string{"", "anon 1\n", "anon 1\nanon 2\n", "anon x\ninactive_file 1\n", "anon  1\ninactive_file 1", "anon 1\r\ninactive_file 2\r\n",
		"anon 18446744073709551616\ninactive_file 0\n", "anon\ninactive_file 5\n", " anon 1\ninactive_file 2\n"} {
		f.Add([]byte(s), false, uint64(0), uint64(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, v1 bool, x, y uint64) {
		v := watch.V2
		if v1 {
			v = watch.V1
		}
		keys := []string{names[v].statInactive, names[v].statAnon, names[v].statActive}
		kb := [][]byte{[]byte(keys[0]), []byte(keys[1]), []byte(keys[2])}
		var vals [3]uint64
		seen, err := parseStat(b, kb, vals[:])
		if err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("parseStat(%q): error %v does not wrap ErrParse", b, err)
			}
		} else {
			for i, k := range keys {
				want := fuzzKeyValues(b, k)
				// The seen bits are how Read knows which figures are there.
				if got := seen&(1<<i) != 0; got != (len(want) > 0) {
					t.Fatalf("parseStat(%q): %s seen %v, the file holds %v", b, k, got, want)
				}
				if len(want) > 0 && vals[i] != want[len(want)-1] {
					t.Fatalf("parseStat(%q): %s = %d, the file says %v", b, k, vals[i], want)
				}
				if len(want) == 0 && vals[i] != 0 {
					t.Fatalf("parseStat(%q): %s = %d without a line", b, k, vals[i])
				}
			}
		}
		// Round trip through a file as the kernel writes it.
		var text string
		active := uint64(0)
		if v1 {
			text, active = fuzzV1Stat(x, y), 1672818688
		} else {
			text = fuzzV2Stat(x, y)
		}
		vals = [3]uint64{}
		seen, err = parseStat([]byte(text), kb, vals[:])
		if err != nil || seen != 7 || vals != [3]uint64{y, x, active} {
			t.Fatalf("memory.stat with %s=%d %s=%d read back as seen=%b %v, %v", keys[1], x, keys[0], y, seen, vals, err)
		}
	})
}

// fuzzWrite replaces a file by a new one: rewriting one in place makes
// ext4 flush it on close (auto_da_alloc), a millisecond per input.
func fuzzWrite(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzReader reads fuzzed files through a Reader, the path the pollers use
// (pread into a growing buffer).
func FuzzReader(f *testing.F) {
	f.Add(false, []byte("500\n"), []byte("max\n"), []byte(fuzzV2Stat(21, 27)))
	f.Add(false, []byte("500\n"), []byte("1048576\n"), []byte(fuzzV2Stat(21, 27)))
	f.Add(true, []byte("1000\n"), []byte("268435456\n"), []byte(fuzzV1Stat(12, 14)))
	f.Add(true, []byte("1000\n"), []byte("268435456\n"), bytes.Repeat([]byte(fuzzV1Stat(12, 14)), 12))
	f.Add(false, []byte(""), []byte("-1\n"), []byte("anon 1\n"))
	// One directory per fuzzing process (inputs run one at a time in it):
	// a fresh one per input would cost more than the reads.
	d := f.TempDir()
	f.Fuzz(func(t *testing.T, v1 bool, usage, limit, stat []byte) {
		v := watch.V2
		if v1 {
			v = watch.V1
		}
		fn := names[v]
		for name, b := range map[string][]byte{fn.usage: usage, fn.limit: limit, fn.stat: stat} {
			fuzzWrite(t, filepath.Join(d, name), b)
		}
		r, err := NewReader(fake(t, d), v, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rd, err := r.Read()
		if err != nil {
			if !errors.Is(err, ErrParse) && !errors.Is(err, watch.ErrNoLimit) && !errors.Is(err, safefs.ErrTooBig) {
				t.Fatalf("Read: error %v wraps none of ErrParse, ErrNoLimit, ErrTooBig", err)
			}
			return
		}
		if !fuzzDigits(bytes.TrimSpace(usage)) {
			t.Fatalf("Read: usage %q accepted as %d", usage, rd.Usage)
		}
		if !fuzzDigits(bytes.TrimSpace(limit)) {
			t.Fatalf("Read: limit %q accepted as %d", limit, rd.Limit)
		}
		in, an := fuzzKeyValues(stat, fn.statInactive), fuzzKeyValues(stat, fn.statAnon)
		if len(in) == 0 || len(an) == 0 {
			t.Fatalf("Read: %s and %s both reported (%d, %d) from a memory.stat that lacks one:\n%q", fn.statInactive, fn.statAnon, rd.InactiveFile, rd.Anon, stat)
		}
		if rd.InactiveFile != in[len(in)-1] || rd.Anon != an[len(an)-1] {
			t.Fatalf("Read: %s=%d %s=%d, memory.stat says %v and %v", fn.statInactive, rd.InactiveFile, fn.statAnon, rd.Anon, in, an)
		}
	})
}

// fuzzEvents is memory.events (v2) as the kernel writes it.
func fuzzEvents(oom, kill uint64) string {
	return fmt.Sprintf("low 0\nhigh 0\nmax 17\noom %d\noom_kill %d\noom_group_kill 0\n", oom, kill)
}

// fuzzOOMControl is memory.oom_control (v1) as the kernel writes it.
func fuzzOOMControl(kill uint64) string {
	return fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", kill)
}

func FuzzOOMKills(f *testing.F) {
	f.Add(false, []byte(fuzzEvents(2, 1)), uint64(1))
	f.Add(true, []byte(fuzzOOMControl(3)), uint64(math.MaxUint64))
	for _, s := range []string{"", "oom_kill\n", "oom_kill x\n", "oom_kill_disable 0\n", "oom 5\n", "\x00none 5\n", "oom_kill 1\noom_kill 2\n", "oom_kill -1\n"} {
		f.Add(false, []byte(s), uint64(0))
	}
	d := f.TempDir()
	f.Fuzz(func(t *testing.T, v1 bool, b []byte, n uint64) {
		v := watch.V2
		name := "memory.events"
		if v1 {
			v, name = watch.V1, "memory.oom_control"
		}
		fuzzWrite(t, filepath.Join(d, name), b)
		got, err := OOMKills(fake(t, d), v)
		if err != nil {
			if !errors.Is(err, ErrParse) && !errors.Is(err, safefs.ErrTooBig) {
				t.Fatalf("OOMKills(%q): error %v wraps neither ErrParse nor ErrTooBig", b, err)
			}
		} else if want := fuzzKeyValues(b, "oom_kill"); len(want) == 0 || got != want[len(want)-1] {
			t.Fatalf("OOMKills(%q) = %d, the file says %v", b, got, want)
		}
		text := fuzzEvents(n/2, n)
		if v1 {
			text = fuzzOOMControl(n)
		}
		fuzzWrite(t, filepath.Join(d, name), []byte(text))
		if got, err := OOMKills(fake(t, d), v); err != nil || got != n {
			t.Fatalf("%s with oom_kill %d read back as %d, %v", name, n, got, err)
		}
	})
}

// fuzzPSI writes a pressure file as the kernel does (psi_show: "%lu.%02lu"
// averages, total in microseconds).
func fuzzPSI(p Pressure) string {
	line := func(kind string, s Stall) string {
		return fmt.Sprintf("%s avg10=%.2f avg60=%.2f avg300=%.2f total=%d\n", kind, s.Avg10, s.Avg60, s.Avg300, s.Total/time.Microsecond)
	}
	return line("some", p.Some) + line("full", p.Full)
}

func FuzzParsePressure(f *testing.F) {
	f.Add([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"), uint16(0), uint16(0), uint64(0))
	f.Add([]byte("some avg10=12.34 avg60=5.00 avg300=1.20 total=123456789\nfull avg10=100.00 avg60=0.01 avg300=0.00 total=9\n"), uint16(10000), uint16(1), uint64(1)<<53)
	for _, s := range []string{"", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", "some avg10=NaN avg60=0 avg300=0 total=0\nfull avg10=0 avg60=0 avg300=0 total=0\n",
		"some avg10=1 avg60=1 avg300=1 total=99999999999999999999\nfull avg10=0 avg60=0 avg300=0 total=0\n",
		"some avg10=1 avg60=1 avg300=1 total=18446744073709551\nfull avg10=0 avg60=0 avg300=0 total=0\n",
		"some avg10=1e2 avg60=0x1p-2 avg300=1 total=1 avg10=3\nfull avg10=0 avg60=0 avg300=0 total=0\n",
		"some avg10 avg60=0 avg300=0 total=0\nfull avg10=0 avg60=0 avg300=0 total=0\n"} {
		f.Add([]byte(s), uint16(0), uint16(0), uint64(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, avg, avg2 uint16, total uint64) {
		p, err := ParsePressure(b)
		if err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("ParsePressure(%q): error %v does not wrap ErrParse", b, err)
			}
		} else {
			for _, s := range []Stall{p.Some, p.Full} {
				for _, a := range []float64{s.Avg10, s.Avg60, s.Avg300} {
					if !(a >= 0 && a <= 100) {
						t.Fatalf("ParsePressure(%q): average %v outside 0..100", b, a)
					}
				}
				if s.Total < 0 {
					t.Fatalf("ParsePressure(%q): total %v below zero (overflow)", b, s.Total)
				}
			}
			// Every figure comes from the file: each line has all four.
			for _, line := range bytes.Split(b, []byte{'\n'}) {
				fields := bytes.Fields(line)
				if len(fields) == 0 {
					continue
				}
				for _, k := range []string{"avg10=", "avg60=", "avg300=", "total="} {
					if !slices.ContainsFunc(fields[1:], func(f []byte) bool { return bytes.HasPrefix(f, []byte(k)) }) {
						t.Fatalf("ParsePressure(%q) = %+v: line %q has no %s", b, p, line, k)
					}
				}
			}
			// Written back the kernel's way, the figures read the same
			// (to the kernel's two decimals).
			q, err := ParsePressure([]byte(fuzzPSI(p)))
			if err != nil {
				t.Fatalf("ParsePressure(%q) = %+v, which written back does not parse: %v", b, p, err)
			}
			if d := math.Abs(q.Some.Avg10 - p.Some.Avg10); d > 0.005 || q.Some.Total != p.Some.Total.Truncate(time.Microsecond) {
				t.Fatalf("ParsePressure(%q) = %+v, written back read as %+v", b, p, q)
			}
		}
		// Round trip from the kernel's figures: hundredths of a percent,
		// microseconds (a u64 in the kernel; a Duration holds 292 years).
		a1, a2 := float64(avg%10001)/100, float64(avg2%10001)/100
		us := total % (math.MaxInt64 / 1000)
		want := Pressure{
			Some: Stall{Avg10: a1, Avg60: a2, Avg300: a1, Total: time.Duration(us) * time.Microsecond},
			Full: Stall{Avg10: a2, Avg60: a1, Avg300: a2, Total: time.Duration(us/2) * time.Microsecond},
		}
		got, err := ParsePressure([]byte(fuzzPSI(want)))
		if err != nil || got != want {
			t.Fatalf("pressure %+v read back as %+v, %v", want, got, err)
		}
	})
}

// FuzzHierarchicalLimit reads hierarchical_memory_limit from a v1
// memory.stat: the figure of its line, ErrNoLimit at or above the
// "unlimited" mark, an error otherwise.
func FuzzHierarchicalLimit(f *testing.F) {
	f.Add([]byte(fuzzV1Stat(1, 2)), uint64(268435456))
	f.Add([]byte("hierarchical_memory_limit 268435456\n"), uint64(math.MaxUint64))
	for _, s := range []string{"", "hierarchical_memory_limit\n", "hierarchical_memory_limit -1\n", "hierarchical_memsw_limit 5\n",
		"hierarchical_memory_limit 4611686018427387903\n", "hierarchical_memory_limit 1\nhierarchical_memory_limit 2\n"} {
		f.Add([]byte(s), uint64(0))
	}
	d := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte, n uint64) {
		read := func(b []byte) (uint64, error) {
			fuzzWrite(t, filepath.Join(d, "memory.stat"), b)
			return HierarchicalLimit(fake(t, d))
		}
		got, err := read(b)
		want := fuzzKeyValues(b, "hierarchical_memory_limit")
		switch {
		case err == nil:
			if len(want) == 0 || got != want[len(want)-1] || got >= v1Unlimited {
				t.Fatalf("HierarchicalLimit(%q) = %d, the file says %v", b, got, want)
			}
		case errors.Is(err, watch.ErrNoLimit):
			if len(want) == 0 || want[len(want)-1] < v1Unlimited {
				t.Fatalf("HierarchicalLimit(%q): ErrNoLimit, the file says %v", b, want)
			}
		case !errors.Is(err, ErrParse) && !errors.Is(err, safefs.ErrTooBig):
			t.Fatalf("HierarchicalLimit(%q): error %v wraps neither ErrParse nor ErrTooBig", b, err)
		}
		// Round trip: the kernel's memory.stat with the limit set.
		text := strings.Replace(fuzzV1Stat(1, 2), "hierarchical_memory_limit 9223372036854771712", "hierarchical_memory_limit "+strconv.FormatUint(n, 10), 1)
		got, err = read([]byte(text))
		if n >= v1Unlimited {
			if !errors.Is(err, watch.ErrNoLimit) {
				t.Fatalf("hierarchical_memory_limit %d: want ErrNoLimit, got %d, %v", n, got, err)
			}
		} else if err != nil || got != n {
			t.Fatalf("hierarchical_memory_limit %d read back as %d, %v", n, got, err)
		}
	})
}

// FuzzParseCPUList: any input either counts CPUs that a reference reading
// of the same list agrees with, or is an ErrParse; never a panic.
func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"0\n", "0-1\n", "0-63", "0,2-5,8\n", "", "1-0", "0,,1", "0-65535", "4294967296"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseCPUList(s)
		if err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("ParseCPUList(%q): %v does not wrap ErrParse", s, err)
			}
			return
		}
		// Reference: every part is digits or digits-digits, ascending.
		want := 0
		for _, part := range strings.Split(strings.TrimSpace(s), ",") {
			lo, hi, isRange := strings.Cut(part, "-")
			if !fuzzDigits([]byte(lo)) || isRange && !fuzzDigits([]byte(hi)) {
				t.Fatalf("ParseCPUList(%q) = %d, accepted a malformed part %q", s, n, part)
			}
			a, _ := strconv.ParseUint(lo, 10, 64)
			b := a
			if isRange {
				b, _ = strconv.ParseUint(hi, 10, 64)
			}
			if b < a || b >= maxCPUs {
				t.Fatalf("ParseCPUList(%q) = %d, accepted %q", s, n, part)
			}
			want += int(b-a) + 1
		}
		if n != want || n < 1 || n > maxCPUs {
			t.Fatalf("ParseCPUList(%q) = %d, want %d", s, n, want)
		}
	})
}
