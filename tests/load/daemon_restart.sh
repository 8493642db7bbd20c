#!/usr/bin/env bash
# The daemon SIGKILLed mid-replay and restarted on the same port with the
# same --state_dir. `logstar replay --reconnect-s` must resume: reconnect to
# the same session id, send again the frames not yet answered, and finish
# with every frame answered exactly once. The daemon saves a session after
# every frame that tuned windows (before that frame's answer leaves), so
# the restarted daemon has the cache: the first frames after the restart
# must be cache hits, not misses (per-frame cache counts in --results).
#   tests/load/daemon_restart.sh [BUILD_DIR]    (about 15-30 s on 2 cores)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FRAMES="${FRAMES:-400}"
start="$(now)"
echo "daemon_restart: logstard SIGKILLed mid-replay (${FRAMES} frames at 100 fps), restarted with its --state_dir"

"${LOGSTAR}" synth --frames "${FRAMES}" --size 128 --noise 0.1 --seed 4 --stage-drift 0,0 --window 0 --evals 30 \
  --fps 100 --out "${WORK}/s.lsr" >/dev/null || exit 1
state="${WORK}/state"
start_daemon "${WORK}/logstard1.log" --state_dir="${state}"
port="${ADDR##*:}"

results="${WORK}/r.jsonl"
: >"${results}"
timeout 300 "${LOGSTAR}" replay "${WORK}/s.lsr" --server "${ADDR}" --connect-timeout 30 --speed 1 --overload block \
  --session restart-1 --reconnect-s 30 --results "${results}" >"${WORK}/replay.txt" \
  2>"${WORK}/replay.err" &
client=$!
child_pids+=("${client}")
for _ in $(seq 1 600); do
  [[ "$(wc -l <"${results}")" -ge 120 ]] && break
  sleep 0.05
done
answered_before="$(wc -l <"${results}")"
kill -KILL "${DAEMON_PID}"
wait "${DAEMON_PID}" 2>/dev/null
killed_at="$(now)"
echo "  killed logstard after about ${answered_before} answers (flushed to --results)"
sleep 1
start_daemon "${WORK}/logstard2.log" --state_dir="${state}" --listen_address="127.0.0.1:${port}"
echo "  restarted logstard on port ${port} $(elapsed "${killed_at}") s after the kill"

wait "${client}"
rc=$?
cat "${WORK}/replay.err" | grep -v '^replay: sent' | sed 's/^/  client: /'

sent="$(summary_field "${WORK}/replay.txt" 'frames sent')"
res="$(summary_field "${WORK}/replay.txt" results)"
lost="$(summary_field "${WORK}/replay.txt" 'lost (never answered)')"
reconnects="$(summary_field "${WORK}/replay.txt" reconnects)"
check "replay completed (exit 0)" "$([[ ${rc} == 0 ]] && echo 1)" "rc ${rc}"
check "every frame answered once" \
  "$([[ "${sent}" == "${FRAMES}" && "${res}" == "${FRAMES}" && "${lost}" == 0 ]] && echo 1)" \
  "sent ${sent:-?}, results ${res:-?}, lost ${lost:-?}; $(sed -n 's/^  reconnects *//p' "${WORK}/replay.txt")"
check "the replay reconnected" "$([[ "${reconnects:-0}" -ge 1 ]] && echo 1)" \
  "${reconnects:-?} reconnect(s)"
read -r lines jres jdrop jerr jdistinct <<<"$(jsonl_counts "${results}")"
check "results file: no duplicate, no gap" \
  "$([[ "${lines}" == "${FRAMES}" && "${jdistinct}" == "${FRAMES}" && "${jres}" == "${FRAMES}" ]] && echo 1)" \
  "${lines} lines, ${jdistinct} distinct sequences, ${jres} results, ${jdrop} dropped, ${jerr} errors"
check "session restored from --state_dir" \
  "$(grep -q '"event":"state_loaded".*"sessions":1' "${WORK}/logstard2.log" && echo 1)" \
  "$(grep -o '"event":"state_loaded"[^}]*' "${WORK}/logstard2.log" | head -1)"
# The first frames the restarted daemon analysed: connection 1 in --results.
cache_after="$(/usr/bin/python3 - "${results}" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
after = sorted((r for r in rows if r.get("connection", 0) >= 1), key=lambda r: r["sequence"])
first = after[:5]
hits = sum(r["cache"]["hits"] for r in first)
misses = sum(r["cache"]["misses"] for r in first)
retunes = sum(r["cache"]["retunes"] for r in first)
print(len(after), len(first), hits, misses, retunes, first[0]["sequence"] if first else 0)
EOF
)"
read -r n_after n_first hits misses retunes first_seq <<<"${cache_after}"
# A miss is a window with nothing cached (the cache was not restored); a
# re-tune starts from a cached window whose rewards drifted, so it also
# shows the cache was there.
check "first frames after the restart are cache hits" \
  "$([[ "${n_first}" -ge 1 && "${misses}" == 0 && "${hits}" -ge 1 ]] && echo 1)" \
  "${n_after} frames answered after the restart; first ${n_first} (from sequence ${first_seq}): ${hits} window hits, ${misses} misses, ${retunes} re-tunes"
# The counters come back as last saved (after the last tuning frame) plus
# what the new daemon counted; frames in flight at the save count as dropped
# by the crash, so they balance, but frames counted between the save and the
# kill are not in them.
read -r recv anal drop fail <<<"$(counters restart-1)"
check "restored counters balance" \
  "$([[ -n "${recv:-}" && "${recv}" == $((anal + drop + fail)) ]] && echo 1)" \
  "received ${recv:-?} = analysed ${anal:-?} + dropped ${drop:-?} + failed ${fail:-?} (the client saw ${FRAMES} results)"
stop_daemon
finish "daemon_restart" "${start}"
