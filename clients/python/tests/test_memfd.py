"""Frames through a sealed memory file (issue 21, item 2) against a real
logstard on a Unix socket: the ring becomes a memfd the daemon maps, its
frames find the atoms of the same frames in the message (and the ground
truth); over TCP the ring stays POSIX shared memory."""
from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import time

import numpy as np
import pytest

import logstar
from conftest import FAST, LOGSTARD, f1_score, synth
from logstar.shared_memory import memfd_socket

pytestmark = pytest.mark.skipif(
    not hasattr(os, "memfd_create") or not hasattr(socket, "send_fds"),
    reason="needs os.memfd_create and socket.send_fds (Linux, Python >= 3.9)")


@pytest.fixture(scope="module")
def unix_addr(workdir):
    if not LOGSTARD:
        pytest.skip("LOGSTARD_BINARY not set (run through ctest)")
    sock = os.path.join(workdir, "memfd.sock")
    log = open(os.path.join(workdir, "memfd-logstard.log"), "wb")
    proc = subprocess.Popen([LOGSTARD, f"--listen_address=unix:{sock}", "--engine_threads=2",
                             "--log_level=warning"], stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not os.path.exists(sock + ".fd") and time.monotonic() < deadline:
        assert proc.poll() is None, "logstard exited"
        time.sleep(0.02)
    yield f"unix:{sock}"
    proc.terminate()
    assert proc.wait(timeout=60) == 0
    log.close()


def test_memfd_socket_sits_beside_the_unix_socket():
    assert memfd_socket("unix:/run/l.sock") == "/run/l.sock.fd"
    assert memfd_socket("unix:///run/l.sock") == "/run/l.sock.fd"
    assert memfd_socket("unix-abstract:l") == "\0l.fd"
    assert memfd_socket("127.0.0.1:5") is None


def test_memfd_ring_frames_find_the_atoms_of_frames_in_the_message(unix_addr, workdir):
    frames = [synth(workdir, seed=s, noise=0.1) for s in (21, 22)]
    prior = f"{frames[0].directory}/prior.json"
    items = [(f.image, {"pixel_size": f.pixel_size, "tag": i}) for i, f in enumerate(frames)] * 2
    with logstar.Client(unix_addr) as client:
        in_message = list(client.session(prior=prior, settings=FAST, overload="block")
                          .stream(items))
        with client.shared_memory_ring(slots=2, slot_bytes=frames[0].image.nbytes) as ring:
            assert ring.is_memfd
            assert ring.key.startswith("memfd:")
            seals = fcntl.fcntl(ring._memfd, fcntl.F_GET_SEALS)
            assert seals & fcntl.F_SEAL_SHRINK and seals & fcntl.F_SEAL_GROW
            assert [r.region for r in client.shared_memory_regions()] == [ring.region]
            via_ring = list(client.session(prior=prior, settings=FAST, overload="block")
                            .stream(items, shared_memory=ring))
        assert ring.region not in {r.region for r in client.shared_memory_regions()}
        # memfd=False keeps POSIX shared memory on the same daemon.
        with client.shared_memory_ring(slots=1, slot_bytes=64, memfd=False) as posix:
            assert not posix.is_memfd and posix.key.startswith("/")
    assert [r.kind for r in via_ring] == ["result"] * 4, via_ring
    for a, b, (image, meta) in zip(in_message, via_ring, items):
        f = frames[meta["tag"]]
        np.testing.assert_array_equal(a.atoms, b.atoms)
        assert f1_score(b.atoms, f.truth, 0.3 * f.nn_px) >= 0.9


def test_over_tcp_the_ring_is_posix_shared_memory(client):
    with client.shared_memory_ring(slots=1, slot_bytes=64) as ring:
        assert not ring.is_memfd
        assert ring.key.startswith("/logstar-")
    with pytest.raises(logstar.LogstarError):
        client.shared_memory_ring(slots=1, slot_bytes=64, memfd=True)
