//go:build !nokube

package kube

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Container ids as the runtimes make them: 64 hex digits.
func cid(n byte) string { return strings.Repeat(string("0123456789abcdef"[n%16]), 64) }

const (
	uidA      = "11111111-2222-4333-8444-555555555555"
	uidB      = "66666666-7777-4888-9999-aaaaaaaaaaaa"
	uidMirror = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"
	hashEtcd  = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
)

func statuses(pairs ...string) []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, corev1.ContainerStatus{
			Name: pairs[i], ContainerID: pairs[i+1], Ready: true, RestartCount: 1,
			Image: "registry.example/app:1", ImageID: "sha256:" + cid(9),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		})
	}
	return out
}

// podOn is a pod as the API server sends it, with the bulk a real one has
// (spec, managed fields, a last-applied annotation) that the index must drop.
func podOn(node, ns, name, uid string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, UID: types.UID(uid),
			Labels: map[string]string{"app": name},
			Annotations: map[string]string{
				"oomhero.dev/watch":   "true",
				"oomhero.dev/warning": "70",
				"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096),
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
		},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}, {Name: "sidecar", Image: "registry.example/side:1"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.7"},
	}
}

func startPods(t *testing.T, api *fakeAPI, node string) (*Pods, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logs := new(syncBuffer)
	p, err := NewPods(ctx, PodsConfig{
		NodeName: node, Kubeconfig: api.kubeconfig(t),
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("NewPods: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("kube logs:\n%s", logs)
		}
	})
	return p, logs
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestPods(t *testing.T) {
	for _, mode := range []struct {
		name      string
		watchList bool
	}{{"list and watch", false}, {"streaming list", true}} {
		t.Run(mode.name, func(t *testing.T) { testPods(t, mode.watchList) })
	}
}

func testPods(t *testing.T, watchList bool) {
	api := newFakeAPI(t, watchList)

	a := podOn("node-a", "shop", "web-0", uidA)
	a.Status.ContainerStatuses = statuses("app", "containerd://"+cid(1), "sidecar", "containerd://"+cid(2))
	a.Status.InitContainerStatuses = statuses("migrate", "containerd://"+cid(3))
	a.Status.EphemeralContainerStatuses = statuses("debugger", "containerd://"+cid(4))
	api.put(a)
	b := podOn("node-b", "shop", "web-1", uidB)
	b.Status.ContainerStatuses = statuses("app", "containerd://"+cid(5))
	api.put(b)
	// A static pod's mirror: its cgroup path has the config hash, not the UID.
	m := podOn("node-a", "kube-system", "etcd-node-a", uidMirror)
	m.Annotations["kubernetes.io/config.mirror"] = hashEtcd
	m.Annotations["kubernetes.io/config.hash"] = hashEtcd
	m.Status.ContainerStatuses = statuses("etcd", "cri-o://"+cid(6))
	api.put(m)

	pods, _ := startPods(t, api, "node-a")
	deleted := make(chan string, 10)
	pods.OnDelete(func(uid string) { deleted <- uid })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pods.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}
	if !pods.Synced() {
		t.Fatal("Synced() = false after WaitSynced")
	}
	wantAnn := map[string]string{"oomhero.dev/watch": "true", "oomhero.dev/warning": "70"}
	for _, tc := range []struct {
		name string
		ref  Ref
		want Identity
		ok   bool
	}{
		{"container", Ref{PodUID: uidA, ContainerID: cid(1)},
			Identity{"shop", "web-0", "app", uidA, cid(1), wantAnn}, true},
		{"second container", Ref{PodUID: uidA, ContainerID: cid(2), Runtime: RuntimeContainerd},
			Identity{"shop", "web-0", "sidecar", uidA, cid(2), wantAnn}, true},
		{"init container", Ref{PodUID: uidA, ContainerID: cid(3)},
			Identity{"shop", "web-0", "migrate", uidA, cid(3), wantAnn}, true},
		{"ephemeral container", Ref{PodUID: uidA, ContainerID: cid(4)},
			Identity{"shop", "web-0", "debugger", uidA, cid(4), wantAnn}, true},
		{"sandbox or unreported container", Ref{PodUID: uidA, ContainerID: cid(7)},
			Identity{"shop", "web-0", "", uidA, cid(7), wantAnn}, true},
		{"container of another pod", Ref{PodUID: uidA, ContainerID: cid(6)},
			Identity{"shop", "web-0", "", uidA, cid(6), wantAnn}, true},
		{"static pod by config hash", Ref{PodUID: hashEtcd, ContainerID: cid(6), Runtime: RuntimeCRIO},
			Identity{"kube-system", "etcd-node-a", "etcd", uidMirror, cid(6), wantAnn}, true},
		{"pod of another node", Ref{PodUID: uidB, ContainerID: cid(5)}, Identity{}, false},
		{"unknown pod", Ref{PodUID: "00000000-0000-4000-8000-000000000000", ContainerID: cid(1)}, Identity{}, false},
		{"empty ref", Ref{}, Identity{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := pods.Lookup(tc.ref)
			if ok != tc.ok || !sameIdentity(got, tc.want) {
				t.Errorf("Lookup(%+v) = %+v, %v; want %+v, %v", tc.ref, got, ok, tc.want, tc.ok)
			}
		})
	}
	// The caller owns the annotations it gets.
	got, _ := pods.Lookup(Ref{PodUID: uidA, ContainerID: cid(1)})
	got.Annotations["oomhero.dev/watch"] = "false"
	if again, _ := pods.Lookup(Ref{PodUID: uidA, ContainerID: cid(1)}); again.Annotations["oomhero.dev/watch"] != "true" {
		t.Error("changing the annotations Lookup returned changed the index")
	}

	// Restarted container: the kubelet reports a new id.
	a.Status.ContainerStatuses = statuses("app", "containerd://"+cid(8), "sidecar", "containerd://"+cid(2))
	api.put(a)
	eventually(t, "the restarted container's new id", func() bool {
		id, ok := pods.Lookup(Ref{PodUID: uidA, ContainerID: cid(8)})
		return ok && id.Container == "app"
	})
	if id, _ := pods.Lookup(Ref{PodUID: uidA, ContainerID: cid(1)}); id.Container != "" {
		t.Errorf("the old id of a restarted container still names %q", id.Container)
	}

	// A pod scheduled on another node, then one on this node: the first
	// never shows, though it came first.
	c := podOn("node-b", "batch", "job-x", "cccccccc-0000-4000-8000-000000000001")
	c.Status.ContainerStatuses = statuses("job", "containerd://"+cid(10))
	api.put(c)
	d := podOn("node-a", "batch", "job-y", "dddddddd-0000-4000-8000-000000000002")
	d.Status.ContainerStatuses = statuses("job", "containerd://"+cid(11))
	api.put(d)
	eventually(t, "the new pod of node-a", func() bool {
		id, ok := pods.Lookup(Ref{PodUID: string(d.UID), ContainerID: cid(11)})
		return ok && id.Container == "job"
	})
	if id, ok := pods.Lookup(Ref{PodUID: string(c.UID), ContainerID: cid(10)}); ok {
		t.Errorf("a pod of node-b is in node-a's index: %+v", id)
	}
	for _, k := range pods.informer.GetStore().ListKeys() {
		if strings.HasSuffix(k, "/web-1") || strings.HasSuffix(k, "/job-x") {
			t.Errorf("a pod of node-b is in node-a's index: %s", k)
		}
	}

	// Deletes: OnDelete gets the UID of the cgroup path.
	api.delete("shop", "web-0")
	api.delete("kube-system", "etcd-node-a")
	api.delete("batch", "job-x") // node-b: no event here
	for _, want := range []string{uidA, hashEtcd} {
		select {
		case got := <-deleted:
			if got != want {
				t.Errorf("OnDelete got %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("OnDelete not called for %s", want)
		}
	}
	if _, ok := pods.Lookup(Ref{PodUID: uidA, ContainerID: cid(8)}); ok {
		t.Error("a deleted pod is still found")
	}
	select {
	case got := <-deleted:
		t.Errorf("OnDelete called for %s, a pod of another node", got)
	case <-time.After(100 * time.Millisecond):
	}

	// Every request carried this node's field selector and nothing else.
	kinds := map[string]bool{}
	for _, r := range api.seen() {
		kind, sel, _ := strings.Cut(r, " ")
		kinds[kind] = true
		if sel != "spec.nodeName=node-a" {
			t.Errorf("request %q: field selector %q, want spec.nodeName=node-a", kind, sel)
		}
	}
	if watchList && !kinds["watchlist"] || !watchList && (!kinds["list"] || !kinds["watch"]) {
		t.Errorf("requests %v: not the informer's list and watch", api.seen())
	}
}

func sameIdentity(a, b Identity) bool {
	if a.Namespace != b.Namespace || a.Pod != b.Pod || a.Container != b.Container || a.PodUID != b.PodUID || a.ContainerID != b.ContainerID {
		return false
	}
	if len(a.Annotations) != len(b.Annotations) {
		return false
	}
	for k, v := range b.Annotations {
		if a.Annotations[k] != v {
			return false
		}
	}
	return true
}

func TestPodsStoredStripped(t *testing.T) {
	api := newFakeAPI(t, false)
	a := podOn("node-a", "shop", "web-0", uidA)
	a.Status.ContainerStatuses = statuses("app", "containerd://"+cid(1))
	api.put(a)
	pods, _ := startPods(t, api, "node-a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pods.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	objs := pods.informer.GetStore().List()
	if len(objs) != 1 {
		t.Fatalf("store holds %d objects, want 1", len(objs))
	}
	p := objs[0].(*corev1.Pod)
	if len(p.ManagedFields) != 0 || len(p.Labels) != 0 || len(p.Spec.Containers) != 0 || p.Spec.NodeName != "" ||
		p.Status.PodIP != "" || p.Status.Phase != "" || p.Status.ContainerStatuses[0].State.Running != nil ||
		p.Status.ContainerStatuses[0].Image != "" || p.Annotations["kubectl.kubernetes.io/last-applied-configuration"] != "" {
		t.Errorf("stored pod not stripped: %+v", p)
	}
	if p.Name != "web-0" || p.Namespace != "shop" || string(p.UID) != uidA || p.Annotations["oomhero.dev/watch"] != "true" ||
		p.Status.ContainerStatuses[0].ContainerID != "containerd://"+cid(1) {
		t.Errorf("stored pod lost what Lookup needs: %+v", p)
	}
	// The transform is idempotent and leaves tombstones alone.
	again, _ := strip(p)
	if s := again.(*corev1.Pod); s.Name != p.Name || s.Annotations["oomhero.dev/watch"] != "true" || s.Status.ContainerStatuses[0].ContainerID != p.Status.ContainerStatuses[0].ContainerID {
		t.Errorf("strip(strip(pod)) = %+v", s)
	}
	if got, _ := strip("tombstone"); got != "tombstone" {
		t.Errorf("strip(non-pod) = %v", got)
	}
}

func TestPodsForbidden(t *testing.T) {
	api := newFakeAPI(t, true)
	api.setForbidden(true)
	pods, logs := startPods(t, api, "node-a")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := pods.WaitSynced(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "node-a") ||
		!strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("WaitSynced without RBAC = %v; want the deadline, the node and the API's denial", err)
	}
	if pods.Synced() {
		t.Error("Synced() = true though nothing was listed")
	}
	if l := logs.String(); !strings.Contains(l, "listing or watching pods failed") || !strings.Contains(l, "forbidden") {
		t.Errorf("the denial is not in the log:\n%s", l)
	}
	// RBAC granted later: the informer's retry lists the pods.
	api.setForbidden(false)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	if err := pods.WaitSynced(ctx2); err != nil {
		t.Fatalf("WaitSynced after RBAC granted: %v", err)
	}
}

// A watch whose resource version expired (410 Gone) is routine: the
// informer lists again, sees what changed meanwhile, and nothing is logged
// above debug level.
func TestPodsWatchExpired(t *testing.T) {
	api := newFakeAPI(t, false)
	api.mu.Lock()
	api.expire = 1
	api.mu.Unlock()
	a := podOn("node-a", "shop", "web-0", uidA)
	a.Status.ContainerStatuses = statuses("app", "containerd://"+cid(1))
	api.put(a)
	pods, logs := startPods(t, api, "node-a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pods.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watch after the 410", func() bool {
		n := 0
		for _, r := range api.seen() {
			if strings.HasPrefix(r, "watch ") {
				n++
			}
		}
		return n >= 2
	})
	b := podOn("node-a", "shop", "web-1", uidB)
	b.Status.ContainerStatuses = statuses("app", "containerd://"+cid(2))
	api.put(b)
	eventually(t, "a pod added after the relist", func() bool {
		id, ok := pods.Lookup(Ref{PodUID: uidB, ContainerID: cid(2)})
		return ok && id.Container == "app"
	})
	if l := logs.String(); strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
		t.Errorf("an expired watch was logged as a problem:\n%s", l)
	}
}

func TestNewPodsErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := NewPods(ctx, PodsConfig{Kubeconfig: "/nonexistent"}); err == nil || !strings.Contains(err.Error(), "NodeName") {
		t.Errorf("NewPods without a node = %v; want an error naming NodeName", err)
	}
	if _, err := NewPods(ctx, PodsConfig{NodeName: "n", Kubeconfig: "/nonexistent/kubeconfig"}); err == nil ||
		!strings.Contains(err.Error(), "/nonexistent/kubeconfig") {
		t.Errorf("NewPods with a missing kubeconfig = %v; want an error naming the file", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	if _, err := NewPods(ctx, PodsConfig{NodeName: "n"}); err == nil || !strings.Contains(err.Error(), "in-cluster") {
		t.Errorf("NewPods outside a cluster without kubeconfig = %v; want an in-cluster config error", err)
	}
}
