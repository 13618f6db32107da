#!/usr/bin/env bash
# Starts a single-node Kubernetes cluster on this machine: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd
# (Debian's), kubelet and kube-proxy (iptables mode), built from the Go module
# proxy (build.sh). Everything runs in a private mount namespace (node.sh) in
# which the /proc/sys files the kubelet and the CNI plugin would write are
# bind-mounted over with files holding the values they want: host sysctls stay
# untouched. Pods reach the API server through the kubernetes service
# (10.96.0.1:443, routed by kube-proxy to the node IP).
#
# Prints the kubeconfig path. Idempotent: exits at once when the cluster is up.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[[ $(id -u) == 0 ]] || die "the cluster needs root"
for c in containerd containerd-shim-runc-v2 ctr runc iptables iptables-restore openssl unshare ip curl; do
	command -v "$c" >/dev/null || die "$c not found (apt-get install containerd containernetworking-plugins iptables openssl util-linux iproute2 curl)"
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
	die "CNI plugins missing in /usr/lib/cni (apt-get install containernetworking-plugins)"

if pid=$(node_pid) && kc get --raw /readyz >/dev/null 2>&1; then
	log "cluster already up (node supervisor pid $pid); KUBECONFIG=$kubeconfig"
	echo "$kubeconfig"
	exit 0
fi
if [[ -e "$run_dir" ]]; then
	log "cleaning up a cluster that is not healthy"
	"$k8s_dir/scripts/down.sh"
fi

"$k8s_dir/scripts/build.sh"
start=$(date +%s)

# The node IP: the default route's source address, else the first global
# IPv4 address of an interface that is not a container bridge.
node_ip=$(ip -4 -o route get 1.1.1.1 2>/dev/null | awk '{for(i=1;i<NF;i++) if($i=="src"){print $(i+1); exit}}' || true)
if [[ -z "$node_ip" ]]; then
	node_ip=$(ip -4 -o addr show scope global | awk '$2 !~ /^(podman|cni|docker|veth|'"$bridge"')/ {split($4,a,"/"); print a[1]; exit}')
fi
[[ -n "$node_ip" ]] || die "no global IPv4 address: the node needs one that pods can reach"

mkdir -p "$run_dir"/{pki,logs,etcd,kubelet,pod-logs,cni/net.d,cni/cache,cni/ipam,containerd,sysctl,varlog}
chmod 700 "$run_dir"
echo "$node_ip" >"$run_dir/node-ip"
pki="$run_dir/pki"

# Certificates: one CA for serving and client certificates.
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=oomhero-k8s-ca" \
	-keyout "$pki/ca.key" -out "$pki/ca.crt"
cat >"$pki/apiserver.ext" <<EOT
subjectAltName=IP:127.0.0.1,IP:$node_ip,IP:$service_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EOT
printf 'extendedKeyUsage=clientAuth\n' >"$pki/client.ext"
cert() { # name subject extfile
	openssl_quiet req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr"
	openssl_quiet x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
		-days 7 -extfile "$3" -out "$pki/$1.crt"
}
cert apiserver "/CN=kube-apiserver" "$pki/apiserver.ext"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$pki/client.ext"
openssl_quiet genrsa -out "$pki/sa.key" 2048
openssl_quiet rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

# Static tokens, one per component.
tok() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
admin_tok=$(tok) kcm_tok=$(tok) sched_tok=$(tok) kubelet_tok=$(tok) proxy_tok=$(tok)
cat >"$pki/tokens.csv" <<EOT
$admin_tok,admin,admin,system:masters
$kcm_tok,system:kube-controller-manager,kcm
$sched_tok,system:kube-scheduler,scheduler
$kubelet_tok,system:node:$node_name,kubelet,system:nodes
$proxy_tok,system:kube-proxy,kube-proxy
EOT
mkkubeconfig() { # file token server
	cat >"$1" <<EOT
apiVersion: v1
kind: Config
clusters:
- name: oomhero-k8s
  cluster:
    server: $3
    certificate-authority: $pki/ca.crt
users:
- name: user
  user:
    token: $2
contexts:
- name: oomhero-k8s
  context: {cluster: oomhero-k8s, user: user, namespace: default}
current-context: oomhero-k8s
EOT
	chmod 600 "$1"
}
local_api="https://127.0.0.1:$api_port"
mkkubeconfig "$kubeconfig" "$admin_tok" "$local_api"
mkkubeconfig "$run_dir/kcm.kubeconfig" "$kcm_tok" "$local_api"
mkkubeconfig "$run_dir/scheduler.kubeconfig" "$sched_tok" "$local_api"
mkkubeconfig "$run_dir/kubelet.kubeconfig" "$kubelet_tok" "https://$node_ip:$api_port"
mkkubeconfig "$run_dir/kube-proxy.kubeconfig" "$proxy_tok" "https://$node_ip:$api_port"

cat >"$run_dir/containerd.toml" <<EOT
version = 2
root = "$run_dir/containerd/root"
state = "$run_dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$containerd_sock"
[ttrpc]
  address = "$containerd_sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$run_dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$run_dir/cni/net.d"
EOT

cat >"$run_dir/cni/net.d/10-oomhero.conflist" <<EOT
{
  "cniVersion": "1.0.0",
  "name": "oomhero-k8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$run_dir/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr"}]]
      }
    },
    {"type": "loopback"}
  ]
}
EOT

cat >"$run_dir/kubelet.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$containerd_sock
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
oomScoreAdj: 0
makeIPTablesUtilChains: false
protectKernelDefaults: true
hairpinMode: none
volumePluginDir: $run_dir/kubelet/volume-plugins
podLogsDir: $run_dir/pod-logs
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOT

cat >"$run_dir/kube-proxy.yaml" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $run_dir/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $node_name
clusterCIDR: $pod_cidr
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
EOT

log "starting the node (node IP $node_ip); logs in $run_dir/logs"
setsid unshare --mount --propagation private -- "$k8s_dir/scripts/node.sh" \
	>"$run_dir/logs/node.log" 2>&1 </dev/null &
echo $! >"$run_dir/node.pid"

fail() {
	log "cluster did not come up: $*"
	for f in "$run_dir"/logs/*.log; do
		echo "---- tail $f" >&2
		tail -n 15 "$f" >&2
	done
	"$k8s_dir/scripts/down.sh" || true
	exit 1
}
deadline=$((SECONDS + 240))
until [[ -f "$run_dir/node.ready" ]]; do
	node_pid >/dev/null || fail "the node supervisor exited"
	((SECONDS < deadline)) || fail "timeout waiting for the node"
	sleep 1
done
"$k8s_dir/scripts/images.sh" pause
until kc get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True; do
	((SECONDS < deadline)) || fail "timeout waiting for node $node_name Ready"
	sleep 1
done
until kc get serviceaccount default >/dev/null 2>&1 && kc get configmap kube-root-ca.crt >/dev/null 2>&1; do
	((SECONDS < deadline)) || fail "timeout waiting for the default service account"
	sleep 1
done
log "cluster up in $(($(date +%s) - start))s; KUBECONFIG=$kubeconfig kubectl=$bin_dir/kubectl"
echo "$kubeconfig"
