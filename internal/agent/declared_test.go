package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/watch"
)

// environ writes a /proc/<pid>/environ.
func environ(t *testing.T, proc string, pid int, kv ...string) {
	d := filepath.Join(proc, fmt.Sprint(pid))
	os.MkdirAll(d, 0o755)
	if err := os.WriteFile(filepath.Join(d, "environ"), []byte(strings.Join(kv, "\x00")+"\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// lockedScanner is a Scanner whose groups a test may change while the agent runs.
type lockedScanner struct {
	mu     sync.Mutex
	groups map[string]*discover.Group
}

func (s *lockedScanner) Scan() (map[string]*discover.Group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]*discover.Group{}
	for k, g := range s.groups {
		c := *g
		out[k] = &c
	}
	return out, nil
}

func (s *lockedScanner) set(path string, g *discover.Group) {
	s.mu.Lock()
	s.groups[path] = g
	s.mu.Unlock()
}

// harness runs an agent on fakes.
type harness struct {
	t      *testing.T
	proc   string
	src    *fakeSource
	snd    *fakeSender
	logs   *syncBuf
	cancel func()
	done   chan error
	agent  *Agent // touch only after stop
}

func startAgent(t *testing.T, args []string, proc string, sc Scanner, res Resolver, setup func(*Agent)) *harness {
	t.Helper()
	cfg, err := config.Parse(args, func(string) (string, bool) { return "", false }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Proc = proc
	h := &harness{t: t, proc: proc, src: &fakeSource{updated: make(chan []watch.Target, 64), feed: make(chan watch.Reading)},
		snd: &fakeSender{}, logs: &syncBuf{}, done: make(chan error, 1)}
	a := &Agent{Config: cfg, Log: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: cfg.LogLevel})), Scanner: sc, Resolver: res,
		Source: h.src, Sender: h.snd, Self: 999}
	if setup != nil {
		setup(a)
	}
	h.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

func (h *harness) feed(id, usage uint64) {
	h.src.feed <- watch.Reading{ID: id, Usage: usage, Limit: 1000, Time: time.Now()}
}

// waitLog waits for a log line containing s.
func (h *harness) waitLog(s string) {
	h.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(h.logs.String(), s); {
		if time.Now().After(deadline) {
			h.t.Fatalf("log lacks %s:\n%s", s, h.logs.String())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDeclarationsPerContainer(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	for _, pid := range []int{10, 11, 20, 30, 40} {
		status(t, proc, pid, usr)
	}
	status(t, proc, 12, 0) // no handler
	environ(t, proc, 10, "PATH=/bin", "OOMHERO_WARNING=50", "OOMHERO_CRITICAL=60", "OOMHERO_TARGETS=all", "OOMHERO_REPEAT=once",
		"OOMHERO_WARNING_SIGNAL=SIGTERM")
	environ(t, proc, 20, "OOMHERO=off")
	environ(t, proc, 30, "OOMHERO_CRITICAL=abc", "OOMHERO_COOLDOWN=1h", "OOMHERO_CRITICAL_SIGNAL=none")
	// 40 has no environ file: unreadable, the sidecar's configuration applies.
	groups := map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "a"}, {PID: 11, PPID: 10, Comm: "a2"}, {PID: 12, PPID: 10, Comm: "a3"}}},
		"/b": {Path: "/b", Version: watch.V1, Procs: []discover.Process{{PID: 20, Comm: "b"}}},
		"/c": {Path: "/c", Version: watch.V1, Procs: []discover.Process{{PID: 30, Comm: "c"}}},
		"/d": {Path: "/d", Version: watch.V1, Procs: []discover.Process{{PID: 40, Comm: "d"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1},
		"/b": {ID: 2, Path: "/b", Limit: 1000, Version: watch.V1},
		"/c": {ID: 3, Path: "/c", Limit: 1000, Version: watch.V1},
		"/d": {ID: 4, Path: "/d", Limit: 1000, Version: watch.V1},
	}}
	h := startAgent(t, []string{"--cooldown", "1ms"}, proc, fakeScanner{groups}, res, nil)
	targets := <-h.src.updated
	th := map[string][2]uint64{}
	for _, tg := range targets {
		th[tg.Name] = [2]uint64{tg.Warn, tg.Crit}
	}
	if th["a"] != [2]uint64{500, 600} || th["b"] != [2]uint64{750, 900} || th["c"] != [2]uint64{750, 900} || th["d"] != [2]uint64{750, 900} {
		t.Fatalf("thresholds %v", th)
	}
	// a: once per crossing, to all its processes, its own warning signal.
	h.feed(1, 550)
	h.feed(1, 560)
	time.Sleep(5 * time.Millisecond)
	h.feed(1, 570) // cooldown 1ms passed: still nothing under once
	h.feed(1, 650) // critical
	// b: opted out.
	h.feed(2, 990)
	// c: critical signal none, bad critical ignored (default 90 %).
	h.feed(3, 950)
	h.waitLog(`msg="signal sent" pid=30 `) // readings are handled in order: the last one shows
	got := h.snd.take()
	want := []sent{{10, unix.SIGTERM}, {11, unix.SIGTERM}, {12, unix.SIGTERM}, {10, unix.SIGUSR2}, {11, unix.SIGUSR2}, {12, unix.SIGUSR2}, {30, unix.SIGUSR1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	h.stop()
	out := h.logs.String()
	for _, w := range []string{
		`msg="container opted out: no signal and no notification (OOMHERO=off); still watched" container=b pid=20`,
		`msg="bad declaration ignored; the sidecar's value applies" container=c pid=30 variable=OOMHERO_CRITICAL value=abc accepted="a whole number of percent from 1 to 100"`,
		`msg="container declaration" container=a pid=10 command=a declared="OOMHERO_WARNING=50 OOMHERO_CRITICAL=60 OOMHERO_WARNING_SIGNAL=SIGTERM OOMHERO_TARGETS=all OOMHERO_REPEAT=once"`,
		`msg="cannot read the container's declaration; the sidecar's configuration applies" container=d pid=40`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s\n%s", w, out)
		}
	}
}

func TestDeclarationFollowsExec(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	status(t, proc, 10, usr)
	environ(t, proc, 10, "HOME=/") // a wrapper, before it execs the application
	sc := &lockedScanner{groups: map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "sh"}}},
	}}
	res := fakeResolver{byPath: map[string]watch.Container{"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1}}}
	h := startAgent(t, []string{"--rescan", "10ms"}, proc, sc, res, nil)
	if tg := <-h.src.updated; tg[0].Warn != 750 {
		t.Fatalf("before exec: %+v", tg)
	}
	// exec: same PID, new command and environment.
	environ(t, proc, 10, "OOMHERO_WARNING=40", "OOMHERO_CRITICAL=45")
	sc.set("/a", &discover.Group{Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}})
	select {
	case tg := <-h.src.updated:
		if tg[0].Warn != 400 || tg[0].Crit != 450 {
			t.Fatalf("after exec: %+v", tg)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("declaration not re-read after exec:\n%s", h.logs.String())
	}
	// Unchanged processes: not read again (a changed file is not seen).
	environ(t, proc, 10, "OOMHERO_WARNING=10")
	time.Sleep(100 * time.Millisecond)
	select {
	case tg := <-h.src.updated:
		t.Fatalf("re-read without a change of processes: %+v", tg)
	default:
	}
	// A new process: read again (the main one first).
	status(t, proc, 11, 0)
	sc.set("/a", &discover.Group{Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}, {PID: 11, PPID: 10, Comm: "child"}}})
	select {
	case tg := <-h.src.updated:
		if tg[0].Warn != 100 {
			t.Fatalf("after new process: %+v", tg)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("declaration not re-read after the processes changed:\n%s", h.logs.String())
	}
}

