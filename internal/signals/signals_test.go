package signals

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
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
