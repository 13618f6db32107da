package notify

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func payload(c, level string) Payload {
	return Payload{Container: c, Level: level, PreviousLevel: "ok", Percent: 65.3, WorkingSetBytes: 174063616,
		UsageBytes: 175112192, LimitBytes: 268435456, Time: time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)}
}

func next(t *testing.T, n *Notifier) Result {
	t.Helper()
	select {
	case r := <-n.Results():
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no result")
	}
	return Result{}
}

func TestCheck(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8080/oomhero", "http://localhost/x", "http://LOCALHOST:1", "http://[::1]:80/", "http://127.3.4.5/", "http://[::ffff:127.0.0.1]/"} {
		if err := Check(ok, false); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1/", "http://example.com/", "https://127.0.0.1/", "ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "http:///x", "127.0.0.1:80", "http://localhost.example.com/", "http://0.0.0.0/"} {
		if err := Check(bad, false); !errors.Is(err, ErrRefused) {
			t.Errorf("%s accepted: %v", bad, err)
		}
	}
	if err := Check("https://collector.example.com/x", true); err != nil {
		t.Error(err)
	}
	if err := Check("file:///etc/passwd", true); err == nil {
		t.Error("file URL accepted with remote")
	}
}

func TestPostsThePayload(t *testing.T) {
	got := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	n := New(Options{UserAgent: "oomhero/test"})
	defer n.Close()
	p := payload("java", "warning")
	some, full := 1.5, 0.25
	p.PressureSomeAvg10, p.PressureFullAvg10 = &some, &full
	n.Notify(7, srv.URL+"/oomhero", p)
	r := next(t, n)
	if r.Outcome != Sent || r.Status != 204 || r.Key != 7 || r.Container != "java" || r.Level != "warning" {
		t.Fatalf("%+v", r)
	}
	req := <-got
	if req.Method != "POST" || req.URL.Path != "/oomhero" || req.Header.Get("Content-Type") != "application/json" || req.Header.Get("User-Agent") != "oomhero/test" {
		t.Fatalf("request %s %s %v", req.Method, req.URL, req.Header)
	}
	want := `{"container":"java","level":"warning","previous_level":"ok","percent":65.3,"working_set_bytes":174063616,"usage_bytes":175112192,"limit_bytes":268435456,"pressure_some_avg10":1.5,"pressure_full_avg10":0.25,"time":"2026-11-30T12:00:00.123456789Z"}`
	if b := <-bodies; string(b) != want {
		t.Fatalf("body\n%s\nwant\n%s", b, want)
	}
	// Without PSI the pressure fields are left out.
	n.Notify(7, srv.URL+"/oomhero", payload("java", "critical"))
	next(t, n)
	<-got
	var m map[string]any
	json.Unmarshal(<-bodies, &m)
	if _, ok := m["pressure_some_avg10"]; ok {
		t.Fatalf("pressure present without PSI: %v", m)
	}
}

func TestFailuresAndRefusals(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://10.1.2.3/", http.StatusFound)
			return
		}
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer srv.Close()
	n := New(Options{})
	defer n.Close()
	n.Notify(1, srv.URL+"/x", payload("a", "warning"))
	if r := next(t, n); r.Outcome != Failed || r.Status != 500 || r.Err == nil {
		t.Fatalf("500: %+v", r)
	}
	n.Notify(1, srv.URL+"/redirect", payload("a", "warning"))
	if r := next(t, n); r.Outcome != Failed || r.Status != 302 {
		t.Fatalf("redirect followed: %+v", r)
	}
	n.Notify(2, "http://10.1.2.3:8080/x", payload("b", "warning"))
	if r := next(t, n); r.Outcome != Refused || !errors.Is(r.Err, ErrRefused) || !strings.Contains(r.Err.Error(), "--notify-remote") {
		t.Fatalf("non-loopback: %+v", r)
	}
	// Nobody listening: failed, quickly.
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	n.Notify(3, url, payload("c", "warning"))
	if r := next(t, n); r.Outcome != Failed {
		t.Fatalf("closed port: %+v", r)
	}
}

func TestDialerRefusesNonLoopback(t *testing.T) {
	// A "localhost" that resolves elsewhere cannot happen in a test, so
	// call the transport with a non-loopback literal directly.
	n := New(Options{})
	defer n.Close()
	r := n.post(t.Context(), &job{url: "http://192.0.2.1:9/x", p: payload("x", "warning")})
	if r.Outcome != Refused {
		t.Fatalf("%+v", r)
	}
}

func TestDryRun(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	n := New(Options{DryRun: true})
	defer n.Close()
	n.Notify(1, srv.URL, payload("a", "warning"))
	if r := next(t, n); r.Outcome != DryRun || hits.Load() != 0 {
		t.Fatalf("%+v hits %d", r, hits.Load())
	}
}

// TestSlowServerDelaysNothingElse: a server that never answers holds only
// its own container's worker: Notify returns at once, another container's
// notification is delivered meanwhile, the slow one fails at the timeout,
// and newer notifications replace older unsent ones.
func TestSlowServerDelaysNothingElse(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // then the server notices the client going away
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	var fastHits atomic.Int32
	var lastLevel atomic.Value
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p Payload
		json.NewDecoder(r.Body).Decode(&p)
		lastLevel.Store(p.Level)
		fastHits.Add(1)
	}))
	defer fast.Close()
	n := New(Options{Timeout: 300 * time.Millisecond})
	defer n.Close()
	start := time.Now()
	for i := 0; i < 100; i++ {
		n.Notify(1, slow.URL, payload("slow", "warning"))
	}
	n.Notify(1, slow.URL, payload("slow", "critical"))
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Notify blocked %v", d)
	}
	n.Notify(2, fast.URL, payload("fast", "warning"))
	r := next(t, n)
	if r.Container != "fast" || r.Outcome != Sent {
		t.Fatalf("first result %+v, want the fast container's", r)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("fast container waited %v behind the slow one", d)
	}
	// The slow one: each POST times out (failed); of the 101 queued, at
	// most the first and the newest (critical) are tried, the ones in
	// between were replaced unsent.
	tried, superseded := 0, 0
	for {
		r := next(t, n)
		if r.Container != "slow" || r.Outcome != Failed {
			t.Fatalf("slow: %+v", r)
		}
		if took := r.Took; took < 250*time.Millisecond || took > 2*time.Second {
			t.Errorf("timeout took %v, want ~300ms", took)
		}
		tried, superseded = tried+1, superseded+r.Superseded
		if r.Level == "critical" {
			break
		}
	}
	if tried > 2 || tried+superseded != 101 {
		t.Fatalf("tried %d, superseded %d, want at most 2 tried and 101 in all", tried, superseded)
	}
}

func TestForgetCancelsInFlight(t *testing.T) {
	started := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		started <- struct{}{}
		<-r.Context().Done()
	}))
	defer srv.Close()
	n := New(Options{Timeout: time.Minute})
	n.Notify(1, srv.URL, payload("a", "warning"))
	<-started
	t0 := time.Now()
	n.Forget(1)
	if r := next(t, n); r.Outcome != Failed || time.Since(t0) > 5*time.Second {
		t.Fatalf("%+v", r)
	}
	done := make(chan struct{})
	go func() { n.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
}
