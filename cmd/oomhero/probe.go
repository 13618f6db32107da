package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/oomhero/oomhero/internal/metrics"
)

// probeTimeout bounds one exec probe; keep the manifests' timeoutSeconds
// above it.
const probeTimeout = 2 * time.Second

// probe is `oomhero probe SOCKET [/healthz|/readyz]`, the command of exec
// liveness and readiness probes: it asks the oomhero serving --health-socket
// SOCKET and exits 0 when it answers 200, 1 with its answer otherwise, 2 on
// bad usage. Exec probes reach oomhero through its own filesystem, where
// httpGet probes go through the pod's shared network namespace, in which
// another container may hold oomhero's port.
func probe(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || len(args) > 2 || args[0] == "" || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: oomhero probe SOCKET [/healthz|/readyz]  (SOCKET as given to --health-socket)")
		return 2
	}
	path := "/healthz"
	if len(args) == 2 {
		path = args[1]
	}
	if path != "/healthz" && path != "/readyz" {
		fmt.Fprintf(stderr, "oomhero probe: %q: want /healthz or /readyz\n", path)
		return 2
	}
	if err := metrics.Probe(args[0], path, probeTimeout); err != nil {
		fmt.Fprintf(stdout, "oomhero %s: %v\n", path, err)
		return 1
	}
	fmt.Fprintf(stdout, "oomhero %s: ok\n", path)
	return 0
}
