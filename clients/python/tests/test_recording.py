"""Recording files (.lsr): reading hand-framed bytes, damaged files with
the byte offset, the writer's framing, and `python3 -m logstar replay`
against a real logstard.

The files here are framed by hand with struct and zlib.crc32 as
recording.proto specifies, so the reader is checked against the spec, not
against the writer."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import logstar
from logstar.v1 import frame_pb2, recording_pb2
from conftest import FAST, free_port, synth

MAGIC = b"LSR1\r\n\x1a\n"


def record(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def images(n: int = 3):
    rng = np.random.default_rng(7)
    return [rng.random((4 + i, 5), dtype=np.float32) for i in range(n)]


def handmade(tmp_path, n: int = 3):
    """A recording framed by hand; returns (path, images, record offsets)."""
    header = recording_pb2.RecordingHeader(format_version=1, has_truth=True, description="hand")
    header.settings.prior.pixel_size_angstrom = 0.125
    data = bytearray(MAGIC + record(header.SerializeToString()))
    offsets = []
    imgs = images(n)
    for i, img in enumerate(imgs):
        rf = recording_pb2.RecordedFrame(offset_ns=i * 100_000_000)
        rf.frame.sequence = i + 1
        rf.frame.pixels.dtype = frame_pb2.DTYPE_FLOAT32
        rf.frame.pixels.height, rf.frame.pixels.width = img.shape
        rf.frame.pixels.data = img.astype("<f4").tobytes()
        rf.truth.add(x=1.5 + i, y=2.5, amorphous=(i == 1))
        offsets.append(len(data))
        data += record(rf.SerializeToString())
    path = tmp_path / "hand.lsr"
    path.write_bytes(bytes(data))
    return path, imgs, offsets


def test_reads_a_hand_framed_recording(tmp_path):
    path, imgs, _ = handmade(tmp_path)
    rec = logstar.read_recording(path)
    assert rec.damage is None
    assert rec.header.description == "hand" and rec.header.has_truth
    assert rec.header.settings.prior.pixel_size_angstrom == 0.125
    assert len(rec.frames) == 3
    for i, (rf, img) in enumerate(zip(rec.frames, imgs)):
        assert rf.offset_ns == i * 100_000_000
        assert rf.frame.sequence == i + 1
        np.testing.assert_array_equal(rf.image, img)
        np.testing.assert_array_equal(rf.truth, [[1.5 + i, 2.5]])
        assert list(rf.truth_amorphous) == [i == 1]


def test_truncated_record_gives_its_offset_and_keeps_the_frames_before(tmp_path):
    path, imgs, offsets = handmade(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:offsets[2] + 20])  # the third record's payload cut short
    with pytest.raises(logstar.RecordingError) as e:
        logstar.read_recording(path)
    assert e.value.offset == offsets[2]
    assert f"byte offset {offsets[2]}" in str(e.value) and "truncated" in str(e.value)
    rec = logstar.read_recording(path, allow_damaged=True)
    assert rec.damage.offset == offsets[2]
    assert len(rec.frames) == 2
    for rf, img in zip(rec.frames, imgs):
        np.testing.assert_array_equal(rf.image, img)

    # Cut inside the 8 bytes of length and CRC.
    path.write_bytes(data[:offsets[1] + 5])
    rec = logstar.read_recording(path, allow_damaged=True)
    assert rec.damage.offset == offsets[1] and len(rec.frames) == 1


def test_corrupt_record_gives_its_offset(tmp_path):
    path, imgs, offsets = handmade(tmp_path)
    data = bytearray(path.read_bytes())
    data[offsets[1] + 8 + 30] ^= 0x40  # a bit of the second frame's payload
    path.write_bytes(bytes(data))
    with pytest.raises(logstar.RecordingError, match="CRC") as e:
        logstar.read_recording(path)
    assert e.value.offset == offsets[1] and e.value.frames_before == 1
    # Iterating yields the intact frame, then raises.
    seen = []
    with pytest.raises(logstar.RecordingError):
        with logstar.RecordingReader(path) as reader:
            for rf in reader:
                seen.append(rf)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0].image, imgs[0])

    # A length field past 1 GiB is corruption too.
    data = bytearray(path.read_bytes())
    data[offsets[1]:offsets[1] + 4] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    with pytest.raises(logstar.RecordingError, match="1 GiB") as e:
        logstar.read_recording(path)
    assert e.value.offset == offsets[1]


def test_not_a_recording(tmp_path):
    path = tmp_path / "x.lsr"
    path.write_bytes(b"\x93NUMPY\x01\x00" + b"\x00" * 64)
    with pytest.raises(logstar.RecordingError, match="not a logstar recording") as e:
        logstar.read_recording(path)
    assert e.value.offset == 0
    path.write_bytes(MAGIC)
    with pytest.raises(logstar.RecordingError, match="no header") as e:
        logstar.read_recording(path)
    assert e.value.offset == 8
    header = recording_pb2.RecordingHeader(format_version=2)
    path.write_bytes(MAGIC + record(header.SerializeToString()))
    with pytest.raises(logstar.RecordingError, match="format_version 2"):
        logstar.read_recording(path)


def test_writer_frames_records_as_specified(tmp_path):
    path = tmp_path / "w.lsr"
    imgs = images(2)
    with logstar.RecordingWriter(path, description="written", has_truth=True) as w:
        w.write(imgs[0], {"pixel_size": 0.2}, offset_ns=0, truth=[[1.0, 2.0]])
        w.write(imgs[1].astype(np.float64), offset_ns=5)
    data = path.read_bytes()
    assert data[:8] == MAGIC
    # Walk the records by hand.
    pos, payloads = 8, []
    while pos < len(data):
        length, crc = struct.unpack_from("<II", data, pos)
        payload = data[pos + 8:pos + 8 + length]
        assert len(payload) == length and zlib.crc32(payload) == crc
        payloads.append(payload)
        pos += 8 + length
    assert pos == len(data) and len(payloads) == 3
    header = recording_pb2.RecordingHeader.FromString(payloads[0])
    assert header.format_version == 1 and header.description == "written" and header.has_truth
    f1, f2 = (recording_pb2.RecordedFrame.FromString(p) for p in payloads[1:])
    assert (f1.frame.sequence, f2.frame.sequence) == (1, 2)
    assert (f1.offset_ns, f2.offset_ns) == (0, 5)
    assert f1.frame.pixel_size_x_angstrom == 0.2 and (f1.truth[0].x, f1.truth[0].y) == (1.0, 2.0)
    assert f2.frame.pixels.dtype == frame_pb2.DTYPE_FLOAT64
    assert f2.frame.pixels.data == imgs[1].astype("<f8").tobytes()


# --- python3 -m logstar replay against logstard


def run_module(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "logstar", *args], capture_output=True,
                          text=True, timeout=timeout, env=os.environ)


@pytest.fixture(scope="module")
def synth_recording(workdir, tmp_path_factory):
    frames = [synth(workdir, seed=10 + i, noise=0.1, drift=0.5 * i) for i in range(3)]
    settings = logstar.session_settings(prior=frames[0].prior, settings=FAST)
    path = tmp_path_factory.mktemp("rec") / "synth.lsr"
    with logstar.RecordingWriter(path, settings, has_truth=True) as w:
        for i, f in enumerate(frames):
            w.write(f.image, {"pixel_size": f.pixel_size}, offset_ns=i * 20_000_000,
                    truth=f.truth)
    return path


def test_replay_summarises_and_succeeds(daemon, synth_recording):
    p = run_module("replay", str(synth_recording), "--server", daemon.addr, "--speed", "max")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "analysed" in p.stdout and "3" in p.stdout.split("analysed")[1].splitlines()[0]
    f1_line = [l for l in p.stdout.splitlines() if l.startswith("F1 vs truth")]
    assert f1_line and float(f1_line[0].split("min")[1]) >= 0.9, p.stdout
    assert "sent 3  answered 3" in p.stderr  # the progress line


def test_replay_resumes_a_named_session_and_writes_a_line_per_answer(daemon, synth_recording,
                                                                     tmp_path):
    rec = logstar.read_recording(synth_recording)
    lines = []
    for run in range(2):
        out = tmp_path / "sub" / f"r{run}.jsonl"  # its directory is made
        p = run_module("replay", str(synth_recording), "--server", daemon.addr, "--speed", "max",
                       "--session", "py-named", "--results", str(out), "--reconnect-s", "5")
        assert p.returncode == 0, p.stdout + p.stderr
        assert any(l.split() == ["session", "py-named"] for l in p.stdout.splitlines()), p.stdout
        assert any(l.split()[:2] == ["reconnects", "0"] for l in p.stdout.splitlines()), p.stdout
        lines.append([json.loads(l) for l in out.read_text().splitlines()])
    with logstar.Client(daemon.addr) as client:
        info = client.session(session_id="py-named").info()
    # One session for both runs: its counters hold the frames of both.
    assert info.session_id == "py-named" and info.counters.frames_analysed == 2 * len(rec.frames)
    for run in lines:
        assert len(run) == len(rec.frames)
        assert [r["file_sequence"] for r in run] == [f.frame.sequence for f in rec.frames]
        assert [r["loop"] for r in run] == [0] * len(rec.frames)
        assert {r["status"] for r in run} == {"result"} and {r["connection"] for r in run} == {0}
        for r, f in zip(run, rec.frames):
            assert r["num_atoms"] == len(r["atoms_xy_sigma"]) > 0
            assert set(r["cache"]) == {"hits", "misses", "retunes"}
            assert r["latency_ms"] >= r["server_total_ms"] > 0
            assert r["f1"] >= 0.9
    # The second run resumed the first's session: its cache was warm.
    assert sum(r["cache"]["misses"] for r in lines[1]) == 0
    assert sum(r["cache"]["hits"] for r in lines[1]) >= 1


def test_replay_of_a_truncated_file_fails_and_names_the_offset(daemon, synth_recording, tmp_path):
    data = synth_recording.read_bytes()
    cut = tmp_path / "cut.lsr"
    cut.write_bytes(data[:-100])
    # The third frame's record starts where the first two end.
    rec = logstar.read_recording(synth_recording)
    third = rec.frames[2].position
    p = run_module("replay", str(cut), "--server", daemon.addr, "--speed", "10")
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"byte offset {third}" in p.stderr
    sent = [l for l in p.stdout.splitlines() if l.startswith("frames sent")]
    assert sent and sent[0].split()[-3:] == ["2", "of", "2"], p.stdout


def test_replay_with_a_bad_frame_exits_non_zero(daemon, workdir, tmp_path):
    f = synth(workdir, seed=10)
    nan = f.image.copy()
    nan[0, 0] = np.nan
    path = tmp_path / "nan.lsr"
    with logstar.RecordingWriter(path, logstar.session_settings(prior=f.prior, settings=FAST)) as w:
        w.write(f.image, offset_ns=0)
        w.write(nan, offset_ns=1)
    p = run_module("replay", str(path), "--server", daemon.addr, "--speed", "max")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "NaN" in p.stderr
    assert any(l.split() == ["failed", "1"] for l in p.stdout.splitlines()), p.stdout


def test_replay_of_an_unreachable_server_exits_2(synth_recording):
    p = run_module("replay", str(synth_recording), "--server", f"127.0.0.1:{free_port()}",
                   "--connect-timeout", "0.5")
    assert p.returncode == 2 and "cannot connect" in p.stderr


def test_record_from_files(tmp_path, workdir):
    f = synth(workdir, seed=10)
    out = tmp_path / "r.lsr"
    p = run_module("record", "--from", os.path.join(f.directory, "image.npy"),
                   "--prior", os.path.join(f.directory, "prior.json"), "--out", str(out),
                   "--fps", "4")
    assert p.returncode == 0, p.stderr
    rec = logstar.read_recording(out)
    assert len(rec.frames) == 1
    np.testing.assert_array_equal(rec.frames[0].image, f.image)
    assert rec.header.settings.prior.nearest_neighbor_angstrom == f.prior["nearest_neighbor_angstrom"]
