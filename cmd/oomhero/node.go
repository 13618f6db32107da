package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/oomhero/oomhero/internal/agent"
	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/kube"
)

// The node agent (oomhero node): containers are named by their cgroup path
// (kube.ParseCgroupPath: pod UID and container id of the kubelet's
// layouts) and, when the API server is used, by the pods of this node
// (kube.Pods, a client-go informer on spec.nodeName=<node>): namespace,
// pod, container name and the pod's oomhero.dev/ annotations.

// syncWait bounds the wait for the first list of the node's pods at start:
// past it the agent starts anyway (containers the index does not know yet
// are named by their cgroup path, and renamed when their pod is listed).
const syncWait = 15 * time.Second

// podIndex is what nodeIdentifier uses of kube.Pods (tests fake it).
type podIndex interface {
	Lookup(ref kube.Ref) (kube.Identity, bool)
	Synced() bool
}

// nodeIdentifier implements agent.Identifier.
type nodeIdentifier struct {
	pods podIndex // nil: no API server
}

func (n nodeIdentifier) Identify(path string) (agent.Identity, bool) {
	ref, ok := kube.ParseCgroupPath(path)
	if !ok {
		return agent.Identity{}, false
	}
	if n.pods != nil {
		if id, ok := n.pods.Lookup(ref); ok {
			return agent.Identity{Namespace: id.Namespace, Pod: id.Pod, Container: id.Container,
				PodUID: id.PodUID, ContainerID: id.ContainerID, Annotations: id.Annotations}, true
		}
		// The node's pods are listed and this UID is not among them: a
		// kubelet-shaped cgroup of something else on the host (a kind
		// cluster, a second kubelet, a test). It is asked again at each
		// rescan: a pod the kubelet started before the watch brought it
		// here is watched at the first rescan after.
		if n.pods.Synced() {
			return agent.Identity{PodUID: ref.PodUID, ContainerID: ref.ContainerID, Unlisted: true}, true
		}
	}
	return agent.Identity{PodUID: ref.PodUID, ContainerID: ref.ContainerID}, true
}

// newIdentifier returns the node agent's Identifier: through the API server
// when --kube auto finds one (in a cluster, or --kubeconfig) and
// --node-name is set; else from cgroup paths alone, said once with why.
func newIdentifier(ctx context.Context, cfg *config.Config, log *slog.Logger) agent.Identifier {
	without := func(reason string, err error) agent.Identifier {
		attrs := []any{"reason", reason, "naming", "pod UID (from the cgroup path) and command; pod annotations are not read"}
		if err != nil {
			attrs = append(attrs, "error", err)
		}
		log.Warn("pods not named through the API server", attrs...)
		return nodeIdentifier{}
	}
	switch {
	case cfg.Kube == config.KubeOff:
		return without("--kube off", nil)
	case cfg.NodeName == "":
		return without("--node-name (env NODE_NAME, from spec.nodeName) is empty", nil)
	case cfg.Kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") == "":
		return without("not in a cluster (KUBERNETES_SERVICE_HOST unset) and no --kubeconfig", nil)
	}
	pods, err := kube.NewPods(ctx, kube.PodsConfig{NodeName: cfg.NodeName, Kubeconfig: cfg.Kubeconfig, Log: log.With("component", "kube")})
	if err != nil {
		return without("cannot use the API server", err)
	}
	wctx, cancel := context.WithTimeout(ctx, syncWait)
	defer cancel()
	start := time.Now()
	if err := pods.WaitSynced(wctx); err != nil {
		if ctx.Err() != nil {
			return nodeIdentifier{pods: pods} // oomhero is stopping (or never started)
		}
		log.Warn("pods of the node not listed yet; containers are named by their cgroup path until they are", "node", cfg.NodeName, "error", err)
	} else {
		log.Info("pods of the node listed", "node", cfg.NodeName, "took", time.Since(start).Round(time.Millisecond))
	}
	return nodeIdentifier{pods: pods}
}
