package metrics

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHealthSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "health.sock")
	// A socket left by an earlier run is replaced.
	m := New(Options{NoProcessCollectors: true})
	src := &age{}
	m.Watch("source", src, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.ServeUnix(ctx, sock) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if err := Probe(sock, "/healthz", time.Second); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("probe: %v", err)
		}
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", fi.Mode(), err)
	}
	if err := Probe(sock, "/readyz", time.Second); err == nil || !strings.Contains(err.Error(), "first scan") {
		t.Errorf("probe /readyz before a scan = %v, want the reason", err)
	}
	src.d.Store(int64(time.Minute))
	if err := Probe(sock, "/healthz", time.Second); err == nil || !strings.Contains(err.Error(), "source made no progress for 1m0s") {
		t.Errorf("probe /healthz of a stalled source = %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeUnix = %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	if err := Probe(sock, "/healthz", time.Second); err == nil || !strings.Contains(err.Error(), sock) {
		t.Errorf("probe with nobody serving = %v, want an error naming the socket", err)
	}

	// A stale socket file from a killed run is replaced; a regular file is not.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	m2 := New(Options{NoProcessCollectors: true})
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	done2 := make(chan error, 1)
	go func() { done2 <- m2.ServeUnix(ctx2, sock) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if err := Probe(sock, "/healthz", time.Second); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("probe after a stale socket: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m2.ServeUnix(ctx2, filepath.Join(dir, "file")); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("ServeUnix over a regular file = %v", err)
	}
}
