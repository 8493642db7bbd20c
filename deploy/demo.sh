#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install what is needed, build,
# start logstard on loopback, replay a generated, drifting stream of noisy
# YBCO frames with an amorphous region through it (atoms by LoG*, amorphous
# regions by the GMM stage, both cached per window), leave the results, the
# overlays and a summary in out/, and stop the daemon.
#   FRAMES=K SIZE=N  the stream (default 24 frames of 512 x 512)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo}"
bash deploy/install-deps.sh
bash deploy/build.sh
logstar=build/clients/logstar
logstard=build/server/logstard
frames="${FRAMES:-24}"
size="${SIZE:-512}"

rm -rf out/stream.lsr out/overlays out/results.jsonl out/summary.txt out/state
mkdir -p out
"${logstar}" synth --frames "${frames}" --size "${size}" --lattice ybco --noise 0.15 \
  --amorphous 0.15 --seed 7 --gmm --out out/stream.lsr

# Loopback, a port the kernel picks (written to a file), sessions saved in
# out/state so that a restarted daemon would resume them.
port_file="$(mktemp)"
"${logstard}" --listen_address=127.0.0.1:0 --port_file="${port_file}" \
  --state_dir=out/state --log_level=warning &
daemon=$!
stop_daemon() {
  if kill -0 "${daemon}" 2>/dev/null; then
    kill -TERM "${daemon}" # drains: in-flight frames finish, exit 0
    wait "${daemon}" || true
  fi
  rm -f "${port_file}"
}
trap stop_daemon EXIT
for _ in $(seq 100); do
  [[ -s "${port_file}" ]] && break
  sleep 0.1
done
[[ -s "${port_file}" ]] || { echo "demo: logstard did not start" >&2; exit 1; }
address="127.0.0.1:$(cat "${port_file}")"

# At the recorded pace (10 frames/s); block = flow control, nothing dropped.
"${logstar}" replay out/stream.lsr --server "${address}" --overload block \
  --results out/results.jsonl --overlays out/overlays | tee out/summary.txt
"${logstar}" status --server "${address}" | tee -a out/summary.txt
stop_daemon
trap - EXIT
echo "demo: per-frame results in out/results.jsonl, pictures in out/overlays/," \
  "summary in out/summary.txt, the stream with its truth in out/stream.lsr"
