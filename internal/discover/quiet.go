package discover

import (
	"bytes"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/safefs"
)

// A rescan of a quiet pod used to read the procfs directory and a tenth of
// its processes' files every second: most of an idle sidecar's CPU next to
// a few hundred processes. /proc/loadavg tells in one small read whether
// anything can have changed since the last full scan (fs/proc/loadavg.c,
// loadavg_proc_show):
//
//   - its last field is the last PID handed out in the reader's PID
//     namespace (idr_get_cursor of task_active_pid_ns(current), minus one):
//     it moves on every fork and clone of the pod, or of the node in node
//     mode (oomhero checks at start that --proc is its own namespace's
//     procfs);
//   - the total of "running/total" is the node's thread count (nr_threads).
//
// While the last PID stands still, no process of the namespace started, so
// the groups are the last full scan's, but for processes that ended since:
// those leave at the next full scan, at most quietMax scans later (or at
// once where the BPF source's exit events ask for a scan: a scan asked
// for by an event is full). An ended process in a group costs nothing but
// a failed read: a signal goes through a pidfd opened after checking the
// PID's start time. (The thread total moves whenever any thread on the
// node starts or ends, most seconds on a busy node: it is parsed, to check
// the file's shape, not compared.)
//
// When the last PID moved by a few (probeMax), the scan probes those PIDs
// one by one instead of listing the directory: PIDs are handed out
// cyclically (idr_alloc_cyclic), so every process started since the last
// scan has one of them, and so has every known PID that may now name
// another process. A probed PID is read if it is known or names a
// thread-group leader (a thread's PID comes from the same cursor and
// /proc/<tid> opens, but is no process: status Tgid tells). A process that
// started in the last youngFor may still exec (a runtime's init becoming
// the application): young processes are reread by PID at every scan. So a
// pod where something starts now and then (a kubelet exec probe every ten
// seconds, a cron job, the runtime's own threads) pays for the processes
// that started, not for all of them. The cursor moving further, or
// backwards (wrapped), makes the scan full. What neither mark nor probe can
// see is an exec of an older process (same PID, new name) or a process
// moved to another cgroup: a full scan is done at least every quietMax+1
// scans, which rereads a share of the known processes (revalidateEvery).

// quietMax is how many scans in a row may be answered from the last full
// scan (a full scan at least every 30 s at the default --rescan). What only
// a full scan sees is an end: a process that exited stays in its group until
// then. One end matters before that: while a restarted container's group
// (podman and the kubelet restart a container in the same cgroup) still
// shows its dead main process, the agent sees no restart (its main process
// unchanged) and does not resolve the container again. So quiet and probed
// scans check that each group's main process is still there (mainsAlive:
// one access(2) per group), and an end makes the scan full. Without that
// check, at 29, the adversarial suite's victims were not watched again
// within 15 s of their restart.
const quietMax = 29

// mainsAlive tells whether the main process of each group of the last full
// scan still has its procfs directory. A PID handed out again since is no
// concern here: the mark moved, so the scan probes or lists it anyway.
func (s *Scanner) mainsAlive() bool {
	for _, g := range s.last {
		if len(g.Procs) == 0 {
			continue
		}
		p := filepath.Join(s.root, strconv.Itoa(g.Main().PID))
		if err := unix.Access(p, unix.F_OK); err != nil {
			return false
		}
	}
	return true
}

// procMark is what /proc/loadavg says about process starts and ends.
type procMark struct {
	threads int64 // total threads on the node
	lastPID int64 // last PID handed out in the namespace
}

// limitLoadavg bounds /proc/loadavg (one short line).
const limitLoadavg = 256

func (s *Scanner) readMark() (procMark, error) {
	b, err := safefs.ReadProcFile(filepath.Join(s.root, "loadavg"), limitLoadavg)
	if err != nil {
		return procMark{}, err
	}
	return parseLoadavg(b)
}

var errLoadavg = errors.New("loadavg: want \"l1 l5 l15 running/total lastpid\"")

// parseLoadavg parses a /proc/loadavg content.
func parseLoadavg(b []byte) (procMark, error) {
	f := bytes.Fields(b)
	if len(f) != 5 {
		return procMark{}, errLoadavg
	}
	_, total, ok := bytes.Cut(f[3], []byte("/"))
	if !ok {
		return procMark{}, errLoadavg
	}
	threads, err := strconv.ParseInt(string(total), 10, 64)
	if err != nil || threads < 0 {
		return procMark{}, errLoadavg
	}
	last, err := strconv.ParseInt(string(f[4]), 10, 64)
	if err != nil || last < -1 {
		return procMark{}, errLoadavg
	}
	return procMark{threads: threads, lastPID: last}, nil
}

// Invalidate makes the next scan a full one: the caller knows of a change
// the mark cannot show (the BPF source's exit and exec events).
func (s *Scanner) Invalidate() { s.dirty = true }

// quietOK tells whether this scan may be answered from the last full one.
func (s *Scanner) quietOK(m procMark) bool {
	return s.marked && !s.dirty && s.last != nil && !s.young && s.quiet < quietMax && m.lastPID == s.mark.lastPID
}

// probeMax is the most PIDs handed out since the last scan that a scan
// probes one by one; past it, listing the directory is the cheaper way.
const probeMax = 64

// probeOK tells whether this scan may probe the PIDs handed out since the
// last scan (and reread the young processes) instead of listing them all.
func (s *Scanner) probeOK(m procMark) bool {
	return !s.following && s.marked && !s.dirty && s.last != nil && s.quiet < quietMax &&
		m.lastPID >= s.mark.lastPID && m.lastPID-s.mark.lastPID <= probeMax
}

