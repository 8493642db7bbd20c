#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang in their own build
# directory and runs each for a bounded time from its seed corpus and its
# regressions; fails on any crash, leak, sanitizer report or timeout.
#   tests/fuzz/run_fuzz_smoke.sh [TARGET...]      (default: every target)
#   LOGSTAR_FUZZ_SECONDS=60       run time per target
#   LOGSTAR_FUZZ_BUILD_DIR=DIR    default build-fuzz/ in the repository
#   LOGSTAR_FUZZ_JOBS=N           build parallelism (default nproc)
# Inputs the fuzzer finds are written to a scratch directory, never to the
# committed corpus; a crash leaves crash-* files in the build directory's
# fuzz-out/TARGET/ to copy into tests/fuzz/regressions/TARGET/ once fixed.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${LOGSTAR_FUZZ_BUILD_DIR:-${repo}/build-fuzz}"
seconds="${LOGSTAR_FUZZ_SECONDS:-60}"
jobs="${LOGSTAR_FUZZ_JOBS:-$(nproc)}"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(frame recording config)

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
start=${SECONDS}
# Only the fuzz targets and the libraries they link are built: no tests,
# no daemon, no CLI.
cmake -S "${repo}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" \
  -DLOGSTAR_FUZZ=ON -DLOGSTAR_BUILD_TESTS=OFF -DLOGSTAR_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "${build}" --parallel "${jobs}" --target "${targets[@]/#/fuzz_}"
echo "fuzz smoke: built in $((SECONDS - start)) s"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
for t in "${targets[@]}"; do
  out="${build}/fuzz-out/${t}"
  rm -rf "${out}"
  mkdir -p "${out}/new"
  t0=${SECONDS}
  # New inputs go to new/ (first corpus dir); the committed seeds are read only.
  if "${build}/tests/fuzz/fuzz_${t}" "${out}/new" \
      "${repo}/tests/fuzz/corpus/${t}" "${repo}/tests/fuzz/regressions/${t}" \
      -max_total_time="${seconds}" -timeout=25 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="${out}/" -print_final_stats=1 >"${out}/log.txt" 2>&1; then
    echo "fuzz smoke: ${t}: ok in $((SECONDS - t0)) s ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "${out}/log.txt" | grep -o '[0-9]*$') runs)"
  else
    echo "fuzz smoke: ${t}: FAILED; log ${out}/log.txt, inputs ${out}/crash-* / timeout-* / leak-*" >&2
    tail -n 60 "${out}/log.txt" >&2
    status=1
  fi
done
exit "${status}"
