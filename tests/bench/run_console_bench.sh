#!/usr/bin/env bash
# What operator consoles cost the controlling stream: latency p50 and
# throughput with 0, 1 and 5 `logstar console`s attached, and click-to-effect
# in frames (tests/bench/console_bench.py says how). Not a timed test: run
# by hand on a quiet machine and read the ratios.
#   tests/bench/run_console_bench.sh [console_bench.py flags...]
# e.g. --frames 20 --repeats 1 for a quick look, --json FILE for the figures.
# Builds logstard, logstar and the Python package in BUILD_DIR (default build/).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${BUILD_DIR:-${repo}/build}"
cmake -S "${repo}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" >/dev/null
cmake --build "${build}" --target logstard logstar logstar_python --parallel "$(nproc)"
PYTHONPATH="${build}/clients/python" /usr/bin/python3 "${repo}/tests/bench/console_bench.py" \
  --logstard "${build}/server/logstard" --logstar "${build}/clients/logstar" "$@"
