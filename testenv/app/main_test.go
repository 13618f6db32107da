package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomhero/oomhero/testenv/app/applog"
)

// build compiles the test app once per test.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testapp")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// lines streams the app's events.
type lines struct {
	ch chan applog.Line
}

func start(t *testing.T, bin string, args ...string) (*exec.Cmd, *lines) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &lines{ch: make(chan applog.Line, 1024)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if e, ok := applog.ParseLine(sc.Text()); ok {
				l.ch <- e
			}
		}
		close(l.ch)
	}()
	go func() { cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, l
}

// next waits for the next event named ev (skipping others).
func (l *lines) next(t *testing.T, ev string) applog.Line {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-l.ch:
			if !ok {
				t.Fatalf("the app ended before event=%s", ev)
			}
			if e.Event == ev {
				return e
			}
		case <-timeout:
			t.Fatalf("no event=%s within 10 s", ev)
		}
	}
}

// sigCgt returns the SigCgt mask of pid.
func sigCgt(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigCgt:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no SigCgt for pid %d", pid)
	return 0
}

func caught(mask uint64, s syscall.Signal) bool { return mask&(1<<(uint(s)-1)) != 0 }

// TestSignalsAndChildren: the parent handles and logs SIGUSR1/SIGUSR2, its
// children show no handler and die of SIGUSR1, which the parent logs.
func TestSignalsAndChildren(t *testing.T) {
	bin := build(t)
	cmd, l := start(t, bin, "-mode", "idle", "-children", "2", "-sample-interval", "0")
	l.next(t, "start")
	c1, err := l.next(t, "child-start").Uint("pid")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := l.next(t, "child-start").Uint("pid")
	if err != nil {
		t.Fatal(err)
	}
	l.next(t, "go")
	parent := cmd.Process.Pid
	if m := sigCgt(t, parent); !caught(m, syscall.SIGUSR1) || !caught(m, syscall.SIGUSR2) {
		t.Errorf("parent SigCgt %x: SIGUSR1/SIGUSR2 not caught", m)
	}
	time.Sleep(100 * time.Millisecond) // the children reset their handlers first thing
	for _, c := range []uint64{c1, c2} {
		if m := sigCgt(t, int(c)); caught(m, syscall.SIGUSR1) || caught(m, syscall.SIGUSR2) {
			t.Errorf("child %d SigCgt %x: SIGUSR1/SIGUSR2 caught, want default action", c, m)
		}
	}
	syscall.Kill(parent, syscall.SIGUSR1)
	if e := l.next(t, "signal"); e.KV["signal"] != "SIGUSR1" || e.KV["usage"] == "" || e.KV["mono_ns"] == "" {
		t.Errorf("receipt = %v", e.KV)
	}
	syscall.Kill(int(c1), syscall.SIGUSR1)
	if e := l.next(t, "child-exit"); e.KV["pid"] != strconv.FormatUint(c1, 10) || e.KV["signal"] != "SIGUSR1" {
		t.Errorf("child exit = %v", e.KV)
	}
	syscall.Kill(parent, syscall.SIGTERM)
	if e := l.next(t, "exit"); e.KV["reason"] != "SIGTERM" {
		t.Errorf("exit = %v", e.KV)
	}
}

// TestLeakCap: a capped leak logs a sample per chunk and stops at the cap.
func TestLeakCap(t *testing.T) {
	bin := build(t)
	_, l := start(t, bin, "-mode", "leak", "-rate", "0", "-cap", "8", "-chunk", "256", "-sample-interval", "0")
	var samples int
	var last applog.Line
	timeout := time.After(10 * time.Second)
	for last.Event != "cap" {
		select {
		case e, ok := <-l.ch:
			if !ok {
				t.Fatal("the app ended before event=cap")
			}
			if e.Event == "sample" {
				samples++
			}
			last = e
		case <-timeout:
			t.Fatal("no event=cap within 10 s")
		}
	}
	if leaked, err := last.Uint("leaked"); err != nil || leaked != 8<<20 {
		t.Errorf("leaked at cap = %d, %v; want %d", leaked, err, 8<<20)
	}
	if samples != 32 {
		t.Errorf("%d samples, want 32 (one per 256 KiB chunk)", samples)
	}
}

// TestPacerBoundsDebt: a leak that fell behind its schedule catches up at
// once, by no more than maxLag's worth.
func TestPacerBoundsDebt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const chunk = 64 << 10
	p := pacer{rate: 1 << 20, start: t0} // 1 MiB/s: a chunk per 62.5 ms
	if d := p.wait(t0, 0, chunk); d != 62500*time.Microsecond {
		t.Fatalf("first chunk due in %s, want 62.5ms", d)
	}
	if d := p.wait(t0.Add(70*time.Millisecond), chunk, chunk); d != 55*time.Millisecond {
		t.Fatalf("on schedule: due in %s, want 55ms", d)
	}
	// Late sleeps are made up: 100 ms late is within maxLag.
	if d := p.wait(t0.Add(225*time.Millisecond), 2*chunk, chunk); d != -37500*time.Microsecond {
		t.Fatalf("100ms late: %s, want -37.5ms (leak now)", d)
	}
	// A second later with two chunks leaked: 14 chunks behind, of which
	// maxLag's 4 are kept.
	late := t0.Add(time.Second)
	if d := p.wait(late, 2*chunk, chunk); d != -maxLag {
		t.Fatalf("behind: %s, want -maxLag", d)
	}
	burst := 0
	for n := uint64(3); ; n++ {
		if d := p.wait(late, n*chunk, chunk); d > 0 {
			if d != 62500*time.Microsecond {
				t.Fatalf("after the catch-up: due in %s, want 62.5ms", d)
			}
			break
		}
		burst++
	}
	if burst != 4 {
		t.Fatalf("caught up with %d chunks at once, want 4 (maxLag 250ms at a chunk per 62.5ms)", burst)
	}
	if d := (&pacer{}).wait(late, 0, chunk); d != 0 {
		t.Fatalf("rate 0: wait %s", d)
	}
}
