//go:build !nokube

package kube

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// mirrorAnnotation is set by the kubelet on the API object of a static pod
// (its "mirror pod") to the static pod's config hash, which is the UID the
// kubelet uses for it and so the UID in its cgroup path
// (kubelet pkg/kubelet/types ConfigMirrorAnnotationKey, set in
// pkg/kubelet/pod mirror_client.go CreateMirrorPod).
const mirrorAnnotation = "kubernetes.io/config.mirror"

// strip is the informer's transform: it replaces a pod by a new one holding
// only what Lookup and OnDelete read (namespace, name, UID, resource version,
// oomhero.dev/ annotations, the mirror hash, and the name and id of every
// container status), so that managedFields, spec, conditions and the rest
// are not kept for the life of the process. It is idempotent, and returns
// anything that is not a pod (a tombstone) as it is.
func strip(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	s := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            p.Name,
			Namespace:       p.Namespace,
			UID:             p.UID,
			ResourceVersion: p.ResourceVersion,
		},
		Status: corev1.PodStatus{
			ContainerStatuses:          stripStatuses(p.Status.ContainerStatuses),
			InitContainerStatuses:      stripStatuses(p.Status.InitContainerStatuses),
			EphemeralContainerStatuses: stripStatuses(p.Status.EphemeralContainerStatuses),
		},
	}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, AnnotationPrefix) || k == mirrorAnnotation {
			if s.Annotations == nil {
				s.Annotations = make(map[string]string)
			}
			s.Annotations[k] = v
		}
	}
	return s, nil
}

func stripStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i, c := range in {
		out[i] = corev1.ContainerStatus{Name: c.Name, ContainerID: c.ContainerID}
	}
	return out
}
