package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/lab"
	"github.com/oomhero/oomhero/internal/lab/labtest"
	"github.com/oomhero/oomhero/internal/watch"
)

// kubeletPod makes the cgroup directories of a pod as the kubelet's
// cgroupfs driver lays them out (kubepods/burstable/pod<uid>) under the
// memory hierarchy root, and removes what it made (not a kubepods that
// was already there) when the test ends. It returns the pod's directory
// relative to root.
func kubeletPod(t *testing.T, root string, v watch.CgroupVersion) string {
	t.Helper()
	var u [16]byte
	rand.Read(u[:])
	uid := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	rel := ""
	// Under a parent of this test's own (any path may come before
	// kubepods, as kind's kubelet.slice): with --cgroup-match on it, the
	// agent ignores the kubelet-shaped cgroups of anything else running on
	// this host (a cluster, a benchmark).
	for _, part := range []string{testParent(), "kubepods", "burstable", "pod" + uid} {
		rel = filepath.Join(rel, part)
		dir := filepath.Join(root, rel)
		err := os.Mkdir(dir, 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for range 100 {
				if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Errorf("cgroup %s left behind", dir)
		})
		if v == watch.V2 {
			// Children of this directory get the memory controller.
			if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	return rel
}

// testParent is the cgroup this test process's pods go under.
func testParent() string { return fmt.Sprintf("oomhero-node-test-%d", os.Getpid()) }

// nodeLab makes a kubelet-shaped pod on this host's memory cgroups and
// returns the cgroupfs mount for --cgroup-root, a maker of the pod's
// containers (128 MiB, removed when the test ends) and a container's
// cgroup path as oomhero logs it.
func nodeLab(t *testing.T) (fs string, newContainer func() *lab.Cgroup, cgPath func(*lab.Cgroup) string) {
	root, v := labtest.Root(t)
	fs = filepath.Dir(root)
	if v == watch.V2 {
		fs = root
	}
	pod := kubeletPod(t, root, v)
	newContainer = func() *lab.Cgroup {
		c, err := lab.NewCgroup(root, v, filepath.Join(pod, containerID()), 128*lab.MiB)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := c.Remove(); err != nil {
				t.Error(err)
			}
		})
		return c
	}
	cgPath = func(c *lab.Cgroup) string {
		p := "/" + filepath.ToSlash(c.Dir.Rel)
		if v == watch.V1 {
			p = strings.TrimPrefix(p, "/memory")
		}
		return p
	}
	return fs, newContainer, cgPath
}

// serveNode runs oomhero node (no API server, no HTTP, no Events) on the
// cgroupfs at fs, for this test's pods only, with extra flags, until the
// test ends, and returns its log (text, debug). SIGWINCH and SIGURG:
// ignored by default, so a leaker survives them (--targets main sends
// them without a handler).
func serveNode(t *testing.T, fs string, extra ...string) *syncBuffer {
	t.Helper()
	cfg, err := config.ParseNode(append([]string{
		"--kube=off", "--cgroup-root", fs, "--listen=", "--events=off", "--cgroup-match=/" + testParent() + "/",
		"--targets=main", "--warning-signal=SIGWINCH", "--critical-signal=SIGURG",
		"--warning=40", "--critical=60", "--cooldown=1h",
	}, extra...), func(string) (string, bool) { return "", false }, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return logs
}

// containerID returns a random 64-hex container id.
func containerID() string {
	var b [32]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

// TestNodeModeOnRealCgroups runs oomhero node (no API server, the host's
// procfs and cgroupfs, BPF where it loads) next to two leaking processes,
// each in a memory cgroup laid out as the kubelet's, in the same pod: only
// the one whose environment says OOMHERO=on is watched and signalled; the
// other one crosses both thresholds too and gets nothing.
func TestNodeModeOnRealCgroups(t *testing.T) {
	fs, newContainer, cgPath := nodeLab(t)
	inCg, outCg := newContainer(), newContainer()
	t.Setenv("OOMHERO", "on") // the opted-in leaker's environment
	in := labtest.Leaker(t, inCg)
	os.Unsetenv("OOMHERO")
	out := labtest.Leaker(t, outCg)

	logs := serveNode(t, fs)
	inPath, outPath := cgPath(inCg), cgPath(outCg)
	waitLog(t, logs, 15*time.Second, "msg=\"container watched\"", "cgroup="+inPath,
		"container not watched: not opted in", "cgroup="+outPath, "reason=\"did not opt in")
	for _, l := range []*lab.Leaker{out, in} { // 70% of the limit: both levels
		if err := l.Anon(90*lab.MiB, 0); err != nil {
			t.Fatal(err)
		}
	}
	waitLog(t, logs, 15*time.Second, fmt.Sprintf("msg=\"signal sent\" pid=%d", in.Pid()), "signal=SIGWINCH", "signal=SIGURG")
	time.Sleep(time.Second) // a wrong signal would come by now
	got := logs.String()
	if strings.Contains(got, fmt.Sprintf("pid=%d", out.Pid())) || strings.Count(got, "msg=\"container watched\"") != 1 {
		t.Errorf("the container that did not opt in was watched or signalled:\n%s", got)
	}
	if n := strings.Count(got, "msg=\"signal sent\""); n != 2 {
		t.Errorf("%d signals sent, want 2 (warning and critical of the opted-in container)", n)
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.Contains(line, "source active") {
			t.Log(line)
		}
	}
}

// TestNodeModeRuntimeInitExecsLate: a container runtime creates a pod's
// containers, then starts them; until the start, each one's only process
// is the runtime's init (runc:[2:INIT]), which then execs the program. A
// start that came more than a young process's rereads after the create
// (20 s, in a CI run under load) left the cgroupfs source blind to the
// exec: the container stayed "starting" and was never watched. Here the
// init waits 15 s after oomhero saw it, then execs an opted-in leaker,
// which must be watched and signalled within seconds.
func TestNodeModeRuntimeInitExecsLate(t *testing.T) {
	fs, newContainer, cgPath := nodeLab(t)
	c := newContainer()
	// The kernel names a script's process after the script.
	init := filepath.Join(t.TempDir(), "runc:[2:INIT]")
	script := "#!/bin/bash\nread -r _ || exit 1\nexec \"$" + lab.SelfEnv + "\"\n"
	if err := os.WriteFile(init, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OOMHERO", "on")
	l, err := lab.StartLeakerVia(c, init)
	os.Unsetenv("OOMHERO")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })

	logs := serveNode(t, fs, "--source=cgroupfs")
	path := cgPath(c)
	waitLog(t, logs, 15*time.Second, "source active")
	time.Sleep(15 * time.Second) // the init is no longer young
	if strings.Contains(logs.String(), "cgroup="+path+" ") {
		t.Fatalf("the container was watched or judged before its init exec'd:\n%s", logs.String())
	}
	if _, err := l.In.Write([]byte("start\n")); err != nil {
		t.Fatal(err)
	}
	if err := l.Ready(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, 5*time.Second, "msg=\"container watched\"", "cgroup="+path)
	if err := l.Anon(90*lab.MiB, 0); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, 10*time.Second, fmt.Sprintf("msg=\"signal sent\" pid=%d", l.Pid()), "signal=SIGWINCH", "signal=SIGURG")
}
