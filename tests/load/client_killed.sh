#!/usr/bin/env bash
# Clients SIGKILLed mid-stream (KILLS times, default 5): a `logstar replay`
# with frames queued and in flight is killed once it has had 100 answers.
# Passes when, after each kill:
#  - the daemon still serves (health SERVING) and the killed session has no
#    stream attached any more;
#  - the killed session's counters balance: received = analysed + dropped +
#    failed. The server counts every frame it read exactly once: frames
#    analysed (also one that finished after the client left: its answer is
#    just never sent), frames dropped (the ones waiting in the queue when the
#    stream was cancelled, and the running one if it was abandoned between
#    windows) and failed ones; and the client saw at most `analysed` results;
#  - a new replay on the same daemon completes with zero loss;
# and at the end the daemon's threads (all but gRPC's elastic EventEngine
# pool, see owned_threads_of in lib.sh) are back at their count after the
# first round and its resident memory grew by less than 10 % + 4 MB over it. The
# first round is the warm-up (thread pools, allocator arenas, buffers for
# the frame size); the daemon runs with a session idle timeout of IDLE_S =
# 5 s and both measures wait until every session expired, so what stays
# is what leaked.
#   tests/load/client_killed.sh [BUILD_DIR]    (about 30-60 s on 2 cores)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KILLS="${KILLS:-6}"
IDLE_S=5
FRAMES="${FRAMES:-1500}"
start="$(now)"
echo "client_killed: ${KILLS} replays SIGKILLed mid-stream, then a full replay each time"

"${LOGSTAR}" synth --frames "${FRAMES}" --size 128 --noise 0.1 --seed 2 --stage-drift 0,0 --window 0 --evals 30 \
  --out "${WORK}/long.lsr" >/dev/null || exit 1
"${LOGSTAR}" synth --frames 200 --size 128 --noise 0.1 --seed 3 --stage-drift 0,0 --window 0 --evals 30 \
  --out "${WORK}/short.lsr" >/dev/null || exit 1
start_daemon "${WORK}/logstard.log" --session_idle_timeout_s="${IDLE_S}"

# Warm-up: one full replay, so worker threads and allocator pools exist.
timeout 300 "${LOGSTAR}" replay "${WORK}/short.lsr" --server "${ADDR}" --connect-timeout 30 --speed max \
  --session warm >"${WORK}/warm.txt" 2>&1 || {
  echo "FAIL: warm-up replay failed:"
  tail -5 "${WORK}/warm.txt"
  exit 1
}

for k in $(seq 1 "${KILLS}"); do
  results="${WORK}/killed${k}.jsonl"
  : >"${results}"
  "${LOGSTAR}" replay "${WORK}/long.lsr" --server "${ADDR}" --connect-timeout 30 --speed max --overload block \
    --max-in-flight 8 --session "killed-${k}" --results "${results}" \
    >"${WORK}/killed${k}.txt" 2>&1 &
  client=$!
  child_pids+=("${client}")
  # Kill once answers are flowing: frames are then queued and running.
  for _ in $(seq 1 600); do
    [[ "$(wc -l <"${results}")" -ge 100 ]] && break
    kill -0 "${client}" 2>/dev/null || break
    sleep 0.05
  done
  if ! kill -0 "${client}" 2>/dev/null; then
    check "kill ${k}: replay still running at the kill" 0 "it ended first (make the stream longer)"
    continue
  fi
  kill -KILL "${client}"
  wait "${client}" 2>/dev/null
  seen="$(wc -l <"${results}")"
  # The server notices the broken connection, cancels and counts; give it a moment.
  attached="?"
  for _ in $(seq 1 100); do
    attached="$("${LOGSTAR}" status --server "${ADDR}" --session "killed-${k}" 2>/dev/null |
      sed -n 's/.*attached streams *\([0-9]*\).*/\1/p')"
    [[ "${attached}" == 0 ]] && break
    sleep 0.1
  done
  read -r recv anal drop fail <<<"$(counters "killed-${k}")"
  balanced=0
  if [[ -n "${recv:-}" && "${recv}" -gt 0 && "${recv}" -lt "${FRAMES}" &&
    "${recv}" == $((anal + drop + fail)) && "${anal}" -ge "${seen}" ]]; then
    balanced=1
  fi
  check "kill ${k}: session counters balance" "${balanced}" \
    "received ${recv:-?} = analysed ${anal:-?} + dropped ${drop:-?} + failed ${fail:-?}; client had ${seen} answers (flushed); attached ${attached}"
  check "kill ${k}: daemon serving" "$([[ "$(health)" == SERVING ]] && echo 1)" "$(health)"
  timeout 300 "${LOGSTAR}" replay "${WORK}/short.lsr" --server "${ADDR}" --connect-timeout 30 --speed max \
    --overload block --session "after-${k}" >"${WORK}/after${k}.txt" 2>&1
  rc=$?
  results_n="$(summary_field "${WORK}/after${k}.txt" results)"
  lost="$(summary_field "${WORK}/after${k}.txt" 'lost (never answered)')"
  check "kill ${k}: next replay complete" \
    "$([[ ${rc} == 0 && "${results_n}" == 200 && "${lost}" == 0 ]] && echo 1)" \
    "rc ${rc}, results ${results_n:-?} of 200, lost ${lost:-?}"
  if [[ ${k} == 1 ]]; then
    sleep $((IDLE_S + 2))  # every session expires
    threads0="$(owned_threads_of "${DAEMON_PID}")"
    rss0="$(rss_kb "${DAEMON_PID}")"
    echo "  baseline after the first round: ${threads0} threads, RSS ${rss0} kB"
  fi
done

sleep $((IDLE_S + 2))  # every session expires
threads1="$(owned_threads_of "${DAEMON_PID}")"
rss1="$(rss_kb "${DAEMON_PID}")"
check "threads back at baseline" "$([[ "${threads1}" -le "${threads0}" ]] && echo 1)" \
  "${threads0} after round 1, ${threads1} after round ${KILLS}"
check "RSS near baseline" \
  "$(awk -v a="${rss0}" -v b="${rss1}" 'BEGIN { print (b < 1.1 * a + 4096) ? 1 : 0 }')" \
  "${rss0} kB after round 1, ${rss1} kB after round ${KILLS} ($(awk -v a="${rss0}" -v b="${rss1}" 'BEGIN { printf "%+.1f", 100 * (b - a) / a }') %)"
stop_daemon
finish "client_killed (${KILLS} kills)" "${start}"
