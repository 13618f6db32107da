// Package e2e runs oomhero on a real single-node Kubernetes cluster
// (testenv/k8s/scripts: built from the Go module proxy, containerd from
// Debian): the seed's Pod as written (apart from image names), the sidecar
// with Events and /metrics, the native sidecar, the BPF variant and the
// non-root variant, and the privilege matrix (privileges_test.go: which
// capabilities, UIDs and seccomp profiles each mode needs, measured).
//
// TestMain brings the cluster up (scripts/up.sh, a no-op when it is up),
// builds and loads the images (scripts/images.sh) and tears the cluster down
// at the end unless it was already up or K8S_KEEP is set; then it checks that
// the host is as before (the sysctls the node components want, no KUBE-
// iptables chains, no CNI bridge, no kubepods cgroups) and fails otherwise.
// Without root or containerd the tests skip, and fail when CI=true.
package e2e
