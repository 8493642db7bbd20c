#!/usr/bin/env bash
# Configures and builds logstar (Release) in BUILD_DIR (default build/).
#   deploy/build.sh [extra cmake -D options...]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-${repo}/build}"
cmake -S "${repo}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "$@" >/dev/null
cmake --build "${build}" --parallel "$(nproc)"
