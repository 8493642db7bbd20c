"""Compressed pixels (logstar.compression, issue 21 item 3): the shuffle
against hand-split bytes, the payload against zstandard's own reader, and
through a real logstard: frames the Python client compresses give the atoms
of the same frames uncompressed, a corrupt payload gets an error naming
the field while the stream goes on."""
from __future__ import annotations

import numpy as np
import pytest

import logstar
from logstar import compression
from logstar.v1 import frame_pb2
from conftest import FAST, synth

zstandard = pytest.importorskip("zstandard")


def counts(image: np.ndarray) -> np.ndarray:
    """A generated frame as a detector's uint16 counts, 0 to 300."""
    lo, hi = float(image.min()), float(image.max())
    return np.rint((image - lo) * (300.0 / (hi - lo))).astype(np.uint16)


def test_shuffle_groups_byte_k_of_every_element():
    v = np.array([0x0102, 0x0304, 0x0506], dtype="<u2").tobytes()
    assert compression.shuffle(v, 2) == bytes([2, 4, 6, 1, 3, 5])
    assert compression.unshuffle(compression.shuffle(v, 2), 2) == v
    data = np.random.default_rng(1).integers(0, 256, 8 * 33, dtype=np.uint8).tobytes()
    for itemsize in (1, 2, 4, 8):
        assert compression.unshuffle(compression.shuffle(data, itemsize), itemsize) == data


def test_payload_is_shuffled_zstd_of_the_pixels():
    rng = np.random.default_rng(2)
    image = rng.poisson(20.0, size=(64, 48)).astype(np.uint16)
    pixels = frame_pb2.PixelData(dtype=frame_pb2.DTYPE_UINT16, width=48, height=64,
                                 data=image.tobytes())
    compression.compress_pixels(pixels)
    assert pixels.WhichOneof("source") == "compressed"
    c = pixels.compressed
    assert (c.codec, c.shuffle_bytes, c.uncompressed_size) == (
        frame_pb2.PIXEL_CODEC_ZSTD, 2, 64 * 48 * 2)
    assert len(c.data) < 64 * 48  # the high bytes are all zero
    plain = zstandard.ZstdDecompressor().decompress(c.data)
    assert plain[:64 * 48] == (image & 0xFF).astype(np.uint8).tobytes()
    assert plain[64 * 48:] == (image >> 8).astype(np.uint8).tobytes()
    assert compression.decompress_pixels(pixels) == image.tobytes()


def test_a_large_frame_compressed_in_parts_comes_back():
    image = np.random.default_rng(3).poisson(30.0, size=(1024, 1536)).astype(np.uint16)
    pixels = frame_pb2.PixelData(dtype=frame_pb2.DTYPE_UINT16, width=1536, height=1024,
                                 data=image.tobytes())
    compression.compress_pixels(pixels)  # 3 MB: two threads
    plain = zstandard.ZstdDecompressor().decompress(pixels.compressed.data,
                                                   max_output_size=image.nbytes)
    assert compression.unshuffle(plain, 2) == image.tobytes()


def test_an_unknown_codec_is_refused():
    with pytest.raises(logstar.InvalidSettings, match="'none', 'zstd' or 'zstd-delta', got 'lz4'"):
        compression.parse_codec("lz4")


def test_compressed_frames_give_the_atoms_of_uncompressed_ones(daemon, workdir):
    frames = [synth(workdir, seed=s) for s in (41, 42)]
    items = [counts(f.image) for f in frames]
    atoms = {}
    for name in ("none", "zstd", "zstd-delta"):
        with logstar.Client(daemon.addr, compression=name) as c:
            session = c.session(prior=frames[0].prior, settings=FAST, overload="block")
            assert session.compression == name
            records = list(session.stream(items))
            assert [r.kind for r in records] == ["result", "result"], records
            atoms[name] = [r.atoms for r in records]
    for plain, packed, delta in zip(atoms["none"], atoms["zstd"], atoms["zstd-delta"]):
        assert len(plain) > 10
        np.testing.assert_array_equal(plain, packed)
        np.testing.assert_array_equal(plain, delta)


def test_delta_payload_is_the_documented_residuals_and_comes_back():
    """zstd-delta: zstandard's reader (across the bands' frames) gives the
    residuals written out here from their definition, and every uint16
    value, 0 and 65535 side by side (residuals wrap), comes back."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 65536, size=(700, 400), dtype=np.uint16)
    image[::3, ::2] = 65535
    image[1::3, ::5] = 0
    pixels = logstar.frames.to_frame(image, {}, 0).pixels
    compression.compress_pixels(pixels, frame_pb2.PIXEL_CODEC_ZSTD_DELTA)
    c = pixels.compressed
    assert (c.codec, c.shuffle_bytes, c.uncompressed_size) == (
        frame_pb2.PIXEL_CODEC_ZSTD_DELTA, 2, image.nbytes)
    step = compression.band_rows(400)
    assert step < 700  # two bands
    reader = zstandard.ZstdDecompressor().stream_reader(c.data, read_across_frames=True)
    plain = reader.read()
    v = image.astype(np.int64)
    for y in (0, 1, step - 1, step, step + 1, 699):
        band0 = (y // step) * step
        n = min(700, band0 + step) - band0
        for x in (0, 1, 200, 399):
            if y == band0:
                predicted = 0
            else:
                a = v[y - 1]
                predicted = (a[max(x - 1, 0)] + 2 * a[x] + a[min(x + 1, 399)] + 2) // 4
            d = int(np.int16(np.uint16((v[y, x] - predicted) % 65536)))
            want = 2 * d if d >= 0 else -2 * d - 1
            i = band0 * 800 + (y - band0) * 400 + x
            assert plain[i] == want & 0xFF and plain[i + n * 400] == want >> 8, (x, y)
    assert compression.decompress_pixels(pixels) == image.tobytes()
    floats = logstar.frames.to_frame(image.astype(np.float32), {}, 0).pixels
    compression.compress_pixels(floats, frame_pb2.PIXEL_CODEC_ZSTD_DELTA)
    assert floats.compressed.codec == frame_pb2.PIXEL_CODEC_ZSTD


def test_a_corrupt_payload_is_refused_and_the_stream_goes_on(daemon, workdir):
    f = synth(workdir, seed=43)
    image = counts(f.image)
    with logstar.Client(daemon.addr, compression="zstd") as c:
        session = c.session(prior=f.prior, settings=FAST, overload="block")
        bad = logstar.frames.to_frame(image, {}, 0)
        compression.compress_pixels(bad.pixels)
        data = bytearray(bad.pixels.compressed.data)
        data[0] ^= 0x5A
        bad.pixels.compressed.data = bytes(data)
        records = list(session.stream([bad, image]))
    assert [r.kind for r in records] == ["error", "result"], records
    assert "frame.pixels.compressed.data" in records[0].message
