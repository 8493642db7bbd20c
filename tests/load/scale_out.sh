#!/usr/bin/env bash
# Scale-out (issue 20): three logstard replicas sharing their sessions in
# Redis (--session_store), behind a proxy routing each session by its
# x-logstar-session metadata: nginx (deploy/nginx/logstar-grpc.conf.template,
# the default) or HAProxy (deploy/haproxy/logstar-grpc.cfg.template).
# $CLIENTS concurrent `logstar replay --reconnect-s` and $PY_CLIENTS
# `python3 -m logstar replay --reconnect-s` (one session each) run through
# the proxy; one replica holding sessions (a Python one among them, when
# there are Python clients) is SIGKILLed mid-stream, restarted, and then
# every replica is restarted in turn (SIGTERM, start again). Checks: every
# frame answered exactly once (0 lost, 0 duplicates), the first frames of the
# sessions that moved are cache hits (the replica they moved to loaded the
# cache from Redis), and the time from the kill to the next answer of a
# moved session (target <= $TARGET_S s). Prints the throughput before the
# kill and after the restarts.
#   tests/load/scale_out.sh [--proxy nginx|haproxy] [BUILD_DIR]
#   (about 30-60 s on 2 cores)
# Needs /usr/bin/redis-server and the proxy (Debian's redis-server,
# nginx-light, haproxy): without them it prints SKIP and exits 77. The
# Python clients run the package built into BUILD_DIR/clients/python
# ($LOGSTAR_PYTHONPATH) with /usr/bin/python3.
PROXY="${PROXY:-nginx}"
args=()
while (($# > 0)); do
  case "$1" in
    --proxy) PROXY="${2:-}"; shift 2 || shift ;;
    --proxy=*) PROXY="${1#--proxy=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- "${args[@]}"
if [[ "${PROXY}" != nginx && "${PROXY}" != haproxy ]]; then
  echo "usage: scale_out.sh [--proxy nginx|haproxy] [BUILD_DIR]" >&2
  exit 2
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FRAMES="${FRAMES:-300}"  # per client
CLIENTS="${CLIENTS:-8}"  # C++ `logstar replay`
PY_CLIENTS="${PY_CLIENTS:-3}"  # `python3 -m logstar replay`
PYTHON="${PYTHON:-/usr/bin/python3}"
LOGSTAR_PYTHONPATH="${LOGSTAR_PYTHONPATH:-$(dirname "${LOGSTAR}")/python}"
REPLICAS=3
TARGET_S="${TARGET_S:-2}"
KILL_AFTER="${KILL_AFTER:-40}"  # answers every client has before the kill
REDIS_SERVER="${REDIS_SERVER:-/usr/bin/redis-server}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
HAPROXY="${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}"
proxy_bin="${NGINX}"
[[ "${PROXY}" == haproxy ]] && proxy_bin="${HAPROXY}"
for bin in "${REDIS_SERVER}" "${proxy_bin}"; do
  if [[ ! -x "${bin}" ]]; then
    echo "SKIP: scale_out needs ${bin} (deploy/install-deps.sh installs redis-server, nginx-light and haproxy)"
    exit 77
  fi
done
if ((PY_CLIENTS > 0)) && ! PYTHONPATH="${LOGSTAR_PYTHONPATH}" "${PYTHON}" -c 'import logstar' 2>/dev/null; then
  echo "FAIL: ${PYTHON} cannot import logstar from ${LOGSTAR_PYTHONPATH} (build logstar_python, set LOGSTAR_PYTHONPATH, or PY_CLIENTS=0)" >&2
  exit 2
fi
ALL=$((CLIENTS + PY_CLIENTS))

start="$(now)"
echo "scale_out: ${CLIENTS} C++ and ${PY_CLIENTS} Python replays of ${FRAMES} frames through ${PROXY} to ${REPLICAS} logstard sharing Redis"

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# ---------------------------------------------------------------- servers

redis_port="$(free_port)"
mkdir -p "${WORK}/redis"
"${REDIS_SERVER}" --port "${redis_port}" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "${WORK}/redis" --loglevel warning >"${WORK}/redis.log" 2>&1 &
child_pids+=($!)
wait_port "${redis_port}" || { echo "FAIL: redis-server did not start" >&2; exit 1; }

declare -a ports=() pids=()
for i in $(seq 0 $((REPLICAS - 1))); do ports[i]="$(free_port)"; done

