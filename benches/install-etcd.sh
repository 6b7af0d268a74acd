#!/bin/sh
# Installs etcd for `chorus-bench compare` from Debian's `etcd-server` package, unless an
# `etcd` binary is already on the PATH. Needs root (or sudo) and the Debian archive.
set -eu
if command -v etcd >/dev/null 2>&1; then
  echo "etcd already installed: $(command -v etcd) ($(etcd --version | head -1))"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends etcd-server
# The package starts an etcd service on the default ports where an init system runs;
# the bench starts its own members on free ports and needs none.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  $sudo systemctl disable --now etcd || true
fi
echo "etcd installed: $(command -v etcd) ($(etcd --version | head -1))"
