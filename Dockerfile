# oomhero's image (localhost/oomhero:dev): two static binaries, FROM
# scratch. They are built outside (no Go image is pulled):
#
#   CGO_ENABLED=0 go build -trimpath -tags nokube -o bin/oomhero ./cmd/oomhero
#   CGO_ENABLED=0 go build -trimpath -o bin/oomhero-node ./cmd/oomhero
#   podman build -t localhost/oomhero:dev .
#
# /oomhero is the sidecar (and `oomhero probe`): built without the
# Kubernetes API client (build tag nokube), which would cost every pod's
# sidecar about 8 MB of binary and 3 MB of RSS for an informer it never
# starts. /oomhero-node is the same program with the client: the node agent
# (deploy/node) runs `/oomhero-node node` to name containers by pod through
# the API server.
#
# oomhero runs as root in a privileged container: it reads every process of
# the pod under /proc and their cgroups through /proc/<pid>/root.
FROM scratch
ARG BIN=bin/oomhero
ARG NODEBIN=bin/oomhero-node
COPY ${BIN} /oomhero
COPY ${NODEBIN} /oomhero-node
ENTRYPOINT ["/oomhero"]
