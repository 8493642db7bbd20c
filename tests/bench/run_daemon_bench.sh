#!/usr/bin/env bash
# logstard end-to-end latency and throughput over loopback against the
# in-process engine on the same frames (512² and 2048²). Not a timed test:
# run by hand on a quiet machine and read the ratios.
#   tests/bench/run_daemon_bench.sh [daemon_bench flags...]
# e.g. --frames=8 for a quick look, --transport=tcp,shm,memfd for the same-host
# paths (memfd: a sealed memory file the daemon maps), --json=FILE to also get the figures as
# JSON (tests/bench/perf_report.sh reads it). Builds only daemon_bench in
# BUILD_DIR (default build/).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-${repo}/build}"
cmake -S "${repo}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
  -DLOGSTAR_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "${build}" --target daemon_bench --parallel "$(nproc)"
"${build}/tests/daemon_bench" "$@"
