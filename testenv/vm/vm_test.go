package vm

import (
	"strings"
	"testing"
	"time"
)

// TestContainers checks the container model the scenarios rely on: in one
// pod (one PID namespace), each container has its own cgroup with its
// memory.max, and /proc/<pid>/root/sys/fs/cgroup of another container shows
// that container's cgroup as its root, as in a Kubernetes pod.
func TestContainers(t *testing.T) {
	m := machine(t)
	res := run(t, m, Spec{
		Timeout: D(30 * time.Second),
		Pods: []Pod{{
			Name:     "p",
			Duration: D(20 * time.Second),
			Containers: []Container{
				{Name: "app", MemoryMax: 64 << 20, Args: []string{"/bin/sh", "-c", "echo ready; exec sleep 30"}},
				{Name: "side", Main: true, StartDelay: D(500 * time.Millisecond), Args: []string{"/bin/sh", "-c", `
echo "self=$$"
echo "ns_cgroup=$(cat /proc/self/cgroup)"
echo "own_max=$(cat /sys/fs/cgroup/memory.max)"
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  c=$(cat $p/cgroup 2>/dev/null)
  m=$(cat $p/root/sys/fs/cgroup/memory.max 2>/dev/null)
  echo "pid=$pid cgroup=$c max=$m comm=$(cat $p/comm)"
done`}},
			},
		}},
	})
	out := res.Text("p", "side")
	t.Logf("side:\n%s", out)
	for _, want := range []string{
		"ns_cgroup=0::/\n",
		"own_max=max\n",
		"pid=1 ",
		"cgroup=0::/../app max=67108864 comm=sleep",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("side container output lacks %q", want)
		}
	}
	if e := res.Find(KindExit, "p", "side"); e == nil || e.Code != 0 {
		t.Errorf("side container exit: %+v", e)
	}
	if !strings.HasPrefix(res.Release, "6.1.") {
		t.Errorf("guest kernel %q, want Debian's 6.1", res.Release)
	}
}
