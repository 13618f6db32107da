package vm

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoaderInVM runs the BPF loader's own test binary (go test -c ./loader)
// inside the VM: on Debian's 6.1 kernel the probe must choose
// fexit/try_charge_memcg (no memcg tracepoints there) on cgroup v2, and every
// loader test must pass (CI=true inside: nothing may skip).
func TestLoaderInVM(t *testing.T) {
	m := machine(t)
	out := filepath.Join(t.TempDir(), "loader.test")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := BuildStatic(ctx, repoRoot(t), "./loader", out, true); err != nil {
		t.Fatal(err)
	}
	m.Files["bin/loader.test"] = out
	res := run(t, m, Spec{
		Timeout: D(300 * time.Second),
		DataMiB: 512,
		Commands: []Command{{
			Name: "loader",
			Args: []string{"/bin/loader.test", "-test.v", "-test.timeout=280s"},
			Env: []string{"CI=true", "OOMHERO_EXPECT_ATTACH=fexit/try_charge_memcg",
				// Page cache must be real file cache: /data is ext2 on a RAM disk.
				"OOMHERO_CACHE_DIR=/data",
				// TCG emulation on a shared host: the whole reaction
				// (user space included) gets a looser bound than on the
				// host; the kernel's part keeps its 1 ms.
				"OOMHERO_LEAD_BOUND=1s", "OOMHERO_LEAD_BOUND_CGROUPFS=1s"},
		}},
	})
	text := res.Text("", "loader")
	exit := res.Find(KindExit, "", "loader")
	if exit == nil || exit.Code != 0 {
		t.Errorf("loader tests in the VM: exit %+v\n%s", exit, text)
		return
	}
	if !strings.Contains(text, "fexit/try_charge_memcg") {
		t.Errorf("loader test output never names fexit/try_charge_memcg:\n%s", text)
	}
	if strings.Contains(text, "--- SKIP") {
		t.Errorf("a loader test skipped inside the VM:\n%s", text)
	}
	var summary []string
	for _, l := range res.Lines("", "loader") {
		if strings.HasPrefix(l.Text, "--- ") || strings.HasPrefix(l.Text, "ok") || strings.HasPrefix(l.Text, "PASS") {
			summary = append(summary, l.Text)
		}
	}
	t.Logf("loader tests in the VM:\n%s", strings.Join(summary, "\n"))
}