// scanProbed rereads the known PIDs in (last mark, m] and the young
// processes, reads the new processes in that range, and rebuilds the groups
// they touched.
func (s *Scanner) scanProbed(m procMark) map[string]*Group {
	s.quiet++
	s.ProbeScans++
	for p := s.mark.lastPID + 1; p <= m.lastPID; p++ {
		pid := int(p)
		if _, ok := s.known[pid]; ok || s.leader(pid) {
			s.changed[pid] = struct{}{}
		}
	}
	s.mark = m
	now := s.ticks()
	for pid := range s.fresh {
		if e, ok := s.known[pid]; ok && s.rereadEach(e, now) {
			s.changed[pid] = struct{}{}
		}
	}
	groups := s.applyChanged()
	for pid := range s.fresh {
		if e, ok := s.known[pid]; !ok || !s.rereadEach(e, now) {
			delete(s.fresh, pid)
		}
	}
	s.young = len(s.fresh) > 0
	return groups
}

// leader tells whether pid names a thread-group leader (a process, not one
// of its threads) in the procfs. A PID that cannot be read is none.
func (s *Scanner) leader(pid int) bool {
	if pid == 1 || pid == s.self || pid <= 0 {
		return false
	}
	b, err := safefs.ReadProcFile(filepath.Join(s.root, strconv.Itoa(pid), "status"), safefs.LimitStat)
	if err != nil {
		return false
	}
	tgid, err := parseTgid(b)
	return err == nil && tgid == pid
}

var errTgid = errors.New("status: no \"Tgid:\t<n>\" line")

// parseTgid returns the Tgid of a /proc/<pid>/status content.
func parseTgid(b []byte) (int, error) {
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("Tgid:")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil || n <= 0 {
				return 0, errTgid
			}
			return n, nil
		}
	}
	return 0, errTgid
}

// recycledRange returns a test for the known PIDs to reread because the
// PID cursor passed them since the last full scan: the PIDs in
// (last mark, this mark], or every PID when the cursor wrapped. Without two
// marks it is false: the tenth reread each scan (revalidateEvery) is then
// what notices a recycled PID, as it was before marks. (A cursor that went
// round a whole pid_max, at least 32,768 forks, between two full scans a
// second apart looks unwrapped; the tenth reread still applies.)
func (s *Scanner) recycledRange(m procMark, ok bool) func(pid int) bool {
	switch {
	case !ok || !s.marked:
		return func(int) bool { return false }
	case m.lastPID < s.mark.lastPID:
		return func(int) bool { return true }
	default:
		lo, hi := s.mark.lastPID, m.lastPID
		return func(pid int) bool { return int64(pid) > lo && int64(pid) <= hi }
	}
}

// youngFor is the age past which a process is not young (see entry.young).
const youngFor = 10 * time.Second

// userHZ is the unit of /proc/<pid>/stat's start time: USER_HZ, 100 on
// every architecture Linux exposes to user space through procfs
// (include/asm-generic/param.h; sysconf(_SC_CLK_TCK)).
const userHZ = 100

// bootTicks returns the time since boot in USER_HZ ticks (CLOCK_BOOTTIME,
// the clock of start_boottime behind the start time), or 0 if it cannot
// be read: then no process is old by age, only by scans.
func bootTicks() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Sec)*userHZ + uint64(ts.Nsec)/(1e9/userHZ)
}

// bootClock is what new Scanners take ticks from; tests of fake procfs
// trees (start times a few seconds after boot) stop it.
var bootClock = bootTicks

// rereadEach tells whether every scan rereads known process e by PID:
// while it is young, and at any age while it is a container runtime's init
// (RuntimeInit). A runtime creates a container's process, which waits for
// the start; podman creates a pod's containers at once and starts them one
// by one, and under load one waited 20 s (CI): read young, then left to the
// revalidation (up to 15 minutes), its exec went unseen, and the container
// stayed unwatched.
func (s *Scanner) rereadEach(e entry, now uint64) bool {
	return e.young > 0 && !s.old(e, now) || RuntimeInit(e.Comm)
}

// RuntimeInit reports whether comm is a container runtime's init before
// it execs the container's program (runc's "runc:[2:INIT]").
func RuntimeInit(comm string) bool { return strings.HasPrefix(comm, "runc:[") }

// old tells whether e started more than youngFor before now (in ticks).
func (s *Scanner) old(e entry, now uint64) bool {
	return now > e.Start && now-e.Start >= uint64(youngFor/time.Second)*userHZ
}

// slotClock returns the current revalidation slot: seconds of monotonic
// time. Tests of fake procfs trees make it count full scans.
var slotClock = func() int64 { return int64(time.Since(clockStart) / time.Second) }

var clockStart = time.Now()

// dueSlots returns which PIDs (by PID modulo revalidateEvery) this full
// scan rereads: one residue per slot (second) since the last full scan, all
// of them after revalidateEvery seconds or more.
func (s *Scanner) dueSlots() (due [revalidateEvery]bool) {
	cur := slotClock()
	if s.following {
		cur /= followSlower
	}
	if !s.slotted {
		s.slot, s.slotted = cur-1, true
	}
	for i := s.slot + 1; i <= cur && i <= s.slot+revalidateEvery; i++ {
		due[i%revalidateEvery] = true
	}
	s.slot = max(s.slot, cur)
	return due
}
