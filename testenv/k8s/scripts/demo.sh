#!/usr/bin/env bash
# make demo-k8s: the seed's story on the local real cluster, for a person.
# Brings the cluster up (or reuses it), loads the images, runs the seed's Pod
# as its README says and follows the app's log until the signals and the OOM
# kill, draws the app's memory, the thresholds, the signals and the kill
# (testenv/pods/cmd/demo -chart); then the sidecar with Events and /metrics. The cluster stays up:
# `make k8s-down` removes it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$k8s_dir/scripts/up.sh" >/dev/null
"$k8s_dir/scripts/images.sh"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
kc delete pod oomhero oomhero-sidecar --ignore-not-found --grace-period=0 --force >/dev/null 2>&1

say "kubectl create -f deploy/pod.yaml"
kc create -f "$repo_dir/deploy/pod.yaml"
kc wait --for=condition=Ready pod/oomhero --timeout=90s >/dev/null
say "kubectl logs -f oomhero --container bloat    # 40 s; one line per MiB leaked, filtered"
applog=$(mktemp /tmp/oomhero-demo-k8s.XXXXXX)
trap 'rm -f "$applog"' EXIT
timeout 40 "$bin_dir/kubectl" --kubeconfig "$kubeconfig" logs -f oomhero --container bloat | tee "$applog" |
	grep --line-buffered -E 'event=(start|signal)' | cut -c1-110 || true
# The chart: the killed instance's whole log (the container restarted) and
# whether Kubernetes says it was OOM-killed.
kc logs oomhero --container bloat --previous >"$applog.prev" 2>/dev/null && mv "$applog.prev" "$applog" || rm -f "$applog.prev"
reason=$(kc get pod oomhero -o jsonpath='{.status.containerStatuses[?(@.name=="bloat")].lastState.terminated.reason}')
killed=()
[[ "$reason" == OOMKilled ]] && killed=(-killed)
(cd "$repo_dir" && "${GO:-go}" run ./testenv/pods/cmd/demo -chart "$applog" "${killed[@]}") ||
	echo "(the chart needs bloat's log with both signals; see above)"
say "kubectl logs oomhero --container oomhero    # decisions, not samples"
kc logs oomhero --container oomhero | grep -E 'source active|container watched|level changed|oom kill|events' | cut -c1-200
kc logs oomhero --container oomhero | grep -c 'signal sent' | xargs printf '(and %s "signal sent" lines, one per second per level: the cooldown)\n'

say "kubectl apply -f deploy/rbac.yaml -f deploy/sidecar.yaml    # Events and /metrics"
kc apply -f "$repo_dir/deploy/rbac.yaml" -f "$repo_dir/deploy/sidecar.yaml"
kc wait --for=condition=Ready pod/oomhero-sidecar --timeout=90s >/dev/null
echo "waiting 40 s for the leak to cross both thresholds and hit the limit..."
sleep 40
say "kubectl describe pod oomhero-sidecar | sed -n '/^Events:/,\$p'"
kc describe pod oomhero-sidecar | sed -n '/^Events:/,$p'
say "kubectl get --raw /api/v1/namespaces/default/pods/oomhero-sidecar:9090/proxy/metrics | grep ^oomhero_"
kc get --raw /api/v1/namespaces/default/pods/oomhero-sidecar:9090/proxy/metrics | grep '^oomhero_'
cat <<EOT

The cluster is still up. Try it yourself:
  export KUBECONFIG=$kubeconfig
  alias kubectl=$bin_dir/kubectl
  kubectl get pods
Tear it down with: make k8s-down
EOT
