package agent

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/notify"
	"github.com/oomhero/oomhero/internal/watch"
)

// recordingObserver records what the metrics would see, by container name.
type recordingObserver struct {
	NopObserver
	mu      sync.Mutex
	seen    map[string][]string // container -> "reading", "level warning", "signal warning dry_run", ...
	scanned map[string]bool
}

func (o *recordingObserver) add(name, what string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen == nil {
		o.seen = map[string][]string{}
	}
	o.seen[name] = append(o.seen[name], what)
}

func (o *recordingObserver) Scanned(ts []watch.Target) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.scanned == nil {
		o.scanned = map[string]bool{}
	}
	for _, t := range ts {
		o.scanned[t.Name] = true
	}
}
func (o *recordingObserver) Reading(t watch.Target, _ watch.Reading, _ watch.Level) {
	o.add(t.Name, "reading")
}
func (o *recordingObserver) LevelChanged(t watch.Target, _, to watch.Level, _ watch.Reading) {
	o.add(t.Name, "level "+to.String())
}
func (o *recordingObserver) Signal(t watch.Target, l watch.Level, pid int, result string) {
	o.add(t.Name, fmt.Sprintf("signal %s %d %s", l, pid, result))
}
func (o *recordingObserver) Notification(t watch.Target, l watch.Level, result string) {
	o.add(t.Name, fmt.Sprintf("notification %s %s", l, result))
}

func (o *recordingObserver) get(name string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.seen[name]...)
}

func (o *recordingObserver) wasScanned(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.scanned[name]
}

func (o *recordingObserver) wait(t *testing.T, h *harness, name, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		for _, s := range o.get(name) {
			if s == what {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q in %q\n%s", name, what, o.get(name), h.logs.String())
		}
	}
}

// TestDryRun: with --dry-run everything runs up to the send: the signals
// that would go out are logged with the attributes of "signal sent" and
// reported as dry_run, none is sent; the runtime table still refuses; a
// notification is reported dry_run without a request; a container that
// declares OOMHERO_DRY_RUN=false gets its signals.
func TestDryRun(t *testing.T) {
	var posts atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posts.Add(1) }))
	defer app.Close()
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	for _, pid := range []int{13, 23, 33, 111} {
		status(t, proc, pid, usr)
	}
	environ(t, proc, 13, "PATH=/bin")
	environ(t, proc, 23, "OOMHERO_DRY_RUN=false")
	environ(t, proc, 33, "OOMHERO_NOTIFY_URL="+app.URL+"/oomhero", "OOMHERO_WARNING_SIGNAL=none")
	environ(t, proc, 111, "PATH=/bin")
	groups := map[string]*discover.Group{}
	res := fakeResolver{byPath: map[string]watch.Container{}}
	for i, c := range []struct {
		name string
		pid  int
	}{{"app", 13}, {"optin", 23}, {"hooked", 33}, {"node", 111}} {
		path := "/" + c.name
		groups[path] = &discover.Group{Path: path, Version: watch.V1, Procs: []discover.Process{{PID: c.pid, Comm: c.name}}}
		res.byPath[path] = watch.Container{ID: uint64(i + 1), Path: path, Limit: 1000, Version: watch.V1}
	}
	obs := &recordingObserver{}
	h := startAgent(t, []string{"--dry-run", "--cooldown", "1h"}, proc, fakeScanner{groups}, res, func(a *Agent) {
		fakeRuntimes(a) // pid 111: node, whose SIGUSR1 opens the debugger
		a.Observer = obs
		a.Notifier = notify.New(notify.Options{UserAgent: "oomhero/test"})
		t.Cleanup(a.Notifier.Close)
	})
	<-h.src.updated
	h.waitLog(`level=WARN msg="DRY RUN: oomhero sends no signal and no notification`)

	h.feed(1, 800)
	obs.wait(t, h, "app", "signal warning 13 dry_run")
	h.feed(1, 950)
	obs.wait(t, h, "app", "signal critical 13 dry_run")
	h.feed(2, 800)
	obs.wait(t, h, "optin", "signal warning 23 sent")
	h.feed(3, 960)
	obs.wait(t, h, "hooked", "notification critical dry_run")
	h.feed(4, 800)
	obs.wait(t, h, "node", "signal warning 111 refused")
	h.stop()

	for _, s := range h.snd.take() {
		if s.pid != 23 {
			t.Errorf("dry run sent %v", s)
		}
	}
	if n := posts.Load(); n != 0 {
		t.Errorf("dry run posted %d notifications", n)
	}
	out := h.logs.String()
	for _, w := range []string{
		`msg="signal not sent (dry run)" pid=13 command=app container=app memory_level=warning signal=SIGUSR1 percent=80 working_set_bytes=800 usage_bytes=800 limit_bytes=1000`,
		`msg="signal not sent (dry run)" pid=13 command=app container=app memory_level=critical signal=SIGUSR2 percent=95 working_set_bytes=950`,
		`msg="signal sent" pid=23 command=optin container=optin memory_level=warning signal=SIGUSR1 percent=80`,
		`msg="notification not sent (dry run)" container=hooked memory_level=critical url=` + app.URL + `/oomhero`,
		`msg="signal refused: the runtime's own handler would be harmed" pid=111 command=node`,
		`msg="level changed" container=app from=ok to=warning percent=80`,
		`msg="container declaration" container=optin`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s\n%s", w, out)
		}
	}
	if strings.Contains(out, `msg="signal sent" pid=13`) || strings.Contains(out, `msg="signal sent" pid=111`) {
		t.Errorf("a dry run says signal sent:\n%s", out)
	}
	if n := strings.Count(out, "DRY RUN"); n != 1 {
		t.Errorf("DRY RUN said %d times", n)
	}
}

