# Shared settings of the local cluster scripts (sourced, not run).
# shellcheck shell=bash
k8s_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo_dir=$(cd "$k8s_dir/../.." && pwd)
k8s_version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$k8s_dir/cluster/go.mod")
cache_dir="$k8s_dir/.cache"
bin_dir="$cache_dir/$k8s_version/bin"
# run_dir holds everything of a running cluster; k8s-down deletes it.
run_dir="$cache_dir/run"
node_name=oomhero-k8s
service_cidr=10.96.0.0/24
service_ip=10.96.0.1
pod_cidr=10.244.0.0/24
bridge=oomhero-cni0
etcd_port=23790
etcd_peer_port=23800
api_port=6443
kubeconfig="$run_dir/admin.kubeconfig"
containerd_sock="$run_dir/containerd/containerd.sock"
pause_image=localhost/oomhero-pause:dev

log() { printf '[k8s %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

kc() { "$bin_dir/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# node_pid prints the pid of the running node supervisor, if any.
node_pid() {
	local pid
	[[ -f "$run_dir/node.pid" ]] || return 1
	pid=$(<"$run_dir/node.pid")
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}
