// Package vm runs oomhero's end-to-end scenarios on a real cgroup v2 kernel:
// Debian's 6.1 cloud kernel booted under qemu with TCG.
//
// The host side (this package) fetches the kernel package with apt-get and
// caches its vmlinuz in testenv/vm/.cache, writes an initramfs (newc cpio)
// holding busybox, the static binaries under test and the guest runner
// (./vminit), boots it with qemu-system-x86_64 -accel tcg, and parses what the
// guest reports.
//
// The guest runner is the VM's pid 1. It mounts proc, sysfs, cgroup2 (with the
// memory controller enabled for children), debugfs, tracefs and bpffs, reads
// the Spec from /spec.json and runs it:
//
//   - each Pod gets a new PID and network namespace whose pid 1 is the runner in "pod"
//     mode (the pause process), and a cgroup /sys/fs/cgroup/pods/<pod> with an
//     optional memory.max;
//   - each Container of a pod is a child of that pid 1 in a leaf cgroup
//     /sys/fs/cgroup/pods/<pod>/<container> (memory.max set or "max"), with its
//     own mount namespace and cgroup namespace, a fresh cgroup2 mount at
//     /sys/fs/cgroup and a fresh /proc, as container runtimes build them: seen
//     from another container of the pod, /proc/<pid>/root/sys/fs/cgroup is the
//     container's own cgroup;
//   - each Command runs in the VM's root namespaces (a `go test -c` binary, for
//     example) and reports its output and exit status.
//
// Everything the guest reports goes out on the second serial port (ttyS1) as
// JSON lines (Event); the kernel console is on ttyS0. Timestamps are the
// guest's CLOCK_MONOTONIC in nanoseconds, the clock the test app logs with.
//
// Tests need root and qemu-system-x86_64 (Debian package qemu-system-x86),
// apt-get and dpkg-deb for the kernel, and busybox-static. They skip without
// them, and fail when CI=true.
package vm
