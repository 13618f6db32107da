package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The node agent on the cluster (issue 10, item 6): deploy/node applied as
// written (kubectl apply -k), then three pods of testdata/node-workloads.yaml
// in a namespace of the test's own:
//
//	node-leaker  env OOMHERO=on, grows past both thresholds: warning then
//	             critical, each within nodeSignalBound of its crossing (the
//	             app's own samples and receipts, CLOCK_MONOTONIC)
//	node-cache   pod annotation oomhero.dev/watch: "true", page cache near
//	             its limit, working set low: watched, no signal
//	node-quiet   did not opt in, grows past both: not watched, no signal
//
// Then: no other container of the cluster got a signal from the agent (nor
// was watched: node-quiet, the agent itself); Events on node-leaker in its
// namespace, none on the others; /metrics (through the API server's pod
// proxy) names namespace, pod and container; the agent restarted (its pod
// deleted) watches both opted-in containers again within
// nodeRediscoverBound of its start and signals the leaker again; a deleted
// pod's series leave /metrics; the BPF programs, links and maps the agent
// held (read from its /proc/<pid>/fdinfo on the host) are gone from the
// kernel once the agent restarted and once the DaemonSet is deleted. The
// test runs next to the other pod stories (t.Parallel): the cluster is
// brought up once by TestMain.

const (
	nodeNS              = "oomhero-system"
	nodeDS              = "oomhero-node"
	nodeSelector        = "app.kubernetes.io/name=oomhero,app.kubernetes.io/component=node-agent"
	nodeSignalBound     = time.Second     // threshold crossing -> the app's receipt
	nodeRediscoverBound = 2 * time.Second // agent start -> every opted-in container watched
)

