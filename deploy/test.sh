#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: the Release build
# (with the benchmark programs compiled, so they cannot rot) and an
# AddressSanitizer + UndefinedBehaviorSanitizer build of the same tests.
#   LOGSTAR_SKIP_SANITIZERS=1  only the Release run
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo}"
bash deploy/install-deps.sh
jobs="$(nproc)"

echo "== Release build and tests"
BUILD_DIR=build bash deploy/build.sh -DLOGSTAR_BUILD_BENCHMARKS=ON
ctest --test-dir build --output-on-failure --parallel "${jobs}"

if [[ "${LOGSTAR_SKIP_SANITIZERS:-0}" != 1 ]]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
  BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo bash deploy/build.sh -DLOGSTAR_SANITIZE=address
  ctest --test-dir build-asan --output-on-failure --parallel "${jobs}"
fi
