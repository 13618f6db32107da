#!/usr/bin/env bash
# Builds the images the cluster tests use with podman and loads them into the
# cluster's containerd (namespace k8s.io) from docker-archive tars:
#   localhost/oomhero-pause:dev    the pod sandbox (cluster/cmd/pause)
#   localhost/oomhero:dev          oomhero (root Dockerfile, ./cmd/oomhero)
#   localhost/oomhero-testapp:dev  the test application (testenv/app)
#   localhost/oomhero-bloat:dev    the test application as the seed's bloat
# `images.sh pause` loads the sandbox image only (up.sh does that).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
what=${1:-all}
[[ -S "$containerd_sock" ]] || die "containerd is not running: make k8s-up first"
export CONTAINERS_CONF="$repo_dir/testenv/pods/containers.conf"
ctx="$cache_dir/images"
mkdir -p "$ctx/pause" "$ctx/oomhero" "$ctx/testapp"

build() { # tag dockerfile context [build args...]
	local tag=$1 file=$2 dir=$3
	shift 3
	podman build -q --pull=never "$@" -f "$file" -t "$tag" "$dir" >/dev/null
}
load() { # tag
	local tar="$ctx/$(echo "$1" | tr '/:' '__').tar"
	rm -f "$tar"
	podman save -q --format docker-archive -o "$tar" "$1"
	ctr --address "$containerd_sock" -n k8s.io images import "$tar" >/dev/null
	rm -f "$tar"
	log "loaded $1"
}

cp "$bin_dir/pause" "$ctx/pause/pause"
printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$ctx/pause/Dockerfile"
build "$pause_image" "$ctx/pause/Dockerfile" "$ctx/pause"
load "$pause_image"
[[ $what == pause ]] && exit 0

(cd "$repo_dir" && CGO_ENABLED=0 go build -trimpath -tags nokube -o "$ctx/oomhero/oomhero" ./cmd/oomhero)
(cd "$repo_dir" && CGO_ENABLED=0 go build -trimpath -o "$ctx/oomhero/oomhero-node" ./cmd/oomhero)
(cd "$repo_dir" && CGO_ENABLED=0 go build -trimpath -o "$ctx/testapp/testapp" ./testenv/app)
build localhost/oomhero:dev "$repo_dir/Dockerfile" "$ctx/oomhero" --build-arg BIN=oomhero --build-arg NODEBIN=oomhero-node
build localhost/oomhero-testapp:dev "$repo_dir/testenv/app/Dockerfile" "$ctx/testapp"
build localhost/oomhero-bloat:dev "$k8s_dir/bloat.Dockerfile" "$ctx/testapp"
for img in localhost/oomhero:dev localhost/oomhero-testapp:dev localhost/oomhero-bloat:dev; do
	load "$img"
done
