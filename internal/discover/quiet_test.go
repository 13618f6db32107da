package discover

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// loadavg writes the fake procfs's loadavg with threads and the last PID.
func (f fakeProc) loadavg(threads, last int) {
	f.write("loadavg", fmt.Sprintf("0.00 0.01 0.05 1/%d %d\n", threads, last))
}

func pids(t *testing.T, s *Scanner, path string) []int {
	t.Helper()
	groups, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if g := groups[path]; g != nil {
		return g.PIDs()
	}
	return nil
}

// TestQuietScans: while loadavg shows no PID handed out and no thread gone,
// scans are answered without reading the procfs directory, at most
// quietMax in a row; a new PID or a thread gone makes the next scan full.
func TestQuietScans(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n")
	f.loadavg(100, 50)
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	// Young processes are reread at every scan (they may still exec):
	// no scan is quiet while one is.
	for range youngScans + 1 {
		pids(t, s, "/pod/app")
	}
	if s.QuietScans != 0 {
		t.Fatalf("%d quiet scans while a process was young", s.QuietScans)
	}
	s.Invalidate() // a full scan: the quiet scans below are counted from it
	pids(t, s, "/pod/app")
	q := s.QuietScans
	// A process whose start the mark does not show (a fake: the kernel
	// always moves the last PID) is not seen while scans are quiet...
	f.proc(11, 10, "worker", "4:memory:/pod/app\n")
	for i := range quietMax {
		if got := pids(t, s, "/pod/app"); len(got) != 1 {
			t.Fatalf("quiet scan %d read the directory: %v", i, got)
		}
	}
	// ...and a full scan comes after quietMax quiet ones all the same.
	if got := pids(t, s, "/pod/app"); len(got) != 2 {
		t.Fatalf("no full scan after %d quiet ones: %v", quietMax, got)
	}
	if s.QuietScans-q != quietMax {
		t.Fatalf("quiet scans %d, want %d", s.QuietScans-q, quietMax)
	}
	for range youngScans + 1 { // 11 grows old
		pids(t, s, "/pod/app")
	}
	// A new PID: the next scan is full.
	f.proc(12, 10, "worker2", "4:memory:/pod/app\n")
	f.loadavg(101, 12)
	if got := pids(t, s, "/pod/app"); len(got) != 3 {
		t.Fatalf("a new PID in loadavg, yet the scan missed it: %v", got)
	}
	for range youngScans + 1 {
		pids(t, s, "/pod/app")
	}
	s.Invalidate() // a full scan: the quiet scans below are counted from it
	pids(t, s, "/pod/app")
	// A process ends: the node's thread count drops, no PID is handed
	// out; quiet scans still show it, the next full scan drops it.
	if err := os.RemoveAll(filepath.Join(f.root, "12")); err != nil {
		t.Fatal(err)
	}
	f.loadavg(100, 12)
	for i := range quietMax {
		if got := pids(t, s, "/pod/app"); len(got) != 3 {
			t.Fatalf("quiet scan %d after an end: %v", i, got)
		}
	}
	if got := pids(t, s, "/pod/app"); !slices.Equal(got, []int{10, 11}) {
		t.Fatalf("the full scan after %d quiet ones shows %v, want [10 11]", quietMax, got)
	}
	// An exit event (Invalidate): the next scan is full.
	if err := os.RemoveAll(filepath.Join(f.root, "11")); err != nil {
		t.Fatal(err)
	}
	s.Invalidate()
	if got := pids(t, s, "/pod/app"); !slices.Equal(got, []int{10}) {
		t.Fatalf("scan after Invalidate shows %v, want [10]", got)
	}
	// The whole container ends.
	if err := os.RemoveAll(filepath.Join(f.root, "10")); err != nil {
		t.Fatal(err)
	}
	s.Invalidate()
	if got := pids(t, s, "/pod/app"); got != nil {
		t.Fatalf("every process ended, the group remains: %v", got)
	}
	f.proc(10, 0, "app", "4:memory:/pod/app\n")
	f.proc(11, 10, "worker", "4:memory:/pod/app\n")
	f.loadavg(100, 11) // the cursor wrapped: a full scan
	// Groups handed out are the caller's: changing them changes no later scan.
	groups, _ := s.Scan()
	groups["/pod/app"].Procs[0].Comm = "changed"
	delete(groups, "/pod/app")
	if got, _ := s.Scan(); got["/pod/app"] == nil || got["/pod/app"].Procs[0].Comm != "app" {
		t.Fatalf("a caller's change leaked into the next scan: %+v", got["/pod/app"])
	}
}