# start_replica I: logstard number I on its port (the same after a restart).
start_replica() {
  local i="$1" port_file="${WORK}/port.$1.${RANDOM}"
  "${LOGSTARD}" --listen_address="127.0.0.1:${ports[i]}" --port_file="${port_file}" \
    --session_store="redis://127.0.0.1:${redis_port}/0" --engine_threads=1 \
    --max_concurrent_frames=1 --shutdown_grace_s=10 --log_level=info \
    2>>"${WORK}/logstard${i}.log" &
  pids[i]=$!
  child_pids+=("${pids[i]}")
  for _ in $(seq 1 200); do
    [[ -s "${port_file}" ]] && return 0
    kill -0 "${pids[i]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "FAIL: logstard ${i} did not start; its log:" >&2
  tail -20 "${WORK}/logstard${i}.log" >&2
  exit 1
}
for i in $(seq 0 $((REPLICAS - 1))); do start_replica "${i}"; done

proxy_port="$(free_port)"
mkdir -p "${WORK}/${PROXY}"
# servers FORMAT: FORMAT (printf, of a replica's number and port) for each
# replica.
servers() {
  for i in $(seq 0 $((REPLICAS - 1))); do printf "$1" "${i}" "${ports[i]}"; done
}
# configure TEMPLATE SERVERS: the proxy's configuration from its template.
configure() {
  sed -e "s|@LISTEN@|127.0.0.1:${proxy_port}|" -e "s|@SERVERS@|$2|" \
    -e "s|@PREFIX@|${WORK}/${PROXY}|g" "${repo}/deploy/$1"
}
# start_nginx, start_haproxy: the proxy, in the foreground of a child; sets
# proxy_pid.
start_nginx() {
  # (%.0s: nginx's servers have no name, the number is left out.)
  configure nginx/logstar-grpc.conf.template \
    "$(servers 'server %.0s127.0.0.1:%s max_fails=1 fail_timeout=2s; ')" >"${WORK}/nginx/nginx.conf"
  "${NGINX}" -p "${WORK}/nginx" -c "${WORK}/nginx/nginx.conf" >/dev/null 2>"${WORK}/nginx/stderr" &
  proxy_pid=$!
}
start_haproxy() {
  # One line each: sed makes the \n a newline.
  configure haproxy/logstar-grpc.cfg.template "$(servers 'server r%s 127.0.0.1:%s\\n  ')" \
    >"${WORK}/haproxy/haproxy.cfg"
  "${HAPROXY}" -db -f "${WORK}/haproxy/haproxy.cfg" >"${WORK}/haproxy/stderr" 2>&1 &
  proxy_pid=$!
}
"start_${PROXY}"
# nginx's master ends its workers on SIGTERM (lib.sh's SIGKILL would orphan them).
stop_proxy() {
  kill -TERM "${proxy_pid}" 2>/dev/null && wait "${proxy_pid}" 2>/dev/null
}
trap 'rc=$?; stop_proxy; (exit ${rc}); cleanup' EXIT
wait_port "${proxy_port}" || { echo "FAIL: ${PROXY} did not start:" >&2; cat "${WORK}/${PROXY}/"*err* >&2; exit 1; }
proxy="127.0.0.1:${proxy_port}"
echo "  redis 127.0.0.1:${redis_port}, replicas ${ports[*]}, ${PROXY} ${proxy}"

# ---------------------------------------------------------------- clients

"${LOGSTAR}" synth --frames "${FRAMES}" --size 128 --noise 0.1 --seed 5 --stage-drift 0,0 --window 0 \
  --evals 12 --fps 40 --out "${WORK}/s.lsr" >/dev/null || exit 1
declare -a clients=()
for c in $(seq 1 "${CLIENTS}"); do
  : >"${WORK}/r${c}.jsonl"
  timeout 600 "${LOGSTAR}" replay "${WORK}/s.lsr" --server "${proxy}" --connect-timeout 30 --speed 1 \
    --overload block --session "scale-${c}" --reconnect-s 60 --results "${WORK}/r${c}.jsonl" \
    >"${WORK}/replay${c}.txt" 2>"${WORK}/replay${c}.err" &
  clients[c]=$!
  child_pids+=("${clients[c]}")
