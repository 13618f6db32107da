#!/usr/bin/env bash
# Tears the local cluster down and leaves the host as it was: deletes the pods
# (so the kubelet stops their containers), stops the node supervisor (which
# stops every component in reverse order), kills by pid whatever it started
# that is still alive (container processes in its kubepods cgroups, processes
# left in its mount namespace), removes the kubepods cgroups, kube-proxy's
# iptables rules and the CNI bridge, and deletes the run directory. The binary
# cache stays. Safe to run when nothing is up.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

if pid=$(node_pid); then
	if kc get --raw /readyz >/dev/null 2>&1; then
		log "deleting pods"
		kc delete pods --all --all-namespaces --grace-period=2 --wait=true --timeout=60s >/dev/null 2>&1 || true
	fi
	log "stopping the node supervisor (pid $pid)"
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 900); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		log "node supervisor still running after 90s; killing it"
		kill -KILL "$pid" 2>/dev/null
	fi
fi

# Processes we started that may have outlived the supervisor: container
# processes (in the kubepods cgroups) and shims (in our mount namespace).
ours() {
	local f p mntns=""
	[[ -f "$run_dir/mntns" ]] && mntns=$(<"$run_dir/mntns")
	for f in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods /sys/fs/cgroup/kubepods; do
		[[ -d $f ]] && find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null
	done
	if [[ -n "$mntns" ]]; then
		for p in /proc/[0-9]*; do
			[[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$mntns" ]] && echo "${p#/proc/}"
		done
	fi
}
for attempt in 1 2 3 4 5; do
	left=$(ours | sort -un | tr '\n' ' ')
	[[ -z "${left// /}" ]] && break
	log "killing leftover processes: $left"
	# shellcheck disable=SC2086
	kill -KILL $left 2>/dev/null
	sleep 0.5
done

# kubepods cgroups, deepest first.
for ctl in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
	[[ -d "${ctl}kubepods" ]] || continue
	find "${ctl}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
	[[ -d "${ctl}kubepods" ]] && log "could not remove ${ctl}kubepods"
done

# kube-proxy's rules (iptables, and nftables when nft is installed), then
# what the kubelet adds (KUBE-FIREWALL, KUBE-IPTABLES-HINT,
# KUBE-KUBELET-CANARY) and anything else named KUBE-: jumps to those chains
# first, then the chains.
if [[ -x "$bin_dir/kube-proxy" ]] && { iptables -t nat -S 2>/dev/null | grep -q KUBE- || iptables -S 2>/dev/null | grep -q KUBE-; }; then
	"$bin_dir/kube-proxy" --cleanup --v=0 >"$cache_dir/kube-proxy-cleanup.log" 2>&1 ||
		log "kube-proxy --cleanup failed: see $cache_dir/kube-proxy-cleanup.log"
fi
for ipt in iptables ip6tables; do
	command -v "$ipt" >/dev/null || continue
	for table in filter nat mangle raw; do
		rules=$("$ipt" -t "$table" -S 2>/dev/null) || continue
		grep -q 'KUBE-' <<<"$rules" || continue
		# Rules of built-in chains that jump to a KUBE- chain.
		grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-' <<<"$rules" |
			while read -r line; do
				eval "set -- $line" # iptables -S quotes comments like a shell
				shift
				"$ipt" -t "$table" -D "$@" 2>/dev/null
			done
		for chain in $(grep -oE '^-N KUBE-[A-Za-z0-9-]+' <<<"$rules" | cut -d' ' -f2); do
			"$ipt" -t "$table" -F "$chain" 2>/dev/null
		done
		for chain in $(grep -oE '^-N KUBE-[A-Za-z0-9-]+' <<<"$rules" | cut -d' ' -f2); do
			"$ipt" -t "$table" -X "$chain" 2>/dev/null
		done
		"$ipt" -t "$table" -S 2>/dev/null | grep -q 'KUBE-' && log "$ipt table $table still has KUBE- rules"
	done
done
ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge"

if [[ -d "$run_dir" ]]; then
	if [[ "${K8S_KEEP_LOGS:-}" != "" ]]; then
		rm -rf "$cache_dir/last-logs" && cp -r "$run_dir/logs" "$cache_dir/last-logs" 2>/dev/null
	fi
	rm -rf "$run_dir" || log "could not remove $run_dir (a mount left?)"
fi
log "cluster down"
