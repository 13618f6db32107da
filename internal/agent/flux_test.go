package agent

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/watch"
)

func TestInFlux(t *testing.T) {
	const mib = 1 << 20
	const limit = 64 * mib
	for _, c := range []struct {
		name string
		rd   watch.Reading
		want bool
	}{
		// The reading of the e2e: inactive list drained at the limit.
		{"drained inactive list", watch.Reading{Usage: 65970176, InactiveFile: 0, ActiveFile: 48 * mib, Anon: 8 * mib}, true},
		{"inactive far below active", watch.Reading{Usage: limit, InactiveFile: 2 * mib, ActiveFile: 40 * mib, Anon: 8 * mib}, true},
		{"lists in balance", watch.Reading{Usage: limit, InactiveFile: 20 * mib, ActiveFile: 30 * mib, Anon: 8 * mib}, false},
		// Seen on this machine: reclaim had just freed 12 %, inactive empty.
		{"drained after reclaim", watch.Reading{Usage: 59 * mib, InactiveFile: 24 << 10, ActiveFile: 41000 << 10, Anon: 16 * mib}, true},
		{"inactive at a third of active", watch.Reading{Usage: limit, InactiveFile: 13116 << 10, ActiveFile: 35824 << 10, Anon: 16 * mib}, true},
		{"well below the limit", watch.Reading{Usage: 55 * mib, InactiveFile: 0, ActiveFile: 40 * mib, Anon: 8 * mib}, false},
		{"anonymous at the limit", watch.Reading{Usage: limit, InactiveFile: 100 << 10, ActiveFile: 0, Anon: 62 * mib}, false},
		{"nothing listed, most not anonymous", watch.Reading{Usage: limit, Anon: 8 * mib}, true},
		{"nothing listed, mostly anonymous", watch.Reading{Usage: limit, Anon: 60 * mib}, false},
		{"no anon figure (tests, old readings)", watch.Reading{Usage: limit}, false},
		// An application's own code: active, little inactive beside it,
		// but a few MiB: never a delay (the critical crossing of a leak).
		{"own code active", watch.Reading{Usage: limit * 9 / 10, InactiveFile: 100 << 10, ActiveFile: 3 * mib, Anon: 55 * mib}, false},
		{"shortfall under a sixteenth", watch.Reading{Usage: limit, InactiveFile: 1 * mib, ActiveFile: 7 * mib, Anon: 50 * mib}, false},
	} {
		if got := inFlux(c.rd, limit); got != c.want {
			t.Errorf("%s: inFlux(%+v) = %v, want %v", c.name, c.rd, got, c.want)
		}
	}
	// Above 1 GiB of file cache the kernel keeps a smaller inactive list.
	big := watch.Reading{Usage: 8 << 30, InactiveFile: 700 * mib, ActiveFile: 6 << 30, Anon: 1 << 30}
	if inFlux(big, 8<<30) {
		t.Errorf("inactive at the kernel's target for 6.7 GiB of file cache (ratio 8) taken as flux")
	}
	big.InactiveFile = 100 * mib
	if !inFlux(big, 8<<30) {
		t.Errorf("inactive far below the kernel's target not taken as flux")
	}
}

// fakeMem is a memReader that returns its readings in turn (the last one
// again once they are used up).
type fakeMem struct {
	mu     sync.Mutex
	rds    []watch.Reading
	reads  int
	closed bool
}

func (f *fakeMem) Read() (watch.Reading, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return watch.Reading{}, errors.New("closed")
	}
	rd := f.rds[min(f.reads, len(f.rds)-1)]
	f.reads++
	rd.Time = time.Now()
	return rd, nil
}

func (f *fakeMem) Close() error { f.mu.Lock(); defer f.mu.Unlock(); f.closed = true; return nil }

// TestReadingInFlux: a reading in flux at the limit is judged only after
// rereads: a page-cache application whose inactive list was drained for a
// moment gets no signal; a working set that stays above the threshold in
// a balanced reading, or in flux for the whole window, is signalled.
func TestReadingInFlux(t *testing.T) {
	const limit = 1000
	flux := watch.Reading{Usage: 1000, InactiveFile: 0, ActiveFile: 600, Anon: 100} // working set 100 %
	for _, c := range []struct {
		name    string
		rereads []watch.Reading
		want    string // signals sent: pid and signal number (SIGUSR1 10, SIGUSR2 12)
		min     time.Duration
		// window is how long a reading may stay in flux: the cases that end
		// before it take a long one, so that a loaded machine (three rereads
		// taking past 50 ms) does not end them by the window.
		window time.Duration
	}{
		{"page cache: balanced reread below the thresholds", []watch.Reading{
			{Usage: 1000, InactiveFile: 350, ActiveFile: 300, Anon: 100}}, "[]", recheckEvery, time.Minute},
		{"page cache: flux for two rereads, then balanced", []watch.Reading{
			flux, flux, {Usage: 990, InactiveFile: 400, ActiveFile: 250, Anon: 100}}, "[]", 3 * recheckEvery, time.Minute},
		{"anonymous growth at the limit: confirmed", []watch.Reading{
			{Usage: 1000, InactiveFile: 40, ActiveFile: 60, Anon: 880}}, "[{10 10} {10 12}]", recheckEvery, time.Minute},
		{"in flux for the whole window: judged as read", []watch.Reading{flux},
			"[{10 10} {10 12}]", recheckWindow, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			proc := t.TempDir()
			status(t, proc, 10, uint64(1<<(unix.SIGUSR1-1)|1<<(unix.SIGUSR2-1)))
			groups := map[string]*discover.Group{"/app": {Path: "/app", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}}}
			res := fakeResolver{byPath: map[string]watch.Container{"/app": {ID: 1, Name: "app", Path: "/app", Limit: limit, Version: watch.V1}}}
			mem := &fakeMem{rds: c.rereads}
			h := startAgent(t, []string{"--cooldown", "1h", "--log-level", "debug"}, proc, fakeScanner{groups}, res, func(a *Agent) {
				a.openMemory = func(watch.Container) (memReader, error) { return mem, nil }
				a.recheckFor = c.window
			})
			<-h.src.updated
			rd := flux
			rd.ID, rd.Limit, rd.Time = 1, limit, time.Now()
			start := time.Now()
			h.src.feed <- rd
			h.waitLog(`msg="reading in flux (reclaim at the limit), reading again before judging it" container=app`)
			h.waitLog("origin=" + OriginRecheck)
			took := time.Since(start)
			h.stop()
			if got := fmt.Sprint(h.snd.take()); got != c.want {
				t.Errorf("sent %s, want %s\n%s", got, c.want, h.logs.String())
			}
			if took < c.min {
				t.Errorf("judged %s after the reading, want at least %s", took, c.min)
			}
			if !mem.closed {
				t.Errorf("reader not closed")
			}
			if c.want == "[]" && strings.Contains(h.logs.String(), `msg="level changed"`) {
				t.Errorf("level changed on a reading in flux:\n%s", h.logs.String())
			}
		})
	}
}
