"""Runs a quickstart program against a real logstard and checks what it prints.

    run_quickstart.py --logstard build/server/logstard -- PROGRAM [ARGS...]
    run_quickstart.py --logstard ... --python-package clients/python -- quickstart.py

With --python-package, first installs that package as a user does: a
`python3 -m venv --system-site-packages` in a temporary directory and
`pip install --no-build-isolation --no-index` (offline, Debian's grpcio,
protobuf and numpy) of a copy of it (with proto/, so the repository stays
clean); checks that the venv imports logstar from its own site-packages, not
from PYTHONPATH (which is removed); then runs PROGRAM with the venv's Python.

Starts logstard on a loopback port the kernel picks, runs PROGRAM ARGS...
ADDRESS, and checks that it exits 0 and prints one line per frame,
"frame N: K atoms, e.g. x=X y=Y", for frames 1..5, where K is the number of
columns the quickstarts generate (a 16 × 16 lattice of 16 px on 256²) within
2 %, and (X, Y) lies within 0.5 px of a lattice site (8 + 16 i, 8 + 16 j).
The expectation comes from the lattice the programs draw, not from logstar.
Then stops logstard with SIGTERM and requires exit code 0. Run by ctest
(tests/CMakeLists.txt: quickstart_cc_test, quickstart_py_test).
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

FRAMES = 5
COLUMNS = 16 * 16
SPACING, FIRST = 16.0, 8.0
LINE = re.compile(r"frame (\d+): (\d+) atoms, e\.g\. x=([-\d.]+) y=([-\d.]+)$")


def start_daemon(logstard, directory):
    port_file = os.path.join(directory, "port")
    log = open(os.path.join(directory, "logstard.log"), "wb")
    proc = subprocess.Popen([logstard, "--listen_address=127.0.0.1:0", f"--port_file={port_file}",
                             "--engine_threads=2", "--log_level=warning"],
                            stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.exists(port_file):
            text = open(port_file).read().strip()
            if text:
                return proc, f"127.0.0.1:{int(text)}"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    sys.exit(f"FAIL: logstard did not come up:\n{open(log.name, errors='replace').read()}")


def install_package(package, directory):
    """A venv in `directory` with `package` (clients/python) pip-installed;
    returns its Python."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(package)))
    source = os.path.join(directory, "src")
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    shutil.copytree(package, os.path.join(source, "clients", "python"), ignore=ignore)
    shutil.copytree(os.path.join(repo, "proto"), os.path.join(source, "proto"), ignore=ignore)
    venv = os.path.join(directory, "venv")
    python = os.path.join(venv, "bin", "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for command in ([sys.executable, "-m", "venv", "--system-site-packages", venv],
                    [python, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                     "--no-cache-dir", "--disable-pip-version-check", "--quiet",
                     os.path.join(source, "clients", "python")]):
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        if run.returncode != 0:
            sys.exit(f"FAIL: {' '.join(command)} exited {run.returncode}:\n{run.stdout}{run.stderr}")
    where = subprocess.run([python, "-c", "import logstar.v1.service_pb2_grpc, logstar; "
                            "print(logstar.__file__)"], capture_output=True, text=True,
                           env=env, cwd=directory, timeout=60)
    site = os.path.join(venv, "lib")
    if where.returncode != 0 or not os.path.abspath(where.stdout.strip()).startswith(site):
        sys.exit(f"FAIL: the venv does not import the installed logstar: "
                 f"{where.stdout}{where.stderr}")
    print(f"installed: {where.stdout.strip()}")
    return python, env


def near_site(v):
    return abs((v - FIRST) / SPACING - round((v - FIRST) / SPACING)) * SPACING <= 0.5


def check(output):
    """The problems with the program's output; empty when it is right."""
    problems, seen = [], []
    for line in output.splitlines():
        m = LINE.match(line.strip())
        if not m:
            problems.append(f"unexpected line: {line!r}")
            continue
        sequence, count, x, y = int(m[1]), int(m[2]), float(m[3]), float(m[4])
        seen.append(sequence)
        if abs(count - COLUMNS) > 0.02 * COLUMNS:
            problems.append(f"frame {sequence}: {count} atoms, expected {COLUMNS} ± 2 %")
        if not (near_site(x) and near_site(y)):
            problems.append(f"frame {sequence}: atom at ({x}, {y}) is not on a lattice site")
    if seen != list(range(1, FRAMES + 1)):
        problems.append(f"frames answered {seen}, expected 1..{FRAMES} in order")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--logstard", required=True)
    parser.add_argument("--python-package", help="install this package (clients/python) in a "
                        "venv and run PROGRAM with the venv's Python")
    parser.add_argument("program", nargs="+")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="logstar-quickstart-") as directory:
        program, env = args.program, None
        if args.python_package:
            python, env = install_package(args.python_package, directory)
            program = [python, *program]
        daemon, address = start_daemon(args.logstard, directory)
        try:
            run = subprocess.run([*program, address], capture_output=True, text=True,
                                 timeout=240, env=env, cwd=directory)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon_code = daemon.wait(timeout=60)
        print(run.stdout, end="")
        print(run.stderr, end="", file=sys.stderr)
        problems = check(run.stdout)
        if run.returncode != 0:
            problems.append(f"exit code {run.returncode}")
        if daemon_code != 0:
            problems.append(f"logstard exited with {daemon_code}")
        if problems:
            log = open(os.path.join(directory, "logstard.log"), errors="replace").read()
            sys.exit("FAIL:\n  " + "\n  ".join(problems) + f"\nlogstard's log:\n{log}")
    print("PASS")


if __name__ == "__main__":
    main()
