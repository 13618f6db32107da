// Package metrics exposes what oomhero sees and does in Prometheus format,
// and serves the health endpoints Kubernetes probes use.
//
// Labels stay low in cardinality: namespace and pod (the sidecar: constants
// of the process, from the Downward API; the node agent: the watched
// container's own pod), container (one per watched container; Forget drops
// the gauges of a container that went away at once, its counters after
// Options.Retain), level ("warning", "critical") and result. No label carries
// a PID, a cgroup id or a value. Every label value goes through
// safename.Clean: a name a container chose (invalid UTF-8, control
// characters) can neither panic the registry nor forge an exposition line.
//
// Endpoints (Handler, ListenAndServe):
//
//	/healthz  200 "ok" while every component given to Watch (the agent's
//	          main loop, the active source) made progress within its limit
//	          (LivenessLimit: 3 x the slowest loop period, at least 10 s);
//	          503 "stalled: <component> made no progress for <age> (limit
//	          <limit>)" otherwise (liveness)
//	/readyz   200 "ready" once the first discovery scan finished and a source
//	          is active (ScanDone and SetSource were called), 503 before
//	/metrics  Prometheus text or protobuf exposition
//
// The same handler is served on a unix socket (ServeUnix) for exec probes
// (Probe, `oomhero probe`): the pod's containers share the TCP port's
// network namespace, not oomhero's filesystem. Every server handles at most
// MaxConns connections at once.
//
// Wiring from cmd/oomhero (all methods are safe for concurrent use and cheap;
// call them from the policy/action loop):
//
//	m := metrics.New(metrics.Options{Pod: os.Getenv("POD_NAME"), PodNamespace: os.Getenv("POD_NAMESPACE")})
//	go m.ServeRetrying(ctx, cfg.Listen, metrics.Retry{...}) // port taken: retries, never ends oomhero
//	m.Watch("agent loop", heart, limit)  // heart.Beat() on every turn of the loop
//	m.Watch("source", src, limit)        // src implements heartbeat.Progress
//	m.CountEvents(recorder)              // events posted and dropped
//	...
//	m.SetSource(src.Name())            // "cgroupfs" or "bpf tp_btf/mod_memcg_lruvec_state"
//	m.SetWatched(targets)              // after every discovery scan
//	m.ScanDone()                       // after the first scan: /readyz turns 200 once a source is set
//	m.Observe(target, reading, level)  // for each reading policy evaluated
//	m.Signal(target, watch.Critical, metrics.ResultSent)      // per signal sent
//	m.Signal(target, watch.Warning, metrics.ResultNoTarget)   // nobody could take it
//	m.OOMKill(target)                  // per OOM kill seen
//	m.LostEvents(n)                    // ring-buffer records the kernel dropped
//	m.Forget(target)                   // container gone or renamed (its counters stay for Options.Retain)
//
// The Go runtime and process collectors are registered too, so the sidecar's
// own footprint (process_resident_memory_bytes) is scraped with the rest.
package metrics
