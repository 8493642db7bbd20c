#!/usr/bin/env bash
# Installs logstard as a systemd service: the binaries logstard and logstar
# (from a build made by deploy/build.sh), the unit and, unless one exists
# already, the example configuration. Starts nothing unless asked.
#
#   deploy/systemd/install.sh [options]
#     --build-dir DIR  where deploy/build.sh built (default: build/ in the repo)
#     --prefix DIR     binaries go to DIR/bin (default /usr/local)
#     --destdir DIR    stage everything under DIR instead of / (packaging,
#                      tests); implies no systemctl at all
#     --dry-run        print what would be done, change nothing
#     --enable         systemctl enable logstard (start at boot)
#     --start          systemctl enable --now logstard (implies --enable)
#
# Installed: PREFIX/bin/logstard, PREFIX/bin/logstar,
# /etc/systemd/system/logstard.service, /etc/logstar/logstard.textproto
# (kept if present: it is the operator's). Remove with:
#   systemctl disable --now logstard; rm PREFIX/bin/logstar{d,} \
#     /etc/systemd/system/logstard.service; systemctl daemon-reload
# (/etc/logstar and the sessions in /var/lib/private/logstar stay.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"

build="${repo}/build"
prefix=/usr/local
destdir=""
dry_run=0
enable=0
start=0
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="$2"; shift 2 ;;
    --build-dir=*) build="${1#*=}"; shift ;;
    --prefix) prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --destdir) destdir="$2"; shift 2 ;;
    --destdir=*) destdir="${1#*=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    --enable) enable=1; shift ;;
    --start) enable=1; start=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "${prefix}" == /* ]] || { echo "install.sh: --prefix must be absolute" >&2; exit 2; }

run() {
  if [[ ${dry_run} -eq 1 ]]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

for b in server/logstard clients/logstar; do
  if [[ ! -x "${build}/${b}" ]]; then
    echo "install.sh: ${build}/${b} not found: build first (BUILD_DIR=${build} bash deploy/build.sh -DLOGSTAR_BUILD_TESTS=OFF)" >&2
    [[ ${dry_run} -eq 1 ]] || exit 1
  fi
done
if [[ -z "${destdir}" && ${dry_run} -eq 0 && $(id -u) -ne 0 ]]; then
  echo "install.sh: installing to / needs root (or use --destdir DIR, or --dry-run)" >&2
  exit 1
fi

bindir="${destdir}${prefix}/bin"
unit_dst="${destdir}/etc/systemd/system/logstard.service"
config_dst="${destdir}/etc/logstar/logstard.textproto"

run install -d -m 0755 "${bindir}" "${destdir}/etc/systemd/system" "${destdir}/etc/logstar"
run install -m 0755 "${build}/server/logstard" "${build}/clients/logstar" "${bindir}/"
# The unit names /usr/local/bin/logstard; follow --prefix.
if [[ "${prefix}" == /usr/local ]]; then
  run install -m 0644 "${here}/logstard.service" "${unit_dst}"
elif [[ ${dry_run} -eq 1 ]]; then
  echo "+ sed 's#/usr/local/bin/logstard#${prefix}/bin/logstard#' ${here}/logstard.service > ${unit_dst}"
else
  sed "s#/usr/local/bin/logstard#${prefix}/bin/logstard#" "${here}/logstard.service" > "${unit_dst}"
  chmod 0644 "${unit_dst}"
fi
if [[ -e "${config_dst}" ]]; then
  echo "install.sh: keeping the existing ${config_dst} (the new example is ${here}/logstard.textproto)"
else
  run install -m 0644 "${here}/logstard.textproto" "${config_dst}"
fi

if [[ -n "${destdir}" ]]; then
  echo "install.sh: staged under ${destdir}; systemctl not run"
  exit 0
fi
if [[ ! -d /run/systemd/system ]]; then
  echo "install.sh: systemd is not running here; installed files only"
  exit 0
fi
run systemctl daemon-reload
if [[ ${start} -eq 1 ]]; then
  run systemctl enable --now logstard.service
elif [[ ${enable} -eq 1 ]]; then
  run systemctl enable logstard.service
else
  echo "install.sh: installed, not started: systemctl enable --now logstard"
fi
