"""Lossless compression of a frame's pixels for slow links.

The same format as the C++ side (proto/wire/compression.h): the bytes of
every element shuffled so that byte k of all pixels comes together (all low
bytes, then all high bytes of uint16), then Zstandard. Detector counts
rarely use their high bytes, so a whole plane of near-zeros compresses to
almost nothing. The daemon decompresses into exactly width x height x
itemsize bytes and refuses a payload that claims or holds more.

A stream asks for it when it opens (``Client(..., compression="zstd")``)
and compresses only once the daemon's answer accepts it, so an older daemon
gets the bytes as they are. Needs the ``zstandard`` module (Debian:
python3-zstandard) only when compression is asked for.
"""

from typing import Any, Dict

import numpy as np

from .errors import InvalidSettings
from .v1 import frame_pb2

#: Codec names as ``Client(compression=...)`` takes them.
CODECS: Dict[str, int] = {"none": frame_pb2.PIXEL_CODEC_NONE, "zstd": frame_pb2.PIXEL_CODEC_ZSTD}

#: zstd's level: 1 compresses an 8 MB uint16 frame in a few ms.
DEFAULT_LEVEL = 1

_PARALLEL_BYTES = 2 << 20

_ITEMSIZE = {frame_pb2.DTYPE_UINT8: 1, frame_pb2.DTYPE_UINT16: 2, frame_pb2.DTYPE_INT16: 2,
             frame_pb2.DTYPE_FLOAT32: 4, frame_pb2.DTYPE_FLOAT64: 8}


def parse_codec(name: str) -> int:
    """The PixelCodec for ``"none"`` or ``"zstd"``; InvalidSettings names
    the argument otherwise (and when zstd is asked for without the
    ``zstandard`` module)."""
    codec = CODECS.get(str(name).lower())
    if codec is None:
        raise InvalidSettings(f"compression must be 'none' or 'zstd', got {name!r}")
    if codec == frame_pb2.PIXEL_CODEC_ZSTD:
        _zstd()
    return codec


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        raise InvalidSettings("compression='zstd' needs the zstandard module "
                              "(Debian: apt install python3-zstandard)") from None
    return zstandard


def shuffle(data: bytes, itemsize: int) -> bytes:
    """Byte k of every ``itemsize``-byte element together, k = 0, 1, ..."""
    if itemsize <= 1:
        return bytes(data)
    return np.frombuffer(data, np.uint8).reshape(-1, itemsize).T.tobytes()


def unshuffle(data: bytes, itemsize: int) -> bytes:
    """The inverse of :func:`shuffle`."""
    if itemsize <= 1:
        return bytes(data)
    return np.frombuffer(data, np.uint8).reshape(itemsize, -1).T.tobytes()


def compress_pixels(pixels: frame_pb2.PixelData, codec: int = frame_pb2.PIXEL_CODEC_ZSTD,
                    level: int = DEFAULT_LEVEL) -> None:
    """Replaces ``pixels.data`` by ``pixels.compressed`` in place. Pixels
    not in ``data`` (shared memory) and codec NONE are left as they are."""
    if codec == frame_pb2.PIXEL_CODEC_NONE or pixels.WhichOneof("source") != "data":
        return
    if codec != frame_pb2.PIXEL_CODEC_ZSTD:
        raise InvalidSettings(f"compression: unknown codec {codec}")
    itemsize = _ITEMSIZE.get(pixels.dtype, 1)
    raw = pixels.data
    # A large frame in two parts at once, as the C++ client does.
    threads = 2 if len(raw) >= _PARALLEL_BYTES else 0
    payload = _zstd().ZstdCompressor(level=level, threads=threads).compress(
        shuffle(raw, itemsize))
    c = pixels.compressed  # setting a member of the oneof clears `data`
    c.codec = codec
    c.shuffle_bytes = itemsize if itemsize > 1 else 0
    c.uncompressed_size = len(raw)
    c.data = payload


def decompress_pixels(pixels: frame_pb2.PixelData) -> bytes:
    """The bytes ``pixels.data`` would hold, from ``pixels.compressed``,
    never more than ``uncompressed_size`` (ValueError otherwise)."""
    c = pixels.compressed
    raw = _zstd().ZstdDecompressor().decompress(c.data, max_output_size=c.uncompressed_size)
    if len(raw) != c.uncompressed_size:
        raise ValueError(f"decompresses to {len(raw)} bytes, not {c.uncompressed_size}")
    return unshuffle(raw, c.shuffle_bytes)
