package agent

import (
	"math"
	"time"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/watch"
)

// Readings taken while the kernel reclaims at the limit.
//
// The working set is usage minus the inactive file list. While a cgroup
// reclaims at its limit, that list can be drained faster than the kernel
// refills it from the active list, and for a moment the page cache is
// counted as working set: in the node agent's e2e (1 Dec) a page-cache
// application at its 64 MiB limit was read with inactive_file 0, working
// set = usage, and signalled warning and critical; 7 ms later the working
// set was 84 %, and its own samples never showed more than 75 %. On this
// project's machine, an application reading a hot 40 MiB file (its pages
// active) and streaming a 200 MiB one in 64 MiB showed working sets of
// 79-92 % with 16 MiB of anonymous memory, usage 88-100 %, for 4-20 ms
// every few seconds. Such a
// reading is in flux: it raises the level only once a reading that is not
// in flux confirms it, or once the flux has lasted recheckWindow.

const (
	// recheckEvery is the pause between the rereads of a reading in flux.
	recheckEvery = 5 * time.Millisecond
	// recheckWindow bounds the delay a reading in flux adds to a signal:
	// past it the last reread is judged as it is. The flux lasted 4-20 ms
	// on this project's machine (a hot file and a streamed one in 64 MiB,
	// memory.stat read every millisecond).
	recheckWindow = 50 * time.Millisecond
	// OriginRecheck is the origin of the reread that ends a recheck.
	OriginRecheck = "recheck"
)

// inFlux tells whether rd was read while its cgroup reclaims near its
// limit (usage within an eighth of it: reclaim may just have freed some)
// with its file lists out of balance: the inactive list under half the
// kernel's own target (mm/vmscan.c inactive_is_low: inactive * ratio >=
// active, ratio = sqrt(10 * GiB of file cache), 1 under 1 GiB) by at least
// a sixteenth of the limit, or no file page on either list while a quarter
// of the limit is neither anonymous memory nor listed (pages isolated by
// reclaim, or counters not flushed).
func inFlux(rd watch.Reading, limit uint64) bool {
	if limit == 0 || rd.Usage < limit-limit/8 {
		return false
	}
	ratio := uint64(1)
	if gb := (rd.InactiveFile + rd.ActiveFile) >> 30; gb > 0 {
		ratio = uint64(math.Sqrt(float64(10 * gb)))
	}
	// Balanced, the inactive list would hold file/(1+ratio): what it lacks
	// is counted as working set. Only a shortfall of a sixteenth of the
	// limit or more counts, so the few MiB of an application's own code
	// (active, with little inactive beside it) never delay a signal.
	file := rd.InactiveFile + rd.ActiveFile
	if rd.InactiveFile*ratio*2 < rd.ActiveFile && file/(1+ratio)-rd.InactiveFile >= limit/16 {
		return true
	}
	return rd.InactiveFile == 0 && rd.ActiveFile == 0 && rd.Anon > 0 && rd.Usage-min(rd.Anon, rd.Usage) > limit/4
}

// raises tells whether value would take container t above its level.
func (a *Agent) raises(t *tracked, value uint64) bool {
	th, l := a.thresholds(t), watch.OK
	switch {
	case th.Crit > 0 && value >= th.Crit:
		l = watch.Critical
	case th.Warn > 0 && value >= th.Warn:
		l = watch.Warning
	}
	return l > a.policy.Level(t.ID)
}

// memReader reads a cgroup's memory figures (cgroup.Reader).
type memReader interface {
	Read() (watch.Reading, error)
	Close() error
}

// held tells whether reading rd of t waits for a recheck instead of being
// judged: it is in flux and would raise t's level (a recheck then starts),
// or a recheck is under way and rd is in flux too. The reread that ends a
// recheck is never held.
func (a *Agent) held(t *tracked, rd watch.Reading) bool {
	if a.Config.Metric != watch.WorkingSet || rd.Origin == OriginRecheck {
		return false
	}
	if !inFlux(rd, t.Limit) {
		return false
	}
	if t.recheck {
		return true
	}
	if !a.raises(t, rd.WorkingSet()) {
		return false
	}
	a.startRecheck(t, rd)
	return true
}

// startRecheck rereads t every recheckEvery until a reading is not in flux
// or recheckWindow passed since rd, and hands the last one to the loop.
func (a *Agent) startRecheck(t *tracked, rd watch.Reading) {
	t.recheck = true
	a.Log.Debug("reading in flux (reclaim at the limit), reading again before judging it", t.who(),
		"usage_bytes", rd.Usage, "working_set_bytes", rd.WorkingSet(), "inactive_file_bytes", rd.InactiveFile,
		"active_file_bytes", rd.ActiveFile, "anon_bytes", rd.Anon, "limit_bytes", t.Limit)
	open := a.openMemory
	if open == nil {
		open = func(c watch.Container) (memReader, error) { return cgroup.NewReader(c.Dir, c.Version, c.Limit) }
	}
	c, done, window := t.Container, a.done, a.recheckFor
	if window == 0 {
		window = recheckWindow
	}
	go func() {
		last := rd
		if r, err := open(c); err == nil {
			for end := rd.Time.Add(window); ; {
				time.Sleep(recheckEvery)
				next, err := r.Read()
				if err != nil {
					break
				}
				last = next
				if !inFlux(next, c.Limit) || !time.Now().Before(end) {
					break
				}
			}
			r.Close()
		}
		last.ID, last.Origin, last.Latency = c.ID, OriginRecheck, 0
		select {
		case a.late <- func() { a.rechecked(t, last) }:
		case <-done:
		}
	}()
}

// rechecked judges the reread that ended t's recheck.
func (a *Agent) rechecked(t *tracked, rd watch.Reading) {
	t.recheck = false
	if a.byID[t.ID] == t {
		a.reading(rd)
	}
}
