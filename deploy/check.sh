#!/usr/bin/env bash
# Offline checks of everything in deploy/ for running logstard (systemd,
# Docker, Kubernetes/Helm), with no Docker daemon, Helm or cluster:
#   - deploy/checks/deploy_check.py: the unit, config, Dockerfile, chart and
#     plain manifests parse and agree with each other and with DaemonConfig;
#     the Dockerfile's runtime packages cover the libraries the binaries link;
#   - systemd-analyze verify and security --offline on the unit;
#   - kubectl kustomize deploy/k8s (builds the manifests offline);
#   - a real logstard started with each way's arguments and configuration
#     (the unit's, the Docker CMD, the k8s args with the ConfigMap, the
#     chart's values), checked with `logstar status` (the Docker
#     HEALTHCHECK), then stopped with SIGTERM: it must exit 0;
#   - the system calls logstard makes under strace (start, a small stream, a
#     session save, SIGTERM) against the unit's SystemCallFilter groups;
#   - deploy/systemd/install.sh into a staging directory and as a dry run.
#
#   deploy/check.sh [--logstard BIN] [--logstar BIN] [--skip-code N]
# Without --logstard/--logstar, build/server/logstard and build/clients/logstar
# are used if built. Exit 1 if a check failed; with --skip-code N, exit N
# when nothing failed but some checks could not run (a tool or binary is
# missing), so ctest reports the test as skipped rather than passed.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
logstard="${LOGSTARD:-}"
logstar="${LOGSTAR_CLI:-}"
skip_code=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --logstard) logstard="$2"; shift 2 ;;
    --logstar) logstar="$2"; shift 2 ;;
    --skip-code) skip_code="$2"; shift 2 ;;
    *) echo "check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -z "${logstard}" && -x "${repo}/build/server/logstard" ]] && logstard="${repo}/build/server/logstard"
[[ -z "${logstar}" && -x "${repo}/build/clients/logstar" ]] && logstar="${repo}/build/clients/logstar"
# Absolute paths: the unit, the symlinks for install.sh and the runs need them.
[[ -n "${logstard}" ]] && logstard="$(realpath "${logstard}")"
[[ -n "${logstar}" ]] && logstar="$(realpath "${logstar}")"

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "${p}" 2>/dev/null; done
  rm -rf "${tmp}"
}
trap cleanup EXIT

passed=0 failed=0 skipped=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
skip() { echo "skip: $*"; skipped=$((skipped + 1)); }

# ---- structure and consistency (python3 with PyYAML: Debian's python3-yaml)
python=""
for p in /usr/bin/python3 python3; do
  if command -v "${p}" >/dev/null && "${p}" -c 'import yaml' 2>/dev/null; then python="${p}"; break; fi
done
mkdir -p "${tmp}/out"
if [[ -n "${python}" ]]; then
  args=(--repo "${repo}" --out "${tmp}/out")
  [[ -n "${logstard}" ]] && args+=(--logstard "${logstard}")
  [[ -n "${logstar}" ]] && args+=(--logstar "${logstar}")
  "${python}" "${repo}/deploy/checks/deploy_check.py" "${args[@]}" > "${tmp}/py.log" 2>&1
  cat "${tmp}/py.log"
  passed=$((passed + $(grep -c '^ok:' "${tmp}/py.log")))
  skipped=$((skipped + $(grep -c '^skip:' "${tmp}/py.log")))
  n=$(grep -c '^FAIL:' "${tmp}/py.log")
  if ! grep -q '^ok:' "${tmp}/py.log" && [[ ${n} -eq 0 ]]; then n=1; echo "FAIL: deploy_check.py produced no result"; fi
  failed=$((failed + n))
else
  skip "structure checks: no python3 with PyYAML (apt-get install python3-yaml)"
fi

# ---- systemd
unit="${repo}/deploy/systemd/logstard.service"
if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart's binary to exist: point a copy at the real one (or a stub).
  exe="${logstard}"
  if [[ -z "${exe}" ]]; then exe="${tmp}/logstard-stub"; printf '#!/bin/sh\n' > "${exe}"; chmod +x "${exe}"; fi
  sed "s#^ExecStart=/usr/local/bin/logstard#ExecStart=${exe}#" "${unit}" > "${tmp}/logstard.service"
  if out=$(systemd-analyze verify "${tmp}/logstard.service" 2>&1) && [[ -z "${out}" ]]; then
    ok "systemd-analyze verify logstard.service: no errors or warnings"
  else
    fail "systemd-analyze verify logstard.service: ${out}"
  fi
  # Exposure 0-10 (lower is safer); the unit scores 1.5: keep it under 2.
  if out=$(systemd-analyze security --offline=true --threshold=20 "${tmp}/logstard.service" 2>&1); then
    ok "systemd-analyze security --offline: $(echo "${out}" | grep -o 'exposure level.*' | head -1)"
  else
    fail "systemd-analyze security --offline: exposure above 2.0, or an error: $(echo "${out}" | grep -vE '^ *✓' | tail -20)"
  fi
