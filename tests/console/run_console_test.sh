#!/usr/bin/env bash
# The operator console in a real browser (issue 18, item 3): headless
# Debian chromium driven by Playwright (npm's playwright-core, pinned in
# package.json / package-lock.json here, installed by `npm ci`).
# Starts logstard on a free loopback port (with a bearer token and its
# metrics), makes a recorded stream, starts `logstar console`, and runs
# console_test.mjs, which replays the stream, checks the page, clicks a
# front point, and checks what open and closed pages cost the daemon.
# Screenshots go to ARTIFACTS (the ctest build directory by default).
#
# Usage: run_console_test.sh LOGSTARD LOGSTAR PYTHONPATH [ARTIFACTS]
# Exit 77 (ctest: skipped) when chromium, node or node_modules are missing.
set -euo pipefail
logstard=$1 logstar=$2 pythonpath=$3
here=$(cd "$(dirname "$0")" && pwd)
artifacts=${4:-$PWD/console_artifacts}
chromium=${CHROMIUM:-/usr/bin/chromium}
python=${PYTHON:-/usr/bin/python3}  # Debian's, with python3-grpcio and -protobuf

skip() { echo "SKIPPED: $*"; exit 77; }
[[ -x $chromium ]] || skip "no $chromium (apt-get install chromium; deploy/install-deps.sh does)"
command -v node >/dev/null || skip "no node (apt-get install nodejs)"
[[ -d $here/node_modules/playwright-core ]] ||
  skip "no $here/node_modules (run: npm ci --prefix $here; deploy/test.sh does)"

work=$(mktemp -d /tmp/logstar-console-test.XXXXXX)
mkdir -p "$artifacts"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Port files: written once listening.
wait_for() {
  for _ in $(seq 300); do [[ -s $1 ]] && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}

token=console-test-token
echo "$token" > "$work/token"
# Metrics on a free port, which the start-up log line names (info level):
# the test counts the daemon's watchers there.
"$logstard" --listen_address=127.0.0.1:0 --port_file="$work/port" --engine_threads=2 \
  --log_level=info --auth_token_file="$work/token" --metrics_address=127.0.0.1:0 \
  > "$work/logstard.log" 2>&1 &
pids+=($!)
wait_for "$work/port"
daemon=127.0.0.1:$(cat "$work/port")
metrics_port=$(grep -o '"metrics_port":[0-9]*' "$work/logstard.log" | head -1 | cut -d: -f2)
[[ -n $metrics_port ]] || { echo "no metrics_port in logstard.log" >&2; cat "$work/logstard.log"; exit 1; }

# 16 frames of 256² at 10 frames/s, with an amorphous region, the field of
# view still (so a pick is not re-tuned away by the next frames), tuned with
# the lattice pair (fronts of several points to pick from; a perovskite,
# whose small cell the crystal map resolves at 256²: on an unmapped crystal
# the lattice pair falls back to the published pair).
"$logstar" synth --frames 16 --out "$work/synth.lsr" --size 256 --lattice perovskite --amorphous 0.15 \
  --window 128 --evals 20 --gmm --stage-drift 0,0 > /dev/null
PYTHONPATH=$pythonpath "$python" "$here/lattice_stream.py" "$work/synth.lsr" "$work/stream.lsr"

"$logstar" console --server "$daemon" --token "$token" --listen 127.0.0.1:0 \
  --port-file "$work/console_port" > "$work/console.log" 2>&1 &
pids+=($!)
wait_for "$work/console_port"

status=0
LOGSTAR=$logstar DAEMON=$daemon TOKEN=$token STREAM=$work/stream.lsr WORK=$work \
  CONSOLE=http://127.0.0.1:$(cat "$work/console_port") ARTIFACTS=$artifacts CHROMIUM=$chromium \
  METRICS=http://127.0.0.1:$metrics_port/metrics \
  node "$here/console_test.mjs" || status=$?
if [[ $status -ne 0 ]]; then
  echo "--- logstard.log"; cat "$work/logstard.log"
  echo "--- console.log"; cat "$work/console.log"
fi
exit $status