// TestContainerDeclaresDryRun: without --dry-run, a container that
// declares OOMHERO_DRY_RUN=true is the only one whose signals are logged
// instead of sent, and the start says nothing about a dry run.
func TestContainerDeclaresDryRun(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	status(t, proc, 10, usr)
	status(t, proc, 20, usr)
	environ(t, proc, 10, "OOMHERO_DRY_RUN=true")
	environ(t, proc, 20, "HOME=/")
	groups := map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "trying"}}},
		"/b": {Path: "/b", Version: watch.V1, Procs: []discover.Process{{PID: 20, Comm: "trusting"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1},
		"/b": {ID: 2, Path: "/b", Limit: 1000, Version: watch.V1},
	}}
	obs := &recordingObserver{}
	h := startAgent(t, []string{"--cooldown", "1h"}, proc, fakeScanner{groups}, res, func(a *Agent) { a.Observer = obs })
	<-h.src.updated
	h.feed(1, 800)
	h.feed(2, 800)
	obs.wait(t, h, "trying", "signal warning 10 dry_run")
	obs.wait(t, h, "trusting", "signal warning 20 sent")
	h.stop()
	if got := h.snd.take(); len(got) != 1 || got[0].pid != 20 {
		t.Errorf("sent %v, want only pid 20", got)
	}
	out := h.logs.String()
	if strings.Contains(out, "DRY RUN") || !strings.Contains(out, `declared="OOMHERO_DRY_RUN=true"`) || !strings.Contains(out, "dry_run=true") {
		t.Errorf("log:\n%s", out)
	}
}

