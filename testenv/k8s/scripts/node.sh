#!/usr/bin/env bash
# The node supervisor, started by up.sh inside `unshare --mount --propagation
# private`: every mount made here (and by containerd, runc and the kubelet)
# stays in this mount namespace and disappears with it.
#
# It bind-mounts files holding the wanted values over the /proc/sys files the
# kubelet checks (protectKernelDefaults) and the bridge CNI plugin writes, so
# no host sysctl changes; hides /var/log, /var/lib/cni, /run/containerd and
# /run/netns behind private directories; starts the components in order and,
# on SIGTERM (down.sh) or when one of them exits, stops them in reverse order.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
node_ip=$(<"$run_dir/node-ip")
pki="$run_dir/pki"
logs="$run_dir/logs"

readlink /proc/self/ns/mnt >"$run_dir/mntns"
[[ $(readlink /proc/self/ns/mnt) != $(readlink /proc/1/ns/mnt) ]] || die "node.sh must run in a private mount namespace"

# /proc/sys files: the value each component wants, so it never writes.
declare -A sysctls=(
	[vm/overcommit_memory]=1 [vm/panic_on_oom]=0 [kernel/panic]=10 [kernel/panic_on_oops]=1
	[kernel/keys/root_maxkeys]=1000000 [kernel/keys/root_maxbytes]=25000000
	[net/ipv4/ip_forward]=1 [net/ipv4/conf/all/route_localnet]=0
)
for k in "${!sysctls[@]}"; do
	f="$run_dir/sysctl/${k//\//.}"
	echo "${sysctls[$k]}" >"$f"
	mount --bind "$f" "/proc/sys/$k"
done
private_dir() { # host path, our directory
	mkdir -p "$1" "$2"
	mount --bind "$2" "$1"
}
private_dir /var/log "$run_dir/varlog"
private_dir /var/lib/cni "$run_dir/cni/cache"
mkdir -p /run/containerd /run/netns
mount -t tmpfs -o mode=0711 tmpfs /run/containerd
mount -t tmpfs -o mode=0755 tmpfs /run/netns

declare -A pids=()
order=()
stopping=0
start_component() { # name args...
	local name=$1
	shift
	"$@" >"$logs/$name.log" 2>&1 </dev/null &
	pids[$name]=$!
	order+=("$name")
	log "started $name (pid ${pids[$name]})"
}
stop_all() {
	stopping=1
	local i name pid
	for ((i = ${#order[@]} - 1; i >= 0; i--)); do
		name=${order[$i]}
		pid=${pids[$name]}
		kill -0 "$pid" 2>/dev/null || continue
		if [[ $name == containerd ]]; then
			remove_containers
		fi
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			log "$name did not stop in 15s; killing pid $pid"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
		log "stopped $name"
	done
}
# remove_containers kills and deletes the containers the kubelet left, so
# their shims exit before containerd does.
remove_containers() {
	local ctr=(ctr --address "$containerd_sock" -n k8s.io) id
	for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
		"${ctr[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
	done
	sleep 0.5
	for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
		"${ctr[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
	done
	for id in $("${ctr[@]}" containers ls -q 2>/dev/null); do
		"${ctr[@]}" containers delete "$id" >/dev/null 2>&1 || true
	done
}
trap 'log "stopping"; stop_all; exit 0' TERM INT

wait_for() { # what, timeout seconds, command...
	local what=$1 t=$2
	shift 2
	local deadline=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			log "timeout waiting for $what"
			stop_all
			exit 1
		fi
		sleep 0.5
	done
}

start_component etcd "$bin_dir/etcd" --name default --data-dir "$run_dir/etcd" \
	--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
	--initial-cluster "default=http://127.0.0.1:$etcd_peer_port" --listen-metrics-urls "" \
	--unsafe-no-fsync --log-level warn
wait_for etcd 60 curl -fsS "http://127.0.0.1:$etcd_port/health"

start_component kube-apiserver "$bin_dir/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$etcd_port" \
	--bind-address 0.0.0.0 --secure-port "$api_port" --advertise-address "$node_ip" \
	--service-cluster-ip-range "$service_cidr" \
	--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
	--client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
	--kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
	--kubelet-client-key "$pki/apiserver-kubelet-client.key" --kubelet-preferred-address-types InternalIP \
	--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
	--allow-privileged=true --profiling=false --v=1
wait_for kube-apiserver 90 kc get --raw /readyz

start_component kube-controller-manager "$bin_dir/kube-controller-manager" \
	--kubeconfig "$run_dir/kcm.kubeconfig" --leader-elect=false \
	--authentication-kubeconfig "$run_dir/kcm.kubeconfig" --authorization-kubeconfig "$run_dir/kcm.kubeconfig" \
	--bind-address 127.0.0.1 --root-ca-file "$pki/ca.crt" \
	--service-account-private-key-file "$pki/sa.key" --service-cluster-ip-range "$service_cidr" \
	--use-service-account-credentials=true --profiling=false --v=1
start_component kube-scheduler "$bin_dir/kube-scheduler" \
	--kubeconfig "$run_dir/scheduler.kubeconfig" --leader-elect=false \
	--authentication-kubeconfig "$run_dir/scheduler.kubeconfig" --authorization-kubeconfig "$run_dir/scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --profiling=false --v=1
start_component containerd containerd --config "$run_dir/containerd.toml"
wait_for containerd 60 ctr --address "$containerd_sock" version
touch "$run_dir/node.ready" # up.sh imports the pause image now

start_component kubelet "$bin_dir/kubelet" --config "$run_dir/kubelet.yaml" \
	--kubeconfig "$run_dir/kubelet.kubeconfig" --root-dir "$run_dir/kubelet" \
	--cert-dir "$run_dir/kubelet/pki" --node-ip "$node_ip" --hostname-override "$node_name" --v=1
start_component kube-proxy "$bin_dir/kube-proxy" --config "$run_dir/kube-proxy.yaml" --v=1
log "all components started"

while true; do
	# wait -n returns when any component exits (or a trapped signal arrives).
	wait -n || true
	((stopping)) && exit 0
	for name in "${order[@]}"; do
		if ! kill -0 "${pids[$name]}" 2>/dev/null; then
			log "$name exited; stopping the node (see $logs/$name.log)"
			stop_all
			exit 1
		fi
	done
done