// settle scans until no process is young, then makes one full scan: the
// quiet and probed scans after it count from it.
func settle(t *testing.T, s *Scanner, path string) {
	t.Helper()
	for range youngScans + 1 {
		pids(t, s, path)
	}
	s.Invalidate()
	pids(t, s, path)
}

// TestQuietScansMainEnd: a container restarted in the same cgroup (podman,
// the kubelet) ends its main process and starts a new one. Quiet and probed
// scans would keep showing the dead main process (only a full scan drops an
// end), so the agent would see no restart: the scan after a main process's
// end is full, whether or not a PID was handed out since.
func TestQuietScansMainEnd(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n")
	f.proc(11, 10, "worker", "4:memory:/pod/app\n")
	f.loadavg(100, 50)
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	settle(t, s, "/pod/app")
	full := s.FullScans
	// No PID handed out: the main process ends alone (its worker is
	// reparented, as to a subreaper).
	if err := os.RemoveAll(filepath.Join(f.root, "10")); err != nil {
		t.Fatal(err)
	}
	if got := pids(t, s, "/pod/app"); !slices.Equal(got, []int{11}) {
		t.Fatalf("the scan after the main process ended shows %v, want [11]", got)
	}
	if s.FullScans != full+1 {
		t.Fatalf("full scans %d -> %d: the main process's end did not make the scan full", full, s.FullScans)
	}
	settle(t, s, "/pod/app")
	// A restart: the old processes end, a new main process starts in the
	// same cgroup (one PID handed out: a probed scan would read it and keep
	// the dead ones).
	for _, pid := range []string{"11"} {
		if err := os.RemoveAll(filepath.Join(f.root, pid)); err != nil {
			t.Fatal(err)
		}
	}
	f.proc(51, 0, "app", "4:memory:/pod/app\n")
	f.loadavg(100, 51)
	groups, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	g := groups["/pod/app"]
	if g == nil || !slices.Equal(g.PIDs(), []int{51}) || g.Main().PID != 51 {
		t.Fatalf("after a restart in the same cgroup the group is %+v, want main 51 alone", g)
	}
	// And with every main process alive, scans stay quiet.
	settle(t, s, "/pod/app")
	q := s.QuietScans
	pids(t, s, "/pod/app")
	if s.QuietScans != q+1 {
		t.Fatal("a scan with every main process alive was not quiet")
	}
}

// TestQuietScansRecycledAtOnce: a known PID that the cursor passed since
// the last full scan is reread in the next scan, whatever its turn in the
// tenth reread; and every known PID when the cursor wrapped.
func TestQuietScansRecycledAtOnce(t *testing.T) {
	for _, c := range []struct {
		name           string
		before, recycl int // last PID before, and when 11 comes back
	}{
		{"cursor passed it", 5, 12},
		{"cursor wrapped", 40, 11},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFake(t)
			f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
			f.proc(10, 0, "app", "4:memory:/pod/app\n")
			f.proc(11, 10, "worker", "4:memory:/pod/app\n")
			f.loadavg(100, c.before)
			s, err := NewScanner(f.root, 50)
			if err != nil {
				t.Fatal(err)
			}
			for range youngScans + 1 {
				pids(t, s, "/pod/app")
			}
			// 11 is not due for its reread by seconds (the fake's
			// slots count full scans: about 12 so far, 11's is 11+60k).
			if s.slot%revalidateEvery == 10 {
				t.Fatalf("slot %d: 11 would be due anyway", s.slot)
			}
			f.write("11/stat", fmt.Sprintf("11 (intruder) S 1 11 11 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 1000 10 0", 999999))
			f.write("11/cgroup", "4:memory:/pod/other\n")
			f.loadavg(100+s.scans, c.recycl)
			groups, err := s.Scan()
			if err != nil {
				t.Fatal(err)
			}
			if o := groups["/pod/other"]; o == nil || o.Procs[0].Start != 999999 {
				t.Fatalf("recycled PID 11 not reread in the scan after: %+v", groups)
			}
		})
	}
}

