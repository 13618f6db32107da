package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
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

// duplicateKey reads one JSON value token by token and returns the first key
// that appears twice in one object (nested objects each have their own
// keys), as "outer.inner" for a nested one. json.Unmarshal would keep the
// last value of a repeated key without a word; Elasticsearch and other
// strict consumers reject the whole document.
func duplicateKey(line []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var value func(path string) (string, error)
	value = func(path string) (string, error) {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return "", nil
		}
		switch d {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return "", err
				}
				k, ok := tok.(string)
				if !ok {
					return "", errors.New("object key is not a string")
				}
				if seen[k] {
					return path + k, nil
				}
				seen[k] = true
				if dup, err := value(path + k + "."); dup != "" || err != nil {
					return dup, err
				}
			}
		case '[':
			for dec.More() {
				if dup, err := value(path); dup != "" || err != nil {
					return dup, err
				}
			}
		}
		_, err = dec.Token() // the closing '}' or ']'
		return "", err
	}
	dup, err := value("")
	if dup == "" && err == nil && dec.More() {
		err = errors.New("more than one JSON value on the line")
	}
	return dup, err
}

func TestDuplicateKey(t *testing.T) {
	for line, want := range map[string]string{
		`{"time":"t","level":"INFO","msg":"signal sent","memory_level":"warning"}`: "",
		`{"time":"t","level":"INFO","msg":"signal sent","level":"warning"}`:        "level",
		`{"a":{"b":1,"c":[{"d":1,"d":2}]},"b":2}`:                                  "a.c.d",
		`{"a":{"b":1},"c":{"b":2}}`:                                                "",
	} {
		if got, err := duplicateKey([]byte(line)); err != nil || got != want {
			t.Errorf("duplicateKey(%s) = %q, %v; want %q", line, got, err, want)
		}
	}
}

// TestJSONLogLinesHaveNoDuplicateKeys: with the JSON handler, a signal line
// (and every other line an episode writes: samples, level changes, no
// target, notifications) is one JSON object with each key once. slog writes
// its own "level" (the severity); the memory level is "memory_level".
func TestJSONLogLinesHaveNoDuplicateKeys(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.ReadAll(r.Body) }))
	defer app.Close()
	proc := t.TempDir()
	status(t, proc, 10, uint64(1<<(unix.SIGUSR1-1)|1<<(unix.SIGUSR2-1)))
	environ(t, proc, 10, "OOMHERO_NOTIFY_URL="+app.URL+"/oomhero")
	status(t, proc, 20, 0) // no handler: nobody can take the signal
	environ(t, proc, 20, "PATH=/bin")
	groups := map[string]*discover.Group{
		"/app":  {Path: "/app", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "app"}}},
		"/bare": {Path: "/bare", Version: watch.V1, Procs: []discover.Process{{PID: 20, Comm: "bare"}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{
		"/app":  {ID: 1, Name: "app", Path: "/app", Limit: 1000, Version: watch.V1},
		"/bare": {ID: 2, Name: "bare", Path: "/bare", Limit: 1000, Version: watch.V1},
	}}
	logs := &syncBuf{}
	h := startAgent(t, []string{"--cooldown", "1h", "--log-level", "debug"}, proc, fakeScanner{groups}, res, func(a *Agent) {
		a.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		a.Notifier = notify.New(notify.Options{UserAgent: "oomhero/test", Timeout: 2 * time.Second})
		t.Cleanup(a.Notifier.Close)
	})
	<-h.src.updated
	h.feed(1, 800) // warning
	h.feed(1, 950) // critical
	h.feed(2, 950) // warning and critical, no target
	// Lines are waited for by message only: the check below is the one
	// that fails on a repeated key.
	want := map[string]int{
		`"msg":"signal sent"`: 2, `"msg":"notification sent"`: 1,
		`"msg":"no process can take the signal"`: 2, `"msg":"sample"`: 3,
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		out, missing := logs.String(), ""
		for w, n := range want {
			if strings.Count(out, w) < n {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %s:\n%s", missing, out)
		}
	}
	h.stop()
	signals := 0
	for _, line := range strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n") {
		dup, err := duplicateKey([]byte(line))
		if err != nil {
			t.Errorf("not one JSON object (%v): %s", err, line)
			continue
		}
		if dup != "" {
			t.Errorf("key %q twice: %s", dup, line)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["msg"] != "signal sent" {
			continue
		}
		signals++
		if rec["level"] != "INFO" || rec["container"] != "app" || (rec["memory_level"] != "warning" && rec["memory_level"] != "critical") {
			t.Errorf("signal line: level %v (want slog's INFO), container %v, memory_level %v: %s", rec["level"], rec["container"], rec["memory_level"], line)
		}
	}
	if signals != 2 {
		t.Errorf("%d signal lines, want 2 (warning, critical):\n%s", signals, logs.String())
	}
}
