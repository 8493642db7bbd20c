#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install what is needed, build,
# make a noisy YBCO-like frame with ground truth, find its atoms, and leave
# the result JSON and an overlay PNG in out/.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo}"
bash deploy/install-deps.sh
bash deploy/build.sh
logstar=build/clients/logstar
mkdir -p out
"${logstar}" synth --out out/frame --size 512 --lattice ybco --noise 0.15 --amorphous 0.15 --seed 7
"${logstar}" analyze out/frame/image.npy --prior out/frame/prior.json \
  --out out/result.json --overlay out/overlay.png --truth out/frame/atoms.csv \
  --gmm --amorphous-mask out/amorphous.png
echo "demo: result in out/result.json, picture in out/overlay.png, amorphous regions in" \
  "out/amorphous.png, truth in out/frame/atoms.csv and out/frame/amorphous_mask.npy"
