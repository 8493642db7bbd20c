#!/usr/bin/env bash
# Soak: FRAMES frames (default 20 000: a 1000-frame 128² recording replayed
# with --loop 20, window = the whole frame, so after the first frame each is
# a cached window of a few ms) through one logstard, sampling its resident
# memory (VmRSS) and threads every SAMPLE_S seconds. Warm-up ends at the
# first sample after WARMUP frames (default 1000) were analysed; passes when
# every frame got a result and the RSS at the end is less than 10 % above
# the RSS after warm-up. Prints the samples.
#   tests/load/soak.sh [BUILD_DIR]    (about 30-60 s on 2 cores; the replay is bounded by TIMEOUT_S=900)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FRAMES="${FRAMES:-20000}"
PER_LOOP="${PER_LOOP:-1000}"
WARMUP="${WARMUP:-1000}"
SAMPLE_S="${SAMPLE_S:-2}"
TIMEOUT_S="${TIMEOUT_S:-900}"
LIMIT_PCT="${LIMIT_PCT:-10}"
loops=$(((FRAMES + PER_LOOP - 1) / PER_LOOP))
total=$((loops * PER_LOOP))
start="$(now)"
echo "soak: ${total} frames (${PER_LOOP} x ${loops} loops, 128^2, cached window) through one logstard"

"${LOGSTAR}" synth --frames "${PER_LOOP}" --size 128 --noise 0.1 --seed 5 --stage-drift 0,0 --window 0 --evals 30 \
  --out "${WORK}/s.lsr" >/dev/null || exit 1
start_daemon "${WORK}/logstard.log"
rss_start="$(rss_kb "${DAEMON_PID}")"

timeout "${TIMEOUT_S}" "${LOGSTAR}" replay "${WORK}/s.lsr" --server "${ADDR}" --connect-timeout 30 --speed max \
  --overload block --loop "${loops}" --session soak >"${WORK}/replay.txt" 2>"${WORK}/replay.err" &
client=$!
child_pids+=("${client}")

samples="${WORK}/samples.txt"
printf '  %8s %8s %10s %8s\n' "t (s)" "frames" "RSS (kB)" "threads"
rss_warm=""
frames_warm=""
while kill -0 "${client}" 2>/dev/null; do
  sleep "${SAMPLE_S}"
  read -r _ analysed _ _ <<<"$(counters soak)"
  rss="$(rss_kb "${DAEMON_PID}")"
  line="$(printf '  %8s %8s %10s %8s' "$(elapsed "${start}")" "${analysed:-0}" "${rss}" \
    "$(threads_of "${DAEMON_PID}")")"
  if [[ -z "${rss_warm}" && "${analysed:-0}" -ge "${WARMUP}" ]]; then
    rss_warm="${rss}"
    frames_warm="${analysed}"
    line="${line}  <- after warm-up"
  fi
  echo "${line}" | tee -a "${samples}"
done
wait "${client}"
rc=$?
read -r received analysed dropped failed <<<"$(counters soak)"
rss_end="$(rss_kb "${DAEMON_PID}")"
printf '  %8s %8s %10s %8s  <- end\n' "$(elapsed "${start}")" "${analysed:-0}" "${rss_end}" \
  "$(threads_of "${DAEMON_PID}")"

res="$(summary_field "${WORK}/replay.txt" results)"
lost="$(summary_field "${WORK}/replay.txt" 'lost (never answered)')"
throughput="$(sed -n 's/^  throughput *//p' "${WORK}/replay.txt")"
check "replay complete" "$([[ ${rc} == 0 && "${res}" == "${total}" && "${lost}" == 0 ]] && echo 1)" \
  "rc ${rc}, results ${res:-?} of ${total}, lost ${lost:-?}; ${throughput}"
check "daemon counters" \
  "$([[ "${received}" == "${total}" && "${analysed}" == "${total}" && "${dropped}" == 0 && "${failed}" == 0 ]] && echo 1)" \
  "received ${received:-?}, analysed ${analysed:-?}, dropped ${dropped:-?}, failed ${failed:-?}"
if [[ -z "${rss_warm}" ]]; then
  check "RSS growth after warm-up < ${LIMIT_PCT} %" 0 "no sample after ${WARMUP} frames (too few frames or SAMPLE_S too long)"
else
  growth="$(awk -v a="${rss_warm}" -v b="${rss_end}" 'BEGIN { printf "%.1f", 100 * (b - a) / a }')"
  check "RSS growth after warm-up < ${LIMIT_PCT} %" \
    "$(awk -v g="${growth}" -v l="${LIMIT_PCT}" 'BEGIN { print (g < l) ? 1 : 0 }')" \
    "${rss_warm} kB after ${frames_warm} frames -> ${rss_end} kB at the end (${growth} %; ${rss_start} kB at start)"
fi
stop_daemon
finish "soak (${total} frames)" "${start}"
