#!/usr/bin/env bash
# Installs what building and testing strake needs on Debian 12, only when missing:
# libclang (bindgen for the rocksdb crate), etcdctl and etcd (Debian's etcd-client and
# etcd-server, for tests and comparisons). Idempotent; quiet when nothing is missing.
set -euo pipefail

need=()
# libclang itself (not libclang-cpp, which other packages pull in and bindgen cannot use).
compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || compgen -G '/usr/lib/*/libclang-[0-9]*.so*' >/dev/null \
  || need+=(libclang-dev)
if [ "${1:-}" = "--test" ]; then
  command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
  command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian starts an etcd service on install where systemd runs; strake's tests start their own.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    $SUDO systemctl stop etcd || true
  fi
fi
