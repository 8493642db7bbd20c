#!/usr/bin/env bash
# Runs the five load and fault scripts one after another (about 5-8 min on
# 2 cores) and prints one PASS/FAIL line per script; exits non-zero if any
# failed.
#   tests/load/run_all.sh [BUILD_DIR]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
declare -a summary=()
rc=0
for script in concurrent client_killed daemon_restart soak scale_out; do
  echo "=== ${script}"
  bash "${here}/${script}.sh" "$@"
  s=$?
  if [[ ${s} -eq 0 ]]; then
    summary+=("PASS  ${script}")
  else
    summary+=("FAIL  ${script} (exit ${s})")
    rc=1
  fi
done
echo "=== load and fault tests"
printf '  %s\n' "${summary[@]}"
[[ ${rc} -eq 0 ]] && echo "PASS: all load and fault tests" || echo "FAIL: some load and fault tests failed"
exit "${rc}"
