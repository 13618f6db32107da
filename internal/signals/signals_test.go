package signals

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCaughtSeesOwnHandler(t *testing.T) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, unix.SIGUSR1)
	defer signal.Stop(c)
	mask, err := Caught("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !Handles(mask, unix.SIGUSR1) {
		t.Fatalf("SigCgt %x lacks SIGUSR1", mask)
	}
	if Handles(mask, unix.SIGKILL) {
		t.Fatalf("SigCgt %x has SIGKILL", mask)
	}
}

func TestSendReachesProcessAndRefusesRecycledPID(t *testing.T) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, unix.SIGUSR2)
	defer signal.Stop(c)
	start, err := StartTime("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	s := PidfdSender{Proc: "/proc"}
	if err := s.Send(os.Getpid(), start, unix.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatal("signal not received")
	}
	// A wrong start time stands for a recycled PID: nothing is sent.
	if err := s.Send(os.Getpid(), start+1, unix.SIGUSR2); !errors.Is(err, ErrGone) {
		t.Fatalf("want ErrGone, got %v", err)
	}
	select {
	case <-c:
		t.Fatal("signal sent to a process with another start time")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestSendToExitedProcessIsGone(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no /bin/true: %v", err)
	}
	err := PidfdSender{Proc: "/proc"}.Send(cmd.Process.Pid, 1, unix.SIGUSR1)
	if !errors.Is(err, ErrGone) {
		t.Fatalf("want ErrGone, got %v", err)
	}
}

func TestStartTimeCommWithParens(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(dir+"/42", 0o755)
	stat := "42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10 18446744073709551615\n"
	os.WriteFile(dir+"/42/stat", []byte(stat), 0o644)
	n, err := StartTime(dir, 42)
	if err != nil || n != 123456 {
		t.Fatalf("got %d, %v", n, err)
	}
}

// TestSendExpectedChecksHandlerAndName: a process without a handler for
// the signal (sleep) is not sent it when a handler is expected, nor one
// whose command is not the one expected; it is still alive after both.
func TestSendExpectedChecksHandlerAndName(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep: %v", err)
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	var h Handlers
	var start uint64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var err error
		h, err = ReadHandlers("/proc", pid)
		start, _ = StartTime("/proc", pid)
		if err == nil && h.Name == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep not exec'ed after 5 s: %+v, %v", h, err)
		}
	}
	if Handles(h.Caught, unix.SIGUSR1) {
		t.Skipf("sleep has a SIGUSR1 handler here (SigCgt %x)", h.Caught)
	}
	s := PidfdSender{Proc: "/proc"}
	if err := s.SendExpected(pid, Expect{Start: start, Name: "sleep", Handler: true}, unix.SIGUSR1); !errors.Is(err, ErrNoHandler) {
		t.Fatalf("no handler: want ErrNoHandler, got %v", err)
	}
	if err := s.SendExpected(pid, Expect{Start: start, Name: "java"}, unix.SIGUSR1); !errors.Is(err, ErrChanged) {
		t.Fatalf("another command: want ErrChanged, got %v", err)
	}
	if err := s.SendExpected(pid, Expect{Start: start + 1, Name: "sleep"}, unix.SIGUSR1); !errors.Is(err, ErrGone) {
		t.Fatalf("another start time: want ErrGone, got %v", err)
	}
	if err := unix.Kill(pid, 0); err != nil {
		t.Fatalf("sleep gone after checked sends that should have sent nothing: %v", err)
	}
	// What it expects holds: sent (SIGTERM ends it, no handler asked).
	if err := s.SendExpected(pid, Expect{Start: start, Name: "sleep"}, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("sleep ended normally; want killed by SIGTERM")
	}
}

func TestSendExpectedReachesHandler(t *testing.T) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, unix.SIGUSR1)
	defer signal.Stop(c)
	start, err := StartTime("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	h, err := ReadHandlers("/proc", os.Getpid())
	if err != nil || h.Name == "" {
		t.Fatalf("%+v, %v", h, err)
	}
	if err := (PidfdSender{Proc: "/proc"}).SendExpected(os.Getpid(), Expect{Start: start, Name: h.Name, Handler: true}, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatal("signal not received")
	}
}

func TestParseStatusName(t *testing.T) {
	for _, c := range []struct {
		in   string
		name string
		cgt  uint64
	}{
		{fuzzStatus("cat", 0x400), "cat", 0x400},
		{fuzzStatus("a\nSigCgt:\tffff", 1), `a\nSigCgt:	ffff`, 1},
		{"SigCgt:\t0000000000000200\n", "", 0x200},
		{"Name:\tx\nSigCgt:\t1\n", "x", 1},
	} {
		h, err := parseStatus([]byte(c.in))
		if err != nil || h.Name != c.name || h.Caught != c.cgt {
			t.Errorf("parseStatus(%q) = %+v, %v; want %q %#x", c.in, h, err, c.name, c.cgt)
		}
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("no SigCgt line: want an error")
	}
	if err := (Handlers{Name: "x", Caught: 1 << (unix.SIGUSR1 - 1)}).Check(Expect{Name: "x", Handler: true}, unix.SIGUSR2); !errors.Is(err, ErrNoHandler) {
		t.Errorf("Check: want ErrNoHandler, got %v", err)
	}
}

