package kube

import "strings"

// Ref is what a kubelet cgroup path tells about a container, without asking
// the API server.
type Ref struct {
	// PodUID is the pod's UID in the API's dashed form
	// (8-4-4-4-12 lowercase hex), or, for a static pod, the 32-hex config
	// hash the kubelet uses as its UID (see Pods.Lookup).
	PodUID string
	// ContainerID is the runtime's container id: 64 lowercase hex digits,
	// the part after "<runtime>://" in status.containerStatuses[].containerID.
	ContainerID string
	// Runtime is "containerd", "cri-o" or "docker" (the scheme of the
	// containerID in the pod status), or "" when the path does not tell:
	// with the cgroupfs driver containerd and cri-dockerd both name the
	// container's cgroup by its bare id.
	Runtime string
	// QoS is the pod's QoS class as the kubelet nests it: "guaranteed",
	// "burstable" or "besteffort".
	QoS string
}

// Limits on a path from /proc/<pid>/cgroup. The kernel shows at most
// PATH_MAX bytes; a kubelet path is a few hundred bytes deep even under a
// nested parent (kind, podman).
const (
	// MaxPathLen is the longest path ParseCgroupPath reads.
	MaxPathLen = 4096
	// maxSegments bounds the number of path components.
	maxSegments = 64
)

// QoS classes, as the kubelet names the cgroups of the burstable and
// besteffort tiers (pkg/kubelet/cm/qos_container_manager_linux.go,
// qosContainerManagerImpl.Start: children "burstable" and "besteffort" of
// the kubepods cgroup; guaranteed pods sit directly under kubepods).
const (
	QoSGuaranteed = "guaranteed"
	QoSBurstable  = "burstable"
	QoSBestEffort = "besteffort"
)

// Runtimes, named as the scheme of status.containerStatuses[].containerID.
const (
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimeDocker     = "docker"
)