func TestNodeAgent(t *testing.T) {
	needCluster(t)
	t.Parallel()
	start := time.Now()
	kustom := filepath.Join(deployDir, "node")
	ns := fmt.Sprintf("oomhero-node-e2e-%d", os.Getpid())

	// A DaemonSet left by an earlier run (K8S_KEEP) goes first.
	kubectl(t, "delete", "-k", kustom, "--ignore-not-found", "--wait=true", "--timeout=60s")
	mustKubectl(t, "apply", "-k", kustom)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := kubectl(t, "-n", nodeNS, "get", "pods", "-o", "wide")
			t.Logf("--- pods of %s:\n%s", nodeNS, out)
			out, _ = kubectl(t, "-n", nodeNS, "describe", "daemonset", nodeDS)
			t.Logf("--- describe daemonset:\n%s", out)
		}
		kubectl(t, "delete", "-k", kustom, "--ignore-not-found", "--wait=false")
	})
	mustKubectl(t, "-n", nodeNS, "rollout", "status", "daemonset/"+nodeDS, "--timeout=90s")
	agent := agentPod(t)
	t.Logf("DaemonSet ready after %s (pod %s)", time.Since(start).Round(100*time.Millisecond), agent)

	mustKubectl(t, "create", "namespace", ns)
	t.Cleanup(func() { kubectl(t, "delete", "namespace", ns, "--wait=false") })
	mustKubectl(t, "-n", ns, "apply", "-f", filepath.Join(k8sDir, "testdata", "node-workloads.yaml"))
	apps := map[string]string{"node-leaker": "leaker", "node-cache": "cache", "node-quiet": "quiet"}
	t.Cleanup(func() {
		if t.Failed() {
			for pod := range apps {
				out, _ := kubectl(t, "-n", ns, "logs", pod)
				t.Logf("--- %s/%s (no samples):\n%s", ns, pod, withoutSamples(out))
			}
			for _, p := range []string{agent, agentPodOrEmpty(t)} {
				if p != "" {
					out, _ := kubectl(t, "-n", nodeNS, "logs", p)
					t.Logf("--- agent %s:\n%s", p, out)
				}
			}
		}
	})
	for pod := range apps {
		eventually(t, 90*time.Second, "pod "+pod+" running", func() error {
			out, err := kubectl(t, "-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.phase}")
			if err != nil {
				return err
			}
			if out != "Running" {
				return fmt.Errorf("phase %q", out)
			}
			return nil
		})
	}

	// Both signals, in order, on the leaker; the other two grew as they
	// should (page cache near the limit with a low working set; the quiet
	// one past both thresholds) and got none.
	eventually(t, 90*time.Second, "warning then critical in node-leaker's log", func() error {
		out, err := kubectl(t, "-n", ns, "logs", "node-leaker")
		if err != nil {
			return err
		}
		return warningThenCritical(out)
	})
	eventually(t, 60*time.Second, "node-quiet past both thresholds (event=cap)", func() error {
		out, err := kubectl(t, "-n", ns, "logs", "node-quiet")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "event=cap ") {
			return errors.New("node-quiet has not reached 95 % of its limit yet")
		}
		return nil
	})
	al := parseLogfmt(mustKubectl(t, "-n", nodeNS, "logs", agent))
	source := ""
	for _, e := range al {
		if e["msg"] == "source active" {
			source = e["source"]
		}
	}
	if findLine(al, "pods of the node listed") == nil {
		t.Errorf("the agent did not list its node's pods through the API server (informer not synced; RBAC?)")
	}
	for _, e := range al {
		if e["level"] == "ERROR" || e["level"] == "WARN" {
			t.Logf("agent said: %s %s %v", e["level"], e["msg"], e["error"])
		}
	}
	if !strings.HasPrefix(source, "bpf") {
		t.Errorf("the agent's source is %q, want bpf (kernel 6.18, BPF and PERFMON granted by deploy/node)", source)
	}
	leaker := appRun(mustKubectl(t, "-n", ns, "logs", "node-leaker"))
	cid := agentContainerID(t, agent)
	watched := watchedLine(al, ns, "node-leaker")
	if watched == nil {
		t.Fatalf("the agent never logged \"container watched\" for %s/node-leaker", ns)
	}
	for _, lv := range []struct {
		level, signal, bytes string
	}{{"warning", "SIGUSR1", "warning_bytes"}, {"critical", "SIGUSR2", "critical_bytes"}} {
		thr, err := strconv.ParseInt(watched[lv.bytes], 10, 64)
		if err != nil {
			t.Fatalf("container watched: %s=%q: %v", lv.bytes, watched[lv.bytes], err)
		}
		lat, early, err := leaker.latency(thr, lv.signal)
		if len(early) > 0 {
			// Not the agent's: its threshold is thr. Another oomhero
			// on this host (a node-mode test or bench with --proc=/proc
			// sees the cluster's pods too) explains it; else it is a bug.
			others := otherOomheros(cid)
			if len(others) == 0 {
				t.Errorf("node-leaker received %s below the %s threshold (%d bytes): %+v", lv.signal, lv.level, thr, early)
			} else {
				t.Logf("node-leaker received %s below the %s threshold (%d bytes) %+v: not counted, other oomhero processes run on this host: %v",
					lv.signal, lv.level, thr, early, others)
			}
		}
		if err != nil {
			t.Errorf("%s: %v", lv.level, err)
			continue
		}
		t.Logf("node-leaker: %s (%s) received %s after its working set crossed %d bytes", lv.level, lv.signal, lat.Round(10*time.Microsecond), thr)
		if lat > nodeSignalBound {
			t.Errorf("node-leaker: %s arrived %s after the crossing, want within %s", lv.level, lat, nodeSignalBound)
		}
	}
	cache := appRun(mustKubectl(t, "-n", ns, "logs", "node-cache"))
	quiet := appRun(mustKubectl(t, "-n", ns, "logs", "node-quiet"))
	t.Logf("node-cache: usage up to %.1f %%, working set up to %.1f %% of its limit; node-quiet: working set up to %.1f %%",
		cache.maxPercent("usage"), cache.maxPercent("working_set"), quiet.maxPercent("working_set"))
	if cache.maxPercent("usage") < 90 || cache.maxPercent("working_set") >= 75 {
		t.Errorf("node-cache did not do what the test needs (usage >= 90 %%, working set < 75 %% of its limit)")
	}
	if quiet.maxPercent("working_set") < 90 {
		t.Errorf("node-quiet's working set stayed below the critical threshold: the test proves nothing")
	}
	for name, r := range map[string]appLogRun{"node-cache": cache, "node-quiet": quiet} {
		if len(r.signals) > 0 {
			t.Errorf("%s received signals: %v", name, r.signals)
		}
	}
	if watchedLine(al, ns, "node-cache") == nil {
		t.Errorf("node-cache (annotation oomhero.dev/watch) is not watched")
	}
	checkAgentLog(t, al, ns)

	// Events on the leaking pod, in its namespace; none on the others.
	eventually(t, 30*time.Second, "MemoryWarning and MemoryCritical Events on node-leaker", func() error {
		return nodeEvents(t, ns)
	})

	// /metrics through the API server's pod proxy.
	eventually(t, 30*time.Second, "the agent's /metrics name the leaker", func() error {
		foreign := foreignPods(t, parseLogfmt(mustKubectl(t, "-n", nodeNS, "logs", agent)))
		m, err := kubectl(t, "get", "--raw", "/api/v1/namespaces/"+nodeNS+"/pods/"+agent+":9090/proxy/metrics")
		if err != nil {
			return err
		}
		id := []string{`namespace="` + ns + `"`, `pod="node-leaker"`, `container="leaker"`}
		for _, lv := range []string{"warning", "critical"} {
			if v, _ := sample(m, "oomhero_signals_total", append(id, `level="`+lv+`"`, `result="sent"`)...); v < 1 {
				return fmt.Errorf("oomhero_signals_total{%s,level=%q,result=\"sent\"} = %v", strings.Join(id, ","), lv, v)
			}
		}
		if v, ok := sample(m, "oomhero_memory_limit_bytes", id...); !ok || v != 64<<20 {
			return fmt.Errorf("oomhero_memory_limit_bytes{%s} = %v, want 64 MiB", strings.Join(id, ","), v)
		}
		if _, ok := sample(m, "oomhero_memory_working_set_bytes", `namespace="`+ns+`"`, `pod="node-cache"`, `container="cache"`); !ok {
			return errors.New("no oomhero_memory_working_set_bytes series for node-cache")
		}
		for _, l := range strings.Split(m, "\n") {
			if strings.Contains(l, `pod="node-quiet"`) {
				return fmt.Errorf("a series names node-quiet, which did not opt in: %s", l)
			}
			if strings.HasPrefix(l, "oomhero_signals_total{") && !strings.Contains(l, `pod="node-leaker"`) {
				if pod := labelValue(l, "pod"); foreign[pod] == "" {
					return fmt.Errorf("a signal to another container: %s", l)
				}
			}
		}
		rss, _ := sample(m, "process_resident_memory_bytes")
		cpu, _ := sample(m, "process_cpu_seconds_total")
		t.Logf("agent %s: RSS %.1f MiB, CPU %.2f s since its start", agent, rss/(1<<20), cpu)
		return nil
	})

	// The BPF objects the agent holds, read from the host's procfs.
	pid := hostMainPID(cid, "oomhero-node")
	if pid == 0 {
		t.Fatalf("no host process oomhero-node in container %s", cid)
	}
	objs, err := bpfObjects(pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.progs) == 0 || len(objs.links) == 0 {
		t.Fatalf("agent (host pid %d) holds no BPF program or link: %+v", pid, objs)
	}
	if left := objs.alive(t); len(left) != len(objs.progs)+len(objs.links)+len(objs.maps) {
		t.Fatalf("the kernel does not find the agent's BPF objects while it runs (the check would prove nothing): %v of %+v", left, objs)
	}
	t.Logf("agent (host pid %d) holds BPF programs %v, links %v, maps %v", pid, objs.progs, objs.links, objs.maps)

	// The probes (`/oomhero probe` on the health socket) passed all along.
	if out := mustKubectl(t, "-n", nodeNS, "get", "pod", agent, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"); out != "0" {
		t.Errorf("agent %s restarted: restartCount %q", agent, out)
	}

	// Restart: the new agent watches both opted-in containers again.
	mustKubectl(t, "-n", nodeNS, "delete", "pod", agent, "--wait=true", "--timeout=60s")
	if err := waitGone(cid, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitObjectsGone(t, objs, "after the agent's pod was deleted")
	var agent2 string
	eventually(t, 90*time.Second, "a new agent pod ready", func() error {
		p := agentPodOrEmpty(t)
		if p == "" || p == agent {
			return fmt.Errorf("no new pod yet (%q)", p)
		}
		out, err := kubectl(t, "-n", nodeNS, "get", "pod", p, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if out != "True" {
			return fmt.Errorf("pod %s: Ready %q", p, out)
		}
		agent2 = p
		return nil
	})
	var al2 []map[string]string
	eventually(t, 30*time.Second, "the restarted agent watches node-leaker and node-cache", func() error {
		al2 = parseLogfmt(mustKubectl(t, "-n", nodeNS, "logs", agent2))
		for _, pod := range []string{"node-leaker", "node-cache"} {
			if watchedLine(al2, ns, pod) == nil {
				return fmt.Errorf("%s not watched yet", pod)
			}
		}
		return nil
	})
	began := logTime(t, findLine(al2, "oomhero starting"))
	t.Logf("restarted agent %s: %s", agent2, startPhases(t, al2, began))
	readyAt := mustKubectl(t, "-n", nodeNS, "get", "pod", agent2, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].lastTransitionTime}`)
	for _, pod := range []string{"node-leaker", "node-cache"} {
		took := logTime(t, watchedLine(al2, ns, pod)).Sub(began)
		t.Logf("restarted agent %s: %s watched %s after \"oomhero starting\" (pod Ready at %s)", agent2, pod, took, readyAt)
		if took > nodeRediscoverBound {
			t.Errorf("restarted agent: %s watched %s after its start, want within %s", pod, took, nodeRediscoverBound)
		}
	}
	eventually(t, 30*time.Second, "the restarted agent signals node-leaker (still past critical)", func() error {
		for _, e := range parseLogfmt(mustKubectl(t, "-n", nodeNS, "logs", agent2)) {
			if e["msg"] == "signal sent" && e["namespace"] == ns && e["pod"] == "node-leaker" && e["memory_level"] == "critical" {
				return nil
			}
		}
		return errors.New("no critical \"signal sent\" to node-leaker in the restarted agent's log")
	})
	al2 = parseLogfmt(mustKubectl(t, "-n", nodeNS, "logs", agent2))
	checkAgentLog(t, al2, ns)
	for _, pod := range []string{"node-cache", "node-quiet"} {
		if r := appRun(mustKubectl(t, "-n", ns, "logs", pod)); len(r.signals) > 0 {
			t.Errorf("%s received signals: %v", pod, r.signals)
		}
	}

	// A pod that goes away takes its series with it.
	mustKubectl(t, "-n", ns, "delete", "pod", "node-cache", "--grace-period=1", "--wait=true", "--timeout=60s")
	gone := time.Now()
	eventually(t, 30*time.Second, "node-cache's series gone from /metrics", func() error {
		m, err := kubectl(t, "get", "--raw", "/api/v1/namespaces/"+nodeNS+"/pods/"+agent2+":9090/proxy/metrics")
		if err != nil {
			return err
		}
		if _, ok := sample(m, "oomhero_memory_limit_bytes", `namespace="`+ns+`"`, `pod="node-leaker"`); !ok {
			return errors.New("no series of node-leaker either: is this the agent's /metrics?")
		}
		for _, l := range strings.Split(m, "\n") {
			if strings.Contains(l, `pod="node-cache"`) {
				return fmt.Errorf("still there: %s", l)
			}
		}
		return nil
	})
	t.Logf("node-cache's series gone from /metrics %s after its pod was deleted", time.Since(gone).Round(100*time.Millisecond))

	// Deleting the DaemonSet leaves none of its BPF objects in the kernel.
	cid2 := agentContainerID(t, agent2)
	pid2 := hostMainPID(cid2, "oomhero-node")
	objs2, err := bpfObjects(pid2)
	if err != nil || len(objs2.progs) == 0 {
		t.Fatalf("restarted agent (host pid %d): BPF objects %+v, %v", pid2, objs2, err)
	}
	del := time.Now()
	mustKubectl(t, "-n", nodeNS, "delete", "daemonset", nodeDS, "--cascade=foreground", "--wait=true", "--timeout=60s")
	if err := waitGone(cid2, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitObjectsGone(t, objs2, "after the DaemonSet was deleted")
	t.Logf("DaemonSet deleted, agent gone and its BPF programs %v, links %v, maps %v freed %s after the delete; test took %s",
		objs2.progs, objs2.links, objs2.maps, time.Since(del).Round(100*time.Millisecond), time.Since(start).Round(time.Second))
}

// foreignPods maps the pods (UIDs) of the containers the agent watched
// that are no pods of this cluster to their cgroup: kubelet-shaped cgroups
// of another test or benchmark on this host (cmd/oomhero's node tests,
// testenv/nodebench), whose processes opted in with OOMHERO=on themselves.
// The API server knows no such pod, so the agent names them by pod UID (no
// namespace) and posts their Events on its own pod. They are not this
// cluster's containers: the checks report them, and fail on anything the
// agent did to the cluster's other containers.
func foreignPods(t *testing.T, al []map[string]string) map[string]string {
	uids := strings.Fields(mustKubectl(t, "get", "pods", "-A", "-o", "jsonpath={.items[*].metadata.uid}"))
	out := map[string]string{}
	for _, e := range al {
		if e["msg"] == "container watched" && e["namespace"] == "" && !slices.Contains(uids, e["pod"]) {
			out[e["pod"]] = e["cgroup"]
		}
	}
	return out
}

// checkAgentLog: every signal the agent sent to the cluster's containers
// went to node-leaker; the agent never watched node-quiet or itself.
func checkAgentLog(t *testing.T, al []map[string]string, ns string) {
	t.Helper()
	foreign := foreignPods(t, al)
	if len(foreign) > 0 {
		parents := map[string]int{}
		for _, cg := range foreign {
			p, _, _ := strings.Cut(cg, "/kubepods")
			parents[p+"/kubepods..."]++
		}
		t.Logf("the agent also watched %d containers outside the cluster that opted in (not judged): %v", len(foreign), parents)
	}
	for _, e := range al {
		switch {
		case strings.HasPrefix(e["msg"], "signal sent") && foreign[e["pod"]] == "" && (e["namespace"] != ns || e["pod"] != "node-leaker"):
			t.Errorf("the agent signalled another container: %v", e)
		case e["msg"] == "container watched" && (e["pod"] == "node-quiet" || e["namespace"] == nodeNS):
			t.Errorf("the agent watches a container that did not opt in: %v", e)
		}
	}
}

func nodeEvents(t *testing.T, ns string) error {
	out, err := kubectl(t, "-n", ns, "get", "events", "-o", "json")
	if err != nil {
		return err
	}
	var list struct {
		Items []struct {
			Reason         string `json:"reason"`
			Type           string `json:"type"`
			Message        string `json:"message"`
			InvolvedObject struct {
				Kind, Namespace, Name, UID string
			} `json:"involvedObject"`
			Source struct {
				Component string `json:"component"`
			} `json:"source"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return err
	}
	uid := strings.TrimSpace(mustKubectl(t, "-n", ns, "get", "pod", "node-leaker", "-o", "jsonpath={.metadata.uid}"))
	got := map[string]bool{}
	for _, e := range list.Items {
		if e.Source.Component != "oomhero" {
			continue
		}
		o := e.InvolvedObject
		if o.Kind != "Pod" || o.Namespace != ns || o.Name != "node-leaker" || o.UID != uid {
			t.Errorf("an Event of oomhero on another object: %+v %s: %s", o, e.Reason, e.Message)
			continue
		}
		if e.Type == "Warning" && strings.Contains(e.Message, "container leaker") {
			got[e.Reason] = true
		}
	}
	for _, r := range []string{"MemoryWarning", "MemoryCritical"} {
		if !got[r] {
			return fmt.Errorf("no Warning %s Event of oomhero on pod %s/node-leaker naming container leaker (have %v)", r, ns, got)
		}
	}
	// Nothing on the agent's own pod about the cluster's containers (it
	// gets the Events of containers the API server does not name).
	sys, err := kubectl(t, "-n", nodeNS, "get", "events", "-o", `jsonpath={range .items[?(@.source.component=="oomhero")]}{.reason} {.involvedObject.name}: {.message}{"\n"}{end}`)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(sys), "\n") {
		for c := range strings.SplitSeq("leaker cache quiet", " ") {
			if strings.Contains(l, "container "+c+":") {
				t.Errorf("an Event about %s on the agent's pod: %s", c, l)
			}
		}
	}
	return nil
}

