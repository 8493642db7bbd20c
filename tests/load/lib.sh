# shellcheck shell=bash
# Shared by the load and fault scripts in tests/load/ (sourced, not run).
#
# Binaries: $LOGSTARD and $LOGSTAR, else BUILD_DIR (first argument of each
# script, or the environment, default build/) /server/logstard and
# /clients/logstar. Everything runs on loopback in a fresh directory $WORK
# (kept for inspection only on failure, or when KEEP=1); daemons started
# here are stopped on exit, by their pid.

set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-${BUILD_DIR:-${repo}/build}}"
LOGSTARD="${LOGSTARD:-${build}/server/logstard}"
LOGSTAR="${LOGSTAR:-${build}/clients/logstar}"
for bin in "${LOGSTARD}" "${LOGSTAR}"; do
  if [[ ! -x "${bin}" ]]; then
    echo "FAIL: ${bin} is not an executable (build logstard and logstar, or set LOGSTARD/LOGSTAR)" >&2
    exit 2
  fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/logstar_load.XXXXXX")"
DAEMON_PID=""
failures=0
declare -a child_pids=()

cleanup() {
  local rc=$?
  for pid in "${child_pids[@]}" ${DAEMON_PID}; do
    kill -KILL "${pid}" 2>/dev/null
  done
  if [[ ${rc} -eq 0 && "${KEEP:-0}" != 1 ]]; then
    rm -rf "${WORK}"
  else
    echo "(files kept in ${WORK})"
  fi
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# check NAME CONDITION-AS-ARITHMETIC DETAIL: records a named pass/fail line.
check() {
  local name="$1" ok="$2" detail="$3"
  if [[ "${ok}" == 1 ]]; then
    printf '  ok    %-40s %s\n' "${name}" "${detail}"
  else
    printf '  FAIL  %-40s %s\n' "${name}" "${detail}"
    failures=$((failures + 1))
  fi
}

# start_daemon LOG [extra flags...]: starts logstard on a free loopback
# port; sets DAEMON_PID and ADDR.
start_daemon() {
  local log="$1"
  shift
  local port_file="${WORK}/port.$$.${RANDOM}"
  "${LOGSTARD}" --listen_address=127.0.0.1:0 --port_file="${port_file}" --log_level=info "$@" \
    2>>"${log}" &
  DAEMON_PID=$!
  for _ in $(seq 1 200); do
    if [[ -s "${port_file}" ]]; then
      ADDR="127.0.0.1:$(cat "${port_file}")"
      return 0
    fi
    if ! kill -0 "${DAEMON_PID}" 2>/dev/null; then break; fi
    sleep 0.05
  done
  echo "FAIL: logstard did not start; its log:" >&2
  tail -20 "${log}" >&2
  exit 1
}

# stop_daemon: SIGTERM and wait (clean shutdown).
stop_daemon() {
  if [[ -n "${DAEMON_PID}" ]]; then
    kill -TERM "${DAEMON_PID}" 2>/dev/null
    wait "${DAEMON_PID}" 2>/dev/null
    DAEMON_PID=""
  fi
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# The threads a leak check counts: all but gRPC's EventEngine pool
# ("event_engine"), which grows by a thread while its workers are busy (under
# load, seen 2 -> 3) and shrinks when idle, so its size at one instant says
# nothing about what a killed client left behind.
owned_threads_of() {
  local n=0 t
  for t in /proc/"$1"/task/*/comm; do
    [[ "$(cat "${t}" 2>/dev/null)" == event_engine ]] || n=$((n + 1))
  done
  echo "${n}"
}

# health: prints "SERVING" when both the server and logstar.v1.LogStar serve.
health() {
  if "${LOGSTAR}" status --server "${ADDR}" --connect-timeout 5 >"${WORK}/health.txt" 2>&1; then
    echo SERVING
  else
    grep -o 'NOT_SERVING\|UNKNOWN\|cannot reach[^(]*' "${WORK}/health.txt" | head -1
  fi
}

# counters SESSION: "received analysed dropped failed" from `logstar status`.
counters() {
  "${LOGSTAR}" status --server "${ADDR}" --session "$1" 2>/dev/null |
    sed -n 's/.*received \([0-9]*\), analysed \([0-9]*\), dropped \([0-9]*\), failed \([0-9]*\).*/\1 \2 \3 \4/p'
}

# summary_field FILE NAME: the first number after NAME in a replay summary.
summary_field() {
  sed -n "s/^  $2 *\([0-9][0-9]*\).*/\1/p" "$1" | head -1
}

# jsonl_counts FILE: "lines results dropped errors distinct_sequences" of a
# replay --results file.
jsonl_counts() {
  /usr/bin/python3 - "$1" <<'EOF'
import json, sys
n = res = drop = err = 0
seqs = set()
for line in open(sys.argv[1]):
    r = json.loads(line)
    n += 1
    seqs.add(r["sequence"])
    s = r.get("status")
    res += s == "result"
    drop += s == "dropped"
    err += s == "error"
print(n, res, drop, err, len(seqs))
EOF
}

# finish NAME START: the PASS/FAIL line and exit code.
finish() {
  if [[ ${failures} -eq 0 ]]; then
    echo "PASS: $1 ($(elapsed "$2") s)"
    exit 0
  fi
  echo "FAIL: $1: ${failures} check(s) failed ($(elapsed "$2") s)"
  exit 1
}