// TestExcludedContainer: an excluded container is not given to the source,
// reports nothing (no level change, no signal, no observer call: no metrics
// series) and is said once; --exclude-command keeps a process of a selected
// container from its signal.
func TestExcludedContainer(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	for _, pid := range []int{10, 20, 30, 31} {
		status(t, proc, pid, usr)
		environ(t, proc, pid, "HOME=/")
	}
	groups := map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "bloat"}}},
		"/b": {Path: "/b", Version: watch.V1, Procs: []discover.Process{{PID: 20, Comm: "bloat-canary"}}},
		"/c": {Path: "/c", Version: watch.V1, Procs: []discover.Process{{PID: 30, Comm: "web"}, {PID: 31, PPID: 30, Comm: "sh"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1},
		"/b": {ID: 2, Path: "/b", Limit: 1000, Version: watch.V1},
		"/c": {ID: 3, Path: "/c", Limit: 1000, Version: watch.V1},
	}}
	obs := &recordingObserver{}
	h := startAgent(t, []string{"--cooldown", "1h", "--rescan", "10ms", "--include-container", "^(bloat|web)",
		"--exclude-container", "-canary$", "--exclude-command", "^sh$"}, proc, fakeScanner{groups}, res,
		func(a *Agent) { a.Observer = obs })
	targets := <-h.src.updated
	var names []string
	for _, tg := range targets {
		names = append(names, tg.Name)
	}
	if strings.Join(names, ",") != "bloat,web" {
		t.Fatalf("source targets %v", names)
	}
	h.feed(2, 990) // in flight before the exclusion, or a source that reads it anyway
	h.feed(1, 800)
	h.feed(3, 800)
	obs.wait(t, h, "bloat", "signal warning 10 sent")
	obs.wait(t, h, "web", "signal warning 30 sent")
	time.Sleep(50 * time.Millisecond) // a few rescans
	h.stop()
	if got := obs.get("bloat-canary"); len(got) != 0 || obs.wasScanned("bloat-canary") {
		t.Errorf("excluded container reported: %q (scanned %v)", got, obs.wasScanned("bloat-canary"))
	}
	for _, s := range h.snd.take() {
		if s.pid == 20 || s.pid == 31 {
			t.Errorf("sent %v to an excluded container or command", s)
		}
	}
	out := h.logs.String()
	if n := strings.Count(out, `msg="container excluded"`); n != 1 {
		t.Errorf("container excluded said %d times:\n%s", n, out)
	}
	for _, w := range []string{
		`msg="container excluded" container=bloat-canary cgroup=/b reason="its name matches --exclude-container \"-canary$\""`,
		`msg="process not signalled: command excluded" container=web pid=31 command=sh reason="its command matches --exclude-command \"^sh$\""`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s\n%s", w, out)
		}
	}
	for _, bad := range []string{`container=bloat-canary from=`, `msg="container watched" container=bloat-canary`, "pid=20"} {
		if strings.Contains(out, bad) {
			t.Errorf("log has %s\n%s", bad, out)
		}
	}
}

// TestSelectionFollowsTheName: the name a container is selected by is the
// one oomhero uses, so a container named by its runtime's wrapper is
// selected when it execs the application (and the source is told), and one
// that declares OOMHERO_NAME is selected by that name.
func TestSelectionFollowsTheName(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	status(t, proc, 10, usr)
	status(t, proc, 20, usr)
	environ(t, proc, 10, "HOME=/")
	environ(t, proc, 20, "OOMHERO_NAME=excluded-by-name")
	sc := &lockedScanner{groups: map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "sh"}}},
		"/b": {Path: "/b", Version: watch.V1, Procs: []discover.Process{{PID: 20, Comm: "app2"}}},
	}}
	res := fakeResolver{byPath: map[string]watch.Container{
		"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1},
		"/b": {ID: 2, Path: "/b", Limit: 1000, Version: watch.V1},
	}}
	h := startAgent(t, []string{"--rescan", "10ms", "--include-container", "^app", "--exclude-container", "^excluded"},
		proc, sc, res, nil)
	if tg := <-h.src.updated; len(tg) != 0 {
		t.Fatalf("before exec: %+v", tg)
	}
	h.waitLog(`msg="container excluded" container=sh`)
	sc.set("/a", &discover.Group{Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}})
	for deadline := time.After(5 * time.Second); ; {
		select {
		case tg := <-h.src.updated:
			if len(tg) == 0 {
				continue // an update from before the exec
			}
			if len(tg) != 1 || tg[0].Name != "app" {
				t.Fatalf("after exec: %+v", tg)
			}
		case <-deadline:
			t.Fatalf("not selected after exec:\n%s", h.logs.String())
		}
		break
	}
	h.waitLog(`msg="container selected" container=app cgroup=/a`)
	h.stop()
	out := h.logs.String()
	for _, w := range []string{
		`msg="container excluded" container=sh cgroup=/a reason="its name does not match --include-container \"^app\""`,
		`msg="container excluded" container=excluded-by-name cgroup=/b reason="its name matches --exclude-container \"^excluded\""`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s\n%s", w, out)
		}
	}
}
