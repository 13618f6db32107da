// Package kube gives the node agent the Kubernetes identity of a container:
// which pod (namespace, name, UID, annotations) and which container of that pod
// a cgroup belongs to.
//
// Two halves, usable apart:
//
//   - ParseCgroupPath reads a cgroup path as the kubelet and the container
//     runtimes lay it out (cgroupfs and systemd drivers, cgroup v1 and v2,
//     containerd, CRI-O, cri-dockerd) into a Ref: pod UID, container id,
//     runtime and QoS class. It needs no API server. The path comes from
//     /proc/<pid>/cgroup of processes that oomhero does not trust, so it is
//     bounded, checked byte by byte and never panics (FuzzParseCgroupPath).
//
//   - Pods is an index of the pods of one node, kept by a client-go shared
//     informer that lists and watches core/v1 pods with the field selector
//     spec.nodeName=<node>. Lookup maps a Ref to an Identity (namespace, pod,
//     container name, annotations). Pods are stripped down to what Lookup
//     needs before they are stored, so the cache stays small.
//
// The package talks to the API server only through a REST client for core/v1
// with its own small scheme: it does not link the generated clientset
// (k8s.io/client-go/kubernetes), which registers every API group at start.
package kube
