package discover

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestFollowing: once told of process changes, scans reread only the PIDs
// told (a process nobody told of stays unseen), keep every other group as
// it was, drop exited processes, and turn full again when a change was not
// recorded or followFull passed.
func TestFollowing(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n")
	f.proc(20, 0, "db", "4:memory:/pod/db\n")
	f.loadavg(100, 50)
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	s.Changed(nil, true)
	// A process the kernel did not report (a fake: it always does) is not
	// seen: no directory listing.
	f.proc(11, 10, "worker", "4:memory:/pod/app\n")
	f.loadavg(101, 11)
	if got := pids(t, s, "/pod/app"); !slices.Equal(got, []int{10}) {
		t.Fatalf("a following scan listed the directory: %v", got)
	}
	// Reported: seen, and the other group is the very same.
	f.proc(12, 10, "worker", "4:memory:/pod/app\n")
	s.Changed([]int{12}, true)
	groups, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if got := groups["/pod/app"].PIDs(); !slices.Equal(got, []int{10, 12}) {
		t.Fatalf("app after PID 12 was reported: %v, want [10 12]", got)
	}
	if groups["/pod/db"] != first["/pod/db"] {
		t.Errorf("an untouched group was rebuilt")
	}
	if groups["/pod/oomhero"] != nil {
		t.Errorf("oomhero's own cgroup is a group")
	}
	// An exec into another cgroup (runc's init) and an exit.
	f.proc(12, 10, "worker", "4:memory:/pod/db\n")
	if err := os.RemoveAll(filepath.Join(f.root, "10")); err != nil {
		t.Fatal(err)
	}
	s.Changed([]int{12, 10, 999, -3, 1, 50}, true)
	groups, err = s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if g := groups["/pod/app"]; g != nil {
		t.Errorf("app still a group with %v after its processes left", g.PIDs())
	}
	if got := groups["/pod/db"].PIDs(); !slices.Equal(got, []int{12, 20}) {
		t.Errorf("db: %v, want [12 20]", got)
	}
	if s.FullScans != 1 {
		t.Fatalf("%d full scans, want 1", s.FullScans)
	}
	// An incomplete report: the next scan is full and finds PID 11.
	s.Changed(nil, false)
	groups, err = s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if s.FullScans != 2 || groups["/pod/app"] == nil || !slices.Equal(groups["/pod/app"].PIDs(), []int{11}) {
		t.Fatalf("after an incomplete report: %d full scans, app %v", s.FullScans, groups["/pod/app"])
	}
	// The safety net: a full scan when the last is followFull old.
	f.proc(13, 0, "late", "4:memory:/pod/late\n")
	if groups, _ := s.Scan(); groups["/pod/late"] != nil {
		t.Fatal("a following scan listed the directory")
	}
	s.lastFull = time.Now().Add(-followFull)
	if groups, _ := s.Scan(); groups["/pod/late"] == nil || s.FullScans != 3 {
		t.Fatalf("no full scan after followFull (%d full scans)", s.FullScans)
	}
}

// TestFollowingHostile: changed PIDs whose files are hostile (unparsable
// stat, no memory cgroup) are skipped and reported once, like a full scan.
func TestFollowingHostile(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n")
	f.loadavg(100, 50)
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scan(); err != nil {
		t.Fatal(err)
	}
	f.write("30/stat", "30 no parens S 1")
	f.write("30/cgroup", "4:memory:/pod/app\n")
	f.proc(31, 0, "kthread", "")
	for range 3 {
		s.Changed([]int{30, 31}, true)
		if got := pids(t, s, "/pod/app"); !slices.Equal(got, []int{10}) {
			t.Fatalf("app: %v", got)
		}
	}
	if sk := s.Skipped(); len(sk) != 1 || sk[0].PID != 30 {
		t.Fatalf("skipped %v, want PID 30 once", sk)
	}
}

// TestFollowingFullScanTrustsEvents: the safety-net full scan of a
// follower does not reread the processes started since the last full scan
// (each was reread on its event), unless a change went unrecorded: then
// the PIDs handed out meanwhile are read again.
func TestFollowingFullScanTrustsEvents(t *testing.T) {
	f := newFake(t)
	f.proc(50, 0, "oomhero", "4:memory:/pod/oomhero\n")
	f.proc(10, 0, "app", "4:memory:/pod/app\n")
	f.loadavg(100, 50)
	// Every process a minute old (start times: 1000+PID ticks): none is
	// reread for being young.
	bootClock = func() uint64 { return 1100 + userHZ*60 } // newFake restores it
	s, err := NewScanner(f.root, 50)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scan(); err != nil {
		t.Fatal(err)
	}
	s.Changed(nil, true)
	var started []int
	for pid := 60; pid < 70; pid++ {
		f.proc(pid, 10, "worker", "4:memory:/pod/app\n")
		started = append(started, pid)
	}
	f.loadavg(110, 69)
	s.Changed(started, true)
	if _, err := s.Scan(); err != nil {
		t.Fatal(err)
	}
	// Their files change behind the scanner's back (a fake: the kernel
	// would report an exec): only a reread would show it.
	for _, pid := range started {
		f.proc(pid, 10, "reread", "4:memory:/pod/app\n")
	}
	comms := func() map[string]int {
		t.Helper()
		groups, err := s.Scan()
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, p := range groups["/pod/app"].Procs {
			n[p.Comm]++
		}
		return n
	}
	full := s.FullScans
	s.lastFull = time.Now().Add(-followFull)
	if n := comms(); s.FullScans != full+1 || n["reread"] != 0 || n["worker"] != 10 {
		t.Fatalf("safety-net full scan (%d full scans, want %d): commands %v, want 10 worker, none reread", s.FullScans, full+1, n)
	}
	// A lost change: the next full scan rereads the PIDs handed out since
	// the last one (here none: 69 was the mark), and all of them when the
	// PIDs wrapped.
	f.loadavg(110, 5)
	s.Changed(nil, false)
	if n := comms(); n["reread"] != 10 {
		t.Fatalf("full scan after a lost change, PIDs wrapped: commands %v, want 10 reread", n)
	}
}
