#!/usr/bin/env bash
# Compares one evaluation of the GMM (amorphous) stage in logstar with the
# Python reference workflow (../shared/reference/reference_logstar.py --gmm,
# Barakati et al. 2024) on the same generated 512^2 YBCO frame (noise 0.3,
# 20 % amorphous), in one run on this machine, and prints the ratio
# (target >= 100x).
#
#   tests/bench/run_gmm_bench.sh [--build-dir DIR] [--reference DIR] [--gmm-evals N]
#                                [--repeat R] [--json FILE]
#
# The reference runs its LoG with fixed parameters (--fixed, no LoG tuning)
# and then its GMM search with N evaluations (default 12); its per-evaluation
# time is timing.gmm_eval.per_call_s of its JSON. logstar's figures come from
# gmm_bench (see tests/bench/gmm_bench.cc): per evaluation amortised over a
# tuning run (the comparable figure) and cold (scene + one evaluation).
# Then the stage in a stream: a cached frame (LoG* and the stage served from
# their caches) at 512^2, and at 1024^2 against one scikit-image blob_log
# call with the LoG windows' median parameters (the LoG* issue's cached-frame
# budget, >= 100x; the amorphous stage must fit in it too).
# Skips with a message when the reference is absent. gmm_bench keeps the best
# of R runs (default 3). --json FILE also writes the figures as one JSON
# object (for tests/bench/perf_report.sh): {"skipped": null or the reason,
# "atoms", "logstar": {"tune_per_eval_ms", "eval_ms", "cold_eval_ms",
# "scene_ms", "iou", ...}, "reference": {"per_eval_ms", "n_evals", "iou"},
# "rows": [{"key", "what", "logstar_ms", "reference_ms", "ratio", "target",
# "met"}]}.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${repo}/build"
reference_dir="${repo}/../shared/reference"
gmm_evals=12
repeat=3
json=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="$2"; shift 2 ;;
    --reference) reference_dir="$2"; shift 2 ;;
    --gmm-evals) gmm_evals="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --json) json="$2"; shift 2 ;;
    *) echo "usage: $0 [--build-dir DIR] [--reference DIR] [--gmm-evals N] [--repeat R]" \
         "[--json FILE]" >&2; exit 2 ;;
  esac
done
if [[ ! -f "${reference_dir}/reference_logstar.py" ]]; then
  echo "run_gmm_bench: reference workflow not found in ${reference_dir}; skipped"
  if [[ -n "${json}" ]]; then
    mkdir -p "$(dirname "${json}")"
    printf '{"skipped": "reference workflow not found in %s"}\n' "${reference_dir}" >"${json}"
  fi
  exit 0
fi
cmake --build "${build}" --target logstar gmm_bench -j2 >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
frame="${work}/frame"
"${build}/clients/logstar" synth --out "${frame}" --size 512 --lattice ybco --noise 0.3 \
  --amorphous 0.2 --seed 1 >/dev/null

"${build}/tests/gmm_bench" --dir="${frame}" --repeat="${repeat}" > "${work}/logstar.json"
# The cached-frame budget of the LoG* issue: a 1024^2 frame served from the
# caches (LoG* and now the amorphous stage) at least 100x faster than one
# scikit-image blob_log call on it with the windows' median parameters. The
# frame is run_logstar_bench.sh's 1024^2 one (same recipe and seed).
frame1024="${work}/frame1024"
"${build}/clients/logstar" synth --out "${frame1024}" --size 1024 --lattice ybco --noise 0.3 \
  --amorphous 0.15 --seed 1 >/dev/null
"${build}/tests/gmm_bench" --dir="${frame1024}" --repeat="$((repeat + 5))" --cached_only \
  > "${work}/cached1024.json"
/usr/bin/python3 - "${frame1024}/image.npy" "${work}/cached1024.json" > "${work}/blob1024.json" <<'PY'
import json, sys, time
import numpy as np
from skimage.feature import blob_log
img = np.load(sys.argv[1]).astype(np.float64)
img = (img - img.min()) / max(img.max() - img.min(), 1e-12)  # as the reference normalises
p = json.load(open(sys.argv[2]))['median_parameters']
t0 = time.perf_counter()
blob_log(img, min_sigma=p['min_sigma'], max_sigma=p['max_sigma'], num_sigma=int(p['num_sigma']),
         threshold=p['threshold'], overlap=p['overlap'])
