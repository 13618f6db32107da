// Package adversarial is oomhero's adversarial pod suite: each case is a
// real pod (podman kube play) shaped like deploy/pod.yaml — oomhero as a
// privileged sidecar, shareProcessNamespace, restartPolicy Always — with a
// leaking victim (testenv/app), an idle "other" container holding a file,
// and a hostile container (testenv/hostile) that attacks oomhero as root in
// its own, unprivileged container: forged process names, fake cgroup trees
// in a chroot with FIFOs, links to /dev/zero, to the other container's file
// and to a host file, 1 TiB sparse files, deep trees, a process storm, an
// exec storm, malformed declarations in a 1.5 MiB environment, notification
// URLs leading off the pod, the HTTP port taken, a container restarting in
// a loop. The cases and what each hostile container does are the cases
// table of adversarial_test.go and the doc of testenv/hostile; README's
// "Attacks tried" has the outcomes.
//
// Every case asserts, over the whole case:
//
//   - the sidecar never restarts and is still running (podman RestartCount
//     and state);
//   - the victim got both signals (SIGUSR1 and SIGUSR2 lines in its log)
//     before the kernel OOM-killed it, and its restarted container is watched
//     again (a leak run where the victim, stalled by load, went from the
//     critical threshold to its kill in under 300 ms proves nothing: the leak
//     is run again, at most twice);
//   - no file outside the hostile container changed (SHA-256 of the host
//     file mounted into the hostile container, of a host file bind-mounted
//     over its fake cgroup.event_control, and of a file in the other
//     container), and the text of those files never reaches oomhero's log;
//   - oomhero's memory and CPU stay bounded: memory.max_usage_in_bytes of the
//     sidecar's cgroup v1 memory directory at most MaxMemory, cpuacct.usage
//     over the case below MaxCPU of one core;
//   - /healthz keeps answering (polled from the host at the pod's IP every
//     500 ms: first answer within 20 s, no gap over 10 s), /metrics is
//     valid UTF-8 with a bounded number of container labels, and
//     oomhero's log stays well-formed: one JSON object (or one logfmt
//     record) per line, valid UTF-8, no control characters.
//
// The hostile container sets its trap before oomhero starts (the pods are
// created with --start=false and their containers started in order: other,
// victim, hostile, oomhero), so the first discovery scan meets it; the
// "-late" cases start it after oomhero watches the victim (rescans).
//
// Requirements: root, podman and runc (testenv/install-deps); the tests
// skip without them, and fail instead when CI=true. Cases run in parallel
// (go test -parallel; `make test-adversarial` runs 13 at a time).
//
//	go test -count=1 -parallel 13 -v ./testenv/adversarial/
//
// Environment:
//
//	OOMHERO_ADV_IMAGE=<image>   test this oomhero image instead of building
//	                            localhost/oomhero:dev from the checkout (e.g.
//	                            an image of an older commit, to show the
//	                            attacks that win there)
//	OOMHERO_E2E_NO_BUILD=1      use the images already built
//	OOMHERO_E2E_SOURCE=...      oomhero's --source (default cgroupfs: it reads
//	                            the most files)
//	OOMHERO_ADV_CASES=a,b       run only these cases
//	OOMHERO_E2E_KEEP=1          leave the pods (debug)
//
// Every case logs one "outcome" line; the run writes them all to
// $TMPDIR/oomhero-adversarial-outcomes.txt.
package adversarial
