package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/kube"
)

type fakePods map[string]kube.Identity // by pod UID

func (f fakePods) Lookup(ref kube.Ref) (kube.Identity, bool) {
	id, ok := f[ref.PodUID]
	if ok {
		id.ContainerID = ref.ContainerID
		if ref.ContainerID != "c0ffee"+strings.Repeat("0", 58) {
			id.Container = "" // not among the pod's statuses
		}
	}
	return id, ok
}

// Synced: a fakePods lists every pod of the node.
func (f fakePods) Synced() bool { return true }

// listing is a pod index whose first list has not come yet.
type listing struct{ fakePods }

func (listing) Synced() bool { return false }

func TestNodeIdentifier(t *testing.T) {
	const uid = "0f9e6a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
	cid := "c0ffee" + strings.Repeat("0", 58)
	path := "/kubepods/burstable/pod" + uid + "/" + cid
	pods := fakePods{uid: {Namespace: "shop", Pod: "web-1", Container: "app", PodUID: uid, Annotations: map[string]string{"oomhero.dev/watch": "true"}}}
	for _, tc := range []struct {
		name string
		n    nodeIdentifier
		path string
		ok   bool
		want string
	}{
		{"api", nodeIdentifier{pods: pods}, path, true, "shop/web-1/app " + uid + " " + cid + " map[oomhero.dev/watch:true]"},
		{"api, unknown container", nodeIdentifier{pods: pods}, "/kubepods/burstable/pod" + uid + "/" + strings.Repeat("a", 64), true, "shop/web-1/ " + uid + " " + strings.Repeat("a", 64) + " map[oomhero.dev/watch:true]"},
		{"api, pods not listed yet", nodeIdentifier{pods: listing{}}, path, true, "// " + uid + " " + cid + " map[]"},
		{"api, no such pod on this node", nodeIdentifier{pods: fakePods{}}, path, true, "// " + uid + " " + cid + " map[] unlisted"},
		{"no api", nodeIdentifier{}, path, true, "// " + uid + " " + cid + " map[]"},
		{"systemd service", nodeIdentifier{pods: pods}, "/system.slice/kubelet.service", false, ""},
		{"the kubelet's own", nodeIdentifier{pods: pods}, "/kubepods", false, ""},
		{"a sidecar's view", nodeIdentifier{}, "/", false, ""},
	} {
		id, ok := tc.n.Identify(tc.path)
		got := ""
		if ok {
			got = id.Namespace + "/" + id.Pod + "/" + id.Container + " " + id.PodUID + " " + id.ContainerID + " " + fmtMap(id.Annotations)
			if id.Unlisted {
				got += " unlisted"
			}
		}
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: Identify(%s) = %q %v, want %q %v", tc.name, tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func fmtMap(m map[string]string) string {
	var b strings.Builder
	b.WriteString("map[")
	for k, v := range m {
		b.WriteString(k + ":" + v)
	}
	b.WriteString("]")
	return b.String()
}

// Without the API server node mode still runs, and says once why.
func TestNewIdentifierWithoutAPIServer(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	for _, tc := range []struct {
		args []string
		why  string
	}{
		{[]string{"--kube=off", "--node-name=n1"}, "--kube off"},
		{[]string{"--node-name="}, "--node-name (env NODE_NAME"},
		{[]string{"--node-name=n1"}, "not in a cluster"},
	} {
		cfg, err := config.ParseNode(tc.args, func(string) (string, bool) { return "", false }, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		id := newIdentifier(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if n, ok := id.(nodeIdentifier); !ok || n.pods != nil {
			t.Errorf("%v: identifier %#v, want one without the API server", tc.args, id)
		}
		if !strings.Contains(logs.String(), "pods not named through the API server") || !strings.Contains(logs.String(), tc.why) {
			t.Errorf("%v: log %q lacks %q", tc.args, logs.String(), tc.why)
		}
	}
}