else
  skip "systemd-analyze not installed (Debian: systemd)"
fi

# ---- kubectl (offline: kustomize builds without a cluster; apply --dry-run needs an API server)
if command -v kubectl >/dev/null; then
  if out=$(kubectl kustomize "${repo}/deploy/k8s" 2>&1); then
    kinds=$(echo "${out}" | grep -c '^kind:')
    if [[ ${kinds} -eq 4 ]]; then ok "kubectl kustomize deploy/k8s: 4 objects"; else fail "kubectl kustomize deploy/k8s: ${kinds} objects, want 4"; fi
  else
    fail "kubectl kustomize deploy/k8s: ${out}"
  fi
else
  skip "kubectl not installed: deploy/k8s not built with kustomize"
fi

# ---- a real logstard with each deployment way's arguments
run_daemon() {  # NAME ARGS_FILE: start with its args (+ local port/state), health, SIGTERM, exit 0
  local name="$1" file="$2" d="${tmp}/run-$1"
  mkdir -p "${d}"
  mapfile -t a < "${file}"
  # Later flags win: listen on a free loopback port, keep state and metrics local.
  a+=("--listen_address=127.0.0.1:0" "--port_file=${d}/port" "--state_dir=${d}/state")
  for x in "${a[@]}"; do [[ "${x}" == --metrics_address=* ]] && a+=("--metrics_address=127.0.0.1:0") && break; done
  "${logstard}" "${a[@]}" > "${d}/log" 2>&1 &
  local pid=$!
  pids+=("${pid}")
  local i
  # Generous waits: CI machines are shared and may be loaded.
  for ((i = 0; i < 300; i++)); do
    [[ -s "${d}/port" ]] && break
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.1
  done
  if [[ ! -s "${d}/port" ]]; then
    fail "${name}: logstard did not start with $(basename "${file}"): $(tail -3 "${d}/log")"
    kill -KILL "${pid}" 2>/dev/null
    return
  fi
  local port; port=$(tr -d '[:space:]' < "${d}/port")
  if [[ -n "${logstar}" ]]; then
    if out=$("${logstar}" status --server "127.0.0.1:${port}" 2>&1); then
      ok "${name}: logstard serves with these arguments; logstar status (the HEALTHCHECK) exits 0"
    else
      fail "${name}: logstar status against it: ${out}"
    fi
  else
    ok "${name}: logstard starts with these arguments (no logstar CLI for the health check)"
  fi
  kill -TERM "${pid}"
  for ((i = 0; i < 400; i++)); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "${pid}" 2>/dev/null; then
    fail "${name}: logstard still running 40 s after SIGTERM"
    kill -KILL "${pid}"
  fi
  wait "${pid}"
  local rc=$?
  if [[ ${rc} -eq 0 ]]; then ok "${name}: SIGTERM stops it with exit 0"; else fail "${name}: exit ${rc} after SIGTERM: $(tail -3 "${d}/log")"; fi
}
expand_filter() {  # the system calls of a systemd syscall-filter group, nested groups expanded
  systemd-analyze syscall-filter "$1" 2>/dev/null | tail -n +2 | grep -vE '^\s*#' | tr -d ' ' | grep . |
    while read -r x; do if [[ "${x}" == @* ]]; then expand_filter "${x}"; else echo "${x}"; fi; done
}
syscall_check() {  # the unit's SystemCallFilter against what logstard really calls (strace)
  if ! command -v strace >/dev/null || ! command -v systemd-analyze >/dev/null || [[ -z "${logstar}" ]] \
    || ! strace -f -qq -o /dev/null true 2>/dev/null; then
    skip "system calls: needs strace (ptrace allowed), systemd-analyze and logstar"
    return
  fi
  local d="${tmp}/strace" i
  mkdir -p "${d}"
  mapfile -t a < "${tmp}/out/systemd.args"
  strace -f -qq -o "${d}/trace" "${logstard}" "${a[@]}" --listen_address=127.0.0.1:0 \
    --port_file="${d}/port" --state_dir="${d}/state" --metrics_address=127.0.0.1:0 > "${d}/log" 2>&1 &
  local tracer=$!
  pids+=("${tracer}")
  for ((i = 0; i < 300; i++)); do [[ -s "${d}/port" ]] && break; sleep 0.1; done
  local daemon; daemon=$(pgrep -P "${tracer}" | head -1)
  if [[ ! -s "${d}/port" || -z "${daemon}" ]]; then
    fail "system calls: logstard under strace did not start: $(tail -3 "${d}/log")"
    return
  fi
  # A small stream: analysis, tuning, a session saved to the state dir.
  "${logstar}" synth --frames 2 --size 128 --noise 0.1 --window 128 --evals 6 --out "${d}/s.lsr" > /dev/null 2>&1
  "${logstar}" replay "${d}/s.lsr" --server "127.0.0.1:$(tr -d '[:space:]' < "${d}/port")" --speed max > "${d}/replay" 2>&1 \
    || fail "system calls: replay under strace: $(tail -3 "${d}/replay")"
  kill -TERM "${daemon}"
  wait "${tracer}"
  grep -oE '^[0-9]+ +[a-z_0-9]+\(' "${d}/trace" | awk '{print $2}' | tr -d '(' | grep -vx execve | sort -u > "${d}/used"
  local group
  for group in $(sed -n 's/^SystemCallFilter=\(@[a-z-]*\)$/\1/p' "${unit}"); do expand_filter "${group}"; done | sort -u > "${d}/allowed"
  for group in $(sed -n 's/^SystemCallFilter=~\(.*\)$/\1/p' "${unit}"); do expand_filter "${group}"; done | sort -u > "${d}/denied"
  local outside; outside=$(comm -23 "${d}/used" "${d}/allowed" | tr '\n' ' ')
  local denied; denied=$(comm -12 "${d}/used" "${d}/denied" | tr '\n' ' ')
  if [[ -s "${d}/used" && -s "${d}/allowed" && -z "${outside}" && -z "${denied}" ]]; then
    ok "system calls: the $(wc -l < "${d}/used") that logstard makes (start, a stream, a save, SIGTERM) all pass the unit's SystemCallFilter"
  else
    fail "system calls outside the unit's SystemCallFilter: allowed-list misses [${outside}], deny-list hits [${denied}]"
  fi
}
if [[ -n "${logstard}" ]]; then
  for way in systemd docker k8s; do
    if [[ -f "${tmp}/out/${way}.args" ]]; then run_daemon "${way}" "${tmp}/out/${way}.args"
    else skip "${way}: no arguments extracted (structure checks did not run)"; fi
  done
  if [[ -f "${tmp}/out/helm-values.json" ]]; then
    echo "--config=${tmp}/out/helm-values.json" > "${tmp}/helm.args"
    run_daemon helm "${tmp}/helm.args"
  fi
  syscall_check
  # A broken configuration must be refused (exit 2), not ignored.
  echo 'no_such_field: 1' > "${tmp}/bad.textproto"
  "${logstard}" --config="${tmp}/bad.textproto" --listen_address=127.0.0.1:0 > "${tmp}/bad.log" 2>&1
  rc=$?
  if [[ ${rc} -eq 2 ]]; then ok "logstard refuses an unknown config field (exit 2)"; else fail "logstard with an unknown config field exited ${rc}"; fi
