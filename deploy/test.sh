#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: the Release build
# (with the benchmark programs compiled, so they cannot rot) and an
# AddressSanitizer + UndefinedBehaviorSanitizer build of the same tests, and
# a short libFuzzer run of each fuzz target (tests/fuzz/run_fuzz_smoke.sh).
# The Release build's sources are also checked by clang's thread-safety
# analysis (tests/check_thread_safety.sh, compile only).
#   LOGSTAR_SKIP_SANITIZERS=1  only the Release run (no ASan or TSan run, no fuzzing)
#   LOGSTAR_SKIP_FUZZ=1        no fuzzing
#   LOGSTAR_FUZZ_SECONDS=N     fuzzing time per target (default here 30)
#   LOGSTAR_SKIP_TSAN=1        no ThreadSanitizer run
# ThreadSanitizer runs the daemon's test programs only (tests/run_tsan.sh
# --daemon, about 10 min of CPU); the whole tree under TSan does not fit in
# CI's time and runs by hand (docs/operations.md, "Sanitizers").
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo}"
bash deploy/install-deps.sh
# The console's browser test (tests/console): playwright-core from the npm
# registry, at the version its package-lock.json pins.
npm ci --prefix tests/console --no-audit --no-fund
jobs="$(nproc)"

echo "== Release build and tests"
BUILD_DIR=build bash deploy/build.sh -DLOGSTAR_BUILD_BENCHMARKS=ON
echo "== Lock annotations: clang -Wthread-safety over the Release build's sources"
bash tests/check_thread_safety.sh build
ctest --test-dir build --output-on-failure --parallel "${jobs}"

if [[ "${LOGSTAR_SKIP_SANITIZERS:-0}" != 1 ]]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
  BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo bash deploy/build.sh -DLOGSTAR_SANITIZE=address
  ctest --test-dir build-asan --output-on-failure --parallel "${jobs}"
fi

if [[ "${LOGSTAR_SKIP_SANITIZERS:-0}" != 1 && "${LOGSTAR_SKIP_TSAN:-0}" != 1 ]]; then
  echo "== ThreadSanitizer: the daemon's test programs (no report may start in logstar's code)"
  bash tests/run_tsan.sh --daemon
fi

if [[ "${LOGSTAR_SKIP_SANITIZERS:-0}" != 1 && "${LOGSTAR_SKIP_FUZZ:-0}" != 1 ]]; then
  echo "== libFuzzer smoke run (clang, ASan+UBSan)"
  # 30 s per target: a smoke run over the seeds and regressions plus some
  # mutation, minutes in all with the build; longer runs are for by hand.
  LOGSTAR_FUZZ_SECONDS="${LOGSTAR_FUZZ_SECONDS:-30}" bash tests/fuzz/run_fuzz_smoke.sh
fi
