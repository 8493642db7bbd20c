#!/usr/bin/env bash
# Accuracy sweep of LoG* against fixed default parameters and the Python
# reference workflow: builds logstar and logstar_bench, then runs
# tests/bench/logstar_accuracy.py (see its docstring for what is compared).
#
#   tests/bench/run_logstar_accuracy.sh [--build-dir DIR] [--out FILE] [--check]
#                                       [any logstar_accuracy.py option, e.g.
#                                        --nsga2 --lattices ybco,perovskite,hex]
#
# Frames and results go to <build-dir>/logstar_accuracy/ (default build dir
# <repo>/build-lsbench), the JSON to --out (default
# <build-dir>/logstar_accuracy.json). About 5-8 min on 2 cores, nearly all of
# it the reference (~15 s per frame, two frames at a time).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${repo}/build-lsbench"
out=""
pass=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) pass+=("$1"); shift ;;
  esac
done
out="${out:-${build}/logstar_accuracy.json}"
# The reference needs Debian's numpy, scipy, scikit-image and scikit-learn.
python=/usr/bin/python3
[[ -x "${python}" ]] || python=python3

cmake -S "${repo}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLOGSTAR_BUILD_BENCHMARKS=ON -DLOGSTAR_BUILD_TESTS=OFF >/dev/null
cmake --build "${build}" --target logstar logstar_bench >&2

work="${build}/logstar_accuracy"
rm -rf "${work}"
"${python}" "${repo}/tests/bench/logstar_accuracy.py" \
  --logstar "${build}/clients/logstar" --bench "${build}/tests/logstar_bench" \
  --work "${work}" --out "${out}" "${pass[@]}"
