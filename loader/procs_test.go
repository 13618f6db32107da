//go:build linux && (amd64 || arm64 || 386)

package loader

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/lab/labtest"
	"github.com/oomhero/oomhero/internal/watch"
)

// changesUntil collects ProcessChanges after each notification on
// ProcessEvents until done says it has what it wants or d passes.
func changesUntil(s *Source, d time.Duration, done func(seen map[int]bool) bool) (map[int]bool, bool) {
	seen := map[int]bool{}
	complete := true
	for end := time.After(d); ; {
		select {
		case <-s.ProcessEvents():
			pids, ok := s.ProcessChanges(nil)
			complete = complete && ok
			for _, p := range pids {
				seen[p] = true
			}
			if done(seen) {
				return seen, complete
			}
		case <-end:
			return seen, complete
		}
	}
}

// TestProcessChanges: the PIDs of a process that started, exec'ed and
// exited are taken from the kernel, once each take.
func TestProcessChanges(t *testing.T) {
	s := newSource(t, Options{ProcessGap: 20 * time.Millisecond})
	if s.ProcessEvents() == nil {
		labtest.SkipOrFail(t, "no process events on this kernel: %v", s.l.procErr)
	}
	run(t, s)
	s.ProcessChanges(nil) // whatever ran before
	cmd := exec.Command("sleep", "0.3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	seen, complete := changesUntil(s, 2*time.Second, func(m map[int]bool) bool { return m[pid] })
	if !seen[pid] {
		t.Fatalf("PID %d (started) not among the changed PIDs %v", pid, slices.Sorted(mapKeys(seen)))
	}
	if !complete {
		t.Logf("a take was incomplete (map full or unreadable): the agent would scan in full")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	seen, _ = changesUntil(s, 2*time.Second, func(m map[int]bool) bool { return m[pid] })
	if !seen[pid] {
		t.Fatalf("PID %d (exited) not among the changed PIDs %v", pid, slices.Sorted(mapKeys(seen)))
	}
	if pids, _ := s.ProcessChanges(nil); slices.Contains(pids, pid) {
		t.Errorf("PID %d taken twice for one exit", pid)
	}
}

// TestProcessChangesChildPIDNamespace: processes in a PID namespace below
// oomhero's (a container's, seen from the node agent) are reported with
// their PIDs in oomhero's namespace.
func TestProcessChangesChildPIDNamespace(t *testing.T) {
	s := newSource(t, Options{ProcessGap: 20 * time.Millisecond})
	if s.ProcessEvents() == nil {
		labtest.SkipOrFail(t, "no process events on this kernel: %v", s.l.procErr)
	}
	run(t, s)
	cmd := exec.Command("unshare", "--pid", "--fork", "sh", "-c", "sleep 0.5; sleep 3 & sleep 3 & wait")
	if err := cmd.Start(); err != nil {
		labtest.SkipOrFail(t, "unshare: %v", err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	// The two sleeps, children of sh (unshare's child), by their PIDs here.
	var sleeps []int
	for end := time.Now().Add(2 * time.Second); len(sleeps) < 2 && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		sleeps = nil
		for _, sh := range children(cmd.Process.Pid) {
			sleeps = append(sleeps, children(sh)...)
		}
	}
	if len(sleeps) < 2 {
		t.Fatalf("could not find the two sleeps of the child namespace (found %v)", sleeps)
	}
	seen, _ := changesUntil(s, 2*time.Second, func(m map[int]bool) bool { return m[sleeps[0]] && m[sleeps[1]] })
	for _, p := range sleeps {
		if !seen[p] {
			t.Errorf("PID %d, started in a child PID namespace, not among the changed PIDs %v", p, slices.Sorted(mapKeys(seen)))
		}
	}
}

// TestProcessChangesOwnPIDNamespace: oomhero in a PID namespace of its own
// (a sidecar in its pod's): the PIDs are those of that namespace. The test
// binary runs itself in a new PID namespace (nsChildEnv).
func TestProcessChangesOwnPIDNamespace(t *testing.T) {
	labtest.Root(t)
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), nsChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "SKIP:") && err == nil {
		labtest.SkipOrFail(t, "%s", out)
	}
	if err != nil {
		t.Fatalf("in a new PID namespace: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

const nsChildEnv = "OOMHERO_LOADER_NS_CHILD"

// maybeNSChild is TestProcessChangesOwnPIDNamespace's child: it loads the
// source in its own PID namespace, starts a process and checks that its
// PID, as this namespace numbers it, is reported.
func maybeNSChild() {
	if os.Getenv(nsChildEnv) == "" {
		return
	}
	fail := func(f string, a ...any) { fmt.Printf(f+"\n", a...); os.Exit(1) }
	s, err := New(Options{ProcessGap: 20 * time.Millisecond})
	if err != nil {
		fmt.Printf("SKIP: bpf unavailable: %v\n", err)
		os.Exit(0)
	}
	if s.ProcessEvents() == nil {
		fmt.Printf("SKIP: no process events: %v\n", s.l.procErr)
		os.Exit(0)
	}
	if os.Getpid() > 10 {
		fail("not in a new PID namespace: PID %d", os.Getpid())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan watch.Reading, 16)
	go s.Run(ctx, out)
	go func() {
		for range out {
		}
	}()
	s.ProcessChanges(nil)
	cmd := exec.Command("sleep", "0.2")
	if err := cmd.Start(); err != nil {
		fail("start: %v", err)
	}
	pid := cmd.Process.Pid
	seen, _ := changesUntil(s, 2*time.Second, func(m map[int]bool) bool { return m[pid] })
	cmd.Wait()
	if !seen[pid] {
		fail("PID %d (this namespace's) not among the changed PIDs %v", pid, slices.Sorted(mapKeys(seen)))
	}
	fmt.Printf("own namespace: PID %d reported among %d changed\n", pid, len(seen))
	os.Exit(0)
}

// children lists the children of pid (its main thread's).
func children(pid int) []int {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func mapKeys(m map[int]bool) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestProcessChangesWhileClosing: the agent may take process changes while
// its context ends and Run closes the maps (the race detector saw both at
// once in a node-mode test); a take after the close finds nothing.
func TestProcessChangesWhileClosing(t *testing.T) {
	s := newSource(t, Options{ProcessGap: 20 * time.Millisecond})
	if s.ProcessEvents() == nil {
		labtest.SkipOrFail(t, "no process events on this kernel: %v", s.l.procErr)
	}
	r := run(t, s)
	stop := make(chan struct{})
	took := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				took <- n
				return
			default:
			}
			s.ProcessChanges(nil)
			n++
		}
	}()
	time.Sleep(50 * time.Millisecond)
	r.stop(t)
	close(stop)
	if n := <-took; n == 0 {
		t.Fatal("no take ran before the close")
	}
	if pids, complete := s.ProcessChanges(nil); len(pids) != 0 || complete {
		t.Fatalf("take after close: %v complete=%v, want nothing, incomplete", pids, complete)
	}
}
