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
// The guest is a qemu64 CPU (plus RDRAND), 2 vCPUs, 2 GiB and more, booted
// with psi=1, cgroup_no_v1=all and transparent_hugepage=madvise. Only the
// virtio-serial driver (for the reports) and brd (a RAM disk for /data, real
// page cache) are loaded as modules, from the same kernel package.
//
// # Tests
//
//	go test -count=1 -v -timeout 20m ./testenv/vm/
//
// TestE2E runs the scenarios of the sidecar issue with --source cgroupfs and
// --source bpf in four boots: the held apps of each source (children,
// nolimit, cooldown), the leaks (200 MiB/s fast leak of each source one after
// the other, then the 20 MiB/s leaks side by side; the fast leak also checks
// oomhero's "oom kill" line and the container's PSI), and the page-cache
// scenario of both sources. TestLoaderInVM runs the loader's test binary in
// the guest (fexit/try_charge_memcg on cgroup v2). TestNodeMode runs oomhero
// node against kubelet-shaped v2 cgroups (systemd driver) with both sources:
// only the opted-in container is signalled. TestContainers and TestCommands
// check the machinery itself.
//
// OOMHERO_VM_SOURCES narrows the sources (e.g. "cgroupfs"); OOMHERO_VM_APPEND
// adds kernel arguments (e.g. "loglevel=7"). The guest's events and console of
// each test's last run are kept in testenv/vm/.cache/runs/.
//
// Timing: under TCG the guest runs 10-20 times slower than the host, and more
// when the host is loaded: run this suite alone, not in parallel with other
// packages. Boot to the runner takes 3-10 s; a boot with its scenarios 25-45 s;
// TestE2E about 130 s, the whole package about 3 minutes. Latency bounds are
// looser than on the host (750 ms instead of 50 ms, measured 4-330 ms), and a
// fast leak must reach 30 MiB/s for its scenario to count (measured 42-207).
//
// Once, with five oomhero instances attaching their fexit programs in the same
// instant on a loaded host, both guest CPUs reported soft lockups in oomhero
// (kernel side) and the boot never finished; the pods now start 500 ms apart.
//
// Tests need root and qemu-system-x86_64 (Debian package qemu-system-x86),
// apt-get and dpkg-deb for the kernel, and busybox-static. They skip without
// them, and fail when CI=true.
package vm
