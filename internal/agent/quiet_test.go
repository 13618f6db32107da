package agent

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/watch"
)

// TestQuietDuringOOMKill: while the kernel frees a killed process's memory
// the figure falls from critical; with the OOM-kill counter moved, no
// warning signal goes to the dying container and the level change is not
// logged at info. Without a kill the same fall signals warning (cooldown
// passed), as the policy says.
func TestQuietDuringOOMKill(t *testing.T) {
	for _, killed := range []bool{true, false} {
		t.Run(fmt.Sprint("killed=", killed), func(t *testing.T) {
			proc := t.TempDir()
			status(t, proc, 10, uint64(1<<(unix.SIGUSR1-1)|1<<(unix.SIGUSR2-1)))
			environ(t, proc, 10, "PATH=/bin")
			groups := map[string]*discover.Group{"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}}}
			res := fakeResolver{byPath: map[string]watch.Container{"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1}}}
			var counter atomic.Uint64
			var clock atomic.Int64
			clock.Store(time.Now().UnixNano())
			h := startAgent(t, []string{"--cooldown", "1h", "--log-level", "debug"}, proc, fakeScanner{groups}, res, func(a *Agent) {
				a.OOMCount = func(id uint64) (uint64, error) { return counter.Load(), nil }
				a.Now = func() time.Time { return time.Unix(0, clock.Load()) }
			})
			<-h.src.updated
			h.feed(1, 950) // critical: warning and critical signals
			h.waitLog(`msg="signal sent" pid=10 command=app container=app memory_level=critical`)
			clock.Add(int64(2 * time.Hour)) // every cooldown passed
			if killed {
				counter.Store(1) // the kernel counted a kill; memory is being freed
			}
			h.feed(1, 800) // falling to warning
			h.feed(1, 10)  // and to ok
			h.waitLog(`from=warning to=ok`)
			if killed {
				h.waitLog(`level=DEBUG msg="signal held back: the container was just OOM-killed" container=app memory_level=warning`)
				h.waitLog(`level=DEBUG msg="level changed" container=app from=critical to=warning percent=80 metric=workingset working_set_bytes=800 usage_bytes=800 limit_bytes=1000 origin="" cause="oom kill in progress"`)
			}
			h.stop()
			got := h.snd.take()
			want := []sent{{10, unix.SIGUSR1}, {10, unix.SIGUSR2}}
			if !killed {
				want = append(want, sent{10, unix.SIGUSR1})
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("sent %v, want %v\n%s", got, want, h.logs.String())
			}
			out := h.logs.String()
			if killed && strings.Contains(out, `level=INFO msg="level changed" container=app from=critical to=warning`) {
				t.Errorf("level change logged at info during the OOM kill\n%s", out)
			}
		})
	}
}

// TestKillReportedWhenTheContainerIsGone: a container whose only process
// was OOM-killed leaves procfs before a polled counter is read again; the
// last read when it is forgotten still reports the kill, once.
func TestKillReportedWhenTheContainerIsGone(t *testing.T) {
	proc := t.TempDir()
	status(t, proc, 10, uint64(1<<(unix.SIGUSR1-1)|1<<(unix.SIGUSR2-1)))
	environ(t, proc, 10, "PATH=/bin")
	sc := &lockedScanner{groups: map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}},
	}}
	res := fakeResolver{byPath: map[string]watch.Container{"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1}}}
	var counter atomic.Uint64
	h := startAgent(t, []string{"--rescan", "10ms"}, proc, sc, res, func(a *Agent) {
		a.OOMCount = func(id uint64) (uint64, error) { return counter.Load(), nil }
	})
	<-h.src.updated
	h.feed(1, 950)
	h.waitLog(`msg="signal sent" pid=10 command=app container=app memory_level=critical`)
	counter.Store(1)
	sc.mu.Lock()
	delete(sc.groups, "/a") // the killed process left procfs
	sc.mu.Unlock()
	h.waitLog(`msg="oom kill" container=app cgroup=/a kills=1 oom_kill_total=1`)
	h.waitLog(`msg="container gone" container=app`)
	h.stop()
	if n := strings.Count(h.logs.String(), `msg="oom kill"`); n != 1 {
		t.Fatalf("%d oom kill lines, want 1\n%s", n, h.logs.String())
	}
}