// ParseCgroupPath reads the cgroup path of a container as the kubelet and its
// runtime lay it out, and reports false for anything else (system services,
// the kubelet, a pod's own cgroup, CRI-O's conmon cgroup, malformed input).
//
// path is the path part of a /proc/<pid>/cgroup line: the memory hierarchy's
// on cgroup v1 ("N:memory:<path>"), the unified one on v2 ("0::<path>"); a
// path under a cgroupfs mount point works too. Anything may come before the
// kubepods cgroup (a cgroup root the kubelet was given, kind's or podman's
// parent, "/../.." as seen from another cgroup namespace); after it the path
// must be exactly one of these layouts:
//
// cgroupfs driver (kubelet pkg/kubelet/cm/cgroup_manager_linux.go,
// CgroupName.ToCgroupfs: the name's components joined by "/"; the pod
// component is "pod"+UID, GetPodCgroupNameSuffix in
// pkg/kubelet/cm/helpers_linux.go):
//
//	.../kubepods[/burstable|/besteffort]/pod<uid>/<id>         containerd, cri-dockerd
//	.../kubepods[/burstable|/besteffort]/pod<uid>/crio-<id>    CRI-O
//
// containerd's CRI plugin joins the parent and the bare id (getCgroupsPath
// in its CRI server); CRI-O names it "crio-<id>" and its conmon monitor
// "crio-conmon-<id>" (internal/config/cgmgr/cgroupfs_linux.go,
// CgroupfsManager.ContainerCgroupPath and MoveConmonToCgroup); conmon is not
// a container and is refused.
//
// systemd driver (CgroupName.ToSystemd: each component is a slice whose name
// repeats its parents' joined by "-", and escapeSystemdCgroupName turns the
// "-" of the UID into "_"):
//
//	.../kubepods.slice[/kubepods-burstable.slice]/kubepods[-burstable]-pod<uid_>.slice/<scope>[/container]
//
// where <scope> is "cri-containerd-<id>.scope" (containerd: the systemd
// cgroup path "<slice>:cri-containerd:<id>" that runc turns into a scope),
// "crio-<id>.scope" (CRI-O, internal/config/cgmgr/systemd_linux.go; its
// conmon's "crio-conmon-<id>.scope" is refused) or
// "docker-<id>.scope" (cri-dockerd). A kubelet given a cgroup root such as
// kind's "/kubelet" prefixes every slice: "kubelet-kubepods.slice",
// "kubelet-kubepods-burstable.slice", and so on. The trailing "container" is
// the sub-cgroup crun makes under the scope with the systemd driver.
//
// The kubepods cgroup taken is the first one in the path: the layers below a
// container's own cgroup are the container's to create, so a container that
// names its sub-cgroups like another pod's gets false, not that pod.
func ParseCgroupPath(path string) (Ref, bool) {
	if len(path) == 0 || len(path) > MaxPathLen {
		return Ref{}, false
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c == 0x7f {
			return Ref{}, false
		}
	}
	if strings.Count(path, "/") > maxSegments {
		return Ref{}, false
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, s := range segs {
		if s == "kubepods" {
			return parseCgroupfs(segs[i+1:])
		}
		if root, ok := strings.CutSuffix(s, ".slice"); ok && (root == "kubepods" || strings.HasSuffix(root, "-kubepods")) {
			return parseSystemd(root, segs[i+1:])
		}
	}
	return Ref{}, false
}

// parseCgroupfs reads what follows "kubepods" with the cgroupfs driver.
func parseCgroupfs(segs []string) (Ref, bool) {
	var r Ref
	r.QoS = QoSGuaranteed
	if len(segs) > 0 && (segs[0] == QoSBurstable || segs[0] == QoSBestEffort) {
		r.QoS = segs[0]
		segs = segs[1:]
	}
	if len(segs) != 2 {
		return Ref{}, false
	}
	uid, ok := strings.CutPrefix(segs[0], "pod")
	if !ok || !validPodUID(uid, '-') {
		return Ref{}, false
	}
	r.PodUID = uid
	c := segs[1]
	if id, ok := strings.CutPrefix(c, "crio-"); ok {
		r.Runtime, c = RuntimeCRIO, id
	}
	if !validContainerID(c) {
		return Ref{}, false
	}
	r.ContainerID = c
	return r, true
}

// scopePrefixes maps the prefix of a container's systemd scope to its runtime.
var scopePrefixes = [...]struct{ prefix, runtime string }{
	{"cri-containerd-", RuntimeContainerd},
	{"crio-", RuntimeCRIO},
	{"docker-", RuntimeDocker},
}

// parseSystemd reads what follows the "<root>.slice" kubepods slice with the
// systemd driver; root is "kubepods" or "<cgroup root>-kubepods".
func parseSystemd(root string, segs []string) (Ref, bool) {
	var r Ref
	r.QoS = QoSGuaranteed
	tier := root
	if len(segs) > 0 {
		for _, q := range [...]string{QoSBurstable, QoSBestEffort} {
			if segs[0] == root+"-"+q+".slice" {
				r.QoS, tier = q, root+"-"+q
				segs = segs[1:]
				break
			}
		}
	}
	// The container's scope, and crun's "container" sub-cgroup below it.
	if len(segs) == 3 && segs[2] == "container" {
		segs = segs[:2]
	}
	if len(segs) != 2 {
		return Ref{}, false
	}
	pod, ok := strings.CutPrefix(segs[0], tier+"-pod")
	if !ok {
		return Ref{}, false
	}
	uid, ok := strings.CutSuffix(pod, ".slice")
	if !ok || !validPodUID(uid, '_') {
		return Ref{}, false
	}
	r.PodUID = strings.ReplaceAll(uid, "_", "-")
	scope, ok := strings.CutSuffix(segs[1], ".scope")
	if !ok {
		return Ref{}, false
	}
	for _, p := range scopePrefixes {
		if id, ok := strings.CutPrefix(scope, p.prefix); ok && validContainerID(id) {
			r.Runtime, r.ContainerID = p.runtime, id
			return r, true
		}
	}
	return Ref{}, false
}

// validPodUID reports whether s is a pod UID as a kubelet path spells it:
// a UUID in lowercase hex with sep where the API has "-" (the UID the API
// server generates), or 32 lowercase hex digits (the UID the kubelet gives a
// static pod: the MD5 hash of its manifest, pkg/kubelet/config/common.go
// applyDefaults).
func validPodUID(s string, sep byte) bool {
	switch len(s) {
	case 32:
		return isLowerHex(s)
	case 36:
		for i := 0; i < len(s); i++ {
			switch i {
			case 8, 13, 18, 23:
				if s[i] != sep {
					return false
				}
			default:
				if !isLowerHexByte(s[i]) {
					return false
				}
			}
		}
		return true
	}
	return false
}

// validContainerID reports whether s is a container id of containerd, CRI-O
// or Docker: 64 lowercase hex digits (a SHA-256 in hex).
func validContainerID(s string) bool {
	return len(s) == 64 && isLowerHex(s)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isLowerHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
}
