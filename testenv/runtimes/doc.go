// Package runtimes is oomhero's real-runtime suite (make test-runtimes):
// Debian 12's OpenJDK 17, node 20, PostgreSQL 15, nginx, apache2 (httpd),
// php-fpm 8.2, redis and python3, each in a memory-limited container of a
// real pod next to oomhero with its default configuration, driven to the
// warning and critical levels by real memory growth.
//
// Images are built on this host without any registry: a tarball of the
// installed files of the runtime's Debian packages plus their ldd closure,
// a few /etc files and the suite's own files, loaded with `podman import`
// and tagged localhost/oomhero-rt-<name>:<content hash> (reused while the
// packages and files are unchanged). The runtimes that grow by themselves
// (JVM, node, python) run the project's examples (examples/java, node,
// python) with a small "ballast" in their own language (testdata/) that
// grows when the suite creates /tmp/ballast.go in the container and holds
// when it creates /tmp/ballast.stop (at 93 % of the limit, watched from the
// host). Servers get the project's test app as a leaker process in the same
// container (started with SIGWINCH, capped at 93 %), the server staying
// the container's main process.
//
// Each case checks, from the host: the runtime's log (only what it wrote
// after the growth started), its processes (same pids, same start times),
// an answer to a health request made inside the pod's network namespace,
// and oomhero's JSON log (signals sent and refused). With the defaults the
// runtime must be unharmed; with a per-container declaration it must get
// what it asked for (the example's handler runs, or, for a harmful signal
// declared on purpose, its effect is seen). Every signal the suite sees
// delivered or refused is compared with internal/runtimes.EffectOf for the
// process it went to (identified from the host), and a disagreement fails.
//
// Requirements: root, podman, runc and the Debian packages of
// testenv/install-deps. Without them the tests skip, and fail when CI=true.
// Knobs: OOMHERO_E2E_SOURCE (oomhero's --source), OOMHERO_E2E_KEEP=1 (leave
// the pods), OOMHERO_RT_ONLY=regexp (run only matching cases),
// OOMHERO_RT_OOMHERO=path (use this oomhero binary instead of building
// ./cmd/oomhero), OOMHERO_RT_PARALLEL (pods at once, default 4).
//
// Logs of every case are kept under $TMPDIR/oomhero-runtimes/<case>/.
package runtimes