// TestSlowDeclarationAppliedLate: the environment read hangs (the process
// reclaims memory): the container is watched with the sidecar's thresholds
// at once, and the declaration applies, with the source told, when the read
// ends.
func TestSlowDeclarationAppliedLate(t *testing.T) {
	proc := t.TempDir()
	status(t, proc, 10, 0)
	environ(t, proc, 10, "OOMHERO_WARNING=40")
	groups := map[string]*discover.Group{"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}}}
	res := fakeResolver{byPath: map[string]watch.Container{"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1}}}
	release := make(chan struct{})
	h := startAgent(t, nil, proc, fakeScanner{groups}, res, func(a *Agent) {
		a.readDecl = func(proc string, self int, order []discover.Process) declRead {
			<-release
			return readDeclaration(proc, self, order)
		}
	})
	start := time.Now()
	if tg := <-h.src.updated; tg[0].Warn != 750 {
		t.Fatalf("before the read ends: %+v", tg)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("first scan took %v", d)
	}
	h.waitLog(`msg="reading the container's environment is slow`)
	close(release)
	select {
	case tg := <-h.src.updated:
		if tg[0].Warn != 400 {
			t.Fatalf("after the read: %+v", tg)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("late declaration not applied:\n%s", h.logs.String())
	}
	h.waitLog(`msg="container declaration" container=app pid=10 command=app declared="OOMHERO_WARNING=40"`)
}

// TestDeclarationRetriedWhileUnread: right after an exec the environment
// can read empty; the declaration is read again at the next rescans (same
// processes), not only at the container's next resolve.
func TestDeclarationRetriedWhileUnread(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	status(t, proc, 10, usr)
	d := filepath.Join(proc, "10")
	if err := os.WriteFile(filepath.Join(d, "environ"), nil, 0o644); err != nil { // empty: unreadable for now
		t.Fatal(err)
	}
	sc := &lockedScanner{groups: map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}},
	}}
	res := fakeResolver{byPath: map[string]watch.Container{"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1}}}
	h := startAgent(t, []string{"--rescan", "10ms"}, proc, sc, res, nil)
	if tg := <-h.src.updated; tg[0].Warn != 750 {
		t.Fatalf("before the environment is readable: %+v", tg)
	}
	environ(t, proc, 10, "OOMHERO_WARNING=40", "OOMHERO_CRITICAL=45")
	select {
	case tg := <-h.src.updated:
		if tg[0].Warn != 400 || tg[0].Crit != 450 {
			t.Fatalf("after the environment became readable: %+v", tg)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("declaration not read again while unread (same processes):\n%s", h.logs.String())
	}
}
