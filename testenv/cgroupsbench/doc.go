// Package cgroupsbench measures github.com/containerd/cgroups/v3 against
// oomhero's own cgroup reader (internal/cgroup.Reader), on a real cgroup v1
// memory cgroup of the host (internal/lab makes it): the cost of one
// reading (ns/op, allocations) and, with cmd/sidecar, the size and RSS of a
// sidecar-like binary with and without the library.
//
// It is a module of its own so that oomhero's module does not depend on
// containerd/cgroups. Run as root on a host with the v1 memory controller:
//
//	cd testenv/cgroupsbench && go test -bench . -benchmem
//	go test -run TestSidecarSizeRSS -v .
//
// README.md ("Dependencies") records the figures and the decision.
package cgroupsbench
