#!/usr/bin/env bash
# Clang's thread-safety analysis over every source of the project that is
# neither a test nor generated (engine/, server/, clients/, proto/wire/): a
# read or write of an ABSL_GUARDED_BY field without its lock, a call of an
# ABSL_EXCLUSIVE_LOCKS_REQUIRED function without it, a lock not released...
# fails, as -Werror=thread-safety does in a clang build (CMakeLists.txt).
#
# It replays the compile commands of a build that exists (CMake writes
# BUILD_DIR/compile_commands.json; the generated proto headers must have
# been built) with clang++ -fsyntax-only: no code is generated, so its 47
# files cost about 90 s of CPU (2.5 min on 2 busy cores), where a clang build
# of the daemon would cost many minutes.
# Only thread-safety warnings are shown; the build's own compiler keeps the
# others.
#   tests/check_thread_safety.sh [BUILD_DIR]   (default: build/ in the repository)
#   LOGSTAR_CLANG=clang++-14   the compiler (default clang++)
#   LOGSTAR_CLANG_JOBS=N       parallel compiles (default nproc)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "${1:-${repo}/build}" && pwd)"
clang="${LOGSTAR_CLANG:-clang++}"
jobs="${LOGSTAR_CLANG_JOBS:-$(nproc)}"
commands="${build}/compile_commands.json"
[[ -f "${commands}" ]] || { echo "no ${commands}: configure and build first" >&2; exit 2; }
command -v "${clang}" >/dev/null || { echo "no ${clang} (deploy/install-deps.sh installs clang)" >&2; exit 2; }

start=${SECONDS}
list="$(mktemp)"
trap 'rm -f "${list}"' EXIT
# One shell command per source, NUL-separated: the build's compiler (and
# launcher, e.g. ccache) replaced by clang, no object written.
"${LOGSTAR_PYTHON:-python3}" - "${commands}" "${repo}" "${build}" "${clang}" >"${list}" <<'EOF'
import json, os, shlex, sys
commands, repo, build, clang = sys.argv[1:]
repo, build = os.path.realpath(repo), os.path.realpath(build)
roots = [os.path.join(repo, d) + os.sep for d in ("engine", "server", "clients", "proto/wire")]
seen = set()
for entry in json.load(open(commands)):
    source = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    if source in seen or source.startswith(build + os.sep):
        continue
    if not any(source.startswith(r) for r in roots):
        continue
    seen.add(source)
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    while os.path.basename(args[0]) in ("ccache", "sccache"):
        args = args[1:]
    out, skip = [clang], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a != "-c":
            out.append(a)
    out += ["-fsyntax-only", "-Wno-everything", "-Wthread-safety", "-Werror=thread-safety"]
    sys.stdout.write("cd %s && %s\0" % (shlex.quote(entry["directory"]), shlex.join(out)))
EOF
files="$(tr -cd '\0' <"${list}" | wc -c)"
[[ "${files}" -gt 0 ]] || { echo "no project sources in ${commands}" >&2; exit 2; }
if xargs -0 -n 1 -P "${jobs}" bash -c 'eval "$1"' _ <"${list}"; then
  echo "thread safety: ${files} files clean in $((SECONDS - start)) s (${clang} -Wthread-safety)"
else
  echo "thread safety: FAILED (${clang} -Werror=thread-safety over ${files} files)" >&2
  exit 1
fi
