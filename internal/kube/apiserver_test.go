//go:build !nokube

package kube

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeAPI is an API server for core/v1 pods that serves LIST and WATCH at
// /api/v1/pods the way kube-apiserver does for the informer: field selector
// spec.nodeName=<node> (the only selector it accepts), resource versions,
// watches resumed from a resource version, and streaming lists
// (sendInitialEvents, ended by a bookmark) when watchList is set; without it
// a streaming list is refused as by a server without the WatchList feature,
// and the informer falls back to LIST.
type fakeAPI struct {
	t         *testing.T
	srv       *httptest.Server
	watchList bool

	mu       sync.Mutex
	rv       int
	pods     map[string]*corev1.Pod // by namespace/name
	log      []fakeEvent
	changed  chan struct{} // closed and replaced on every event
	forbid   bool          // answer 403, as without RBAC
	expire   int           // this many watches get 410 Gone, as when etcd compacted past their version
	requests []string      // "list" or "watch" or "watchlist", with the selector
}

type fakeEvent struct {
	rv  int
	typ string
	pod *corev1.Pod
}

func newFakeAPI(t *testing.T, watchList bool) *fakeAPI {
	a := &fakeAPI{t: t, watchList: watchList, pods: map[string]*corev1.Pod{}, changed: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

// kubeconfig writes a kubeconfig file whose current context is this server.
func (a *fakeAPI) kubeconfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: %s
users:
- name: agent
  user:
    token: test-token
contexts:
- name: fake
  context: {cluster: fake, user: agent}
current-context: fake
`, a.srv.URL)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// put adds or replaces a pod, as a create or an update.
func (a *fakeAPI) put(p *corev1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := p.Namespace + "/" + p.Name
	typ := "ADDED"
	if _, ok := a.pods[key]; ok {
		typ = "MODIFIED"
	}
	a.rv++
	p = p.DeepCopy()
	p.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
	p.ResourceVersion = strconv.Itoa(a.rv)
	a.pods[key] = p
	a.emit(typ, p)
}

func (a *fakeAPI) delete(namespace, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := namespace + "/" + name
	p, ok := a.pods[key]
	if !ok {
		a.t.Fatalf("fake API: delete %s: no such pod", key)
	}
	delete(a.pods, key)
	a.rv++
	p = p.DeepCopy()
	p.ResourceVersion = strconv.Itoa(a.rv)
	a.emit("DELETED", p)
}

// emit appends an event; a.mu is held.
func (a *fakeAPI) emit(typ string, p *corev1.Pod) {
	a.log = append(a.log, fakeEvent{a.rv, typ, p})
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *fakeAPI) setForbidden(f bool) {
	a.mu.Lock()
	a.forbid = f
	a.mu.Unlock()
}

func (a *fakeAPI) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.requests...)
}

func (a *fakeAPI) status(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(&metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg,
	})
}

func (a *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/pods" || r.Method != http.MethodGet {
		a.status(w, http.StatusNotFound, metav1.StatusReasonNotFound, r.Method+" "+r.URL.Path+" not served")
		return
	}
	q := r.URL.Query()
	node, ok := strings.CutPrefix(q.Get("fieldSelector"), "spec.nodeName=")
	if !ok || node == "" || strings.ContainsAny(node, ",=!") {
		a.t.Errorf("fake API: request %s without the field selector spec.nodeName=<node>", r.URL)
		a.status(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "fieldSelector spec.nodeName=<node> required")
		return
	}
	kind := "list"
	if q.Get("watch") == "true" {
		kind = "watch"
		if q.Get("sendInitialEvents") == "true" {
			kind = "watchlist"
		}
	}
	a.mu.Lock()
	a.requests = append(a.requests, kind+" "+q.Get("fieldSelector"))
	forbid := a.forbid
	a.mu.Unlock()
	if forbid {
		a.status(w, http.StatusForbidden, metav1.StatusReasonForbidden,
			`pods is forbidden: User "system:serviceaccount:oomhero-system:oomhero-node" cannot list resource "pods"`)
		return
	}
	switch kind {
	case "list":
		a.list(w, node)
	case "watch":
		a.mu.Lock()
		expire := a.expire > 0
		if expire {
			a.expire--
		}
		a.mu.Unlock()
		if expire {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"type": "ERROR", "object": &metav1.Status{
				TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status:   metav1.StatusFailure, Code: http.StatusGone, Reason: metav1.StatusReasonExpired,
				Message: "too old resource version: " + q.Get("resourceVersion"),
			}})
			return
		}
		from, err := strconv.Atoi(q.Get("resourceVersion"))
		if err != nil {
			a.status(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "resourceVersion: "+err.Error())
			return
		}
		a.watch(w, r, node, from, false)
	case "watchlist":
		if !a.watchList {
			a.status(w, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid,
				"sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")
			return
		}
		a.watch(w, r, node, 0, true)
	}
}

func (a *fakeAPI) list(w http.ResponseWriter, node string) {
	a.mu.Lock()
	l := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
	l.ResourceVersion = strconv.Itoa(a.rv)
	for _, p := range a.pods {
		if p.Spec.NodeName == node {
			l.Items = append(l.Items, *p)
		}
	}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&l)
}

// watch streams the events after resource version from (or, for a streaming
// list, the current pods, then a bookmark, then later events) until the
// client goes away.
func (a *fakeAPI) watch(w http.ResponseWriter, r *http.Request, node string, from int, initial bool) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	fl := w.(http.Flusher)
	send := func(typ string, p *corev1.Pod) bool {
		if err := enc.Encode(map[string]any{"type": typ, "object": p}); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	a.mu.Lock()
	if initial {
		for _, p := range a.pods {
			if p.Spec.NodeName == node && !send("ADDED", p) {
				a.mu.Unlock()
				return
			}
		}
		from = a.rv
		bm := &corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}}
		bm.ResourceVersion = strconv.Itoa(from)
		bm.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
		if !send("BOOKMARK", bm) {
			a.mu.Unlock()
			return
		}
	}
	for {
		for _, e := range a.log {
			if e.rv > from && e.pod.Spec.NodeName == node && !send(e.typ, e.pod) {
				a.mu.Unlock()
				return
			}
		}
		from = a.rv
		changed := a.changed
		a.mu.Unlock()
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		}
		a.mu.Lock()
	}
}