done
# The Python clients: sessions scale-$((CLIENTS + 1)) on, the same answers file.
for c in $(seq $((CLIENTS + 1)) "${ALL}"); do
  : >"${WORK}/r${c}.jsonl"
  PYTHONPATH="${LOGSTAR_PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 timeout 600 "${PYTHON}" -m logstar \
    replay "${WORK}/s.lsr" --server "${proxy}" --connect-timeout 30 --speed 1 --overload block \
    --session "scale-${c}" --reconnect-s 60 --results "${WORK}/r${c}.jsonl" \
    >"${WORK}/replay${c}.txt" 2>"${WORK}/replay${c}.err" &
  clients[c]=$!
  child_pids+=("${clients[c]}")
done
is_python() { (($1 > CLIENTS)); }
name_of() { if is_python "$1"; then echo "scale-$1(py)"; else echo "scale-$1"; fi; }
replays_started="$(now)"

lines() { wc -l <"$1"; }
total_answers() { cat "${WORK}"/r*.jsonl | wc -l; }
# Until every client has at least $1 answers (at most $2 s).
wait_answers() {
  local deadline=$(($(date +%s) + $2))
  while [[ $(date +%s) -lt ${deadline} ]]; do
    local least=999999
    for c in $(seq 1 "${ALL}"); do
      local n
      n="$(lines "${WORK}/r${c}.jsonl")"
      ((n < least)) && least=${n}
    done
    ((least >= $1)) && return 0
    sleep 0.05
  done
  return 1
}
wait_answers "${KILL_AFTER}" 180 || echo "  (not every client reached ${KILL_AFTER} answers)"

# The replica holding the most sessions now (its log's stream_opened), among
# those holding a Python client's session when there are Python clients.
holder_of() { grep -o '"event":"stream_opened","session":"scale-[0-9]*"' "${WORK}/logstard$1.log" |
  sed 's/.*"scale-\([0-9]*\)"/\1/' | sort -u; }
holds_python() { ((PY_CLIENTS == 0)) || [[ -n "$(holder_of "$1" | awk -v c="${CLIENTS}" '$1 > c')" ]]; }
victim=0
most=-1
for i in $(seq 0 $((REPLICAS - 1))); do
  holds_python "${i}" || continue
  n="$(holder_of "${i}" | wc -l)"
  if ((n > most)); then most=${n}; victim=${i}; fi
done
mapfile -t moved < <(holder_of "${victim}")
# connection_of C: the connection (0, then 1 after the first reconnect, ...)
# of client C's last answer; answers come in order, so the latest one.
connection_of() {
  local n
  n="$(tail -n 1 "${WORK}/r$1.jsonl" | grep -o '"connection":[0-9]*' | cut -d: -f2)"
  echo "${n:-0}"
}
declare -a before_kill=()
for c in "${moved[@]}"; do before_kill[c]="$(connection_of "${c}")"; done
answers_at_kill="$(total_answers)"
kill -KILL "${pids[victim]}"
killed_at="$(now)"
wait "${pids[victim]}" 2>/dev/null
throughput_before="$(awk -v n="${answers_at_kill}" -v a="${replays_started}" -v b="${killed_at}" \
  'BEGIN { printf "%.1f", n / (b - a) }')"
echo "  SIGKILLed replica ${victim} (port ${ports[victim]}) holding sessions: $(for c in "${moved[@]}"; do name_of "${c}"; done | tr '\n' ' ')"