// agentPodOrEmpty names the agent pod that is not being deleted ("" when
// there is none).
func agentPodOrEmpty(t *testing.T) string {
	out, _ := kubectl(t, "-n", nodeNS, "get", "pods", "-l", nodeSelector, "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}`)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 1 {
			return f[0]
		}
	}
	return ""
}

func agentPod(t *testing.T) string {
	t.Helper()
	p := agentPodOrEmpty(t)
	if p == "" {
		t.Fatal("no agent pod")
	}
	return p
}

func agentContainerID(t *testing.T, pod string) string {
	t.Helper()
	ids, err := containerIDsIn(t, nodeNS, pod)
	if err != nil || ids["oomhero"] == "" {
		t.Fatalf("agent %s: container id: %v %v", pod, ids, err)
	}
	return ids["oomhero"]
}

func containerIDsIn(t *testing.T, ns, pod string) (map[string]string, error) {
	out, err := kubectl(t, "-n", ns, "get", "pod", pod, "-o", `jsonpath={range .status.containerStatuses[*]}{.name}={.containerID}{"\n"}{end}`)
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		name, id, ok := strings.Cut(l, "=")
		if ok && id != "" {
			ids[name] = strings.TrimPrefix(id, "containerd://")
		}
	}
	return ids, nil
}

