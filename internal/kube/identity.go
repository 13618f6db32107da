package kube

import (
	"errors"
	"log/slog"
	"time"
)

// AnnotationPrefix is the prefix of the pod annotations Pods keeps and
// Lookup returns (oomhero.dev/watch, oomhero.dev/warning, ...). Other
// annotations are dropped when a pod is stored: some are large
// (kubectl.kubernetes.io/last-applied-configuration holds a whole manifest)
// and oomhero reads none of them.
const AnnotationPrefix = "oomhero.dev/"

// PodsConfig configures NewPods.
type PodsConfig struct {
	// NodeName is the node whose pods are listed (spec.nodeName); required.
	NodeName string
	// Kubeconfig is a kubeconfig file; empty means the pod's service
	// account (in-cluster config).
	Kubeconfig string
	// Resync is the informer's resync period; 0 means none (the watch
	// keeps the index current; a resync only replays it to handlers).
	Resync time.Duration
	// Log receives the informer's errors and the API server's warnings;
	// nil discards them.
	Log *slog.Logger
}

// Identity names a container as Kubernetes does.
type Identity struct {
	Namespace string
	Pod       string
	// Container is the container's name in the pod spec, or "" when its id
	// is not among the pod's container statuses: the pod's sandbox (pause)
	// container, or a container the kubelet has not reported yet.
	Container string
	// PodUID is the pod's metadata.uid. For a static pod this is the mirror
	// pod's UID, not the config hash in its cgroup path (Ref.PodUID).
	PodUID      string
	ContainerID string
	// Annotations are the pod's annotations under AnnotationPrefix; nil
	// when it has none. A copy: the caller may keep or change it.
	Annotations map[string]string
}

// ErrNoAPI is returned by NewPods and WaitSynced in a binary built with
// the nokube build tag, which links no Kubernetes client (see pods_nokube.go).
var ErrNoAPI = errors.New("kube: this oomhero was built without the Kubernetes API client (build tag nokube): run oomhero-node, the full build (/oomhero-node in the image)")
