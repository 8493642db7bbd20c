"""Frames through a shared memory ring against a real logstard: the same
atoms as the frames sent in the message (and the ground truth), slots
reused only after their frame's answer, refused frames giving their slot
back, and the region unregistered and removed on close."""
from __future__ import annotations

import os

import numpy as np
import pytest

import logstar
from conftest import FAST, f1_score, synth

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm (Linux)")


@pytest.fixture(scope="module")
def frames(workdir):
    return [synth(workdir, seed=s, noise=0.1) for s in (11, 12, 13)]


@pytest.fixture(scope="module")
def client(daemon):
    with logstar.Client(daemon.addr) as c:
        yield c


def _items(frames, dtype=None):
    out = []
    for i, f in enumerate(frames):
        image = f.image
        if dtype is not None:  # detector counts: 200 dark, 4200 at the brightest pixel
            lo, hi = float(image.min()), float(image.max())
            image = np.round((image - lo) / (hi - lo) * 4000 + 200).astype(dtype)
        out.append((image, {"pixel_size": f.pixel_size, "tag": i}))
    return out


def test_ring_frames_find_the_same_atoms_as_frames_in_the_message(client, frames):
    prior = f"{frames[0].directory}/prior.json"
    # Six frames through two slots: every slot is reused twice.
    items = _items(frames) * 2
    in_message = list(client.session(prior=prior, settings=FAST, overload="block")
                      .stream(items))
    with client.shared_memory_ring(slots=2, slot_bytes=frames[0].image.nbytes) as ring:
        assert [r.region for r in client.shared_memory_regions()] == [ring.region]
        via_ring = list(client.session(prior=prior, settings=FAST, overload="block")
                        .stream(items, shared_memory=ring))
    assert [r.kind for r in via_ring] == ["result"] * 6, via_ring
    for a, b, (image, meta) in zip(in_message, via_ring, items):
        f = frames[meta["tag"]]
        assert b.tag == meta["tag"]
        np.testing.assert_array_equal(a.atoms, b.atoms)
        assert f1_score(b.atoms, f.truth, 0.3 * f.nn_px) >= 0.9


def test_uint16_counts_and_a_frame_too_big_for_a_slot(client, frames):
    prior = f"{frames[0].directory}/prior.json"
    items = _items(frames, np.uint16)
    big = np.zeros((frames[0].image.shape[0] * 2, frames[0].image.shape[1]), np.uint16)
    items.insert(1, (big, {"tag": "big"}))
    slot_bytes = frames[0].image.size * 2  # one uint16 frame per slot
    with client.shared_memory_ring(slots=1, slot_bytes=slot_bytes) as ring:
        records = list(client.session(prior=prior, settings=FAST, overload="block")
                       .stream(items, shared_memory=ring))
    assert [r.kind for r in records] == ["result", "error", "result", "result"], records
    assert records[1].origin == "client" and "more than the shared memory ring's slots" in \
        records[1].message
    for r in (records[0], records[2], records[3]):
        f = frames[r.tag]
        assert f1_score(r.atoms, f.truth, 0.3 * f.nn_px) >= 0.9


def test_close_unregisters_and_removes_the_object(client):
    ring = client.shared_memory_ring(slots=1, slot_bytes=1000, mode=0o640)
    path = os.path.join("/dev/shm", ring.key[1:])
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert os.stat(path).st_size == 1024  # slots start on 64-byte boundaries
    regions = {r.region: r for r in client.shared_memory_regions()}
    assert regions[ring.region].key == ring.key
    assert regions[ring.region].byte_size == 1024
    ring.close()
    ring.close()  # idempotent
    assert not os.path.exists(path)
    assert ring.region not in {r.region for r in client.shared_memory_regions()}


def test_a_forgotten_region_fails_its_frames_by_name(client, frames):
    prior = f"{frames[0].directory}/prior.json"
    with client.shared_memory_ring(slots=1, slot_bytes=frames[0].image.nbytes) as ring:
        client._unregister_shared_memory(ring.region)  # as a daemon restart would
        records = list(client.session(prior=prior, settings=FAST, overload="block")
                       .stream(_items(frames[:2]), shared_memory=ring))
        assert [r.kind for r in records] == ["error", "error"]
        assert records[0].origin == "server"
        assert f'region "{ring.region}" is not registered' in records[0].message
        ring.register()
        (r,) = client.session(prior=prior, settings=FAST, overload="block").stream(
            _items(frames[:1]), shared_memory=ring)
        assert r.ok
