package cgroupsbench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSidecarSizeRSS builds cmd/sidecar with oomhero's reader and with
// containerd/cgroups (-tags containerd), as oomhero is built (static,
// -trimpath, -s -w), runs each for 3 s reading the lab cgroup every 10 ms,
// and logs binary size, VmRSS and VmHWM.
func TestSidecarSizeRSS(t *testing.T) {
	c := setup(t)
	dir := t.TempDir()
	for _, v := range []struct{ name, tags string }{{"oomhero reader", ""}, {"containerd/cgroups", "containerd"}} {
		bin := filepath.Join(dir, strings.ReplaceAll(v.name, "/", "-"))
		args := []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", bin}
		if v.tags != "" {
			args = append(args, "-tags", v.tags)
		}
		cmd := exec.Command("go", append(args, "./cmd/sidecar")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
		st, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-root", c.Dir.Root, "-rel", c.Dir.Rel, "-limit", fmt.Sprint(c.Limit)).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", v.name, err, out)
		}
		t.Logf("%-20s binary %.2f MiB, %s", v.name, float64(st.Size())/(1<<20), strings.TrimSpace(string(out)))
	}
}
