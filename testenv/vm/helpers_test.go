package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// needVM skips the test when this host cannot boot the VM, and fails it
// instead when CI=true: a CI run that skips the VM suite proves nothing.
func needVM(t *testing.T) {
	t.Helper()
	missing := ""
	switch {
	case os.Geteuid() != 0:
		missing = "root"
	case !onPath("qemu-system-x86_64"):
		missing = "qemu-system-x86_64 (Debian package qemu-system-x86)"
	case !onPath("apt-get") || !onPath("apt-cache") || !onPath("dpkg-deb"):
		missing = "apt-get, apt-cache and dpkg-deb"
	case !exists("/bin/busybox"):
		missing = "/bin/busybox (Debian package busybox-static)"
	case !onPath("go"):
		missing = "the go command"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("VM tests need %s (CI=true: failing instead of skipping)", missing)
	}
	t.Skipf("VM tests need %s", missing)
}

// saveRun keeps the guest's events and console of the last run of each test
// in testenv/vm/.cache/runs/ for post-mortems.
func saveRun(t *testing.T, res *Result) {
	dir := filepath.Join(repoRoot(t), "testenv", "vm", ".cache", "runs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("save run: %v", err)
		return
	}
	base := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
	var b bytes.Buffer
	for _, e := range res.Events {
		j, _ := json.Marshal(e)
		b.Write(j)
		b.WriteByte('\n')
	}
	os.WriteFile(base+".jsonl", b.Bytes(), 0o644)
	os.WriteFile(base+".console", res.Console, 0o644)
	t.Logf("guest events saved in %s.jsonl", base)
}

func onPath(name string) bool { _, err := exec.LookPath(name); return err == nil }
func exists(p string) bool    { _, err := os.Stat(p); return err == nil }

// repoRoot is the module root (testenv/vm is two levels down).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil || !exists(filepath.Join(root, "go.mod")) {
		t.Fatalf("module root not found from %s", root)
	}
	return root
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
	kern    *Kernel
	// buildErr holds the build error of each optional binary (oomhero,
	// testapp): tests that need one fail with it.
	buildErr = map[string]error{}
)

// tools fetches the kernel and builds the guest runner, oomhero and the test
// app once per test binary run.
func tools(t *testing.T) (k *Kernel, dir string) {
	t.Helper()
	needVM(t)
	root := repoRoot(t)
	binOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		kern, binErr = FetchKernel(ctx, filepath.Join(root, "testenv", "vm", ".cache"))
		if binErr != nil {
			return
		}
		binDir, binErr = os.MkdirTemp("", "oomhero-vm-bin-")
		if binErr != nil {
			return
		}
		if binErr = BuildStatic(ctx, root, "./testenv/vm/vminit", filepath.Join(binDir, "vminit"), false); binErr != nil {
			return
		}
		for _, b := range []struct{ pkg, out string }{
			{"./cmd/oomhero", "oomhero"},
			{"./testenv/app", "testapp"},
		} {
			buildErr[b.out] = BuildStatic(ctx, root, b.pkg, filepath.Join(binDir, b.out), false)
		}
	})
	if binErr != nil {
		t.Fatalf("VM set-up: %v", binErr)
	}
	return kern, binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// machine returns a Machine with the runner and the named binaries
// (oomhero, testapp) in /bin.
func machine(t *testing.T, bins ...string) *Machine {
	k, dir := tools(t)
	m := &Machine{
		Kernel:  k,
		Init:    filepath.Join(dir, "vminit"),
		Files:   map[string]string{},
		WorkDir: t.TempDir(),
		// Extra kernel arguments for debugging, e.g. loglevel=7.
		Append: strings.Fields(os.Getenv("OOMHERO_VM_APPEND")),
	}
	for _, b := range bins {
		if err := buildErr[b]; err != nil {
			t.Fatalf("build %s: %v", b, err)
		}
		m.Files["bin/"+b] = filepath.Join(dir, b)
	}
	return m
}

// run boots m with spec and fails the test when the guest did not finish,
// logging the console tail and the runner's errors.
func run(t *testing.T, m *Machine, spec Spec) *Result {
	t.Helper()
	timeout := time.Duration(spec.Timeout)
	if timeout == 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+90*time.Second)
	defer cancel()
	res, err := m.Run(ctx, spec)
	for try := 2; err != nil && res != nil && res.BootTime == 0 && ctx.Err() == nil && try <= 3; try++ {
		// The guest never reached vminit (seen once in ~40 boots under
		// TCG: "virtio-ports vport0p1: Error allocating inbufs"): a failure
		// of the emulated machine before anything of oomhero ran, so the
		// boot is tried again, and said.
		t.Logf("guest did not boot (%v); console:\n%s\nbooting again (try %d)", err, tail(res.Console), try)
		res, err = m.Run(ctx, spec)
	}
	if err != nil && res != nil && bytes.Contains(res.Console, []byte("soft lockup")) {
		// The emulated guest kernel hung in the OOM path ("watchdog: BUG:
		// soft lockup - CPU#0 stuck for 22s! [testapp]", seen once in a
		// CI run: two leakers at their limits under TCG): a failure of
		// the emulation, with the guest's CPUs stuck in its kernel. Run
		// once more, and say so.
		t.Logf("guest kernel locked up (%v); console:\n%s\nrunning again once", err, tail(res.Console))
		rctx, rcancel := context.WithTimeout(context.Background(), timeout+90*time.Second)
		defer rcancel()
		res, err = m.Run(rctx, spec)
	}
	if res != nil {
		saveRun(t, res)
		t.Logf("kernel %s (%s %s): boot %v, wall %v", m.Kernel.Release, m.Kernel.Package, m.Kernel.Version,
			res.BootTime.Round(time.Millisecond), res.Wall.Round(time.Millisecond))
		for _, e := range res.Errors() {
			t.Errorf("guest error: pod=%q container=%q: %s", e.Pod, e.Container, e.Text)
		}
	}
	if err != nil {
		if res != nil {
			t.Logf("console:\n%s", tail(res.Console))
		}
		t.Fatalf("VM run: %v", err)
	}
	return res
}
