#!/usr/bin/env bash
# Builds the gateway image with podman from Debian packages only and runs the demo in it:
#   1. base image localhost/iomt-base:trixie from `debootstrap --variant=minbase trixie` (skipped when
#      it exists; FRESH=1 rebuilds it and the gateway image without cache);
#   2. `podman build` of packaging/podman/Containerfile with the repository root as context
#      (.dockerignore applies);
#   3. the demo (analyzer simulator -> gateway -> HIS simulator) runs in a container for DEMO_SECONDS
#      (20); then /healthz, /readyz, the API (admin password from the data dir) and /metrics are read
#      over HTTPS inside the container (check-demo.cjs), and data must have flowed: committed > 0 and
#      delivered > 0; on SIGTERM the demo must report acknowledged and delivered messages.
# Prints the wall time of each step. Exit status 0 only when everything above held.
# Needs root (debootstrap, rootful podman) and: apt-get install podman debootstrap runc.
#
# On this CI machine (Firecracker VM, cgroup v1 + v2 hybrid, root without CAP_SYS_RESOURCE) podman's
# defaults fail (measured 2026-11-30, podman 4.3.1 from bookworm):
#   crun:  "setrlimit `RLIMIT_NOFILE`: Operation not permitted" (podman asks for 1048576 open files),
#          then, with --ulimit set, "cgroups in hybrid mode not supported, drop all controllers from
#          cgroupv2" (also with --cgroups=disabled);
#   runc:  works when the rlimits stay under the host's hard limits (--ulimit below).
# PODMAN_RUNTIME and the ulimits can be overridden.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=${IMG_WORK:-/tmp/iomt-podman}
BASE=localhost/iomt-base:trixie
IMAGE=localhost/iomt-gateway:podman-test
NAME=iomt-podman-demo
DEMO_SECONDS=${DEMO_SECONDS:-20}
RUNTIME=${PODMAN_RUNTIME:-runc}
nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=65536
nproc=${PODMAN_NPROC:-4096}
PODMAN=(podman --runtime "$RUNTIME")
ULIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

t_all=$(date +%s)
step() { echo "== $(date -u +%H:%M:%S) $*" >&2; }
took() { echo "== $1: $(( $(date +%s) - $2 )) s" >&2; }
fail() { echo "build-and-run: FAIL: $*" >&2; exit 1; }

for c in podman debootstrap "$RUNTIME"; do
  command -v "$c" >/dev/null 2>&1 || fail "$c missing (apt-get install podman debootstrap runc)"
done
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, rootful podman)"

cleanup() { "${PODMAN[@]}" rm -f -t 5 "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

# 1. base rootfs from Debian's packages
if [ "${FRESH:-0}" = 1 ]; then
  podman rmi -f "$IMAGE" "$BASE" >/dev/null 2>&1 || true
fi
if ! podman image exists "$BASE"; then
  t=$(date +%s); step "debootstrap --variant=minbase trixie from $MIRROR"
  rm -rf "$WORK/rootfs"; mkdir -p "$WORK"
  debootstrap --variant=minbase trixie "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap (log: $WORK/debootstrap.log)"; }
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*_Packages
  took debootstrap "$t"
  t=$(date +%s); step "podman import $BASE"
  tar -C "$WORK/rootfs" -c . | podman import - "$BASE" >/dev/null
  rm -rf "$WORK/rootfs"
  took import "$t"
else
  step "$BASE exists (FRESH=1 to rebuild)"
fi

# 2. gateway image
t=$(date +%s); step "podman build $IMAGE (runtime $RUNTIME)"
build_opts=()
# npm inside the build trusts the host's CA bundle (read-only mount, build time only): this machine's
# egress goes through a TLS proxy whose CA is in the host's store ("SELF_SIGNED_CERT_IN_CHAIN" without it).
HOST_CA=${HOST_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
if [ -f "$HOST_CA" ]; then
  build_opts+=(--volume "$HOST_CA:/run/host-ca.crt:ro" --build-arg NPM_CAFILE=/run/host-ca.crt)
fi
[ "${FRESH:-0}" = 1 ] && build_opts+=(--no-cache)
# each build STEP line is prefixed with the time, to see where the minutes go
"${PODMAN[@]}" build "${build_opts[@]}" "${ULIMITS[@]}" -f packaging/podman/Containerfile -t "$IMAGE" "$repo" 2>&1 \
  | while IFS= read -r line; do case $line in STEP*) echo "== $(date -u +%H:%M:%S) $line" ;; *) echo "$line" ;; esac; done \
  || fail "podman build"
took build "$t"

# 3. demo inside the container
t=$(date +%s); step "demo in container $NAME for ${DEMO_SECONDS}s"
"${PODMAN[@]}" run -d --name "$NAME" "${ULIMITS[@]}" "$IMAGE" demo >/dev/null || fail "podman run"
ready=""
for _ in $(seq 1 90); do
  if "${PODMAN[@]}" exec -i "$NAME" node - ready <packaging/podman/check-demo.cjs 2>/dev/null; then
    ready=1; break
  fi
  [ "$(podman inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" = true ] || break
  sleep 1
done
[ -n "$ready" ] || { podman logs "$NAME" >&2 || true; fail "gateway not ready (/readyz) within 90 s"; }
took ready "$t"
sleep "$DEMO_SECONDS"
# Reads the endpoints inside the container (no published ports: nothing on the host is touched);
# packaging/podman/check-demo.cjs says what must hold.
"${PODMAN[@]}" exec -i "$NAME" node - flow <packaging/podman/check-demo.cjs || { podman logs "$NAME" >&2 || true; fail "checks inside the container"; }
"${PODMAN[@]}" stop -t 15 "$NAME" >/dev/null
logs=$(podman logs "$NAME" 2>&1)
echo "$logs" | grep -E 'acknowledged|demo stopped' | tail -3 >&2
echo "$logs" | grep -qE 'demo stopped: [1-9][0-9]* acknowledged, [1-9][0-9]* delivered' \
  || fail "demo did not report acknowledged and delivered messages on stop"
took demo "$t"
echo "build-and-run: OK in $(( $(date +%s) - t_all )) s" >&2