// TestProbedScans: when the last PID moved by a few, a scan reads those
// PIDs (processes, not threads) and the young processes, without listing
// the directory; a longer move, a wrap or quietMax such scans make the
// next scan full.
func TestProbedScans(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n") // start 1010 ticks
	f.loadavg(100, 50)
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	now := uint64(1010 + 2*userHZ*youngFor.Seconds()) // 10 is old
	s.ticks = func() uint64 { return now }
	if got := pids(t, s, "/pod/app"); !slices.Equal(got, []int{10}) {
		t.Fatalf("first scan: %v", got)
	}
	// A process starts (51), and a thread of 10 (52): a probed scan reads
	// both PIDs and keeps the process only. A process whose PID the
	// cursor did not pass (a fake: 70) is not seen: no listing.
	f.proc(51, 10, "runc:[2:INIT]", "4:memory:/pod/app\n") // start 1051
	f.thread(10, 52, "app", "4:memory:/pod/app\n")
	f.proc(70, 10, "unseen", "4:memory:/pod/app\n")
	f.loadavg(101, 52)
	now = 1051 + userHZ // 51 is one second old
	if got := pids(t, s, "/pod/app"); !slices.Equal(got, []int{10, 51}) {
		t.Fatalf("probed scan: %v, want [10 51]", got)
	}
	if s.FullScans != 1 || s.ProbeScans != 1 {
		t.Fatalf("%d full, %d probed scans, want 1 and 1", s.FullScans, s.ProbeScans)
	}
	// 51 execs: the next scan (no PID handed out) rereads it, being young.
	f.proc(51, 10, "java", "4:memory:/pod/app\n")
	groups, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if g := groups["/pod/app"]; g == nil || len(g.Procs) != 2 || g.Procs[1].Comm != "java" {
		t.Fatalf("young process's exec not seen: %+v", g)
	}
	// Grown old, it is no longer reread: scans are quiet.
	now += 2 * userHZ * uint64(youngFor.Seconds())
	pids(t, s, "/pod/app")
	q := s.QuietScans
	pids(t, s, "/pod/app")
	if s.QuietScans != q+1 || s.FullScans != 1 {
		t.Fatalf("quiet scans %d -> %d, full %d: an old process kept scans busy", q, s.QuietScans, s.FullScans)
	}
	// A PID that cannot be read, or a status without Tgid, names no process.
	f.proc(53, 10, "hostile", "4:memory:/pod/app\n")
	f.write("53/status", "Name:\tx\nTgid:\t-5\n")
	f.loadavg(101, 54)
	if got := pids(t, s, "/pod/app"); !slices.Equal(got, []int{10, 51}) {
		t.Fatalf("probed scan with a hostile status: %v", got)
	}
	// The cursor moved by more than probeMax: a full scan (which lists 70).
	f.loadavg(101, 54+probeMax+1)
	if got := pids(t, s, "/pod/app"); !slices.Contains(got, 70) || s.FullScans != 2 {
		t.Fatalf("after a long move: %v, %d full scans", got, s.FullScans)
	}
	// quietMax scans without a full one: the next is full.
	for range quietMax {
		pids(t, s, "/pod/app")
	}
	if pids(t, s, "/pod/app"); s.FullScans != 3 {
		t.Fatalf("%d full scans after quietMax, want 3", s.FullScans)
	}
}

