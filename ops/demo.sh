#!/usr/bin/env bash
# ops/demo.sh — the main job on the embedded default configuration.
#
# Today it runs the stages that exist, each on real components and printing only what it measured:
#   1. install what is missing (ops/setup.sh) and build the release preset;
#   2. `clickdiff info`: LibTorch, BLAS, threads, devices, a measured matmul speed;
#   3. `clickdiff config check` on the shipped configurations.
# Outputs go under out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --parallel "$(nproc)" --target clickdiff
cli=build/release/services/clickdiff
out=out/demo
mkdir -p "$out"

echo "== clickdiff info"
"$cli" info --config config/default.yaml | tee "$out/info.txt"

echo "== configuration"
"$cli" config check config/default.yaml
"$cli" config check config/production.example.yaml
