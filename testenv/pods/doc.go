// Package pods is oomhero's pod lab: it builds the images (oomhero and the
// test application of testenv/app, both FROM scratch), writes Pod YAML, runs
// it with `podman kube play`, collects the containers' logs and always tears
// the pods down. The end-to-end tests of this package run oomhero as a
// privileged sidecar next to the test application in real pods, with real
// cgroups and real signals.
//
// Requirements: root, podman and runc. Podman is run with
// CONTAINERS_CONF=testenv/pods/containers.conf (runtime runc, empty
// default_ulimits); nothing under /etc is changed. Podman's infra image
// (localhost/podman-pause) is built locally by podman itself.
//
// Tests:
//
//	go test -count=1 ./testenv/pods/...
//
// They skip when root or podman is missing, and fail instead when CI=true.
// Environment knobs:
//
//	OOMHERO_E2E_SOURCE=bpf|cgroupfs|auto  passed to oomhero as --source; when
//	                                     bpf or cgroupfs is asked, the tests
//	                                     also check that it is the active one
//	OOMHERO_E2E_NO_BUILD=1                use the images already built
//	                                     (localhost/oomhero:dev,
//	                                     localhost/oomhero-testapp:dev)
//	OOMHERO_E2E_KEEP=1                    leave the pods after the test (debug)
//
// Pods are named oomhero-e2e-<pid>-<name> and labelled with the owner pid;
// pods left by a test process that no longer exists (a run killed by `go
// test -timeout`) are removed at the next start.
//
// Podman here reports OOMKilled=false for containers the kernel OOM-killed:
// the lab judges an OOM kill by exit code 137 and the kernel log.
//
// The demo (`go run ./testenv/pods/cmd/demo`) runs the seed's bloat pod.
package pods
