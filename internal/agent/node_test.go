package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/declare"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/notify"
	"github.com/oomhero/oomhero/internal/watch"
)

// fakeIdentifier knows the identity of some cgroup paths.
type fakeIdentifier struct {
	mu sync.Mutex
	m  map[string]Identity
}

func (f *fakeIdentifier) Identify(path string) (Identity, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.m[path]
	return id, ok
}

func (f *fakeIdentifier) set(path string, id Identity) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[path] = id
}

// swapScanner returns the groups it holds now.
type swapScanner struct {
	mu     sync.Mutex
	groups map[string]*discover.Group
}

func (s *swapScanner) Scan() (map[string]*discover.Group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneGroups(s.groups), nil
}

func (s *swapScanner) drop(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.groups, path)
}

func cloneGroups(m map[string]*discover.Group) map[string]*discover.Group {
	out := make(map[string]*discover.Group, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// countingResolver counts Resolve calls per path.
type countingResolver struct {
	fakeResolver
	mu    sync.Mutex
	calls map[string]int
}

func (r *countingResolver) Resolve(g *discover.Group) (watch.Container, error) {
	r.mu.Lock()
	r.calls[g.Path]++
	r.mu.Unlock()
	return r.fakeResolver.Resolve(g)
}

func (r *countingResolver) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[path]
}

// latestSource keeps the last targets it was given.
type latestSource struct {
	mu      sync.Mutex
	targets []watch.Target
	updates int
	feed    chan watch.Reading
}

func (s *latestSource) Name() string { return "fake" }
func (s *latestSource) Update(ts []watch.Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.targets, s.updates = slices.Clone(ts), s.updates+1
}
func (s *latestSource) ids() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for _, t := range s.targets {
		out = append(out, t.ID)
	}
	return out
}
func (s *latestSource) target(id uint64) (watch.Target, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.targets {
		if t.ID == id {
			return t, true
		}
	}
	return watch.Target{}, false
}
func (s *latestSource) Run(ctx context.Context, out chan<- watch.Reading) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-s.feed:
			select {
			case out <- r:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// forgetObserver records Forget calls.
type forgetObserver struct {
	NopObserver
	mu     sync.Mutex
	forgot []string
}

func (o *forgetObserver) Forget(t watch.Target) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.forgot = append(o.forgot, t.Namespace+"/"+t.Pod+"/"+t.Name)
}

func (o *forgetObserver) has(s string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Contains(o.forgot, s)
}

func waitFor(t *testing.T, what string, logs *syncBuf, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\n%s", what, logs.String())
		}
	}
}

const (
	podA = "/kubepods/burstable/pod11111111-1111-1111-1111-111111111111/"
	podB = "/kubepods/pod22222222-2222-2222-2222-222222222222/"
	podC = "/kubepods/besteffort/pod33333333-3333-3333-3333-333333333333/"
)

