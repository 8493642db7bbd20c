#!/usr/bin/env python3
"""Sorts ThreadSanitizer reports by whose code they are in; fails on logstar's.

  tsan_reports.py REPORT_DIR REPO

REPORT_DIR holds the report files TSan wrote (TSAN_OPTIONS log_path, set by
tests/CMakeLists.txt in a -DLOGSTAR_SANITIZE=thread build). A report belongs
to the first frame of its racing access that is neither TSan's runtime (its
interceptors: memcpy, free, ...), nor the C++ standard library, nor the code
protoc generated from logstar's protos (message constructors, parsers,
accessors: what calls them decides): logstar's when that frame is in REPO's
sources (the build's relative ../ paths), a third party's otherwise (gRPC,
protobuf, oneTBB, Abseil, OpenSSL: Debian builds them without TSan, so it
cannot see their own synchronisation, and their hand-offs between threads
show as races in their code; tests/tsan.supp suppresses those it can name by
their top frame).

Prints the count of each and every logstar report in full; exits 1 when
there is one, 0 otherwise.
"""
import collections
import os
import re
import sys

FRAME = re.compile(r"^\s+#\d+ (?P<function>.*?) (?P<file>\S+) \((?P<module>[^)+]+)")


GENERATED = re.compile(r"(^|/)proto/logstar/v1/[^/]+\.pb\.(h|cc):")


def is_library(function, file):
    """TSan's interceptors, the standard library, protoc's generated code."""
    return ("libsanitizer" in file or "/c++/" in file or
            GENERATED.search(file) is not None or
            function.startswith(("std::", "void std::", "operator new", "operator delete",
                                 "__gnu_cxx::")))


# A oneTBB worker's atomic write, its stack lost, to the stack of the thread
# whose access races with it. A parallel loop's caller keeps TBB's wait
# context on its stack and each worker decrements it (inline header code,
# instrumented) after the loop body's last HappensBefore; the caller's wait
# for it runs inside uninstrumented libtbb, so TSan sees no order between
# the decrement and the caller's later use of that stack memory. logstar's
# own atomics on a caller's stack are written inside the loop body, before
# ExecutionContext::ParallelFor's HappensBefore, and are never reported so.
ACCESS_THREAD = re.compile(r"^\s+(?:Read|Write|Atomic \w+) of size \d+ at \S+ by thread (T\d+)",
                           re.M)
LOST_ATOMIC_WRITE = re.compile(r"Previous atomic write of size \d+ at \S+ by thread (T\d+):\n"
                               r"\s+\[failed to restore the stack\]")
STACK_OF = re.compile(r"Location is stack of thread (T\d+)\.")


def created_by_tbb(report, thread):
    """Whether `thread` was created inside libtbb (a oneTBB worker)."""
    m = re.search(rf"Thread {thread} \(tid=\d+, [^)]*\) created by [^\n]*:\n((?:\s+#\d+ .*\n?)+)",
                  report)
    # Frame #0 is TSan's pthread_create; #1 is who called it.
    frames = m.group(1).splitlines() if m is not None else []
    return len(frames) > 1 and "libtbb.so" in frames[1]


def tbb_wait_context(report):
    """Whether the report is a oneTBB wait context's stack reuse (see above)."""
    access, previous, location = (ACCESS_THREAD.search(report), LOST_ATOMIC_WRITE.search(report),
                                  STACK_OF.search(report))
    return (access is not None and previous is not None and location is not None and
            location.group(1) == access.group(1) and previous.group(1) != access.group(1) and
            created_by_tbb(report, previous.group(1)))


def owner(report, repo):
    """('logstar' | 'third party', the deciding frame) of a report's racing access."""
    if tbb_wait_context(report):
        return ("third party", "oneTBB wait context on the joining thread's stack")
    first = None
    for line in report.splitlines():
        if not line.strip():
            if first is not None:
                break  # the end of the racing access's stack
            continue
        m = FRAME.match(line)
        if not m:
            continue
        function, file = m.group("function"), m.group("file")
        if first is None:
            first = (function, file)
        if is_library(function, file):
            continue
        # The build compiles logstar's sources by relative paths (../engine/...);
        # a system header or a shared library's <null> is a third party's.
        ours = file.startswith("../") or os.path.normpath(file).startswith(repo + os.sep)
        return ("logstar" if ours else "third party", f"{function} {file}")
    return ("third party", "no symbolised frame" if first is None else " ".join(first))


def main():
    report_dir, repo = sys.argv[1], os.path.realpath(sys.argv[2])
    counts = collections.Counter()
    ours = []
    names = sorted(os.listdir(report_dir)) if os.path.isdir(report_dir) else []
    for name in names:
        text = open(os.path.join(report_dir, name), errors="replace").read()
        for report in text.split("WARNING: ThreadSanitizer:")[1:]:
            report = report.split("SUMMARY: ThreadSanitizer")[0]
            who, frame = owner(report, repo)
            counts[who] += 1
            if who == "logstar":
                ours.append((name, report))
    for name, report in ours:
        print(f"== {name}: WARNING: ThreadSanitizer:{report}")
    print(f"tsan: {counts['logstar']} reports in logstar's code, "
          f"{counts['third party']} in third-party code ({len(names)} report files in {report_dir})")
    return 1 if counts["logstar"] else 0


if __name__ == "__main__":
    sys.exit(main())
