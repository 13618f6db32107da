package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSignals sends the real signals to this process and checks the
// reactions: warning drops the cache, critical freezes it and writes a heap
// profile.
func TestSignals(t *testing.T) {
	dir := t.TempDir()
	cache := &Cache{}
	r := &Reactions{Cache: cache, ProfileDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := Watch(ctx, syscall.SIGUSR1, syscall.SIGUSR2, r)
	defer func() { cancel(); <-done }()

	for i := 0; i < 8; i++ {
		cache.Add(1 << 20)
	}
	if got := cache.Bytes(); got != 8<<20 {
		t.Fatalf("cache holds %d bytes, want %d", got, 8<<20)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the warning to drop the cache", func() bool { return cache.Bytes() == 0 })
	if cache.Frozen() {
		t.Errorf("a warning froze the cache")
	}
	cache.Add(1 << 20)

	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the critical signal to freeze the cache", func() bool { return cache.Frozen() && cache.Bytes() == 0 })
	cache.Add(1 << 20)
	if got := cache.Bytes(); got != 0 {
		t.Errorf("frozen cache grew to %d bytes", got)
	}
	var profiles []string
	waitFor(t, "a heap profile", func() bool {
		profiles, _ = filepath.Glob(filepath.Join(dir, "heap-*.pprof"))
		return len(profiles) == 1
	})
	if fi, err := os.Stat(profiles[0]); err != nil || fi.Size() == 0 {
		t.Errorf("heap profile %s empty or unreadable: %v", profiles[0], err)
	}
}

func TestSignalFromEnv(t *testing.T) {
	for _, tc := range []struct {
		val  string
		want syscall.Signal
		bad  bool
	}{
		{"", syscall.SIGUSR1, false},
		{"SIGTERM", syscall.SIGTERM, false},
		{"usr2", syscall.SIGUSR2, false},
		{"10", syscall.SIGUSR1, false},
		{"SIGNOPE", 0, true},
	} {
		t.Setenv("X_SIGNAL", tc.val)
		got, err := signalFromEnv("X_SIGNAL", syscall.SIGUSR1)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%q: got %v, %v; want %v (error %v)", tc.val, got, err, tc.want, tc.bad)
		}
	}
}
