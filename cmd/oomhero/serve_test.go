package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
)

func TestMain(m *testing.M) {
	lab.MaybeLeaker()
	os.Exit(m.Run())
}

// syncBuffer is a log sink tests read while oomhero writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLog waits until every string in want is in the log.
func waitLog(t *testing.T, logs *syncBuffer, d time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		missing := ""
		out := logs.String()
		for _, w := range want {
			if !strings.Contains(out, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within %v:\n%s", missing, d, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeWithThePortTaken runs oomhero for real (cgroupfs source, a real
// memory cgroup and a leaking process) while another process holds its
// HTTP port: oomhero keeps running, retries the port, and the leak still
// gets its warning and critical signals; the exec probe, through the health
// socket, sees it alive. Once the port is free it serves, /metrics counts
// the signals sent meanwhile, and it stays alive past the liveness limit.
func TestServeWithThePortTaken(t *testing.T) {
	c := labtest.Cgroup(t, 128*lab.MiB)
	l := labtest.Leaker(t, c)
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	addr := squatter.Addr().String()
	sock := filepath.Join(t.TempDir(), "health.sock")
	var out strings.Builder
	// SIGWINCH and SIGURG: ignored by default, so the leaker survives them
	// (--targets main sends them without a handler).
	cfg, err := config.Parse([]string{
		"--listen", addr, "--source", "cgroupfs", "--cgroup-match", filepath.Base(c.Dir.Rel),
		"--targets", "main", "--warning-signal", "SIGWINCH", "--critical-signal", "SIGURG",
		"--warning", "40", "--critical", "60", "--rescan", "100ms", "--events", "off",
		"--health-socket", sock,
	}, func(string) (string, bool) { return "", false }, &out)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- serve(ctx, cfg, log) }()

	waitLog(t, logs, 10*time.Second, "cannot serve /healthz, /readyz and /metrics; retrying, signals go on", "container watched")
	if err := l.Anon(90*lab.MiB, 0); err != nil { // 70% of the limit and more
		t.Fatal(err)
	}
	waitLog(t, logs, 10*time.Second, "signal sent", "memory_level=warning", "memory_level=critical", "signal=SIGURG")
	select {
	case err := <-done:
		t.Fatalf("serve returned %v while the port was taken", err)
	default:
	}
	for deadline := time.Now().Add(10 * time.Second); strings.Count(logs.String(), "cannot serve /healthz") < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the port was not tried again within 10 s:\n%s", logs)
		}
	}

	// The exec probe does not go through the port: it sees oomhero alive.
	var pout, perr strings.Builder
	if code := run([]string{"probe", sock}, nil, &pout, &perr); code != 0 {
		t.Errorf("oomhero probe %s while the port is taken: exit %d, %q %q", sock, code, pout.String(), perr.String())
	}
	if code := run([]string{"probe", sock, "/readyz"}, nil, &pout, &perr); code != 0 {
		t.Errorf("oomhero probe %s /readyz while the port is taken: exit %d, %q %q", sock, code, pout.String(), perr.String())
	}

	squatter.Close()
	waitLog(t, logs, 10*time.Second, "serving /healthz, /readyz and /metrics")
	if code, body := httpGet(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q", code, body)
	}
	_, metrics := httpGet(t, "http://"+addr+"/metrics")
	for _, want := range []string{`level="warning",namespace="",pod="",result="sent"`, `level="critical",namespace="",pod="",result="sent"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no signals_total series with %s", want)
		}
	}
	// Alive past the liveness limit: real scans and real polls keep
	// /healthz green (it would turn red 10 s after the last progress).
	limit := livenessLimit(cfg)
	for time.Since(started) < limit+time.Second {
		var pout, perr strings.Builder
		if code := run([]string{"probe", sock}, nil, &pout, &perr); code != 0 {
			t.Fatalf("oomhero probe %v after start: exit %d, %q", time.Since(started).Round(time.Millisecond), code, pout.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve = %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("health socket left behind: %v", err)
	}
}

func TestCheckListen(t *testing.T) {
	for addr, ok := range map[string]bool{
		":9090": true, "127.0.0.1:9090": true, "[::1]:0": true, "localhost:9090": true, ":": true,
		"9090": false, "host:http-alt": false, ":70000": false, "a:b:c": false,
	} {
		if err := checkListen(addr); (err == nil) != ok {
			t.Errorf("checkListen(%q) = %v, want ok %v", addr, err, ok)
		} else if err != nil && !strings.Contains(err.Error(), "--listen") {
			t.Errorf("checkListen(%q) = %v: does not name --listen", addr, err)
		}
	}
}

func TestProbeCommand(t *testing.T) {
	var out, errb strings.Builder
	for _, args := range [][]string{{"probe"}, {"probe", "--socket"}, {"probe", "s", "/metrics"}, {"probe", "a", "b", "c"}} {
		out.Reset()
		errb.Reset()
		if code := run(args, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "probe") {
			t.Errorf("%v: exit %d, stderr %q; want 2 with usage", args, code, errb.String())
		}
	}
	sock := filepath.Join(t.TempDir(), "none.sock")
	out.Reset()
	if code := run([]string{"probe", sock}, nil, &out, &errb); code != 1 || !strings.Contains(out.String(), sock) {
		t.Errorf("probe with nobody serving: exit %d, %q; want 1 naming the socket", code, out.String())
	}
}
