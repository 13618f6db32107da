# oomhero's image (localhost/oomhero:dev): the static binary alone, FROM
# scratch. The binary is built outside (no Go image is pulled):
#
#   CGO_ENABLED=0 go build -trimpath -o bin/oomhero ./cmd/oomhero
#   podman build -t localhost/oomhero:dev .
#
# oomhero runs as root in a privileged container: it reads every process of
# the pod under /proc and their cgroups through /proc/<pid>/root.
FROM scratch
ARG BIN=bin/oomhero
COPY ${BIN} /oomhero
ENTRYPOINT ["/oomhero"]
