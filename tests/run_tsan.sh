#!/usr/bin/env bash
# Builds logstar with ThreadSanitizer (-DLOGSTAR_SANITIZE=thread, gcc) in its
# own build directory and runs tests under it. TSan writes its reports to
# files (build-tsan/tsan-reports/); tests/tsan_reports.py then fails the run
# on any report whose racing access starts in logstar's code, and counts the
# rest (third parties'). tests/tsan.supp lists the suppressions, all of
# third-party code, and why each is there.
#   tests/run_tsan.sh               the whole tree, every test
#   tests/run_tsan.sh REGEX         the whole tree, the tests matching REGEX (ctest -R)
#   tests/run_tsan.sh --daemon      only the programs of the daemon's threads
#                                   (${daemon_programs} below) are built and run
#   LOGSTAR_TSAN_BUILD_DIR=DIR      default build-tsan/ in the repository
#
# The project's locks are logstar::Mutex/CondVar (engine/base/mutex.h), over
# pthreads, which TSan intercepts. Debian's oneTBB, Abseil, gRPC and OpenSSL
# are not built with TSan, so their own synchronisation is invisible to it:
# the engine's parallel loops state their fork/join edges themselves
# (ExecutionContext::ParallelFor), and tests/tsan.supp suppresses reports
# whose frames are those libraries' code. A report whose top frame is
# logstar's code is a finding.
#
# deploy/test.sh (CI) runs the --daemon set, about 10 min of CPU (its build
# about 7, its tests about 3); the whole tree is about three times that, and
# runs by hand (docs/operations.md, "Sanitizers", has the measured times).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LOGSTAR_TSAN_BUILD_DIR:-${repo}/build-tsan}"
# The daemon's threads: locks, worker pool, sessions, reactors, the C++
# client's reader threads and reconnecting stream, the analyzer as the
# daemon shares it between streams, the session store's threads, the memfd
# inbox, compressed streams, and servers started one after another in one
# process (memfd_client_test: gRPC's threads outlive a server).
daemon_programs=(mutex_test context_test analyzer_daemon_test admission_test session_test
  server_test client_test cancellation_test watch_test session_store_test session_metadata_test
  memfd_test memfd_client_test compression_client_test)

targets=()
ctest_args=(--test-dir "${build}" --output-on-failure --parallel "$(nproc)")
if [[ "${1:-}" == "--daemon" ]]; then
  targets=(--target "${daemon_programs[@]}")
  # Each discovered test is labelled with its program (tests/CMakeLists.txt).
  # A second try for a failed test: a few wait 1 s for a connection, which
  # TSan's 5-15x slowdown on a busy machine can exceed (its reports of both
  # tries are sorted below all the same).
  ctest_args+=(-L "^($(IFS='|'; echo "${daemon_programs[*]}"))\$" --repeat until-pass:2)
elif [[ -n "${1:-}" ]]; then
  ctest_args+=(-R "$1")
fi

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
start=${SECONDS}
cmake -S "${repo}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "${launcher[@]}" -DLOGSTAR_SANITIZE=thread >/dev/null
cmake --build "${build}" --parallel "$(nproc)" "${targets[@]}"
echo "tsan: built in $((SECONDS - start)) s"

start=${SECONDS}
# TSAN_OPTIONS (suppressions, reports written to tsan-reports/) come with
# each test: tests/CMakeLists.txt.
reports="${build}/tsan-reports"
rm -rf "${reports}"
mkdir -p "${reports}"
status=0
ctest "${ctest_args[@]}" || status=$?
echo "tsan: tests ran in $((SECONDS - start)) s"
# Fails on any report whose racing access starts in logstar's code.
"${LOGSTAR_PYTHON:-python3}" "${repo}/tests/tsan_reports.py" "${reports}" "${repo}" || status=1
exit "${status}"
