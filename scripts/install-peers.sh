#!/usr/bin/env bash
# Installs the real peers the tests drive (docs: ../shared/docs/peers.md), only when missing.
# Debian packages: python3-hl7 (mllp_send), socat (pty pairs / raw TCP), chromium (editor tests), systemd (systemd-analyze), podman + debootstrap + runc (the image build),
# dcmtk + orthanc (DICOM modality and PACS peers), mosquitto + mosquitto-clients (MQTT devices and the upstream broker).
# Debian starts orthanc (4242/8042) and mosquitto (1883) as services where systemd runs: the tests use their own ports and configs.
# Needs root or sudo.
set -euo pipefail
need=()
command -v mllp_send >/dev/null 2>&1 || need+=(python3-hl7)
command -v socat >/dev/null 2>&1 || need+=(socat)
# a real browser for the editor tests (playwright-core drives Debian's chromium)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# systemd-analyze verifies the shipped systemd unit (packaging/packaging.test.ts)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# the container image is built from Debian's packages and its demo run in CI (packaging/podman/build-and-run.sh)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v runc >/dev/null 2>&1 || need+=(runc)
# DICOM peers (issue 11): storescu/findscu/echoscu/storescp/dump2dcm and Orthanc as the PACS
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
{ command -v Orthanc || [ -x /usr/sbin/Orthanc ]; } >/dev/null 2>&1 || need+=(orthanc)
# MQTT peers (issue 12): mosquitto as the upstream broker, mosquitto_pub/_sub as devices
{ command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
if [ "${#need[@]}" -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-peers: missing ${need[*]} and not root; install them with apt-get" >&2; exit 1
  fi
fi
echo "install-peers: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