// TestNodeOptIn: in node mode only the containers that opted in are
// watched, signalled and notified; a container that did not opt in (no
// declaration, a pod annotation naming another container, OOMHERO=off
// over the pod's "watch: true") and a cgroup that is not of a kubelet layout
// are never resolved, read, signalled nor notified, though each crosses
// both thresholds. Pod annotations carry declaration values (the
// environment wins); logs, targets and Forget name namespace, pod and
// container.
func TestNodeOptIn(t *testing.T) {
	var mu sync.Mutex
	var posted []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p notify.Payload
		json.NewDecoder(r.Body).Decode(&p)
		mu.Lock()
		posted = append(posted, p.Container+"/"+p.Level)
		mu.Unlock()
	}))
	defer srv.Close()

	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	for _, pid := range []int{10, 11, 20, 30, 40, 50, 60, 70} {
		status(t, proc, pid, usr) // every process could take the signals
	}
	environ(t, proc, 10, "OOMHERO=on")                       // podA/app: opted in by env
	environ(t, proc, 11, "OOMHERO_WARNING=60")               // podA/worker: a declaration is opting in
	environ(t, proc, 20, "PATH=/bin", "OOMHERO_LAB=1")       // podA/quiet: nothing of oomhero's
	environ(t, proc, 30, "PATH=/bin")                        // podB/web: annotation watch: "web"
	environ(t, proc, 40, "PATH=/bin")                        // podB/cache: not named by the annotation
	environ(t, proc, 50, "OOMHERO=off")                      // podC/off: pod says true, container says off
	environ(t, proc, 60, "OOMHERO=on", "OOMHERO_WARNING=55") // not a kubelet cgroup
	environ(t, proc, 70, "OOMHERO_CRITICAL=95")              // podC/env: env wins over the annotation
	paths := map[string]struct {
		pid  int
		id   uint64
		name string
	}{
		podA + "aaaa": {10, 1, "app"}, podA + "aaab": {11, 2, "worker"}, podA + "bbbb": {20, 3, "quiet"},
		podB + "cccc": {30, 4, "web"}, podB + "dddd": {40, 5, "cache"},
		podC + "eeee": {50, 6, "off"}, "/system.slice/agent.service": {60, 7, "agent"}, podC + "ffff": {70, 8, "env"},
	}
	groups := map[string]*discover.Group{}
	res := &countingResolver{fakeResolver: fakeResolver{byPath: map[string]watch.Container{}}, calls: map[string]int{}}
	ident := &fakeIdentifier{m: map[string]Identity{}}
	for path, p := range paths {
		groups[path] = &discover.Group{Path: path, Version: watch.V1, Procs: []discover.Process{{PID: p.pid, Comm: "cmd" + fmt.Sprint(p.pid)}}}
		res.byPath[path] = watch.Container{ID: p.id, Name: "cmd" + fmt.Sprint(p.pid), Path: path, Limit: 1000, Version: watch.V1}
		if strings.HasPrefix(path, "/kubepods/") {
			ns, pod, ann := "shop", "web-1", map[string]string(nil)
			switch {
			case strings.HasPrefix(path, podB):
				ns, pod, ann = "blog", "blog-0", map[string]string{"oomhero.dev/watch": "web", "oomhero.dev/warning": "50"}
			case strings.HasPrefix(path, podC):
				ns, pod, ann = "ops", "tools", map[string]string{"oomhero.dev/watch": "true", "oomhero.dev/critical": "80", "oomhero.dev/warning": "70"}
			}
			ident.m[path] = Identity{Namespace: ns, Pod: pod, Container: p.name, PodUID: "uid-" + pod, ContainerID: path[len(path)-4:], Annotations: ann}
		}
	}
	cfg, err := config.ParseNode([]string{"--cooldown", "1h", "--rescan", "20ms", "--notify-url", srv.URL}, func(string) (string, bool) { return "", false }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Proc = proc
	scan := &swapScanner{groups: groups}
	src := &latestSource{feed: make(chan watch.Reading)}
	snd := &fakeSender{}
	obs := &forgetObserver{}
	logs := &syncBuf{}
	a := &Agent{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Scanner: scan,
		Resolver: res, Source: src, Sender: snd, Self: 99, Identifier: ident, Observer: obs}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	watched := []uint64{1, 2, 4, 8}
	waitFor(t, "the opted-in containers to be watched", logs, func() bool { return slices.Equal(src.ids(), watched) })
	for _, id := range watched {
		tg, _ := src.target(id)
		if tg.Namespace == "" || tg.Pod == "" || tg.PodUID != "uid-"+tg.Pod || !strings.HasPrefix(tg.Name, "") {
			t.Errorf("target %d not named by its pod: %+v", id, tg.Container)
		}
	}
	if tg, _ := src.target(4); tg.Warn != 500 || tg.Name != "web" || tg.Namespace != "blog" {
		t.Errorf("blog/blog-0/web: oomhero.dev/warning=50 not applied or misnamed: %+v warn %d", tg.Container, tg.Warn)
	}
	if tg, _ := src.target(8); tg.Warn != 700 || tg.Crit != 950 {
		t.Errorf("ops/tools/env: want warning 700 (annotation) and critical 950 (env wins over 80): %d %d", tg.Warn, tg.Crit)
	}
	if tg, _ := src.target(2); tg.Warn != 600 {
		t.Errorf("shop/web-1/worker: OOMHERO_WARNING=60 not applied: %d", tg.Warn)
	}
	// Every container, watched or not, crosses both thresholds.
	for _, p := range paths {
		src.feed <- watch.Reading{ID: p.id, Usage: 990, Limit: 1000, Time: time.Now()}
	}
	waitFor(t, "the signals of the watched containers", logs, func() bool {
		return strings.Count(logs.String(), `msg="signal sent"`) >= 2*len(watched)
	})
	waitFor(t, "the notifications of the watched containers", logs, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(posted) >= len(watched) // a critical may replace an unsent warning (newest wins)
	})
	time.Sleep(100 * time.Millisecond) // anything wrongly sent would come now
	var pids []int
	for _, s := range snd.take() {
		pids = append(pids, s.pid)
	}
	slices.Sort(pids)
	if want := []int{10, 10, 11, 11, 30, 30, 70, 70}; !slices.Equal(pids, want) {
		t.Errorf("signalled pids %v, want %v: a container that did not opt in was signalled", pids, want)
	}
	mu.Lock()
	for _, p := range posted {
		if c, _, _ := strings.Cut(p, "/"); !slices.Contains([]string{"app", "worker", "web", "env"}, c) {
			t.Errorf("notified %s: a container that did not opt in (all: %v)", p, posted)
		}
	}
	mu.Unlock()
	for _, path := range []string{podA + "bbbb", podB + "dddd", podC + "eeee", "/system.slice/agent.service"} {
		if n := res.count(path); n != 0 {
			t.Errorf("%s (not opted in) resolved %d times: its cgroup must not even be opened", path, n)
		}
	}
	out := logs.String()
	for _, w := range []string{
		`msg="signal sent" pid=30 command=cmd30 namespace=blog pod=blog-0 container=web memory_level=warning signal=SIGUSR1`,
		`msg="container watched" namespace=shop pod=web-1 container=app cgroup=` + podA + "aaaa",
		`msg="container not watched: not opted in" namespace=ops pod=tools container=off cgroup=` + podC + `eeee reason="OOMHERO=off in its environment"`,
		`msg="container not watched: not opted in" namespace=blog pod=blog-0 container=cache`,
		`msg="cgroup not of a kubelet layout: never watched in node mode" cgroup=/system.slice/agent.service`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s", w)
		}
	}
	if n := strings.Count(out, "cgroup=/system.slice/agent.service"); n != 1 {
		t.Errorf("the non-kubelet cgroup was logged %d times, want once", n)
	}

	// The pod's annotation stops naming web: it is no longer watched.
	ann := map[string]string{"oomhero.dev/watch": "cache"}
	ident.set(podB+"cccc", Identity{Namespace: "blog", Pod: "blog-0", Container: "web", PodUID: "uid-blog-0", Annotations: ann})
	ident.set(podB+"dddd", Identity{Namespace: "blog", Pod: "blog-0", Container: "cache", PodUID: "uid-blog-0", Annotations: ann})
	waitFor(t, "web to be unwatched and cache watched", logs, func() bool { return slices.Equal(src.ids(), []uint64{1, 2, 5, 8}) })
	if !obs.has("blog/blog-0/web") {
		t.Errorf("web's series not forgotten: %v", obs.forgot)
	}
	// A container that goes away is forgotten with its pod's names.
	scan.drop(podA + "aaab")
	waitFor(t, "worker to be forgotten", logs, func() bool { return obs.has("shop/web-1/worker") })
	waitFor(t, "worker to leave the targets", logs, func() bool { return slices.Equal(src.ids(), []uint64{1, 5, 8}) })
}

