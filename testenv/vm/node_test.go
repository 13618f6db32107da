package vm

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/testenv/pods"
)

// TestNodeMode runs oomhero node on cgroup v2 (Debian's 6.1 kernel: the
// BPF source is fexit/try_charge_memcg) next to two leaking containers of
// one pod, in the kubelet's systemd-driver layout under the guest's
// /sys/fs/cgroup:
//
//	kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_underscored>.slice/cri-containerd-<64 hex>.scope
//
// "in" has OOMHERO=on in its environment (opted in), "out" has not. Both
// leak at 20 MiB/s to 95 % of 128 MiB, past both thresholds. Only "in" may
// be watched and signalled (warning, then critical, each within
// maxLatencyVM of its crossing); oomhero's log names it by pod UID (dashes,
// as the API has it) and container, and says why "out" is not watched. One
// boot per source; no API server (--kube=off).
func TestNodeMode(t *testing.T) {
	for _, source := range []string{"bpf", "cgroupfs"} {
		t.Run(source, func(t *testing.T) { nodeMode(t, source) })
	}
}

// kubeletContainer returns the shell script of a container command: it
// makes the cgroups of the pod and of the container (memory.max limit),
// joins the container's cgroup and becomes the test app.
func kubeletContainer(podUID, id string, limit int64, args ...string) string {
	slices := []string{"kubepods.slice", "kubepods-burstable.slice",
		"kubepods-burstable-pod" + strings.ReplaceAll(podUID, "-", "_") + ".slice"}
	return fmt.Sprintf(`set -e
d=/sys/fs/cgroup
for s in %s; do d=$d/$s; mkdir -p $d; echo +memory > $d/cgroup.subtree_control; done
d=$d/cri-containerd-%s.scope
mkdir $d
echo %d > $d/memory.max
echo $$ > $d/cgroup.procs
exec /bin/testapp %s`, strings.Join(slices, " "), id, limit, strings.Join(args, " "))
}

func nodeMode(t *testing.T, source string) {
	var u [16]byte
	rand.Read(u[:])
	uid := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	ids := map[string]string{}
	for _, c := range []string{"in", "out"} {
		var b [32]byte
		rand.Read(b[:])
		ids[c] = fmt.Sprintf("%x", b)
	}
	const limit = 128 * mib
	// The leaks start once oomhero runs (BPF attach under TCG: seconds)
	// and discovered both containers.
	leak := []string{"-mode=leak", "-rate=20", "-cap-percent=95", "-sample-interval=0", "-delay=12s"}
	agent := "/bin/oomhero node --kube=off --proc=/proc --cgroup-root=/sys/fs/cgroup --listen= --events=off" +
		" --log-format=json --log-level=debug --source=" + source + " --warning=65 --critical=90"
	m := machine(t, "oomhero", "testapp")
	res := run(t, m, Spec{
		Timeout: D(70 * time.Second),
		Commands: []Command{
			// SIGTERM at the end: oomhero stops as in a pod deletion.
			{Name: "oomhero", Args: []string{"/bin/sh", "-c", agent + " & p=$!; sleep 36; kill -TERM $p; wait $p"}, Timeout: D(45 * time.Second)},
			{Name: "in", Args: []string{"/bin/sh", "-c", kubeletContainer(uid, ids["in"], limit, leak...)},
				Env: []string{"OOMHERO=on"}, Timeout: D(32 * time.Second)},
			{Name: "out", Args: []string{"/bin/sh", "-c", kubeletContainer(uid, ids["out"], limit, leak...)},
				Timeout: D(32 * time.Second)},
		},
	})
	e := e2e{t: t, res: res, pod: ""}
	defer func() {
		if t.Failed() {
			for _, c := range []string{"oomhero", "in", "out"} {
				s := res.Text("", c)
				if len(s) > 30000 {
					s = "...\n" + s[len(s)-30000:]
				}
				t.Logf("%s:\n%s", c, s)
			}
		}
	}()
	es := e.oomhero()
	e.checkSource(es, source)
	if act := pods.Select(es, "source active", ""); len(act) > 0 {
		t.Logf("source active: %s", act[len(act)-1].Str("source"))
	}

	// The opted-in container is watched, named by its pod UID.
	w, ok, err := pods.FindWatched(es, ids["in"])
	if err != nil || !ok {
		t.Fatalf("oomhero did not log \"container watched\" for the opted-in container %s (%v)", ids["in"][:12], err)
	}
	t.Logf("watched: %s", w.Entry.Raw)
	if got := w.Entry.Str("pod"); got != uid {
		t.Errorf("\"container watched\" names pod %q, want the pod UID %s", got, uid)
	}
	if w.Entry.Str("container") == "" || !strings.Contains(w.Entry.Str("cgroup"), "cri-containerd-"+ids["in"]+".scope") {
		t.Errorf("\"container watched\" does not name the container (container=%q, cgroup=%q)", w.Entry.Str("container"), w.Entry.Str("cgroup"))
	}
	if w.Limit != limit {
		t.Errorf("limit_bytes = %d, want %d", w.Limit, limit)
	}

	// The other one was seen and left alone, with the reason.
	if _, ok, _ := pods.FindWatched(es, ids["out"]); ok {
		t.Errorf("the container that did not opt in (%s) was watched", ids["out"][:12])
	}
	not := pods.Select(es, "container not watched: not opted in", ids["out"])
	if len(not) == 0 {
		t.Errorf("oomhero never said why %s is not watched (\"container not watched: not opted in\")", ids["out"][:12])
	} else {
		t.Logf("not watched: %s", not[0].Raw)
		if got := not[0].Str("pod"); got != uid {
			t.Errorf("\"container not watched\" names pod %q, want %s", got, uid)
		}
	}

	// Signals: only to the opted-in app, both levels, named by pod UID.
	inStart, outStart := res.Find(KindStart, "", "in"), res.Find(KindStart, "", "out")
	if inStart == nil || outStart == nil {
		t.Fatalf("no start event of the containers (in %v, out %v)", inStart, outStart)
	}
	levels := map[string]int{}
	for _, s := range pods.Select(es, "signal sent", "") {
		pid, _ := s.Int("pid")
		if pid != inStart.PID || s.Str("pod") != uid || s.Str("container") == "" {
			t.Errorf("signal sent to pid %d (pod %q, container %q); only the opted-in app (pid %d, pod %s) may get one: %s",
				pid, s.Str("pod"), s.Str("container"), inStart.PID, uid, s.Raw)
		}
		levels[s.MemoryLevel]++
	}
	if levels["warning"] == 0 || levels["critical"] == 0 {
		t.Errorf("\"signal sent\" lines by level: %v, want warning and critical", levels)
	}

	in := e.app("in")
	warn, crit := react(in, w.Warning, "SIGUSR1"), react(in, w.Critical, "SIGUSR2")
	t.Log(warn)
	t.Log(crit)
	for _, p := range pods.CheckReactions(warn, crit, maxLatencyVM) {
		t.Error("opted-in app: " + p)
	}

	// The other app crossed both thresholds too (else this proves
	// nothing) and got nothing.
	out := e.app("out")
	if r := react(out, w.Critical, "SIGUSR2"); !r.Crossed {
		t.Errorf("the app that did not opt in never crossed the critical threshold (%d bytes): the test proves nothing", w.Critical)
	}
	if len(out.Signals) > 0 {
		t.Errorf("the app that did not opt in got signals: %+v", out.Signals)
	}
}
