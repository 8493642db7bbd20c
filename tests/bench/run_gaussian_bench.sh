#!/usr/bin/env bash
# The Gaussian refinement benchmark (issue 19): gaussian_refine_bench on
# generated frames (all lattices, noise 0-0.6, with and without a Poisson
# dose; against the Cramér–Rao bound and the paraboloid refinement), the
# 2048^2 frame's time, the real images with StatSTEM positions, then the
# scipy.optimize.least_squares per-column baseline (gaussian_refine_scipy.py,
# the Atomap approach) on the same frames and detections at noise 0.1 and 0.3.
#
#   tests/bench/run_gaussian_bench.sh [--build-dir DIR] [--threads N]
#                                     [--max-columns N] [--json FILE]
#                                     [--window-sigmas S]
#
# --max-columns bounds the columns scipy fits per frame (default 300; its
# time per column is what the ratio uses). --json FILE writes the scipy
# comparison as JSON. --window-sigmas S sets both fits' window (default:
# logstar's default, 3; scipy fits the same pixels as logstar).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${repo}/build"
threads=2
max_columns=300
json=""
window=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --max-columns) max_columns="$2"; shift 2 ;;
    --json) json="$2"; shift 2 ;;
    --window-sigmas) window="$2"; shift 2 ;;
    *) echo "usage: $0 [--build-dir DIR] [--threads N] [--max-columns N] [--json FILE]" \
            "[--window-sigmas S]" >&2
       exit 2 ;;
  esac
done
cmake --build "${build}" --target gaussian_refine_bench -j2 >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

"${build}/tests/gaussian_refine_bench" --threads="${threads}" --out="${work}" \
  --window-sigmas="${window}" \
  --real="${repo}/../shared/data/real"

echo
echo "scipy.optimize.least_squares per column (Atomap's approach) on the same frames and" \
     "detections; logstar's time per column is its whole-frame time on ${threads} threads:"
frames=()
for lattice in ybco perovskite hex; do
  for noise in 0.1 0.3; do frames+=("${work}/${lattice}_n${noise}_d0"); done
done
/usr/bin/python3 -B "${repo}/tests/bench/gaussian_refine_scipy.py" "${frames[@]}" \
  --max-columns "${max_columns}" --window-sigmas "${window}" ${json:+--json "${json}"}
