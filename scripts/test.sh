#!/usr/bin/env bash
# Installs prerequisites when missing, then runs every test of the workspace:
# unit and property tests, openraft's storage suite, the checker against the
# reference histories, and end-to-end tests that start real strake processes on
# 127.0.0.1 and drive them with the real etcdctl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prereqs.sh --test
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strake/target}"
export STRAKE_HISTORIES_DIR="${STRAKE_HISTORIES_DIR:-$(cd .. && pwd)/shared/histories}"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