print(json.dumps({'blob_log_s': time.perf_counter() - t0, 'parameters': p}))
PY
# Columns are 3.6 px wide here; these fixed LoG parameters find them.
/usr/bin/python3 "${reference_dir}/reference_logstar.py" "${frame}" --fixed 2.5,5,0.05,0.5 \
  --gmm --gmm-evals "${gmm_evals}" --no-pareto > "${work}/reference.json"

[[ -z "${json}" ]] || mkdir -p "$(dirname "${json}")"
/usr/bin/python3 - "${work}/logstar.json" "${work}/reference.json" "${json}" \
  "${work}/cached1024.json" "${work}/blob1024.json" <<'PY'
import json, sys
ls, ref = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
c1024, blob = json.load(open(sys.argv[4])), json.load(open(sys.argv[5]))
json_rows = []
ref_ms = 1000.0 * ref['timing']['gmm_eval']['per_call_s']
rows = [('per evaluation, amortised over tuning', ls['tune_per_eval_ms']),
        ('one evaluation, scene warm', ls['eval_ms']),
        ('one evaluation, cold (scene + evaluation)', ls['cold_eval_ms'])]
keys = ('tune_per_eval', 'eval_warm', 'eval_cold')
print(f"GMM stage on a 512^2 YBCO frame, 20 % amorphous, noise 0.3 ({ls['atoms']} atoms)")
print(f"reference: {ref_ms:.1f} ms per evaluation ({ref['gmm']['n_evals']} evaluations), "
      f"IoU {ref['gmm']['iou']}")
print(f"logstar:   IoU {ls['iou']:.3f}; {ls['summary']}")
for key, (name, ms) in zip(keys, rows):
    ratio = ref_ms / ms
    print(f"  {name:45s} {ms:8.2f} ms  {ratio:7.1f}x  {'met' if ratio >= 100 else 'NOT met'} (>= 100x)")
    json_rows.append(dict(key=key, what=name, logstar_ms=ms, reference_ms=ref_ms, ratio=ratio,
                          target='>= 100x', met=ratio >= 100))
c512 = ls['cached']
print(f"in a stream, cached parameters (LoG* windows of 256 px, the stage on the whole frame):")
print(f"  512^2 cached frame: LoG* {c512['cached_log_ms']:.1f} ms + amorphous stage "
      f"{c512['cached_stage_ms']:.1f} ms = {c512['cached_frame_ms']:.1f} ms "
      f"(the frame that tuned both: {c512['tuning_frame_ms']:.0f} ms)")
budget_ratio = 1000.0 * blob['blob_log_s'] / c1024['cached_frame_ms']
print(f"  1024^2 cached frame: LoG* {c1024['cached_log_ms']:.1f} ms + amorphous stage "
      f"{c1024['cached_stage_ms']:.1f} ms = {c1024['cached_frame_ms']:.1f} ms; one blob_log call "
      f"with the windows' median parameters {blob['blob_log_s']:.2f} s: {budget_ratio:.0f}x  "
      f"{'met' if budget_ratio >= 100 else 'NOT met'} (>= 100x, the LoG* cached-frame budget)")
json_rows.append(dict(key='cached_frame_1024', what='1024^2 cached frame, LoG* + amorphous stage',
                      logstar_ms=c1024['cached_frame_ms'], reference_ms=1000.0 * blob['blob_log_s'],
                      ratio=budget_ratio, target='>= 100x', met=budget_ratio >= 100))
if sys.argv[3]:
    json.dump(dict(skipped=None, size=ls['size'], atoms=ls['atoms'], logstar=ls,
                   reference=dict(per_eval_ms=ref_ms, n_evals=ref['gmm']['n_evals'],
                                  iou=ref['gmm']['iou']),
                   rows=json_rows), open(sys.argv[3], 'w'), indent=1)
PY