else
  skip "no logstard binary (build it, or pass --logstard): configs not started"
fi

# ---- install.sh
if out=$(bash "${repo}/deploy/systemd/install.sh" --dry-run --build-dir "${tmp}/nobuild" 2>&1) && echo "${out}" | grep -q '^+ install'; then
  ok "install.sh --dry-run prints its steps"
else
  fail "install.sh --dry-run: ${out}"
fi
if [[ -n "${logstard}" && -n "${logstar}" ]]; then
  mkdir -p "${tmp}/b/server" "${tmp}/b/clients"
  ln -s "${logstard}" "${tmp}/b/server/logstard"
  ln -s "${logstar}" "${tmp}/b/clients/logstar"
  root="${tmp}/root"
  if out=$(bash "${repo}/deploy/systemd/install.sh" --build-dir "${tmp}/b" --destdir "${root}" 2>&1) \
    && [[ -x "${root}/usr/local/bin/logstard" && -x "${root}/usr/local/bin/logstar" \
      && -f "${root}/etc/systemd/system/logstard.service" && -f "${root}/etc/logstar/logstard.textproto" ]]; then
    echo "# edited" >> "${root}/etc/logstar/logstard.textproto"
    bash "${repo}/deploy/systemd/install.sh" --build-dir "${tmp}/b" --destdir "${root}" > /dev/null 2>&1
    if tail -1 "${root}/etc/logstar/logstard.textproto" | grep -q '# edited'; then
      ok "install.sh --destdir installs binaries, unit and config, and keeps an existing config"
    else
      fail "install.sh overwrote an existing config"
    fi
  else
    fail "install.sh --destdir: ${out}"
  fi
else
  skip "install.sh --destdir: needs both binaries"
fi

echo "deploy/check.sh: ${passed} ok, ${failed} failed, ${skipped} skipped"
if [[ ${failed} -gt 0 ]]; then exit 1; fi
if [[ ${skipped} -gt 0 && ${skip_code} -ne 0 ]]; then exit "${skip_code}"; fi
exit 0
