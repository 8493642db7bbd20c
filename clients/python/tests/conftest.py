"""Fixtures for the Python client's tests: a real logstard process and
generated frames with their ground truth.

Run by ctest (tests/CMakeLists.txt, test python_client_test), which sets:
  LOGSTARD_BINARY  the built daemon
  LOGSTAR_CLI      the built `logstar` tool (its `synth` makes the frames)
  PYTHONPATH       the built package (clients/python in the build tree)
Tests needing a binary that is not given are skipped with the reason.

Ground truth comes from `logstar synth` (atoms.csv, meta.json), and atoms are
matched with scipy's optimal assignment, not with logstar.score.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List, Optional

# Before grpc initialises in this process: short backup polling, so that
# channels to a stopped daemon close quickly (as tests/integration does).
os.environ.setdefault("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50")

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

LOGSTARD = os.environ.get("LOGSTARD_BINARY")
LOGSTAR_CLI = os.environ.get("LOGSTAR_CLI")

# One window over the 128² test frames and few evaluations: well under a
# second per frame.
FAST = {"window": 128, "evaluations": 8, "seed": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A logstard child process on a free loopback port."""

    def __init__(self, directory: str, extra: List[str]) -> None:
        if not LOGSTARD:
            pytest.skip("LOGSTARD_BINARY not set (run through ctest)")
        self.dir = directory
        port_file = os.path.join(directory, "port")
        self.log_path = os.path.join(directory, "logstard.log")
        env = dict(os.environ, GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS="50")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [LOGSTARD, "--listen_address=127.0.0.1:0", f"--port_file={port_file}",
                 "--engine_threads=2", "--log_level=warning", *extra],
                stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if os.path.exists(port_file):
                text = open(port_file).read().strip()
                if text:
                    self.addr = f"127.0.0.1:{int(text)}"
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"logstard did not come up:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


@pytest.fixture(scope="session")
def workdir():
    d = tempfile.mkdtemp(prefix="logstar-pytest-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon(workdir):
    directory = os.path.join(workdir, "daemon")
    os.makedirs(directory, exist_ok=True)
    d = Daemon(directory, [])
    yield d
    code = d.stop()
    assert code == 0, f"logstard exited with {code}:\n{d.log()}"


@pytest.fixture(scope="module")
def client(daemon):
    """A client of the shared daemon (modules may define their own)."""
    import logstar  # here, not at the top: the fixtures above need no package
    with logstar.Client(daemon.addr) as c:
        yield c


TOKEN = "s3cret-token"


@pytest.fixture(scope="session")
def token_daemon(workdir):
    directory = os.path.join(workdir, "token-daemon")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "token"), "w") as f:
        f.write(TOKEN + "\n")
    d = Daemon(directory, [f"--auth_token_file={directory}/token"])
    yield d
    d.stop()


@dataclasses.dataclass
class SynthFrame:
    image: np.ndarray          # float32, rows × columns
    truth: np.ndarray          # N×2 (x = column, y = row), px, from atoms.csv
    prior: Dict                # prior.json
    pixel_size: float          # Å/px
    nn_px: float               # nearest-neighbour distance, px (meta.json)
    directory: str


def synth(workdir: str, seed: int, noise: float = 0.1, size: int = 128,
          drift: float = 0.0, pixel_size: float = 0.0) -> SynthFrame:
    """A frame made by `logstar synth`, with its ground truth (pixel_size 0:
    synth's default)."""
    if not LOGSTAR_CLI:
        pytest.skip("LOGSTAR_CLI not set (run through ctest)")
    out = os.path.join(workdir, f"synth-{seed}-{noise}-{size}-{drift}-{pixel_size}")
    if not os.path.exists(os.path.join(out, "meta.json")):
        subprocess.run([LOGSTAR_CLI, "synth", "--out", out, "--size", str(size), "--noise",
                        str(noise), "--seed", str(seed), "--drift", str(drift),
                        "--pixel-size", str(pixel_size)],
                       check=True, capture_output=True, timeout=60)
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(out, "prior.json")) as f:
        prior = json.load(f)
    rows = np.loadtxt(os.path.join(out, "atoms.csv"), delimiter=",", skiprows=1,
                      usecols=(0, 1), ndmin=2)
    return SynthFrame(np.load(os.path.join(out, "image.npy")), rows, prior,
                      meta["pixel_size_angstrom"], meta["nn_min_px"], out)


def f1_score(detected: np.ndarray, truth: np.ndarray, radius: float) -> float:
    """F1 of an optimal one-to-one matching within radius px."""
    if len(detected) == 0 or len(truth) == 0:
        return 0.0
    d = cdist(detected, truth)
    cost = np.where(d <= radius, d, 1e9)
    r, c = linear_sum_assignment(cost)
    matched = int(np.sum(d[r, c] <= radius))
    return 2.0 * matched / (len(detected) + len(truth))
