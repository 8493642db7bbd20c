#!/usr/bin/env bash
# The Debian packages end to end (ctest: package_deb_test): cpack -G DEB in
# BUILD_DIR from the binaries as built, then
#   - Depends of each package: no -dev package, and every shared library the
#     binary needs (readelf -d) belongs to a package it depends on (dpkg -S);
#   - the files each package must hold: logstard with its unit (running
#     /usr/bin/logstard as the user logstar; systemd-analyze verify when
#     present), example configuration (a
#     conffile) and maintainer scripts that make the user and the state
#     directory; logstar-tools with the CLI;
#   - both unpacked into a temporary root (dpkg -x), the installed logstard
#     started there with the installed configuration (on a loopback port the
#     kernel picks), the installed `logstar status` finds it SERVING, and
#     `logstar replay` streams two frames to it and gets two results.
# Exit 77 (skipped) without dpkg-deb or dpkg-shlibdeps.
#   deb_test.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
for tool in cpack dpkg-deb dpkg-shlibdeps file readelf; do
  command -v "${tool}" >/dev/null || { echo "skip: ${tool} not found (bash deploy/install-deps.sh)"; exit 77; }
done
work="$(mktemp -d "${TMPDIR:-/tmp}/logstar-deb.XXXXXX")"
daemon_pid=""
cleanup() {
  if [[ -n "${daemon_pid}" ]]; then kill "${daemon_pid}" 2>/dev/null || true; fi
  rm -rf "${work}"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

(cd "${build}" && cpack -G DEB -B "${work}/packages" >"${work}/cpack.log" 2>&1) ||
  { cat "${work}/cpack.log" >&2; fail "cpack -G DEB"; }
shopt -s nullglob
daemon_deb=("${work}"/packages/logstard_*.deb)
tools_deb=("${work}"/packages/logstar-tools_*.deb)
[[ ${#daemon_deb[@]} -eq 1 && ${#tools_deb[@]} -eq 1 ]] ||
  fail "expected one logstard and one logstar-tools package, got: $(ls "${work}/packages")"
echo "ok: $(cd "${work}/packages" && ls ./*.deb | tr '\n' ' ')"

# Depends: the runtime packages of the libraries each binary needs.
check_depends() {
  local deb="$1" binary="$2" depends lib path pkg
  depends="$(dpkg-deb -f "${deb}" Depends)"
  [[ -n "${depends}" ]] || fail "${deb##*/} has no Depends"
  if grep -Eq -- '-dev( |,|$)' <<<"${depends}"; then
    fail "${deb##*/} depends on a -dev package: ${depends}"
  fi
  local names=" $(sed -E 's/\([^)]*\)//g; s/[,|]/ /g' <<<"${depends}" | tr -s ' ') "
  for lib in $(readelf -d "${binary}" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    path="$(ldconfig -p | awk -v l="${lib}" '$1 == l && !found { print $NF; found = 1 }')"
    [[ -n "${path}" ]] || fail "${binary##*/} needs ${lib}, which ldconfig does not know"
    # The package that owns the library (by its name as linked, or the file
    # it points to).
    pkg="$({ dpkg -S "${path}" || dpkg -S "$(readlink -f "${path}")"; } 2>/dev/null |
           awk -F: 'NR == 1 { print $1 }')"
    [[ -n "${pkg}" ]] || fail "${binary##*/} needs ${path}, which no package owns"
    [[ "${names}" == *" ${pkg} "* ]] ||
      fail "${deb##*/}: ${binary##*/} needs ${lib} (package ${pkg}), not in Depends: ${depends}"
  done
  echo "ok: ${deb##*/} Depends: ${depends}"
}
check_depends "${daemon_deb[0]}" "${build}/server/logstard"
check_depends "${tools_deb[0]}" "${build}/clients/logstar"

# Contents and maintainer scripts.
contents="$(dpkg-deb -c "${daemon_deb[0]}" | awk '{ print $NF }')"
for file in ./usr/bin/logstard ./usr/lib/systemd/system/logstard.service \
            ./etc/logstar/logstard.textproto; do
  grep -qx -- "${file}" <<<"${contents}" || fail "logstard package lacks ${file}"
done
if dpkg-deb -c "${daemon_deb[0]}" | grep -q 'usr/bin/logstar$'; then
  fail "the logstard package holds the CLI (it belongs to logstar-tools)"
fi
dpkg-deb -c "${tools_deb[0]}" | grep -q ' ./usr/bin/logstar$' || fail "logstar-tools lacks /usr/bin/logstar"
dpkg-deb -e "${daemon_deb[0]}" "${work}/control"
grep -qx /etc/logstar/logstard.textproto "${work}/control/conffiles" ||
  fail "the configuration is not a conffile"
grep -q 'useradd --system' "${work}/control/postinst" && grep -q '/var/lib/logstar' "${work}/control/postinst" ||
  fail "postinst does not make the user logstar and /var/lib/logstar"
for script in postinst prerm postrm; do
  [[ -x "${work}/control/${script}" ]] || fail "${script} is not executable"
  sh -n "${work}/control/${script}" || fail "${script} is not valid sh"
done
# postinst's logic with the commands it runs replaced by stubs that log
# (it needs root and would change this machine): the user and group made
# when absent and kept when present, the state directory made either way.
stubs="${work}/stubs"
mkdir -p "${stubs}"
for cmd in getent groupadd useradd install systemctl; do
  printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n[ "%s" != getent ] || exit "${GETENT_CODE}"\n' \
    "${cmd}" "${work}" "${cmd}" >"${stubs}/${cmd}"
  chmod +x "${stubs}/${cmd}"
done
GETENT_CODE=2 PATH="${stubs}:${PATH}" sh "${work}/control/postinst" configure
grep -q '^groupadd --system logstar$' "${work}/calls" &&
  grep -q '^useradd --system --gid logstar --home-dir /var/lib/logstar .* logstar$' "${work}/calls" &&
  grep -q '^install -d -o logstar -g logstar -m 0700 /var/lib/logstar$' "${work}/calls" ||
  fail "postinst without a user logstar: $(cat "${work}/calls")"
rm "${work}/calls"
GETENT_CODE=0 PATH="${stubs}:${PATH}" sh "${work}/control/postinst" configure
if grep -Eq '^(groupadd|useradd)' "${work}/calls" ||
   ! grep -q '^install -d -o logstar -g logstar -m 0700 /var/lib/logstar$' "${work}/calls"; then
  fail "postinst with a user logstar: $(cat "${work}/calls")"
fi
echo "ok: contents, conffiles and maintainer scripts"

# Unpacked into a temporary root and run from there.
root="${work}/root"
dpkg -x "${daemon_deb[0]}" "${root}"
dpkg -x "${tools_deb[0]}" "${root}"
unit="${root}/usr/lib/systemd/system/logstard.service"
grep -q '^ExecStart=/usr/bin/logstard ' "${unit}" || fail "the unit does not run /usr/bin/logstard"
grep -q '^User=logstar$' "${unit}" || fail "the unit does not run as the user logstar"
grep -q '^DynamicUser=' "${unit}" && fail "the packaged unit still uses DynamicUser"
if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart's binary to exist: point a copy at the unpacked one.
  sed "s#^ExecStart=/usr/bin/logstard#ExecStart=${root}/usr/bin/logstard#" "${unit}" \
    >"${work}/logstard.service"
  out="$(systemd-analyze verify "${work}/logstard.service" 2>&1)" && [[ -z "${out}" ]] ||
    fail "systemd-analyze verify of the packaged unit: ${out}"
  echo "ok: systemd-analyze verify: the packaged unit has no errors or warnings"
fi
for binary in "${root}/usr/bin/logstard" "${root}/usr/bin/logstar"; do
  if ldd "${binary}" | grep -q 'not found'; then
    fail "${binary##*/} misses libraries: $(ldd "${binary}" | grep 'not found')"
  fi
done
# The installed configuration, with the flags a test needs on top (flags
# win over the file, as the unit's --state_dir does).
"${root}/usr/bin/logstard" --config="${root}/etc/logstar/logstard.textproto" \
  --listen_address=127.0.0.1:0 --port_file="${work}/port" --state_dir="${work}/state" \
  --engine_threads=2 --log_level=warning >"${work}/logstard.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 600); do
  [[ -s "${work}/port" ]] && break
  kill -0 "${daemon_pid}" 2>/dev/null || { cat "${work}/logstard.log" >&2; fail "logstard exited"; }
  sleep 0.05
done
[[ -s "${work}/port" ]] || fail "logstard did not write its port"
address="127.0.0.1:$(cat "${work}/port")"
"${root}/usr/bin/logstar" status --server "${address}" >"${work}/status.txt" ||
  { cat "${work}/status.txt" >&2; fail "logstar status"; }
grep -Eq 'health \(server\) +SERVING' "${work}/status.txt" || fail "not SERVING: $(cat "${work}/status.txt")"
"${root}/usr/bin/logstar" synth --frames 2 --size 128 --out "${work}/s.lsr" >/dev/null
"${root}/usr/bin/logstar" replay "${work}/s.lsr" --server "${address}" --speed max \
  --results "${work}/results.jsonl" >"${work}/replay.txt" || { cat "${work}/replay.txt" >&2; fail "replay"; }
results="$(grep -c '"status":"result"' "${work}/results.jsonl" || true)"
[[ "${results}" == 2 ]] || fail "2 frames sent, ${results} results: $(cat "${work}/results.jsonl")"
kill -TERM "${daemon_pid}"
code=0
wait "${daemon_pid}" || code=$?
daemon_pid=""
[[ ${code} -eq 0 ]] || { cat "${work}/logstard.log" >&2; fail "logstard exited ${code} on SIGTERM"; }
echo "ok: the installed logstard answered status and 2 frames from ${root}"
echo PASS