// The reads that choose targets, on this machine's own processes: status
// (SigCgt, every signal) against stat (field 34 sigcatch: signals 1-31
// only, fs/proc/array.c do_task_stat).
func BenchmarkReadHandlers(b *testing.B) {
	pid := os.Getpid()
	for b.Loop() {
		if _, err := ReadHandlers("/proc", pid); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadStat(b *testing.B) {
	pid := os.Getpid()
	for b.Loop() {
		if _, err := StartTime("/proc", pid); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendExpected(b *testing.B) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, unix.SIGUSR1)
	defer signal.Stop(c)
	start, _ := StartTime("/proc", os.Getpid())
	h, _ := ReadHandlers("/proc", os.Getpid())
	s := PidfdSender{Proc: "/proc"}
	for b.Loop() {
		if err := s.SendExpected(os.Getpid(), Expect{Start: start, Name: h.Name, Handler: true}, unix.SIGUSR1); err != nil {
			b.Fatal(err)
		}
		<-c
	}
}

// TestCheckReadsStatOnlyWhenItCan: the handler of a signal 1-31 and a
// plain command are checked from stat alone; a real-time signal's handler
// and a command that status escapes are checked in status.
func TestCheckReadsStatOnlyWhenItCan(t *testing.T) {
	proc := t.TempDir()
	write := func(pid int, comm, statusName string, catch, cgt uint64) {
		d := filepath.Join(proc, strconv.Itoa(pid))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "stat"), []byte(fuzzStatCatch(pid, comm, 77, catch)), 0o644)
		if statusName != "" {
			os.WriteFile(filepath.Join(d, "status"), []byte(fuzzStatus(statusName, cgt)), 0o644)
		}
	}
	usr1 := uint64(1 << (unix.SIGUSR1 - 1))
	rt := unix.Signal(34)                        // SIGRTMIN
	write(1, "app", "", usr1, 0)                 // no status: stat must do
	write(2, `a\b`, `a\b`, usr1, usr1|1<<(rt-1)) // escaped in status
	write(3, "app", "app", usr1, usr1|1<<(rt-1)) // real-time handler in status only
	write(4, "app", "app", usr1, usr1)           // no real-time handler
	write(5, "a\nb", "a\nb", 0, usr1)            // stat says no handler
	s := PidfdSender{Proc: proc}
	for _, c := range []struct {
		pid  int
		want Expect
		sig  unix.Signal
		err  error
	}{
		{1, Expect{Start: 77, Name: "app", Handler: true}, unix.SIGUSR1, nil},
		{1, Expect{Start: 77, Name: "app", Handler: true}, unix.SIGUSR2, ErrNoHandler},
		{1, Expect{Start: 77, Name: "java", Handler: true}, unix.SIGUSR1, ErrChanged},
		{1, Expect{Start: 78, Name: "app"}, unix.SIGUSR1, ErrGone},
		{2, Expect{Start: 77, Name: `a\\b`, Handler: true}, unix.SIGUSR1, nil},
		{2, Expect{Start: 77, Name: `a\b`, Handler: true}, unix.SIGUSR1, ErrChanged},
		{3, Expect{Start: 77, Name: "app", Handler: true}, rt, nil},
		{4, Expect{Start: 77, Name: "app", Handler: true}, rt, ErrNoHandler},
		{5, Expect{Start: 77, Name: `a\nb`, Handler: true}, unix.SIGUSR1, ErrNoHandler},
		{6, Expect{Start: 77}, unix.SIGUSR1, ErrGone},
	} {
		if err := s.check(c.pid, c.want, c.sig); !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("pid %d %+v %v: got %v, want %v", c.pid, c.want, c.sig, err, c.err)
		}
	}
}

// BenchmarkCheck is what SendExpected reads of a process before its
// signal: stat alone for a handler of signals 1-31 (BenchmarkCheckStatus:
// stat and status, as for a real-time signal).
func BenchmarkCheck(b *testing.B) {
	benchCheck(b, unix.SIGUSR1)
}

func BenchmarkCheckStatus(b *testing.B) {
	benchCheck(b, unix.Signal(40))
}

func benchCheck(b *testing.B, sig unix.Signal) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, sig)
	defer signal.Stop(c)
	start, _ := StartTime("/proc", os.Getpid())
	h, _ := ReadHandlers("/proc", os.Getpid())
	s := PidfdSender{Proc: "/proc"}
	for b.Loop() {
		if err := s.check(os.Getpid(), Expect{Start: start, Name: h.Name, Handler: true}, sig); err != nil {
			b.Fatal(err)
		}
	}
}
