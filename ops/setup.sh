#!/usr/bin/env bash
# ops/setup.sh — installs every build and run dependency of clickdiff from Debian's packages.
#
# Idempotent: prints nothing and exits 0 when everything is already installed. Otherwise installs
# the missing packages with apt-get (as root, or through sudo) and names any package that Debian's
# registry does not offer. Either way it then checks that Debian's interpreter, /usr/bin/python3
# (the one every ops script runs, as $PYTHON from ops/lib/common.sh), imports the Python modules
# installed here, and names any it cannot import.
# Usage: ops/setup.sh [--check]   (--check: only report what is missing, install nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ops/lib/common.sh
source ops/lib/common.sh

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates clang-format clang-tidy
  # ops/chaos/fuzz.sh: clang with its libFuzzer and sanitizer runtimes
  clang libclang-rt-14-dev
  # libraries the code links against
  libtbb-dev libtorch-dev librdkafka-dev librocksdb-dev libzmq3-dev cppzmq-dev
  libprotobuf-dev protobuf-compiler libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libpng-dev libgtest-dev libgmock-dev libbenchmark-dev
  # LibTorch runs ~50x slower here on Debian's reference BLAS: OpenBLAS (OpenMP flavour) replaces it
  libopenblas0-openmp
  # outside clients used by the integration tests and the demo
  kcat python3 python3-zmq python3-protobuf python3-numpy python3-matplotlib python3-pil
)
# What $PYTHON must import once those are installed (python3-zmq, -protobuf, -numpy, -matplotlib, -pil).
PYTHON_MODULES=(zmq google.protobuf numpy matplotlib PIL)

# check_python: names the modules $PYTHON cannot import (a broken or shadowed install) and exits 1.
check_python() {
  OPS_PYTHON_FIX="installed but not importable: look for modules that shadow them (PYTHONPATH,"
  OPS_PYTHON_FIX+=" ~/.local) or reinstall them (apt-get install --reinstall PACKAGES)"
  require_python_modules "${PYTHON_MODULES[@]}"
}

# use_openmp_blas: other packages (numpy's) bring OpenBLAS's pthread flavour too, whose alternatives
# rank higher, so LibTorch would get it: pthread threads beside torch's OpenMP pool, which
# oversubscribe the cores. Points libblas.so.3, liblapack.so.3 and libopenblas.so.0 at the OpenMP
# flavour, the one every figure in docs/ was measured with.
use_openmp_blas() {
  local arch lib want
  arch=$(gcc -print-multiarch)
  for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
    want=/usr/lib/$arch/openblas-openmp/$lib
    [[ $(readlink "/etc/alternatives/$lib-$arch") == "$want" ]] && continue
    if [[ ${1:-} == --check ]]; then
      echo "setup: $lib is not OpenBLAS's OpenMP flavour (run ops/setup.sh to select it)" >&2
      return 1
    fi
    "${SUDO[@]}" update-alternatives --quiet --set "$lib-$arch" "$want"
  done
}

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=(sudo); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  use_openmp_blas "${1:-}"
  check_python
  exit 0
fi

if [ "${1:-}" = "--check" ]; then
  echo "setup: missing packages: ${missing[*]} (run ops/setup.sh to install them)" >&2
  exit 1
fi

if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
  echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
"${SUDO[@]}" apt-get update -qq >/dev/null
unavailable=()
for p in "${missing[@]}"; do
  apt-cache show "$p" >/dev/null 2>&1 || unavailable+=("$p")
done
if [ ${#unavailable[@]} -gt 0 ]; then
  echo "setup: not offered by the configured Debian archives: ${unavailable[*]}" >&2
  exit 1
fi
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/clickdiff-setup.log 2>&1; then
  tail -20 /tmp/clickdiff-setup.log >&2
  echo "setup: apt-get install failed (full log: /tmp/clickdiff-setup.log)" >&2
  exit 1
fi
use_openmp_blas
check_python
echo "setup: done"
