package events

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// apiServer is a fake API server: it answers access reviews, pod GETs and
// event POSTs, and keeps what it received.
type apiServer struct {
	*httptest.Server
	allowed   bool
	postCode  int
	uid       string
	mu        sync.Mutex
	events    []map[string]any
	tokens    []string
	reviewNS  string
	podGets   int
	gotEvents chan struct{}
	// hangPosts and hangReview, when not nil, make event POSTs (access
	// reviews) hang until they are closed or the client gives up.
	hangPosts, hangReview chan struct{}
	hung                  chan struct{} // one send per request that hangs
}

func (a *apiServer) hang(r *http.Request, c chan struct{}) {
	select {
	case a.hung <- struct{}{}:
	default:
	}
	select {
	case <-c:
	case <-r.Context().Done():
	}
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	a := &apiServer{allowed: true, postCode: http.StatusCreated, uid: "0d1c9d2e-uid", gotEvents: make(chan struct{}, 100), hung: make(chan struct{}, 100)}
	a.Server = httptest.NewTLSServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

func (a *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.tokens = append(a.tokens, r.Header.Get("Authorization"))
	a.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
		if a.hangReview != nil {
			a.hang(r, a.hangReview)
			return
		}
		var rev struct {
			Spec struct {
				ResourceAttributes map[string]string `json:"resourceAttributes"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(body, &rev); err != nil || rev.Spec.ResourceAttributes["verb"] != "create" || rev.Spec.ResourceAttributes["resource"] != "events" {
			http.Error(w, `{"message":"bad review"}`, http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.reviewNS = rev.Spec.ResourceAttributes["namespace"]
		a.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"status": map[string]any{"allowed": a.allowed, "reason": "test policy"}})
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/shop/pods/bloat-7f9":
		a.mu.Lock()
		a.podGets++
		a.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"metadata": map[string]any{"uid": a.uid}})
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/") && strings.HasSuffix(r.URL.Path, "/events"):
		if a.hangPosts != nil {
			a.hang(r, a.hangPosts)
			return
		}
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want json", http.StatusUnsupportedMediaType)
			return
		}
		if a.postCode != http.StatusCreated {
			w.WriteHeader(a.postCode)
			w.Write([]byte(`{"kind":"Status","message":"events is forbidden"}`))
			return
		}
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ev["postedTo"] = r.URL.Path
		a.mu.Lock()
		a.events = append(a.events, ev)
		a.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
		a.gotEvents <- struct{}{}
	default:
		http.Error(w, `{"message":"not found"}`, http.StatusNotFound)
	}
}

// saDir writes a service account directory whose CA is the fake server's.
func saDir(t *testing.T, a *apiServer) string {
	t.Helper()
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Certificate().Raw})
	for name, data := range map[string][]byte{"ca.crt": ca, "token": []byte("tok-1\n"), "namespace": []byte("shop")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func env(a *apiServer, extra map[string]string) func(string) string {
	host, port, _ := strings.Cut(strings.TrimPrefix(a.URL, "https://"), ":")
	m := map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, "POD_NAME": "bloat-7f9", "POD_UID": "uid-from-env", "NODE_NAME": "node1"}
	for k, v := range extra {
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func start(t *testing.T, cfg Config) (*Recorder, *bytes.Buffer, chan error) {
	t.Helper()
	var logs bytes.Buffer
	var mu sync.Mutex
	cfg.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	r := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r, &logs, done
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func waitEvents(t *testing.T, a *apiServer, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-a.gotEvents:
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d events, want %d", i, n)
		}
	}
}

func TestPostsEventsOnThePod(t *testing.T) {
	a := newAPIServer(t)
	dir := saDir(t, a)
	cfg, err := ConfigFromEnv(env(a, nil), dir)
	if err != nil {
		t.Fatalf("ConfigFromEnv: %v", err)
	}
	if cfg.Namespace != "shop" {
		t.Errorf("namespace = %q, want the service account's %q", cfg.Namespace, "shop")
	}
	r, logs, _ := start(t, cfg)
	r.Emit(Warning, "app", "memory at 76% of limit")
	r.Emit(Critical, "app", "memory at 91% of limit")
	// The token rotates: the next request must carry the new one.
	waitEvents(t, a, 2)
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("tok-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.Emit(OOMKill, "app", "OOM kill at 100% of limit")
	waitEvents(t, a, 1)

	for deadline := time.Now().Add(5 * time.Second); r.Posted() < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !r.Enabled() || r.Posted() != 3 {
		t.Errorf("Enabled = %v, Posted = %d, want true, 3", r.Enabled(), r.Posted())
	}
	if !strings.Contains(logs.String(), "kubernetes events on") {
		t.Errorf("no 'kubernetes events on' log line:\n%s", logs)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reviewNS != "shop" {
		t.Errorf("access review namespace = %q", a.reviewNS)
	}
	if a.podGets != 0 {
		t.Errorf("pod fetched %d times although POD_UID was set", a.podGets)
	}
	if first, last := a.tokens[0], a.tokens[len(a.tokens)-1]; first != "Bearer tok-1" || last != "Bearer tok-2" {
		t.Errorf("tokens sent %q ... %q, want Bearer tok-1 ... Bearer tok-2", first, last)
	}
	reasons := []string{"MemoryWarning", "MemoryCritical", "OOMKilled"}
	for i, ev := range a.events {
		io := ev["involvedObject"].(map[string]any)
		if io["kind"] != "Pod" || io["name"] != "bloat-7f9" || io["namespace"] != "shop" || io["uid"] != "uid-from-env" {
			t.Errorf("event %d involvedObject = %v", i, io)
		}
		if ev["reason"] != reasons[i] || ev["type"] != "Warning" {
			t.Errorf("event %d reason/type = %v/%v, want %s/Warning", i, ev["reason"], ev["type"], reasons[i])
		}
		if msg, _ := ev["message"].(string); !strings.HasPrefix(msg, "container app: ") {
			t.Errorf("event %d message = %q", i, msg)
		}
		if md := ev["metadata"].(map[string]any); md["namespace"] != "shop" || !strings.HasPrefix(md["name"].(string), "bloat-7f9.") {
			t.Errorf("event %d metadata = %v", i, md)
		}
		if src := ev["source"].(map[string]any); src["component"] != "oomhero" || src["host"] != "node1" {
			t.Errorf("event %d source = %v", i, src)
		}
		if _, err := time.Parse(time.RFC3339, ev["firstTimestamp"].(string)); err != nil {
			t.Errorf("event %d firstTimestamp: %v", i, err)
		}
	}
}

func TestRateLimited(t *testing.T) {
	a := newAPIServer(t)
	cfg, err := ConfigFromEnv(env(a, nil), saDir(t, a))
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg.Now = clk.Now
	cfg.MinInterval = time.Minute
	cfg.Burst = 3
	cfg.Every = 10 * time.Minute
	r, _, _ := start(t, cfg)

	for i := 0; i < 5; i++ { // one posted, four suppressed by MinInterval
		r.Emit(Critical, "app", "critical")
		clk.Add(time.Second)
	}
	r.Emit(Warning, "app", "warning") // another key: posted
	waitEvents(t, a, 2)
	clk.Add(time.Minute)
	r.Emit(Critical, "app", "critical again") // the bucket's last whole token
	waitEvents(t, a, 1)
	// The bucket is now empty: a new key is suppressed too.
	r.Emit(Warning, "other", "warning")
	clk.Add(10 * time.Minute)
	r.Emit(Warning, "other", "warning later")
	waitEvents(t, a, 1)

	a.mu.Lock()
	defer a.mu.Unlock()
	var msgs []string
	for _, ev := range a.events {
		msgs = append(msgs, ev["message"].(string))
	}
	want := []string{
		"container app: critical",
		"container app: warning",
		"container app: critical again (4 similar events suppressed)",
		"container other: warning later (1 similar event suppressed)",
	}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("messages:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
}

func TestOffWhenNotAllowed(t *testing.T) {
	a := newAPIServer(t)
	a.allowed = false
	cfg, err := ConfigFromEnv(env(a, nil), saDir(t, a))
	if err != nil {
		t.Fatal(err)
	}
	r, logs, done := start(t, cfg)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept running although events are not allowed")
	}
	r.Emit(Warning, "app", "dropped")
	if r.Enabled() {
		t.Error("Enabled = true")
	}
	if n := strings.Count(logs.String(), "kubernetes events off"); n != 1 {
		t.Errorf("'kubernetes events off' logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "may not create events in namespace shop") {
		t.Errorf("log does not say why:\n%s", logs)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.events) != 0 {
		t.Errorf("%d events posted while off", len(a.events))
	}
}

func TestOffWhenPostForbidden(t *testing.T) {
	a := newAPIServer(t)
	a.postCode = http.StatusForbidden
	cfg, err := ConfigFromEnv(env(a, nil), saDir(t, a))
	if err != nil {
		t.Fatal(err)
	}
	r, logs, done := start(t, cfg)
	r.Emit(Warning, "app", "refused")
	select {
	case <-done:
		done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept running after a 403")
	}
	if r.Enabled() || !strings.Contains(logs.String(), "events is forbidden") {
		t.Errorf("Enabled = %v, logs:\n%s", r.Enabled(), logs)
	}
}

func TestLooksUpPodUID(t *testing.T) {
	a := newAPIServer(t)
	cfg, err := ConfigFromEnv(env(a, map[string]string{"POD_UID": ""}), saDir(t, a))
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := start(t, cfg)
	r.Emit(Warning, "app", "w")
	waitEvents(t, a, 1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if uid := a.events[0]["involvedObject"].(map[string]any)["uid"]; uid != a.uid || a.podGets != 1 {
		t.Errorf("uid = %v after %d pod GETs, want %q after 1", uid, a.podGets, a.uid)
	}
}

func TestConfigFromEnvOutsideCluster(t *testing.T) {
	a := newAPIServer(t)
	dir := saDir(t, a)
	cases := map[string]struct {
		env func(string) string
		dir string
	}{
		"no service env": {env: func(string) string { return "" }, dir: dir},
		"no pod name":    {env: env(a, map[string]string{"POD_NAME": ""}), dir: dir},
		"no token":       {env: env(a, nil), dir: t.TempDir()},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ConfigFromEnv(c.env, c.dir)
			if !errors.Is(err, ErrNotInCluster) {
				t.Errorf("err = %v, want ErrNotInCluster", err)
			}
		})
	}
}

func TestEmitNeverBlocks(t *testing.T) {
	r := New(Config{Pod: "p", Namespace: "n"}) // Run never started
	for i := 0; i < 1000; i++ {
		r.Emit(Warning, "app", "x")
	}
	if r.Dropped() != 1000-uint64(cap(r.queue)) {
		t.Errorf("Dropped = %d, want %d", r.Dropped(), 1000-cap(r.queue))
	}
}

// emitAll emits n events of distinct containers and returns the longest
// time one Emit took.
func emitAll(r *Recorder, n int) time.Duration {
	var worst time.Duration
	for i := range n {
		start := time.Now()
		r.Emit(Critical, fmt.Sprintf("app-%d", i), "memory at 91% of limit")
		worst = max(worst, time.Since(start))
	}
	return worst
}

// TestHangingAPIServerNeverBlocksEmit: the API server accepts the access
// review, then never answers an event POST. Emit (called from the agent's
// loop) must return at once every time; what cannot be queued is dropped
// and counted, and what timed out is counted as failed.
func TestHangingAPIServerNeverBlocksEmit(t *testing.T) {
	a := newAPIServer(t)
	a.hangPosts = make(chan struct{})
	t.Cleanup(func() { close(a.hangPosts) }) // before the server's Close
	cfg, err := ConfigFromEnv(env(a, nil), saDir(t, a))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Burst = 1000
	cfg.Client = a.Client()
	// Long enough that an Emit waiting on a request would show (the bound
	// below is 1 s: generous on a loaded machine), short enough to see
	// requests fail within the test.
	cfg.Client.Timeout = 1500 * time.Millisecond
	r, logs, _ := start(t, cfg)
	for deadline := time.Now().Add(10 * time.Second); !r.Enabled(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("recorder not on after 10 s")
		}
	}
	r.Emit(Warning, "first", "w")
	select {
	case <-a.hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the first event never reached the server")
	}
	const n = 1000
	start := time.Now()
	worst := emitAll(r, n)
	total := time.Since(start)
	t.Logf("%d Emit calls against a hanging API server: %v in all, %v the slowest", n, total, worst)
	if worst >= time.Second {
		t.Errorf("one Emit took %v: Emit waits on the API server", worst)
	}
	// The first event is in flight, cap(queue) wait, the rest are dropped.
	if d := r.Dropped(); d < n-uint64(cap(r.queue)) {
		t.Errorf("Dropped = %d, want at least %d", d, n-cap(r.queue))
	}
	for deadline := time.Now().Add(20 * time.Second); r.Failed() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Failed = %d after 20 s, want the timed-out posts counted", r.Failed())
		}
	}
	if r.Posted() != 0 || !r.Enabled() {
		t.Errorf("Posted = %d, Enabled = %v; want 0, true (a slow server does not turn events off)", r.Posted(), r.Enabled())
	}
	if c := strings.Count(logs.String(), "kubernetes event not posted"); c != 1 {
		t.Errorf("%d 'not posted' log lines, want 1 (one a minute):\n%s", c, logs)
	}
}

// TestHangingAccessReviewNeverBlocksEmit: the API server hangs from the
// first request on; Emit still returns at once and counts what it drops.
func TestHangingAccessReviewNeverBlocksEmit(t *testing.T) {
	a := newAPIServer(t)
	a.hangReview = make(chan struct{})
	t.Cleanup(func() { close(a.hangReview) })
	cfg, err := ConfigFromEnv(env(a, nil), saDir(t, a))
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := start(t, cfg)
	select {
	case <-a.hung:
	case <-time.After(10 * time.Second):
		t.Fatal("the access review never reached the server")
	}
	if worst := emitAll(r, 500); worst >= time.Second {
		t.Errorf("one Emit took %v while the access review hangs", worst)
	}
	if d := r.Dropped(); d != 500-uint64(cap(r.queue)) {
		t.Errorf("Dropped = %d, want %d", d, 500-cap(r.queue))
	}
}

// TestHostileNamesInEvents: a container named with invalid UTF-8 and a
// message with a newline arrive cleaned.
func TestHostileNamesInEvents(t *testing.T) {
	a := newAPIServer(t)
	cfg, err := ConfigFromEnv(env(a, nil), saDir(t, a))
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := start(t, cfg)
	r.Emit(OOMKill, "\xff\xfex", "killed\nReason: forged \x1b[31m")
	waitEvents(t, a, 1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if msg := a.events[0]["message"]; msg != "container ??x: killed?Reason: forged ?[31m" {
		t.Errorf("message = %q", msg)
	}
}

func TestCleanText(t *testing.T) {
	long := strings.Repeat("ab\n", 1000)
	got := cleanText(long, MaxMessage)
	if len(got) != MaxMessage+3 || !strings.HasSuffix(got, "...") || strings.Contains(got, "\n") || !utf8.ValidString(got) {
		t.Errorf("cleanText(long) = %d bytes %q...", len(got), got[:20])
	}
	if got := cleanText("ok \xff", MaxMessage); got != "ok ?" {
		t.Errorf("cleanText = %q", got)
	}
	mid := strings.Repeat("é", 300) // 600 bytes: longer than a name, kept whole
	if got := cleanText(mid, MaxMessage); got != mid {
		t.Errorf("cleanText cut a %d-byte message", len(mid))
	}
}

// TestNodeEventsOnTheContainersPod: the node agent posts each event on the
// watched container's own pod, in its namespace (kubectl describe pod shows
// it there), after checking it may create events in every namespace; an
// event without a pod goes to the agent's own pod.
func TestNodeEventsOnTheContainersPod(t *testing.T) {
	a := newAPIServer(t)
	cfg, err := ConfigFromEnv(env(a, nil), saDir(t, a))
	if err != nil {
		t.Fatal(err)
	}
	cfg.AnyNamespace = true
	r, _, _ := start(t, cfg)
	r.EmitFor(Critical, Pod{Namespace: "blog", Name: "blog-0", UID: "uid-blog-0"}, "web", "memory at 91% of limit")
	r.EmitFor(Critical, Pod{Namespace: "news", Name: "blog-0", UID: "uid-news"}, "web", "memory at 92% of limit") // same names, another pod: not rate-limited together
	r.EmitFor(Warning, Pod{Name: "no-namespace"}, "x", "memory at 80% of limit")
	waitEvents(t, a, 3)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reviewNS != "" {
		t.Errorf("access review namespace = %q, want \"\" (all namespaces)", a.reviewNS)
	}
	want := []struct{ path, ns, name, uid string }{
		{"/api/v1/namespaces/blog/events", "blog", "blog-0", "uid-blog-0"},
		{"/api/v1/namespaces/news/events", "news", "blog-0", "uid-news"},
		{"/api/v1/namespaces/shop/events", "shop", "bloat-7f9", "uid-from-env"},
	}
	for i, ev := range a.events {
		w := want[i]
		io := ev["involvedObject"].(map[string]any)
		md := ev["metadata"].(map[string]any)
		if ev["postedTo"] != w.path || io["namespace"] != w.ns || io["name"] != w.name || io["uid"] != w.uid ||
			md["namespace"] != w.ns || !strings.HasPrefix(md["name"].(string), w.name+".") {
			t.Errorf("event %d: posted to %v, involvedObject %v, metadata %v; want %+v", i, ev["postedTo"], io, md, w)
		}
	}
}
