#!/usr/bin/env bash
# Can LoG* be trusted on a real sample? (issue 15, "Measured and published")
# Builds logstar and first_result_bench, then runs tests/bench/trust_benchmark.py
# (see its docstring): the generated scenes (nanoparticle, edge, support, A/B
# brightness ratios, interface, the plain crystal) at noise 0 / 0.3 / 0.6,
# seeds 100-102 (held back), 512², and the real images of ../shared/data/real
# with reference positions, each analysed with the default settings and as
# "LoG* as published"; then the time to the first result of a 2048² frame
# with every window tuned, and the cached frame after it.
#
#   tests/bench/run_trust_benchmark.sh [--build-dir DIR] [--no-first-result]
#                                      [any trust_benchmark.py option, e.g.
#                                       --size 256 --noise 0.3 --seeds 100 --check]
#
# The build directory (default <repo>/build-lsbench, as the other accuracy
# benchmarks) is configured Release with the benchmarks; frames and results
# go to <build-dir>/trust_benchmark/ (trust_benchmark.md, trust_benchmark.csv,
# trust_benchmark_frames.csv). Frames run one after the other, each with
# --threads 2 (trust_benchmark.py --threads): 414 analyses of 171 generated
# frames and 4 real images took 305 s on this project's 2-core machine at a
# load average of 5-6 (plus the build), of which the 2048² frame (best of
# two, then three cached) is about 30 s. --check exits 1 when a run fails or
# the script's F1 and the CLI's disagree.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${repo}/build-lsbench"
first_result=1
pass=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="$2"; shift 2 ;;
    --no-first-result) first_result=0; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) pass+=("$1"); shift ;;
  esac
done
# Debian's Python with python3-numpy, whatever is first on PATH.
python=/usr/bin/python3
[[ -x "${python}" ]] || python=python3

cmake -S "${repo}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLOGSTAR_BUILD_BENCHMARKS=ON >/dev/null
targets=(logstar)
[[ "${first_result}" -eq 0 ]] || targets+=(first_result_bench)
cmake --build "${build}" --target "${targets[@]}" >&2

extra=()
[[ "${first_result}" -eq 0 ]] || extra+=(--first-result "${build}/tests/first_result_bench")
"${python}" "${repo}/tests/bench/trust_benchmark.py" --logstar "${build}/clients/logstar" \
  --work "${build}/trust_benchmark" "${extra[@]}" "${pass[@]}"