// TestNodeOptInAll: --opt-in all watches every kubelet container that did
// not opt out; the sidecar keeps watching containers that say OOMHERO=off
// (never signalling them), as before.
func TestNodeOptInAll(t *testing.T) {
	proc := t.TempDir()
	for _, pid := range []int{10, 20, 30} {
		status(t, proc, pid, 0)
	}
	environ(t, proc, 10, "PATH=/bin")
	environ(t, proc, 20, "OOMHERO=off")
	environ(t, proc, 30, "PATH=/bin")
	groups := map[string]*discover.Group{
		podA + "aaaa": {Path: podA + "aaaa", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "a"}}},
		podA + "bbbb": {Path: podA + "bbbb", Version: watch.V1, Procs: []discover.Process{{PID: 20, Comm: "b"}}},
		podB + "cccc": {Path: podB + "cccc", Version: watch.V1, Procs: []discover.Process{{PID: 30, Comm: "c"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		podA + "aaaa": {ID: 1, Path: podA + "aaaa", Limit: 1000, Version: watch.V1},
		podA + "bbbb": {ID: 2, Path: podA + "bbbb", Limit: 1000, Version: watch.V1},
		podB + "cccc": {ID: 3, Path: podB + "cccc", Limit: 1000, Version: watch.V1},
	}}
	// No API server (--kube off): identity from the path, named by command.
	ident := &fakeIdentifier{m: map[string]Identity{
		podA + "aaaa": {PodUID: "11111111-1111-1111-1111-111111111111", ContainerID: "aaaa"},
		podA + "bbbb": {PodUID: "11111111-1111-1111-1111-111111111111", ContainerID: "bbbb"},
		podB + "cccc": {PodUID: "22222222-2222-2222-2222-222222222222", ContainerID: "cccc"},
	}}
	for _, mode := range []string{"node", "sidecar"} {
		t.Run(mode, func(t *testing.T) {
			parse := config.ParseNode
			if mode == "sidecar" {
				parse = config.Parse
			}
			cfg, err := parse([]string{"--opt-in", "all", "--rescan", "20ms"}, func(string) (string, bool) { return "", false }, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Proc = proc
			src := &latestSource{feed: make(chan watch.Reading)}
			logs := &syncBuf{}
			a := &Agent{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Scanner: &swapScanner{groups: groups},
				Resolver: res, Source: src, Sender: &fakeSender{}, Self: 99, Identifier: ident, PodName: "p", PodNamespace: "ns"}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- a.Run(ctx) }()
			want := []uint64{1, 3}
			if mode == "sidecar" {
				want = []uint64{1, 2, 3}
			}
			waitFor(t, "targets", logs, func() bool { return slices.Equal(src.ids(), want) })
			tg, _ := src.target(3)
			if mode == "node" && (tg.Pod != "22222222-2222-2222-2222-222222222222" || tg.Namespace != "" || tg.Name != "c") {
				t.Errorf("node without API server: want pod = pod UID, container named by command: %+v", tg.Container)
			}
			if mode == "sidecar" && (tg.Pod != "p" || tg.Namespace != "ns") {
				t.Errorf("sidecar: want its own pod: %+v", tg.Container)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNodeSandboxNeverWatched: a pod's sandbox (pause) is never watched,
// even under --opt-in all and a pod annotation for all its containers; a
// container the API server does not name yet waits until it does; a bad
// oomhero.dev/watch is said at WARN (and ignored under --opt-in all).
func TestNodeSandboxNeverWatched(t *testing.T) {
	proc := t.TempDir()
	for _, pid := range []int{10, 20, 30, 40} {
		status(t, proc, pid, 0)
		environ(t, proc, pid, "PATH=/bin")
	}
	groups := map[string]*discover.Group{
		podA + "aaaa": {Path: podA + "aaaa", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "pause"}}},
		podA + "bbbb": {Path: podA + "bbbb", Version: watch.V1, Procs: []discover.Process{{PID: 20, Comm: "app"}}},
		podB + "cccc": {Path: podB + "cccc", Version: watch.V1, Procs: []discover.Process{{PID: 30, Comm: "pause"}}},
		podB + "dddd": {Path: podB + "dddd", Version: watch.V1, Procs: []discover.Process{{PID: 40, Comm: "db"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		podA + "aaaa": {ID: 1, Path: podA + "aaaa", Limit: 1000, Version: watch.V1},
		podA + "bbbb": {ID: 2, Path: podA + "bbbb", Limit: 1000, Version: watch.V1},
		podB + "cccc": {ID: 3, Path: podB + "cccc", Limit: 1000, Version: watch.V1},
	}}
	all := map[string]string{"oomhero.dev/watch": "true"}
	ident := &fakeIdentifier{m: map[string]Identity{
		podA + "aaaa": {Namespace: "shop", Pod: "web-1", PodUID: "u1", Annotations: all}, // sandbox: no container name
		podB + "dddd": {Namespace: "shop", Pod: "db-0", Container: "db", PodUID: "u3", Annotations: map[string]string{"oomhero.dev/watch": "Yes please"}},
		podA + "bbbb": {Namespace: "shop", Pod: "web-1", PodUID: "u1", Annotations: all}, // not reported yet
		podB + "cccc": {PodUID: "u2"},                                                    // no API server
	}}
	res.byPath[podB+"dddd"] = watch.Container{ID: 4, Path: podB + "dddd", Limit: 1000, Version: watch.V1}
	cfg, err := config.ParseNode([]string{"--opt-in", "all", "--rescan", "20ms"}, func(string) (string, bool) { return "", false }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Proc = proc
	src := &latestSource{feed: make(chan watch.Reading)}
	logs := &syncBuf{}
	a := &Agent{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Scanner: &swapScanner{groups: groups},
		Resolver: res, Source: src, Sender: &fakeSender{}, Self: 99, Identifier: ident}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	if ids := src.ids(); !slices.Equal(ids, []uint64{4}) {
		t.Fatalf("watched %v, want only db (4): a sandbox or an unnamed container was watched", ids)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="container opted in" namespace=shop pod=db-0 container=db`) ||
		!strings.Contains(logs.String(), "bad pod annotation ignored") {
		t.Errorf("a bad oomhero.dev/watch is not said at WARN:\n%s", logs.String())
	}
	ident.set(podA+"bbbb", Identity{Namespace: "shop", Pod: "web-1", Container: "app", PodUID: "u1", Annotations: all})
	waitFor(t, "app to be watched once named", logs, func() bool { return slices.Equal(src.ids(), []uint64{2, 4}) })
	if tg, _ := src.target(2); tg.Name != "app" || tg.Pod != "web-1" {
		t.Errorf("app: %+v", tg.Container)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDecideOptIn: the opt-in rules, one case each.
func TestDecideOptIn(t *testing.T) {
	env := func(vars ...string) (bool, declare.Declaration) {
		return true, declare.Parse([]byte(strings.Join(vars, "\x00")))
	}
	for _, tc := range []struct {
		name    string
		mode    string // --opt-in
		sidecar bool
		envOK   bool
		env     declare.Declaration
		ann     map[string]string
		in      bool
		why     string
	}{
		{name: "nothing", mode: "declared", in: false, why: "did not opt in"},
		{name: "OOMHERO=on", mode: "declared", in: true, why: "declared in its environment: OOMHERO"},
		{name: "a threshold", mode: "declared", in: true, why: "OOMHERO_WARNING"},
		{name: "a bad value still opts in", mode: "declared", in: true, why: "OOMHERO_TARGETS"},
		{name: "unknown OOMHERO_ name", mode: "declared", in: false, why: "did not opt in"},
		{name: "off beats the annotation", mode: "declared", ann: map[string]string{"oomhero.dev/watch": "true"}, in: false, why: "OOMHERO=off"},
		{name: "env beats watch false", mode: "declared", ann: map[string]string{"oomhero.dev/watch": "false"}, in: true, why: "declared in its environment"},
		{name: "annotation true", mode: "declared", ann: map[string]string{"oomhero.dev/watch": "true"}, in: true, why: "pod annotation oomhero.dev/watch"},
		{name: "annotation names another", mode: "declared", ann: map[string]string{"oomhero.dev/watch": "other"}, in: false, why: "did not opt in"},
		{name: "annotation bad", mode: "declared", ann: map[string]string{"oomhero.dev/watch": "YES"}, in: false, why: "bad pod annotation"},
		{name: "all", mode: "all", in: true, why: "--opt-in all"},
		{name: "all, watch false", mode: "all", ann: map[string]string{"oomhero.dev/watch": "false"}, in: false, why: `oomhero.dev/watch: "false"`},
		{name: "all, off", mode: "all", in: false, why: "OOMHERO=off"},
		{name: "all, environment unreadable", mode: "all", in: true, why: "--opt-in all"},
		{name: "sidecar declared ignores annotations", mode: "declared", sidecar: true, ann: map[string]string{"oomhero.dev/watch": "true"}, in: false, why: "did not opt in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			switch tc.name {
			case "OOMHERO=on":
				tc.envOK, tc.env = env("OOMHERO=on")
			case "a threshold":
				tc.envOK, tc.env = env("OOMHERO_WARNING=60")
			case "a bad value still opts in":
				tc.envOK, tc.env = env("OOMHERO_TARGETS=biggest")
			case "unknown OOMHERO_ name":
				tc.envOK, tc.env = env("OOMHERO_LAB=1", "OOMHEROIC=1")
			case "off beats the annotation", "all, off":
				tc.envOK, tc.env = env("OOMHERO=off")
			case "env beats watch false":
				tc.envOK, tc.env = env("OOMHERO=on")
			case "nothing", "annotation true", "annotation names another", "annotation bad", "all", "all, watch false", "sidecar declared ignores annotations":
				tc.envOK, tc.env = env("PATH=/bin")
			}
			parse := config.ParseNode
			if tc.sidecar {
				parse = config.Parse
			}
			cfg, err := parse([]string{"--opt-in", tc.mode}, func(string) (string, bool) { return "", false }, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			a := &Agent{Config: cfg}
			gt := &gate{read: true, envOK: tc.envOK, env: tc.env, id: Identity{Namespace: "ns", Pod: "p", Container: "app", Annotations: tc.ann}}
			in, why := a.decide(gt)
			if in != tc.in || !strings.Contains(why, tc.why) {
				t.Errorf("decide = %v %q, want %v %q", in, why, tc.in, tc.why)
			}
		})
	}
}

// TestNodeUnlistedNeverWatched: a kubelet-shaped cgroup whose pod UID the
// API server's complete list of this node's pods does not hold (a kind
// cluster, a second kubelet, a test on the host) is not watched even when
// it declares OOMHERO=on; listed later, it is.
func TestNodeUnlistedNeverWatched(t *testing.T) {
	proc := t.TempDir()
	status(t, proc, 10, 0)
	environ(t, proc, 10, "OOMHERO=on")
	groups := map[string]*discover.Group{
		podA + "aaaa": {Path: podA + "aaaa", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		podA + "aaaa": {ID: 1, Path: podA + "aaaa", Limit: 1000, Version: watch.V1},
	}}
	ident := &fakeIdentifier{m: map[string]Identity{podA + "aaaa": {PodUID: "u1", ContainerID: "aaaa", Unlisted: true}}}
	cfg, err := config.ParseNode([]string{"--rescan", "20ms"}, func(string) (string, bool) { return "", false }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Proc = proc
	src := &latestSource{feed: make(chan watch.Reading)}
	logs := &syncBuf{}
	a := &Agent{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Scanner: &swapScanner{groups: groups},
		Resolver: res, Source: src, Sender: &fakeSender{}, Self: 99, Identifier: ident}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	if ids := src.ids(); len(ids) != 0 {
		t.Fatalf("watched %v: a cgroup of no pod of this node was watched", ids)
	}
	if !strings.Contains(logs.String(), "no pod of this UID on this node") {
		t.Errorf("the reason is not logged:\n%s", logs.String())
	}
	ident.set(podA+"aaaa", Identity{Namespace: "shop", Pod: "web-1", Container: "app", PodUID: "u1", ContainerID: "aaaa"})
	waitFor(t, "app to be watched once listed", logs, func() bool { return slices.Equal(src.ids(), []uint64{1}) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