# Time from the kill to the first answer of each moved session on its new
# replica: the first answer of a later connection (answers that were on
# their way from the killed replica do not count).
failover_s=""
deadline=$(($(date +%s) + 30))
declare -A answered_again=()
while [[ ${#answered_again[@]} -lt ${#moved[@]} && $(date +%s) -lt ${deadline} ]]; do
  for c in "${moved[@]}"; do
    [[ -n "${answered_again[${c}]:-}" ]] && continue
    if (($(connection_of "${c}") > before_kill[c])); then
      answered_again[${c}]="$(elapsed "${killed_at}")"
    fi
  done
  sleep 0.02
done
for c in "${moved[@]}"; do
  t="${answered_again[${c}]:-none}"
  failover_s+="$(name_of "${c}") ${t} s; "
done
worst="$(printf '%s\n' "${answered_again[@]:-999}" | sort -g | tail -1)"
# A moved session never answered again is as late as can be.
((${#answered_again[@]} < ${#moved[@]})) && worst=999

# Restart the killed replica, then every replica in turn.
sleep 1
start_replica "${victim}"
for i in $(seq 0 $((REPLICAS - 1))); do
  [[ ${i} == "${victim}" ]] && continue
  sleep 1
  kill -TERM "${pids[i]}"
  wait "${pids[i]}" 2>/dev/null
  start_replica "${i}"
done
restarted_at="$(now)"
answers_at_restart="$(total_answers)"
echo "  restarted replica ${victim}, then the others in turn ($(elapsed "${killed_at}") s after the kill)"

rcs=""
for c in $(seq 1 "${ALL}"); do
  wait "${clients[c]}"
  rcs+="$? "
done
ended_at="$(now)"
throughput_after="$(awk -v n="$(($(total_answers) - answers_at_restart))" -v a="${restarted_at}" \
  -v b="${ended_at}" 'BEGIN { if (b - a > 0.5) printf "%.1f", n / (b - a); else print "n/a" }')"

# ---------------------------------------------------------------- checks

check "every replay completed (exit 0)" "$([[ "${rcs}" =~ ^(0 )+$ ]] && echo 1)" "exit codes ${rcs}"
# lost_of C: the frames client C sent that got no answer, from its summary
# (C++: "lost (never answered)"; Python: "unanswered").
lost_of() {
  if is_python "$1"; then
    sed -n 's/^unanswered *\([0-9][0-9]*\).*/\1/p' "${WORK}/replay$1.txt" | head -1
  else
    summary_field "${WORK}/replay$1.txt" 'lost (never answered)'
  fi
}
bad=""
for c in $(seq 1 "${ALL}"); do
  read -r n res drop err distinct <<<"$(jsonl_counts "${WORK}/r${c}.jsonl")"
  lost="$(lost_of "${c}")"
  if [[ "${n}" != "${FRAMES}" || "${distinct}" != "${FRAMES}" || "${res}" != "${FRAMES}" || "${lost}" != 0 ]]; then
    bad+="$(name_of "${c}"): ${n} lines, ${distinct} distinct, ${res} results, ${drop} dropped, ${err} errors, lost ${lost:-?}; "
  fi
done
check "every frame answered exactly once" "$([[ -z "${bad}" ]] && echo 1)" \
  "${bad:-(${CLIENTS} C++ + ${PY_CLIENTS} Python) x ${FRAMES} frames: 0 lost, 0 duplicates}"
check "a replica held sessions when killed" "$([[ ${#moved[@]} -ge 1 ]] && echo 1)" "${#moved[@]} session(s)"
moved_python="$(printf '%s\n' "${moved[@]}" | awk -v c="${CLIENTS}" '$1 > c' | wc -l)"
check "a Python session moved" "$([[ ${PY_CLIENTS} == 0 || ${moved_python} -ge 1 ]] && echo 1)" \
  "${moved_python} of ${PY_CLIENTS} Python session(s)"
check "moved sessions answered within ${TARGET_S} s" \
  "$(awk -v w="${worst}" -v t="${TARGET_S}" 'BEGIN { print (w <= t) ? 1 : 0 }')" "${failover_s}"

# The first frames each moved session got from the replica it moved to: the
# first answers after its reconnect (connection 1 in --results).
hits_report="$(/usr/bin/python3 - "${WORK}" "${CLIENTS}" "${moved[@]}" <<'EOF'
import json, sys
work, cpp, moved = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
out, ok = [], True
for c in moved:
    rows = [json.loads(l) for l in open(f"{work}/r{c}.jsonl")]
    after = sorted((r for r in rows if r.get("connection", 0) == 1 and r.get("status") == "result"),
                   key=lambda r: r["sequence"])[:3]
    misses = sum(r["cache"]["misses"] for r in after)
    hits = sum(r["cache"]["hits"] for r in after)
    ok &= bool(after) and misses == 0 and hits >= 1
    out.append(f"scale-{c}{'(py)' if int(c) > cpp else ''}: {hits} hits, {misses} misses in "
               f"{len(after)} frames")
print(1 if ok else 0, "; ".join(out))
EOF
)"
check "first frames of moved sessions are cache hits" "${hits_report%% *}" "${hits_report#* }"
loaded="$(cat "${WORK}"/logstard*.log | grep -c '"event":"session_loaded"')"
check "replicas loaded sessions from Redis" "$([[ ${loaded} -ge ${#moved[@]} ]] && echo 1)" \
  "${loaded} session_loaded events"
echo "  throughput: ${throughput_before} answers/s before the kill, ${throughput_after} after the restarts"
finish "scale_out" "${start}"
