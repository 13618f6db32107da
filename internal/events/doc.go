// Package events posts Kubernetes Events on oomhero's own pod when a watched
// container reaches the warning or critical level or is OOM-killed, so they
// show in `kubectl describe pod`. The node agent posts them on the watched
// container's own pod instead (EmitFor, Config.AnyNamespace: its service
// account needs a ClusterRole that may create events).
//
// It speaks to the API server with net/http and encoding/json, not
// client-go: the sidecar runs in every pod and its footprint matters. It
// uses the in-cluster configuration: KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT, the service account's token and CA under
// /var/run/secrets/kubernetes.io/serviceaccount (the token is read again for
// every request, as projected tokens rotate), and the Downward API for the pod:
// POD_NAME, POD_NAMESPACE and POD_UID (kubectl describe matches events by the
// pod's UID; without POD_UID the recorder asks the API server for it).
//
// Events are optional. Run first asks the API server (SelfSubjectAccessReview)
// whether the service account may create events in the namespace; when it may
// not, or the pod runs outside Kubernetes, Run logs the reason once and the
// recorder stays off. Emit never blocks, however slow or broken the API
// server: events queue in a small buffer (what does not fit is dropped and
// counted, Dropped; what the server refuses or does not answer within the
// request timeout is counted too, Failed) and are rate-limited per container
// and reason (MinInterval) and overall (a token bucket), and the next event
// of a key says how many were suppressed. Container names and messages are
// cleaned (safename.Clean) before they reach an Event.
//
// Wiring from cmd/oomhero:
//
//	cfg, err := events.ConfigFromEnv(os.Getenv, events.ServiceAccountDir)
//	if err != nil {
//		log.Info("kubernetes events off", "reason", err) // not in a pod
//	} else {
//		cfg.Logger = log
//		rec := events.New(cfg)
//		go rec.Run(ctx) // returns when ctx ends
//		...
//		rec.Emit(events.Warning, name, "memory at 76% of limit (...)") // on level changes
//		rec.Emit(events.OOMKill, name, "...")                           // on OOM kills
//	}
package events
