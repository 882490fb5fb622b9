#!/usr/bin/env bash
# Builds strake (release) and runs a single-member etcd-compatible server with etcd's
# defaults: clients on http://localhost:2379, peers on http://localhost:2380, data in
# ./default.etcd. Extra arguments are passed to `strake etcd` (etcd's flags).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strake/target}"
cargo build --release -p strake
exec "$CARGO_TARGET_DIR/release/strake" etcd "$@"
