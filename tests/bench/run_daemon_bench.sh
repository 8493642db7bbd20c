#!/usr/bin/env bash
# logstard end-to-end latency and throughput over loopback against the
# in-process engine on the same frames (512² and 2048²). Not a timed test:
# run by hand on a quiet machine and read the ratios.
#   tests/bench/run_daemon_bench.sh [daemon_bench flags...]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-${repo}/build}"
BUILD_DIR="${build}" bash "${repo}/deploy/build.sh" -DLOGSTAR_BUILD_BENCHMARKS=ON
"${build}/tests/daemon_bench" "$@"
