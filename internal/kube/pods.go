//go:build !nokube

package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Pods is an index of the pods of one node, kept current by a shared
// informer. Its methods are safe for concurrent use.
type Pods struct {
	node     string
	informer cache.SharedIndexInformer
	log      *slog.Logger

	mu       sync.Mutex
	onDelete []func(podUID string)
	lastErr  error // the last list or watch error, for WaitSynced
}

// uidIndex indexes pods by the UID their cgroup paths carry: metadata.uid,
// and for a mirror pod also the static pod's config hash.
const uidIndex = "cgroupUID"

func cgroupUIDs(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, fmt.Errorf("kube: index %s: got %T, want *v1.Pod", uidIndex, obj)
	}
	keys := []string{string(p.UID)}
	if h := p.Annotations[mirrorAnnotation]; h != "" {
		keys = append(keys, h)
	}
	return keys, nil
}

// NewPods starts an informer on the core/v1 pods of cfg.NodeName (field
// selector spec.nodeName=<node>, so the API server sends no other node's
// pods) and returns at once; Synced and WaitSynced tell when the first list
// has arrived. The informer stops when ctx is done.
func NewPods(ctx context.Context, cfg PodsConfig) (*Pods, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("kube: PodsConfig.NodeName is empty: the node whose pods to list is needed (Downward API spec.nodeName)")
	}
	rc, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return newPods(ctx, cfg, rc)
}

func newPods(ctx context.Context, cfg PodsConfig, rc *rest.Config) (*Pods, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	client, err := coreV1Client(rc, log)
	if err != nil {
		return nil, err
	}
	sel := fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	lw := cache.NewFilteredListWatchFromClient(client, "pods", metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.FieldSelector = sel
	})
	inf := cache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, cache.SharedIndexInformerOptions{
		ResyncPeriod:      cfg.Resync,
		Indexers:          cache.Indexers{uidIndex: cgroupUIDs},
		ObjectDescription: "pods of node " + cfg.NodeName,
	})
	p := &Pods{node: cfg.NodeName, informer: inf, log: log}
	if err := inf.SetTransform(strip); err != nil {
		return nil, fmt.Errorf("kube: pod informer transform: %w", err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(p.watchError); err != nil {
		return nil, fmt.Errorf("kube: pod informer error handler: %w", err)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: p.deleted}); err != nil {
		return nil, fmt.Errorf("kube: pod informer delete handler: %w", err)
	}
	// client-go logs through the logger in the context (contextual
	// logging): route it to ours rather than klog's global stderr.
	go inf.RunWithContext(klog.NewContext(ctx, logr.FromSlogHandler(log.Handler())))
	return p, nil
}

// watchError records and logs a failed list or watch; the reflector retries
// with backoff by itself. A watch that ends (EOF) or whose resource version
// expired (410 Gone: the reflector lists again) is routine, as in client-go's
// DefaultWatchErrorHandler, and only logged at debug level.
func (p *Pods) watchError(ctx context.Context, _ *cache.Reflector, err error) {
	switch {
	case errors.Is(err, io.EOF):
		return
	case errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
		p.log.DebugContext(ctx, "kube: pod watch closed", "node", p.node, "err", err)
		return
	}
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
	p.log.WarnContext(ctx, "kube: listing or watching pods failed (retrying)", "node", p.node, "err", err)
}

func (p *Pods) deleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	uid := string(pod.UID)
	if h := pod.Annotations[mirrorAnnotation]; h != "" {
		uid = h
	}
	p.mu.Lock()
	fns := p.onDelete
	p.mu.Unlock()
	for _, f := range fns {
		f(uid)
	}
}

// OnDelete registers f to be called when a pod of the node is deleted, with
// the pod's UID as its cgroup paths carry it (Ref.PodUID: the config hash
// for a static pod). f runs on the informer's goroutine: it must not block.
func (p *Pods) OnDelete(f func(podUID string)) {
	p.mu.Lock()
	p.onDelete = append(p.onDelete[:len(p.onDelete):len(p.onDelete)], f)
	p.mu.Unlock()
}

// Synced reports whether the first list of the node's pods has been stored.
func (p *Pods) Synced() bool { return p.informer.HasSynced() }

// WaitSynced waits until Synced or ctx is done; the error then names the
// node and the last list or watch error (an RBAC denial, an unreachable
// API server).
func (p *Pods) WaitSynced(ctx context.Context) error {
	if cache.WaitForCacheSync(ctx.Done(), p.informer.HasSynced) {
		return nil
	}
	p.mu.Lock()
	last := p.lastErr
	p.mu.Unlock()
	if last != nil {
		return fmt.Errorf("kube: pods of node %s not listed: %w (last API error: %v)", p.node, context.Cause(ctx), last)
	}
	return fmt.Errorf("kube: pods of node %s not listed: %w", p.node, context.Cause(ctx))
}

// Lookup finds the pod of ref.PodUID and, among its containers, init
// containers and ephemeral containers, the one whose status containerID
// ("<runtime>://<id>") has ref.ContainerID. It reports false when the pod is
// not (or no longer) in the index; a known pod with an unknown container id
// gives Container "".
func (p *Pods) Lookup(ref Ref) (Identity, bool) {
	if ref.PodUID == "" {
		return Identity{}, false
	}
	objs, err := p.informer.GetIndexer().ByIndex(uidIndex, ref.PodUID)
	if err != nil || len(objs) == 0 {
		return Identity{}, false
	}
	pod, ok := objs[0].(*corev1.Pod)
	if !ok {
		return Identity{}, false
	}
	id := Identity{
		Namespace:   pod.Namespace,
		Pod:         pod.Name,
		PodUID:      string(pod.UID),
		ContainerID: ref.ContainerID,
	}
	for k, v := range pod.Annotations {
		if strings.HasPrefix(k, AnnotationPrefix) {
			if id.Annotations == nil {
				id.Annotations = make(map[string]string)
			}
			id.Annotations[k] = v
		}
	}
	if ref.ContainerID != "" {
		for _, list := range [...][]corev1.ContainerStatus{
			pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses,
		} {
			for _, c := range list {
				if containerID(c.ContainerID) == ref.ContainerID {
					id.Container = c.Name
					return id, true
				}
			}
		}
	}
	return id, true
}

// containerID is the id part of a status containerID "<runtime>://<id>".
func containerID(s string) string {
	if _, id, ok := strings.Cut(s, "://"); ok {
		return id
	}
	return s
}
