package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/notify"
	"github.com/oomhero/oomhero/internal/watch"
)

// notifyObserver records notification results.
type notifyObserver struct {
	NopObserver
	results chan string
}

func (o *notifyObserver) Notification(t watch.Target, l watch.Level, result string) {
	o.results <- fmt.Sprintf("%s/%s/%s", t.Name, l, result)
}

// TestNotifications: a container that declared a URL gets a POST per
// decision (signal "none" declared: no signal); a slow URL does not delay
// another container's signal; a non-loopback URL is refused and counted.
func TestNotifications(t *testing.T) {
	posts := make(chan notify.Payload, 10)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p notify.Payload
		json.NewDecoder(r.Body).Decode(&p)
		posts <- p
	}))
	defer app.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)

	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	for _, pid := range []int{10, 20, 30, 40} {
		status(t, proc, pid, usr)
	}
	environ(t, proc, 10, "OOMHERO_NOTIFY_URL="+app.URL+"/oomhero", "OOMHERO_WARNING_SIGNAL=none", "OOMHERO_CRITICAL_SIGNAL=none")
	environ(t, proc, 20, "OOMHERO_NOTIFY_URL="+slow.URL)
	environ(t, proc, 30, "PATH=/bin")
	environ(t, proc, 40, "OOMHERO_NOTIFY_URL=http://192.0.2.7:8080/x")
	groups := map[string]*discover.Group{}
	res := fakeResolver{byPath: map[string]watch.Container{}}
	for i, name := range []string{"java", "slow", "plain", "remote"} {
		path := "/" + name
		groups[path] = &discover.Group{Path: path, Version: watch.V1, Procs: []discover.Process{{PID: (i + 1) * 10, Comm: name}}}
		res.byPath[path] = watch.Container{ID: uint64(i + 1), Path: path, Limit: 1000, Version: watch.V1}
	}
	obs := &notifyObserver{results: make(chan string, 20)}
	h := startAgent(t, []string{"--cooldown", "1h"}, proc, fakeScanner{groups}, res, func(a *Agent) {
		a.Observer = obs
		a.Notifier = notify.New(notify.Options{UserAgent: "oomhero/test", Timeout: 500 * time.Millisecond})
		t.Cleanup(a.Notifier.Close)
	})
	<-h.src.updated
	h.feed(2, 800) // slow URL: its POST hangs
	h.feed(2, 950)
	start := time.Now()
	h.feed(3, 950) // another container's signals are not delayed
	h.waitLog(`msg="signal sent" pid=30 command=plain container=plain memory_level=critical`)
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("signals of another container took %v behind a slow URL", d)
	}
	h.feed(1, 800)
	p := <-posts
	if p.Container != "java" || p.Level != "warning" || p.PreviousLevel != "ok" || p.Percent != 80 || p.WorkingSetBytes != 800 || p.LimitBytes != 1000 || p.Time.IsZero() {
		t.Fatalf("payload %+v", p)
	}
	h.feed(1, 990)
	if p := <-posts; p.Level != "critical" || p.PreviousLevel != "warning" || p.Percent != 99 {
		t.Fatalf("payload %+v", p)
	}
	h.feed(4, 800)
	want := map[string]bool{"java/warning/sent": true, "java/critical/sent": true, "remote/warning/refused": true, "slow/warning/failed": true}
	deadline := time.After(10 * time.Second)
	for len(want) > 0 {
		select {
		case r := <-obs.results:
			if strings.HasPrefix(r, "slow/") && strings.HasSuffix(r, "/failed") {
				r = "slow/warning/failed" // warning, or critical when it replaced warning unsent
			}
			delete(want, r)
		case <-deadline:
			t.Fatalf("results missing: %v\n%s", want, h.logs.String())
		}
	}
	h.stop()
	for _, s := range h.snd.take() {
		if s.pid == 10 {
			t.Errorf("signal %v sent to a container that declared none", s)
		}
	}
	out := h.logs.String()
	for _, w := range []string{
		`msg="notification sent" container=java memory_level=warning url=` + app.URL + `/oomhero status=200`,
		`msg="notification refused" container=remote memory_level=warning url=http://192.0.2.7:8080/x error=`,
		`msg="notification failed" container=slow memory_level=`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %s\n%s", w, out)
		}
	}
}
