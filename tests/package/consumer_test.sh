#!/usr/bin/env bash
# The C++ package end to end (ctest: package_consumer_test): installs the
# dev component of BUILD_DIR into a temporary prefix, builds
# tests/package/consumer (find_package(logstar) and nothing else of the
# tree) with the README's quickstart.cc, checks that the build took the
# installed headers and libraries, not the tree's, and runs the program
# against a real logstard (clients/examples/run_quickstart.py: loopback port
# the kernel picks, atoms checked against the lattice it draws).
#   consumer_test.sh BUILD_DIR LOGSTARD PYTHON [CXX_COMPILER [LAUNCHER]]
set -euo pipefail
build="$(cd "$1" && pwd)"
logstard="$2"
python="$3"
cxx="${4:-}"
launcher="${5:-}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/logstar-consumer.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
prefix="${work}/prefix"

cmake --install "${build}" --component dev --prefix "${prefix}" >"${work}/install.log"
args=(-S "${repo}/tests/package/consumer" -B "${work}/build" -G Ninja -DCMAKE_BUILD_TYPE=Release
      -DCMAKE_PREFIX_PATH="${prefix}" -DLOGSTAR_QUICKSTART="${repo}/clients/examples/quickstart.cc"
      -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)
[[ -n "${cxx}" ]] && args+=(-DCMAKE_CXX_COMPILER="${cxx}")
[[ -n "${launcher}" ]] && args+=(-DCMAKE_CXX_COMPILER_LAUNCHER="${launcher}")
if ! cmake "${args[@]}" >"${work}/configure.log" 2>&1; then
  cat "${work}/configure.log" >&2
  echo "FAIL: the consumer project does not configure against ${prefix}" >&2
  exit 1
fi
cmake --build "${work}/build" >"${work}/build.log" 2>&1 || {
  cat "${work}/build.log" >&2
  echo "FAIL: the consumer project does not build" >&2
  exit 1
}

# find_package found the temporary install, and the compile and link lines
# take no header directory of the tree and nothing from its build.
found="$(sed -n 's/^logstar_DIR:PATH=//p' "${work}/build/CMakeCache.txt")"
if [[ "${found}" != "${prefix}/lib/cmake/logstar" ]]; then
  echo "FAIL: logstar_DIR is '${found}', not the install in ${prefix}" >&2
  exit 1
fi
for pattern in "-I${repo}" "-isystem ${repo}" "${build}/"; do
  if grep -Fqs -- "${pattern}" "${work}/build/compile_commands.json" "${work}/build/build.ninja"; then
    echo "FAIL: the consumer's build uses the tree (${pattern}):" >&2
    grep -Fs -- "${pattern}" "${work}/build/compile_commands.json" "${work}/build/build.ninja" | head -3 >&2
    exit 1
  fi
done
echo "ok: quickstart built with find_package(logstar) from ${prefix}"

"${python}" "${repo}/clients/examples/run_quickstart.py" --logstard "${logstard}" -- \
  "${work}/build/quickstart"
