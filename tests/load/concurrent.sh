#!/usr/bin/env bash
# STREAMS concurrent replays (default 16) of FRAMES small frames each (default
# 500; 128², window = the whole frame) against one logstard, each in its own
# session with the block overload policy (flow control: a full queue stops
# the server reading, so nothing may be dropped). Passes when every frame of
# every stream got a result — none dropped, failed or lost — in the replay
# summaries, the --results JSONL and the daemon's own session counters.
#   tests/load/concurrent.sh [BUILD_DIR]     (about 1-2 min on 2 cores)
# Environment: STREAMS, FRAMES, SIZE, TIMEOUT_S (per replay, default 600).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STREAMS="${STREAMS:-16}"
FRAMES="${FRAMES:-500}"
SIZE="${SIZE:-128}"
TIMEOUT_S="${TIMEOUT_S:-600}"
start="$(now)"
echo "concurrent: ${STREAMS} streams x ${FRAMES} frames (${SIZE}^2, block policy) against one logstard"

"${LOGSTAR}" synth --frames "${FRAMES}" --size "${SIZE}" --noise 0.1 --seed 1 --stage-drift 0,0 --window 0 \
  --evals 30 --out "${WORK}/s.lsr" >/dev/null || exit 1
start_daemon "${WORK}/logstard.log"
threads_before="$(threads_of "${DAEMON_PID}")"

replay_start="$(now)"
pids=()
for i in $(seq 1 "${STREAMS}"); do
  timeout "${TIMEOUT_S}" "${LOGSTAR}" replay "${WORK}/s.lsr" --server "${ADDR}" --connect-timeout 30 --speed max \
    --overload block --max-in-flight 4 --session "load-${i}" --results "${WORK}/r${i}.jsonl" \
    >"${WORK}/replay${i}.txt" 2>&1 &
  pids+=($!)
  child_pids+=($!)
done
rcs=()
for pid in "${pids[@]}"; do
  wait "${pid}"
  rcs+=($?)
done
replay_s="$(elapsed "${replay_start}")"

total_sent=0 total_results=0 total_bad=0
for i in $(seq 1 "${STREAMS}"); do
  f="${WORK}/replay${i}.txt"
  sent="$(summary_field "${f}" 'frames sent')"
  results="$(summary_field "${f}" 'results')"
  dropped="$(summary_field "${f}" 'dropped')"
  failed="$(summary_field "${f}" 'failed')"
  lost="$(summary_field "${f}" 'lost (never answered)')"
  read -r lines jres _ _ jdistinct <<<"$(jsonl_counts "${WORK}/r${i}.jsonl" 2>/dev/null)"
  read -r c_recv c_anal c_drop c_fail <<<"$(counters "load-${i}")"
  total_sent=$((total_sent + ${sent:-0}))
  total_results=$((total_results + ${results:-0}))
  ok=0
  if [[ "${rcs[$((i - 1))]}" == 0 && "${sent:-}" == "${FRAMES}" && "${results:-}" == "${FRAMES}" &&
    "${dropped:-}" == 0 && "${failed:-}" == 0 && "${lost:-}" == 0 &&
    "${lines:-}" == "${FRAMES}" && "${jres:-}" == "${FRAMES}" && "${jdistinct:-}" == "${FRAMES}" &&
    "${c_recv:-}" == "${FRAMES}" && "${c_anal:-}" == "${FRAMES}" && "${c_drop:-}" == 0 &&
    "${c_fail:-}" == 0 ]]; then
    ok=1
  else
    total_bad=$((total_bad + 1))
    tail -3 "${f}" | sed 's/^/        /'
  fi
  check "stream ${i} (session load-${i})" "${ok}" \
    "rc ${rcs[$((i - 1))]}; replay: sent ${sent:-?} results ${results:-?} dropped ${dropped:-?} failed ${failed:-?} lost ${lost:-?}; jsonl ${lines:-?} lines/${jdistinct:-?} seqs; daemon: received ${c_recv:-?} analysed ${c_anal:-?} dropped ${c_drop:-?} failed ${c_fail:-?}"
done
expected=$((STREAMS * FRAMES))
check "all frames answered with a result" "$([[ ${total_results} == "${expected}" ]] && echo 1)" \
  "${total_results} of ${expected} (sent ${total_sent}) in ${replay_s} s, $(awk -v n="${total_results}" -v s="${replay_s}" 'BEGIN { printf "%.0f", n / s }') frames/s"
check "daemon still serving" "$([[ "$(health)" == SERVING ]] && echo 1)" \
  "threads ${threads_before} before, $(threads_of "${DAEMON_PID}") after; RSS $(rss_kb "${DAEMON_PID}") kB"
stop_daemon
finish "concurrent (${STREAMS} x ${FRAMES} frames, ${total_bad} bad streams)" "${start}"