func TestParseTgid(t *testing.T) {
	for in, want := range map[string]int{
		"Name:\tapp\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4711\nNgid:\t0\n": 4711,
		"Tgid:\t1":                     1,
		"Name:\tTgid:\t9\nTgid:\t12\n": 12, // a name never starts a line
	} {
		if got, err := parseTgid([]byte(in)); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Name:\tx\n", "Tgid:\t\n", "Tgid:\t-1\n", "Tgid:\t0\n", "Tgid:\tx\n", "tgid:\t5\n"} {
		if _, err := parseTgid([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseTgid(f *testing.F) {
	for _, s := range []string{"Name:\tapp\nTgid:\t4711\n", "Tgid:\t1", "Tgid:\t\n", "Tgid: 99999999999999999999\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseTgid(b)
		if err == nil && n <= 0 {
			t.Fatalf("%q: Tgid %d", b, n)
		}
	})
}

func TestParseLoadavg(t *testing.T) {
	m, err := parseLoadavg([]byte("0.52 0.58 0.59 3/1012 45678\n"))
	if err != nil || m != (procMark{threads: 1012, lastPID: 45678}) {
		t.Fatalf("%+v %v", m, err)
	}
	for _, bad := range []string{"", "0.1 0.2 0.3 1/2", "0.1 0.2 0.3 12 7", "0.1 0.2 0.3 1/x 7", "0.1 0.2 0.3 1/2 x", "0.1 0.2 0.3 1/-2 7", "a b c 1/2 3 4"} {
		if _, err := parseLoadavg([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseLoadavg(f *testing.F) {
	for _, s := range []string{"0.52 0.58 0.59 3/1012 45678\n", "0 0 0 0/0 -1", "1 2 3 4/5 6 7", "1 2 3 /5 6", "1 2 3 4/ 6"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseLoadavg(b)
		if err != nil {
			return
		}
		if m.threads < 0 || m.lastPID < -1 {
			t.Fatalf("%q: %+v", b, m)
		}
		// What parsed is what the fields say.
		again, err := parseLoadavg(fmt.Appendf(nil, "0 0 0 0/%d %d", m.threads, m.lastPID))
		if err != nil || again != m {
			t.Fatalf("%q: %+v, reparsed %+v %v", b, m, again, err)
		}
	})
}

// TestYoungByAge: a process older than youngFor is reread once in
// revalidateEvery scans from its second scan on, however few scans saw it;
// a younger one every scan.
func TestYoungByAge(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "old", "4:memory:/pod/app\n")          // start 1010 ticks
	f.proc(11, 10, "new", "4:memory:/pod/app\n")         // start 1011 ticks
	bootClock = func() uint64 { return 1011 + userHZ*5 } // 11 is 5 s old, 10 just as old
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	pids(t, s, "/pod/app")
	// Both under youngFor: renamed, both are seen at the next scan.
	f.proc(10, 0, "old2", "4:memory:/pod/app\n")
	f.proc(11, 10, "new2", "4:memory:/pod/app\n")
	g, _ := s.Scan()
	if c := g["/pod/app"].Procs; c[0].Comm != "old2" || c[1].Comm != "new2" {
		t.Fatalf("young processes not reread: %+v", c)
	}
	// 20 s later both are old: a rename waits for the tenth reread.
	s.ticks = func() uint64 { return 1011 + userHZ*25 }
	for (s.scans+1)%revalidateEvery == 10%revalidateEvery || (s.scans+1)%revalidateEvery == 11%revalidateEvery {
		s.Scan()
	}
	f.proc(10, 0, "old3", "4:memory:/pod/app\n")
	f.proc(11, 10, "new3", "4:memory:/pod/app\n")
	g, _ = s.Scan()
	if c := g["/pod/app"].Procs; c[0].Comm != "old2" || c[1].Comm != "new2" {
		t.Fatalf("processes older than %v reread as young: %+v", youngFor, c)
	}
}

// TestRevalidationBySeconds: full scans many times a second (process events
// on a busy node) reread no more than one tenth of the known processes per
// second; scans seconds apart catch up on the seconds they missed.
func TestRevalidationBySeconds(t *testing.T) {
	f := newFake(t)
	sec := int64(100)
	slotClock = func() int64 { return sec } // newFake restores it
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	for pid := 100; pid < 100+2*revalidateEvery; pid++ {
		f.proc(pid, 0, "app", "4:memory:/pod/app\n")
	}
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	for range youngScans + 1 { // past young (by scans: the fake's start times are 0 s old)
		s.Scan()
	}
	for pid := 100; pid < 100+2*revalidateEvery; pid++ {
		f.proc(pid, 0, "renamed", "4:memory:/pod/app\n")
	}
	renamed := func() int {
		g, _ := s.Scan()
		n := 0
		for _, p := range g["/pod/app"].Procs {
			if p.Comm == "renamed" {
				n++
			}
		}
		return n
	}
	// 50 scans in the same second: no process reread.
	for range 50 {
		if n := renamed(); n != 0 {
			t.Fatalf("%d processes reread within one second of scans", n)
		}
	}
	// One second on: one residue of revalidateEvery (2 of 120 PIDs).
	sec++
	if n := renamed(); n != 2 {
		t.Fatalf("one second on: %d reread, want 2", n)
	}
	// Five seconds without a scan: five residues at once.
	sec += 5
	if n := renamed(); n != 12 {
		t.Fatalf("five seconds on: %d reread in all, want 12", n)
	}
	// A whole period: all of them.
	sec += revalidateEvery
	if n := renamed(); n != 2*revalidateEvery {
		t.Fatalf("%d seconds on: %d reread in all, want %d", revalidateEvery, n, 2*revalidateEvery)
	}
}
