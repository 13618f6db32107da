package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProcMustBeOwnProcfs: a --proc that is not a procfs, or the procfs of
// another PID namespace, stops oomhero before it starts, with exit status 2
// (bad configuration) and a message naming --proc.
func TestProcMustBeOwnProcfs(t *testing.T) {
	if pid, err := selfPID("/proc"); err != nil || pid != os.Getpid() {
		t.Fatalf("selfPID(/proc) = %d, %v; want %d", pid, err, os.Getpid())
	}
	var out, errb bytes.Buffer
	dir := t.TempDir()
	code := run([]string{"--proc", dir}, func(string) (string, bool) { return "", false }, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "--proc") || !strings.Contains(errb.String(), "not a procfs mount") {
		t.Fatalf("--proc on a plain directory: exit %d, stderr %q; want 2 naming --proc", code, errb.String())
	}
	if strings.Contains(errb.String(), "starting") {
		t.Fatal("started anyway")
	}
}

// TestProcOfChildPIDNamespace: the procfs of a child PID namespace (a
// process started with its own namespace and procfs, seen through its
// root) does not show oomhero at all.
func TestProcOfChildPIDNamespace(t *testing.T) {
	unshare := needUnshare(t)
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "--kill-child", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// The namespace's procfs is mounted by the forked child: wait for it.
	var proc string
	for deadline := time.Now().Add(5 * time.Second); ; {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "task", strconv.Itoa(cmd.Process.Pid), "children"))
		if f := strings.Fields(string(b)); len(f) > 0 {
			p := filepath.Join("/proc", f[0], "root", "proc")
			if _, err := os.Stat(filepath.Join(p, "1", "stat")); err == nil {
				if exe, _ := os.Readlink(filepath.Join(p, "1", "exe")); strings.HasSuffix(exe, "sleep") {
					proc = p
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the child namespace's procfs did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err := selfPID(proc)
	if err == nil || !strings.Contains(err.Error(), "another PID namespace") || !strings.Contains(err.Error(), "not visible") {
		t.Fatalf("selfPID(%s) = %v; want refused: another PID namespace", proc, err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"--proc", proc}, func(string) (string, bool) { return "", false }, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2; stderr %q", code, errb.String())
	}
	t.Logf("refused: %s", strings.TrimSpace(errb.String()))
}

// TestProcOfAncestorPIDNamespace runs this test binary in a new PID
// namespace with the new procfs elsewhere, so /proc is the procfs of the
// parent namespace, where it has another PID (as the host's procfs mounted
// into a container without hostPID).
func TestProcOfAncestorPIDNamespace(t *testing.T) {
	if os.Getenv("OOMHERO_SELFPID_CHILD") != "" {
		own := os.Getenv("OOMHERO_SELFPID_CHILD")
		if pid, err := selfPID(own); err != nil || pid != os.Getpid() {
			t.Fatalf("in the new namespace: selfPID(%s) = %d, %v; want %d", own, pid, err, os.Getpid())
		}
		_, err := selfPID("/proc")
		if err == nil || !strings.Contains(err.Error(), "another PID namespace") || !strings.Contains(err.Error(), "there and") {
			t.Fatalf("selfPID(/proc of the parent namespace) = %v; want refused", err)
		}
		t.Logf("refused: %v", err)
		return
	}
	unshare := needUnshare(t)
	own := t.TempDir()
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc="+own, "--kill-child",
		os.Args[0], "-test.run=^TestProcOfAncestorPIDNamespace$", "-test.v")
	cmd.Env = append(os.Environ(), "OOMHERO_SELFPID_CHILD="+own)
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "refused:") {
		t.Fatalf("child: %v\n%s", err, b)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "refused:") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

func needUnshare(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("unshare")
	if err == nil && os.Geteuid() == 0 {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("unshare (util-linux) and root are needed (CI=true): %v, euid %d", err, os.Geteuid())
	}
	t.Skipf("needs unshare and root: %v, euid %d", err, os.Geteuid())
	return ""
}