// hostPIDs lists the host processes whose cgroup names container id, with
// their command.
func hostPIDs(id string) map[int]string {
	out := map[int]string{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cg), id) {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
		out[pid] = strings.TrimSpace(string(comm))
	}
	return out
}

func hostMainPID(id, comm string) int {
	for pid, c := range hostPIDs(id) {
		if c == comm {
			return pid
		}
	}
	return 0
}

func waitGone(id string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ps := hostPIDs(id)
		if len(ps) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of container %s still run %s after their pod was deleted: %v", id, timeout, ps)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// BPF objects by kernel ID. An object exists while the kernel finds its ID
// (bpf(2) BPF_*_GET_FD_BY_ID: ENOENT once it is freed); this needs
// CAP_SYS_ADMIN, which the test has as root. Pinned objects and links held
// by the kernel alone would keep their IDs: the check sees them too.
type bpfObjs struct{ progs, links, maps []uint32 }

const (
	bpfProgGetFDByID = 13 // include/uapi/linux/bpf.h, enum bpf_cmd
	bpfMapGetFDByID  = 14
	bpfLinkGetFDByID = 30
)

// sysBPF is bpf(2)'s number (the syscall package does not define it).
func sysBPF() (uintptr, bool) {
	switch runtime.GOARCH {
	case "amd64":
		return 321, true
	case "arm64", "riscv64", "loong64":
		return 280, true
	case "386":
		return 357, true
	}
	return 0, false
}

// bpfObjects reads the BPF objects process pid holds from its fdinfo
// (prog_id of bpf-prog and bpf_link files, link_id, map_id).
func bpfObjects(pid int) (bpfObjs, error) {
	var o bpfObjs
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return o, err
	}
	add := func(s *[]uint32, v string) {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err == nil && !slices.Contains(*s, uint32(n)) {
			*s = append(*s, uint32(n))
		}
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			switch k {
			case "prog_id":
				add(&o.progs, v)
			case "link_id":
				add(&o.links, v)
			case "map_id":
				add(&o.maps, v)
			}
		}
	}
	slices.Sort(o.progs)
	slices.Sort(o.links)
	slices.Sort(o.maps)
	return o, nil
}

