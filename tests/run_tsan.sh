#!/usr/bin/env bash
# Builds logstar with ThreadSanitizer (-DLOGSTAR_SANITIZE=thread, gcc) in its
# own build directory and runs the test suite, or the tests matching a ctest
# regular expression, under it. Reports fail the test (halt_on_error=1);
# tests/tsan.supp lists the suppressions and why each is there.
#   tests/run_tsan.sh                         every test
#   tests/run_tsan.sh 'Analyzer|Session|Server|Client'   a subset (ctest -R)
#   LOGSTAR_TSAN_BUILD_DIR=DIR   default build-tsan/ in the repository
#
# Not part of deploy/test.sh (CI): on CI's 2 cores the TSan build alone took
# 14 min for just the engine, server and five test programs (a loaded
# machine), the whole tree is about twice that, and TSan slows tests
# 5-15x (its documented overhead): it does not fit next to the Release, ASan and
# fuzz runs in CI's 90 minutes. Run it by hand after touching threads, locks
# or the daemon's reactors.
#
# Known limit: Debian's oneTBB, Abseil and gRPC are not built with TSan, so
# it cannot see their synchronisation. tests/tsan.supp covers TBB's hand-offs
# and the analyzer's tests (Analyzer*) pass clean; the daemon's tests (server_test,
# client_test, parts of session_test) still report absl::Mutex-guarded fields
# (e.g. WorkerPool::stopping_, written and read under mu_) and gRPC and
# OpenSSL internals as races: read those reports with that in mind.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LOGSTAR_TSAN_BUILD_DIR:-${repo}/build-tsan}"
filter="${1:-}"

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
start=${SECONDS}
cmake -S "${repo}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "${launcher[@]}" -DLOGSTAR_SANITIZE=thread >/dev/null
cmake --build "${build}" --parallel "$(nproc)"
echo "tsan: built in $((SECONDS - start)) s"

start=${SECONDS}
# TSAN_OPTIONS (suppressions, halt_on_error) come with each test: tests/CMakeLists.txt.
args=(--test-dir "${build}" --output-on-failure --parallel "$(nproc)")
[[ -n "${filter}" ]] && args+=(-R "${filter}")
status=0
ctest "${args[@]}" || status=$?
echo "tsan: tests ran in $((SECONDS - start)) s"
exit "${status}"
