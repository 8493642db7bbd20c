#!/usr/bin/env bash
# Checks that PROGRAM, linked with the C++ client library alone
# (client_alone.cc), holds no code of the engine or the daemon: no symbol of
# namespace logstar that one of the ARCHIVEs (liblogstar_engine.a, ...)
# defines, and no oneTBB among the shared libraries it needs.
#   check_client_links.sh PROGRAM ARCHIVE...
set -euo pipefail
program="$1"
shift
# Strong definitions (text, data, bss, read-only) in namespace logstar;
# inline functions and templates are weak (W) and may be in both.
defined() {
  nm -C --defined-only "$@" | awk '$2 ~ /^[TDBR]$/ { $1 = ""; $2 = ""; sub(/^  /, ""); print }' |
    grep '^logstar::' | sort -u
}
found="$(comm -12 <(defined "${program}") <(defined "$@"))"
if [[ -n "${found}" ]]; then
  echo "FAIL: ${program} holds code of $*:" >&2
  head -n 20 <<<"${found}" >&2
  exit 1
fi
if readelf -d "${program}" | grep -E 'NEEDED.*\[libtbb' >&2; then
  echo "FAIL: ${program} needs oneTBB" >&2
  exit 1
fi
echo "ok: $(defined "${program}" | wc -l) logstar symbols in ${program##*/}, none from $# engine/daemon archives"