// alive lists the objects of o the kernel still finds.
func (o bpfObjs) alive(t *testing.T) []string {
	t.Helper()
	nr, ok := sysBPF()
	if !ok {
		t.Fatalf("bpf(2) syscall number unknown on %s", runtime.GOARCH)
	}
	var left []string
	for _, k := range []struct {
		what string
		cmd  uintptr
		ids  []uint32
	}{{"program", bpfProgGetFDByID, o.progs}, {"link", bpfLinkGetFDByID, o.links}, {"map", bpfMapGetFDByID, o.maps}} {
		for _, id := range k.ids {
			attr := [4]uint32{id} // union bpf_attr: prog_id/map_id/link_id, next_id, open_flags
			fd, _, errno := syscall.Syscall(nr, k.cmd, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
			switch errno {
			case 0:
				syscall.Close(int(fd))
				left = append(left, fmt.Sprintf("%s %d", k.what, id))
			case syscall.ENOENT:
			default:
				t.Fatalf("bpf(GET_FD_BY_ID) of %s %d: %v", k.what, id, errno)
			}
		}
	}
	return left
}

func waitObjectsGone(t *testing.T, o bpfObjs, when string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second) // freeing is deferred (RCU, work queue)
	for {
		left := o.alive(t)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("BPF objects of oomhero still in the kernel %s: %v", when, left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parseLogfmt parses oomhero's text log (log/slog's TextHandler: key=value,
// values quoted with Go syntax when they need it).
func parseLogfmt(s string) []map[string]string {
	var out []map[string]string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		e := map[string]string{}
		for line != "" {
			line = strings.TrimLeft(line, " ")
			k, rest, ok := strings.Cut(line, "=")
			if !ok || strings.Contains(k, " ") {
				break
			}
			var v string
			if strings.HasPrefix(rest, `"`) {
				q, err := strconv.QuotedPrefix(rest)
				if err != nil {
					break
				}
				v, _ = strconv.Unquote(q)
				rest = rest[len(q):]
			} else {
				v, rest, _ = strings.Cut(rest, " ")
			}
			e[k] = v
			line = rest
		}
		if len(e) > 0 {
			out = append(out, e)
		}
	}
	return out
}

func findLine(al []map[string]string, msg string) map[string]string {
	for _, e := range al {
		if e["msg"] == msg {
			return e
		}
	}
	return nil
}

func watchedLine(al []map[string]string, ns, pod string) map[string]string {
	for _, e := range al {
		if e["msg"] == "container watched" && e["namespace"] == ns && e["pod"] == pod {
			return e
		}
	}
	return nil
}

// startPhases says when the agent's start-up steps ended, counted from
// "oomhero starting": what a slow re-discovery spent its time on.
func startPhases(t *testing.T, al []map[string]string, began time.Time) string {
	t.Helper()
	var b strings.Builder
	seen := map[string]bool{}
	for _, e := range al {
		msg := e["msg"]
		if seen[msg] || msg == "signal sent" {
			continue
		}
		seen[msg] = true
		ts, err := time.Parse(time.RFC3339Nano, e["time"])
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s +%s; ", msg, ts.Sub(began).Round(time.Millisecond))
	}
	return b.String()
}

func logTime(t *testing.T, e map[string]string) time.Time {
	t.Helper()
	if e == nil {
		t.Fatal("log line missing")
	}
	ts, err := time.Parse(time.RFC3339Nano, e["time"])
	if err != nil {
		t.Fatalf("log time %q: %v", e["time"], err)
	}
	return ts
}

// appLogRun is what the test application logged (testenv/app's format).
type appLogRun struct {
	limit   int64
	samples []appSample
	signals []appSignal
}

type appSample struct{ mono, usage, ws int64 }

type appSignal struct {
	name     string
	mono, ws int64 // the app's working set when it handled the signal
}

func appRun(log string) appLogRun {
	var r appLogRun
	for _, l := range strings.Split(log, "\n") {
		kv := map[string]string{}
		for _, f := range strings.Fields(l) {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		n := func(k string) int64 { v, _ := strconv.ParseInt(kv[k], 10, 64); return v }
		switch kv["event"] {
		case "start":
			r.limit = n("limit")
		case "sample":
			r.samples = append(r.samples, appSample{n("mono_ns"), n("usage"), n("working_set")})
		case "signal":
			r.signals = append(r.signals, appSignal{kv["signal"], n("mono_ns"), n("working_set")})
		}
	}
	return r
}

// latency is the time from the first sample at or above thr to the first
// receipt of sig at or above it (negative when the signal came before the
// app's own sample after the chunk that crossed). Receipts of sig at a
// working set below thr less two chunks and the kernel's charge-ahead are
// returned as early: the working set only grows until the cap, so no
// threshold at thr sent them.
//
// The charge-ahead: the kernel charges a cgroup's memory counter 64 pages
// at a time per CPU (MEMCG_CHARGE_BATCH) and gives back what a CPU has not
// used when another cgroup charges there. The BPF program judges the
// counter as it is on the charge (with the pages taken ahead), the app's
// sample a moment later can find them given back: a signal the program
// sent on the crossing page can arrive at a working set up to 64 pages per
// CPU below the threshold (seen: 252 KiB below on this 2-CPU cluster).
func (r appLogRun) latency(thr int64, sig string) (time.Duration, []appSignal, error) {
	slack := int64(2*64<<10 + 64*os.Getpagesize()*runtime.NumCPU())
	var early []appSignal
	var crossed int64 = -1
	for _, s := range r.samples {
		if s.ws >= thr {
			crossed = s.mono
			break
		}
	}
	if crossed < 0 {
		return 0, early, fmt.Errorf("the working set never reached %d bytes in the app's samples", thr)
	}
	for _, s := range r.signals {
		if s.name != sig {
			continue
		}
		if s.ws < thr-slack {
			early = append(early, s)
			continue
		}
		return time.Duration(s.mono - crossed), early, nil
	}
	return 0, early, fmt.Errorf("no %s received at or above %d bytes", sig, thr)
}

// otherOomheros lists oomhero processes in the host's PID namespace (the
// ones that can see the cluster's pods; sidecars see their own pod only)
// but those of container id: their PIDs and command lines.
func otherOomheros(id string) []string {
	var out []string
	hostNS, _ := os.Readlink("/proc/self/ns/pid")
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", d.Name())
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		cg, _ := os.ReadFile(filepath.Join(dir, "cgroup"))
		ns, _ := os.Readlink(filepath.Join(dir, "ns", "pid"))
		if !strings.HasPrefix(string(comm), "oomhero") || ns != hostNS || strings.Contains(string(cg), id) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		out = append(out, d.Name()+" "+strings.ReplaceAll(strings.TrimSpace(string(cmd)), "\x00", " "))
	}
	return out
}

func (r appLogRun) maxPercent(what string) float64 {
	var m int64
	for _, s := range r.samples {
		v := s.ws
		if what == "usage" {
			v = s.usage
		}
		m = max(m, v)
	}
	if r.limit == 0 {
		return 0
	}
	return 100 * float64(m) / float64(r.limit)
}

// labelValue returns the value of label name in a Prometheus text line.
func labelValue(line, name string) string {
	_, v, ok := strings.Cut(line, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ = strings.Cut(v, `"`)
	return v
}

func withoutSamples(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "event=sample ") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
