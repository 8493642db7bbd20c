"""Session.stream(reconnect=...) against a real logstard SIGKILLed
mid-stream and restarted on the same port with its --state_dir (as
tests/load/daemon_restart.sh does with `logstar replay --reconnect-s`):
every frame gets exactly one record, in order, with the atoms of the same
frames streamed without a restart (and of the ground truth), with pixels in
the message and through a shared memory ring the new daemon has never
heard of. Without ``reconnect`` the broken stream raises StreamBroken."""
from __future__ import annotations

import os

import numpy as np
import pytest

import logstar
from conftest import FAST, Daemon, f1_score, synth

FRAMES = 12


@pytest.fixture(scope="module")
def frames(workdir):
    return [synth(workdir, seed=s, noise=0.1) for s in (41, 42, 43)]


def _items(frames):
    return [(frames[k % len(frames)].image,
             {"pixel_size": frames[k % len(frames)].pixel_size, "tag": k})
            for k in range(FRAMES)]


def _run(directory, frames, *, kill_after=None, reconnect=0.0, ring=False):
    """Streams the frames to a daemon with a state directory; with
    ``kill_after``, once that many records arrived the daemon is SIGKILLed
    and a new one started on its port with the same state. Returns the
    records, the session's stream_stats and the daemons."""
    state = os.path.join(directory, "state")
    os.makedirs(os.path.join(directory, "d0"), exist_ok=True)
    daemons = [Daemon(os.path.join(directory, "d0"), [f"--state_dir={state}"])]
    port = daemons[0].addr.rsplit(":", 1)[1]
    records = []
    try:
        with logstar.Client(daemons[0].addr) as client:
            session = client.session(prior=f"{frames[0].directory}/prior.json", settings=FAST,
                                     overload="block")
            shm = (client.shared_memory_ring(slots=4, slot_bytes=frames[0].image.nbytes)
                   if ring else None)
            try:
                for record in session.stream(_items(frames), shared_memory=shm,
                                             reconnect=reconnect):
                    records.append(record)
                    if len(records) == kill_after:
                        daemons[0].proc.kill()
                        daemons[0].proc.wait()
                        d1 = os.path.join(directory, "d1")
                        os.makedirs(d1, exist_ok=True)
                        daemons.append(Daemon(d1, [f"--state_dir={state}",
                                                   f"--listen_address=127.0.0.1:{port}",
                                                   "--log_level=info"]))
            finally:
                if shm is not None:
                    shm.close()
                    assert not os.path.exists(os.path.join("/dev/shm", shm.key[1:]))
            return records, session.stream_stats, daemons
    finally:
        for d in daemons:
            d.stop()


@pytest.mark.parametrize("ring", [False, True], ids=["message", "shared_memory"])
def test_a_restarted_daemon_answers_every_frame_once_as_an_unbroken_stream(workdir, frames,
                                                                           ring):
    if ring and not os.path.isdir("/dev/shm"):
        pytest.skip("needs /dev/shm (Linux)")
    name = "ring" if ring else "message"
    expected, _, _ = _run(os.path.join(workdir, f"reconnect-{name}-reference"), frames,
                          ring=ring)
    got, stats, daemons = _run(os.path.join(workdir, f"reconnect-{name}-restart"), frames,
                               kill_after=3, reconnect=30, ring=ring)
    assert len(daemons) == 2, "the daemon was not restarted"
    assert stats.reconnects >= 1, stats
    # Frames were in flight at the kill: the new daemon got them again.
    assert stats.resent >= 1, stats
    assert '"event":"state_loaded"' in daemons[1].log(), "the session was not restored"

    assert [r.kind for r in expected] == ["result"] * FRAMES, expected
    assert [r.kind for r in got] == ["result"] * FRAMES, got
    assert [r.tag for r in got] == list(range(FRAMES))
    sequences = [r.sequence for r in got]
    assert sequences == sorted(set(sequences)), "a frame answered twice or out of order"
    # Which connection answered: the first before the kill, the last one at the end.
    connections = [r.connection for r in got]
    assert connections[:3] == [0, 0, 0] and connections == sorted(connections), connections
    assert connections[-1] == stats.reconnects and [r.connection for r in expected] == [0] * FRAMES
    for a, b in zip(expected, got):
        f = frames[b.tag % len(frames)]
        np.testing.assert_array_equal(a.atoms, b.atoms)
        assert f1_score(b.atoms, f.truth, 0.3 * f.nn_px) >= 0.9


def test_without_reconnect_a_killed_daemon_breaks_the_stream(workdir, frames):
    directory = os.path.join(workdir, "no-reconnect")
    d = os.path.join(directory, "d0")
    os.makedirs(d, exist_ok=True)
    daemon = Daemon(d, [])
    records = []
    try:
        with logstar.Client(daemon.addr) as client:
            session = client.session(prior=f"{frames[0].directory}/prior.json", settings=FAST,
                                     overload="block")
            with pytest.raises(logstar.StreamBroken) as broken:
                for record in session.stream(_items(frames)):
                    records.append(record)
                    if len(records) == 2:
                        daemon.proc.kill()
                        daemon.proc.wait()
    finally:
        daemon.stop()
    assert broken.value.code == "UNAVAILABLE"
    assert broken.value.unanswered, "frames were in flight at the kill"
    assert len(records) + len(broken.value.unanswered) <= FRAMES
    assert session.stream_stats.reconnects == 0
