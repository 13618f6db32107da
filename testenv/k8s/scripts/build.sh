#!/usr/bin/env bash
# Builds the single-node cluster's binaries (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl, pause)
# from the Go module proxy at the version pinned in cluster/go.mod, into
# testenv/k8s/.cache/<version>/bin. A rerun with all binaries present does
# nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mod="$here/cluster"
version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$mod/go.mod")
bin="${K8S_BIN_DIR:-$here/.cache/$version/bin}"
tools=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
want=("${tools[@]}" etcd pause)

missing=0
for b in "${want[@]}"; do [[ -x "$bin/$b" ]] || missing=1; done
if [[ $missing == 0 ]]; then
	echo "k8s $version binaries cached in $bin"
	exit 0
fi

major=${version#v}; major=${major%%.*}
minor=${version#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=$version -X $p.gitMajor=$major -X $p.gitMinor=$minor"
	ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
mkdir -p "$bin.tmp"
start=$(date +%s)
cd "$mod"
pkgs=()
for t in "${tools[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
echo "building k8s $version: ${want[*]} (GOMAXPROCS=${GOMAXPROCS:-all})"
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin.tmp/" "${pkgs[@]}" ./cmd/etcd ./cmd/pause
mkdir -p "$bin"
mv "$bin.tmp"/* "$bin/"
rmdir "$bin.tmp"
echo "built k8s $version in $(( $(date +%s) - start ))s into $bin"
