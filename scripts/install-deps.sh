#!/usr/bin/env bash
# Installs what Strata's tests need on a fresh Debian machine (run as root):
# Debian packages for FUSE, network namespaces and MPI, and
# the Go modules. Packages already present are not reinstalled.
set -euo pipefail

pkgs=(fuse3 iproute2 mpich libmpich-dev util-linux debootstrap openipmi ipmitool)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # A renamed-package error on the first try goes away on a retry.
  for try in 1 2 3; do
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null && break
    [ "$try" = 3 ] && { echo "install-deps: apt-get failed" >&2; exit 1; }
    sleep 2
  done
fi
go mod download
