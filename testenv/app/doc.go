// Command testapp is the test application of oomhero's test environments (the
// podman pod lab in testenv/pods, the VM in testenv/vm and the benchmarks in
// testenv/bench). It is one static binary that grows, churns or holds memory
// in its own memory cgroup, receives oomhero's signals and logs what it saw,
// with timestamps a test can compare.
//
// # Modes
//
//	-mode leak   touch anonymous memory at -rate MiB/s (0: as fast as it can),
//	             in -chunk KiB steps so the rate is smooth, every page written;
//	             time the app was not scheduled is made up at once, up to
//	             250 ms of it (a longer stall is not paid in one burst);
//	             with -cap MiB (or -cap-percent of the limit, working set) it
//	             stops there and holds. Without a cap it leaks until the kernel
//	             kills it.
//	-mode hold   leak at -rate until the working set reaches -percent of the
//	             memory limit (or -cap MiB), then hold it.
//	-mode churn  page-cache churn: -anon MiB of anonymous memory, then a regular
//	             file (-file, default $TMPDIR/testapp-churn.dat; its directory
//	             is created) of -file-size MiB (default twice the limit) written
//	             and re-read in a loop. Usage sits near the limit while the
//	             working set (usage - inactive file) stays low. Put the file on
//	             a disk-backed file system (the container's own overlay or a
//	             volume), never on tmpfs: shmem is not inactive_file.
//	             -hot MiB: a second file (-file with ".hot") read after every
//	             16 MiB read of -file, so its pages stay active: reclaim at the
//	             limit then drains the inactive list for moments of a few ms.
//	             -probe 1ms: read the cgroup that often and log the highest
//	             working set of each pass (max_working_set= on churn-pass).
//	-mode idle   allocate nothing, wait.
//	-mode child  used internally for the -children processes.
//
// Every mode accepts -children N: N child processes (the same binary re-run
// with -mode child) that reset SIGUSR1 and SIGUSR2 to their default action
// with rt_sigaction, so /proc/<pid>/status shows no handler (SigCgt) for them
// and one of those signals kills the child. The parent logs each child's exit
// with the signal that ended it. Children die with the parent (PR_SET_PDEATHSIG).
//
// Signals: by default the process handles SIGUSR1 and SIGUSR2 (-signals takes
// another comma-separated list: names with or without SIG, or numbers) and
// logs every receipt. With -handle=false it resets them to the default action
// instead (SigCgt clear; a signal kills it). SIGTERM and SIGINT end the
// process cleanly (children first) unless listed in -signals.
//
// -start-signal SIG makes the process wait for SIG (say SIGWINCH, sent with
// `podman kill --signal`) before starting its mode's work, so a test can first
// make sure oomhero watches the container; -delay D waits D. Either way
// event=go marks the start.
//
// -listen ADDR serves GET /healthz (200 "ok") for liveness probes.
//
// The cgroup is found from /proc/self/cgroup under -cgroup-root (default
// /sys/fs/cgroup), trying the memory controller's hierarchy (v1) then the
// unified one (v2), first at the listed path, then at the mount root (what a
// container sees); -cgroup-dir names the directory directly.
//
// # Log format
//
// One line per event on standard output, written with a single write(2) so
// nothing is lost when the kernel kills the process. Space-separated key=value
// pairs; values never contain spaces; the first pair is always event=NAME.
// Sizes are bytes; mono_ns is CLOCK_MONOTONIC in nanoseconds (the same clock
// in every process of the machine, so it compares with other processes'
// monotonic readings but not with wall-clock log times).
//
//	event=start pid= mode= cgroup_dir= version=v1|v2 limit= (0: no limit) mono_ns=
//	event=waiting signal= mono_ns=               (waiting for -start-signal)
//	event=go mono_ns=                            (work starts)
//	event=sample mono_ns= usage= working_set= inactive_file= leaked=
//	event=signal signal=SIGUSR1 signo=10 n= mono_ns= usage= working_set=
//	event=cap mono_ns= leaked= working_set=     (leak reached its cap; holding)
//	event=child-start pid=
//	event=child-exit pid= signal=SIGUSR1|none code=
//	event=churn-pass n= mono_ns= bytes= [max_working_set=] (churn finished one write+read pass)
//	event=error msg=...                          (then exit 1)
//	event=exit reason=
//
// Samples are logged after every leak chunk (-chunk, default 64 KiB), so the
// first sample at or above a threshold dates its crossing to within one chunk;
// in hold, churn and idle modes (and after a leak's cap) every -sample-interval
// (default 100ms; 0 disables). working_set is usage minus inactive file
// (total_inactive_file on v1), the figure kubelet and oomhero judge by.
//
// Package testenv/app/applog parses these lines.
package main
