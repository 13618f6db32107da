package kube

import (
	"strings"
	"testing"
)

const (
	tUID  = "6f0c3b5e-2d1a-4c8e-9b7a-0e5f4d3c2b1a"
	tUIDs = "6f0c3b5e_2d1a_4c8e_9b7a_0e5f4d3c2b1a" // systemd-escaped
	tID   = "3f2b9d8c7a6e5d4c3b2a19081726354453627180a9b8c7d6e5f4a3b2c1d0e9f8"
	tHash = "0b7c5e3f9a1d2c4b6e8f0a1b2c3d4e5f" // static pod UID
)

func TestParseCgroupPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		path string
		want Ref
		ok   bool
	}{
		// cgroupfs driver (v1 memory hierarchy path and v2 unified path look the same).
		{"cgroupfs containerd burstable", "/kubepods/burstable/pod" + tUID + "/" + tID,
			Ref{tUID, tID, "", QoSBurstable}, true},
		{"cgroupfs containerd besteffort", "/kubepods/besteffort/pod" + tUID + "/" + tID,
			Ref{tUID, tID, "", QoSBestEffort}, true},
		{"cgroupfs guaranteed", "/kubepods/pod" + tUID + "/" + tID,
			Ref{tUID, tID, "", QoSGuaranteed}, true},
		{"cgroupfs crio", "/kubepods/burstable/pod" + tUID + "/crio-" + tID,
			Ref{tUID, tID, RuntimeCRIO, QoSBurstable}, true},
		{"cgroupfs crio conmon", "/kubepods/burstable/pod" + tUID + "/crio-conmon-" + tID, Ref{}, false},
		{"cgroupfs under mount point", "/sys/fs/cgroup/memory/kubepods/pod" + tUID + "/" + tID,
			Ref{tUID, tID, "", QoSGuaranteed}, true},
		{"cgroupfs kubelet cgroup root (kind)", "/kubelet/kubepods/besteffort/pod" + tUID + "/" + tID,
			Ref{tUID, tID, "", QoSBestEffort}, true},
		{"cgroupfs from another cgroupns", "/../../kubepods/burstable/pod" + tUID + "/" + tID,
			Ref{tUID, tID, "", QoSBurstable}, true},
		{"cgroupfs static pod", "/kubepods/burstable/pod" + tHash + "/" + tID,
			Ref{tHash, tID, "", QoSBurstable}, true},
		{"cgroupfs trailing slash", "/kubepods/pod" + tUID + "/" + tID + "/",
			Ref{tUID, tID, "", QoSGuaranteed}, true},
		{"cgroupfs pod cgroup only", "/kubepods/burstable/pod" + tUID, Ref{}, false},
		{"cgroupfs qos cgroup only", "/kubepods/burstable", Ref{}, false},
		{"cgroupfs kubepods only", "/kubepods", Ref{}, false},
		{"cgroupfs systemd uid spelling", "/kubepods/pod" + tUIDs + "/" + tID, Ref{}, false},
		{"cgroupfs scope name", "/kubepods/pod" + tUID + "/cri-containerd-" + tID + ".scope", Ref{}, false},
		{"cgroupfs unknown tier", "/kubepods/guaranteed/pod" + tUID + "/" + tID, Ref{}, false},
		{"cgroupfs uppercase uid", "/kubepods/pod" + strings.ToUpper(tUID) + "/" + tID, Ref{}, false},
		{"cgroupfs short id", "/kubepods/pod" + tUID + "/" + tID[:63], Ref{}, false},
		{"cgroupfs nested below container", "/kubepods/pod" + tUID + "/" + tID + "/sub", Ref{}, false},
		// systemd driver.
		{"systemd containerd burstable",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + tUIDs + ".slice/cri-containerd-" + tID + ".scope",
			Ref{tUID, tID, RuntimeContainerd, QoSBurstable}, true},
		{"systemd containerd besteffort",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + tUIDs + ".slice/cri-containerd-" + tID + ".scope",
			Ref{tUID, tID, RuntimeContainerd, QoSBestEffort}, true},
		{"systemd containerd guaranteed",
			"/kubepods.slice/kubepods-pod" + tUIDs + ".slice/cri-containerd-" + tID + ".scope",
			Ref{tUID, tID, RuntimeContainerd, QoSGuaranteed}, true},
		{"systemd crio",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + tUIDs + ".slice/crio-" + tID + ".scope",
			Ref{tUID, tID, RuntimeCRIO, QoSBurstable}, true},
		{"systemd crio with crun sub-cgroup",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + tUIDs + ".slice/crio-" + tID + ".scope/container",
			Ref{tUID, tID, RuntimeCRIO, QoSBurstable}, true},
		{"systemd crio conmon",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + tUIDs + ".slice/crio-conmon-" + tID + ".scope", Ref{}, false},
		{"systemd docker",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + tUIDs + ".slice/docker-" + tID + ".scope",
			Ref{tUID, tID, RuntimeDocker, QoSBestEffort}, true},
		{"systemd static pod",
			"/kubepods.slice/kubepods-pod" + tHash + ".slice/cri-containerd-" + tID + ".scope",
			Ref{tHash, tID, RuntimeContainerd, QoSGuaranteed}, true},
		{"systemd kind (cgroup root /kubelet, nested in the node container)",
			"/system.slice/docker-" + tID + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + tUIDs + ".slice/cri-containerd-" + tID + ".scope",
			Ref{tUID, tID, RuntimeContainerd, QoSBurstable}, true},
		{"systemd podman parent",
			"/machine.slice/libpod-" + tID + ".scope/container/kubepods.slice/kubepods-pod" + tUIDs + ".slice/crio-" + tID + ".scope",
			Ref{tUID, tID, RuntimeCRIO, QoSGuaranteed}, true},
		{"systemd dashed uid", "/kubepods.slice/kubepods-pod" + tUID + ".slice/cri-containerd-" + tID + ".scope", Ref{}, false},
		{"systemd tier prefix mismatch",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-pod" + tUIDs + ".slice/cri-containerd-" + tID + ".scope", Ref{}, false},
		{"systemd root prefix mismatch",
			"/kubelet.slice/kubelet-kubepods.slice/kubepods-pod" + tUIDs + ".slice/cri-containerd-" + tID + ".scope", Ref{}, false},
		{"systemd bare id", "/kubepods.slice/kubepods-pod" + tUIDs + ".slice/" + tID, Ref{}, false},
		{"systemd unknown runtime", "/kubepods.slice/kubepods-pod" + tUIDs + ".slice/runc-" + tID + ".scope", Ref{}, false},
		{"systemd other sub-cgroup",
			"/kubepods.slice/kubepods-pod" + tUIDs + ".slice/cri-containerd-" + tID + ".scope/init", Ref{}, false},
		{"systemd pod slice only", "/kubepods.slice/kubepods-pod" + tUIDs + ".slice", Ref{}, false},
		// Not kubelet layouts.
		{"system service", "/system.slice/containerd.service", Ref{}, false},
		{"kubelet", "/system.slice/kubelet.service", Ref{}, false},
		{"root", "/", Ref{}, false},
		{"empty", "", Ref{}, false},
		{"podman container", "/machine.slice/libpod-" + tID + ".scope/container", Ref{}, false},
		{"kubepods lookalike", "/kubepods-x/pod" + tUID + "/" + tID, Ref{}, false},
		// Hostile: a container forging another pod below its own cgroup.
		{"forged pod below a container",
			"/kubepods/besteffort/pod" + tUID + "/" + tID + "/kubepods/pod" + tHash + "/" + tID, Ref{}, false},
		{"forged systemd pod below a container",
			"/kubepods.slice/kubepods-pod" + tUIDs + ".slice/cri-containerd-" + tID + ".scope/kubepods.slice/kubepods-pod" + tUIDs + ".slice/cri-containerd-" + tID + ".scope", Ref{}, false},
		{"newline", "/kubepods/pod" + tUID + "/" + tID + "\n", Ref{}, false},
		{"nul", "/kubepods/pod" + tUID + "/\x00" + tID, Ref{}, false},
		{"del in prefix", "/a\x7f/kubepods/pod" + tUID + "/" + tID, Ref{}, false},
		{"too long", "/" + strings.Repeat("a", MaxPathLen) + "/kubepods/pod" + tUID + "/" + tID, Ref{}, false},
		{"too deep", strings.Repeat("/a", maxSegments) + "/kubepods/pod" + tUID + "/" + tID, Ref{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseCgroupPath(tc.path)
			if ok != tc.ok || got != tc.want {
				t.Errorf("ParseCgroupPath(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// layouts renders r back into every kubelet path that must parse to it.
func layouts(r Ref) []string {
	var paths []string
	if r.Runtime == "" || r.Runtime == RuntimeCRIO {
		qos := "/" + r.QoS
		if r.QoS == QoSGuaranteed {
			qos = ""
		}
		c := r.ContainerID
		if r.Runtime == RuntimeCRIO {
			c = "crio-" + c
		}
		paths = append(paths, "/kubepods"+qos+"/pod"+r.PodUID+"/"+c)
	}
	if r.Runtime != "" {
		tier, slices := "kubepods", "/kubepods.slice"
		if r.QoS != QoSGuaranteed {
			tier = "kubepods-" + r.QoS
			slices += "/" + tier + ".slice"
		}
		prefix := map[string]string{RuntimeContainerd: "cri-containerd-", RuntimeCRIO: "crio-", RuntimeDocker: "docker-"}[r.Runtime]
		paths = append(paths, slices+"/"+tier+"-pod"+strings.ReplaceAll(r.PodUID, "-", "_")+".slice/"+prefix+r.ContainerID+".scope")
	}
	return paths
}

func FuzzParseCgroupPath(f *testing.F) {
	for _, s := range []string{
		"/kubepods/burstable/pod" + tUID + "/" + tID,
		"/kubepods/pod" + tHash + "/crio-" + tID,
		"/kubepods/besteffort/pod" + tUID + "/crio-conmon-" + tID,
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + tUIDs + ".slice/cri-containerd-" + tID + ".scope",
		"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + tUIDs + ".slice/crio-" + tID + ".scope/container",
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + tUIDs + ".slice/docker-" + tID + ".scope",
		"/system.slice/containerd.service",
		"/../../kubepods/pod" + tUID + "/" + tID,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, ok := ParseCgroupPath(path)
		if !ok {
			if r != (Ref{}) {
				t.Fatalf("ParseCgroupPath(%q) = %+v with false; want the zero Ref", path, r)
			}
			return
		}
		if len(path) > MaxPathLen {
			t.Fatalf("ParseCgroupPath accepted a path of %d bytes", len(path))
		}
		if !validPodUID(r.PodUID, '-') {
			t.Fatalf("ParseCgroupPath(%q): PodUID %q is not a dashed UUID or a 32-hex hash", path, r.PodUID)
		}
		if !validContainerID(r.ContainerID) {
			t.Fatalf("ParseCgroupPath(%q): ContainerID %q is not 64 hex digits", path, r.ContainerID)
		}
		switch r.Runtime {
		case "", RuntimeContainerd, RuntimeCRIO, RuntimeDocker:
		default:
			t.Fatalf("ParseCgroupPath(%q): Runtime %q", path, r.Runtime)
		}
		switch r.QoS {
		case QoSGuaranteed, QoSBurstable, QoSBestEffort:
		default:
			t.Fatalf("ParseCgroupPath(%q): QoS %q", path, r.QoS)
		}
		// Normalisation is idempotent: the Ref rendered back into each
		// layout parses to itself.
		for _, p := range layouts(r) {
			if again, ok := ParseCgroupPath(p); !ok || again != r {
				t.Fatalf("ParseCgroupPath(%q) = %+v, but its layout %q parses to %+v, %v", path, r, p, again, ok)
			}
		}
	})
}
