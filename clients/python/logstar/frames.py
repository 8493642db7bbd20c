"""Frames: numpy images to the API's Frame envelope and back.

Contracts
---------
* An image is a 2-D numpy array, rows × columns, of dtype uint8, uint16,
  int16, float32 or float64 (any byte order, any strides: it is converted
  to a C-ordered little-endian copy when needed). Other dtypes and shapes
  raise :class:`~logstar.errors.InvalidFrame`; they are never cast
  silently, because a cast (e.g. int32 → float32 or a colour image to one
  channel) changes what the analysis sees. NaN and infinite pixels are
  refused by the server, which names the first bad pixel. A HyperSpy
  Signal2D is taken wherever an array is (:func:`image_and_metadata`): its
  pixels as a file's would be (logstar.files), its pixel size from its axes.
* Coordinates are x = column, y = row, in pixels of the frame as sent,
  origin at the centre of the top-left pixel. Lengths are in ångström
  (Å), times in microseconds where the field name says so.
* Metadata is a plain dict with the keys in :data:`METADATA_KEYS`; an
  unknown key raises (a misspelt ``pixel_size`` must not be ignored).

Everything here is pure (no I/O, no shared state) and thread-safe.
"""
from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Callable, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import InvalidFrame
from .v1 import frame_pb2

# numpy dtype (little-endian) for each wire dtype, and back.
_WIRE_DTYPES = {
    frame_pb2.DTYPE_UINT8: np.dtype("u1"),
    frame_pb2.DTYPE_UINT16: np.dtype("<u2"),
    frame_pb2.DTYPE_INT16: np.dtype("<i2"),
    frame_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    frame_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
}
_BY_KIND = {(dt.kind, dt.itemsize): wire for wire, dt in _WIRE_DTYPES.items()}

#: Metadata keys a frame may carry, with their meaning.
METADATA_KEYS = {
    "pixel_size": "Å per pixel, square pixels (sets pixel_size_x and _y)",
    "pixel_size_x": "Å per pixel along x (columns)",
    "pixel_size_y": "Å per pixel along y (rows)",
    "acquisition_time": "when the scan finished: datetime or seconds since the epoch",
    "channel": "detector channel name, e.g. 'HAADF'; echoed in the result",
    "valid_rows": "partial frame: only rows [0, valid_rows) are scanned",
    "pixel_dwell_time_us": "µs",
    "line_time_us": "µs",
    "field_of_view_x": "Å",
    "field_of_view_y": "Å",
    "scan_rotation_deg": "degrees",
    "tag": "anything; not sent, handed back on the frame's result",
}

Metadata = Mapping[str, Any]
FrameItem = Union[np.ndarray, Tuple[np.ndarray, Optional[Metadata]]]


def wire_dtype(array: np.ndarray) -> int:
    """The wire DType of an array's dtype, or InvalidFrame naming it."""
    dt = array.dtype
    wire = _BY_KIND.get((dt.kind, dt.itemsize))
    if wire is None:
        raise InvalidFrame(
            f"pixel dtype {dt} is not supported: send uint8, uint16, int16, float32 or "
            f"float64 (convert explicitly, e.g. array.astype(np.float32))")
    return wire


def check_image(array: Any) -> np.ndarray:
    """Returns ``array`` as a numpy array after checking dtype and shape."""
    if not isinstance(array, np.ndarray):
        raise InvalidFrame(f"a frame must be a numpy array, got {type(array).__name__}")
    if array.ndim != 2:
        raise InvalidFrame(
            f"a frame must be 2-D (rows × columns, one channel), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidFrame(f"a frame must not be empty, got shape {array.shape}")
    wire_dtype(array)
    return array


def _timestamp(value: Any, field: str, out) -> None:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise InvalidFrame(f"{field}: a naive datetime is ambiguous; give a timezone")
        out.FromDatetime(value.astimezone(_dt.timezone.utc).replace(tzinfo=None))
    elif isinstance(value, (int, float)):
        out.FromNanoseconds(int(round(float(value) * 1e9)))
    else:
        raise InvalidFrame(f"{field}: expected a datetime or seconds since the epoch, "
                           f"got {type(value).__name__}")


def _number(meta: Metadata, key: str) -> float:
    value = meta[key]
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidFrame(f"metadata {key!r} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0:
        raise InvalidFrame(f"metadata {key!r} must be finite and >= 0, got {value!r}")
    return v


#: Where pixels go instead of ``pixels.data``: called with the image and its
#: wire dtype, it stores the pixels and returns ``(region, offset)`` of
#: row 0 in a registered shared memory region (see logstar.shared_memory).
PixelSink = Callable[[np.ndarray, np.dtype], Tuple[str, int]]


def to_frame(array: np.ndarray, meta: Optional[Metadata] = None, sequence: int = 0,
             frame: Optional[frame_pb2.Frame] = None,
             sink: Optional[PixelSink] = None) -> frame_pb2.Frame:
    """Builds a Frame envelope from an image and its metadata.

    ``sequence`` is written as given; send_time is left to the sender.
    With ``sink`` the pixels are handed to it (called last, once everything
    else was checked) and the frame refers to where it put them."""
    check_image(array)
    meta = dict(meta or {})
    unknown = sorted(set(meta) - set(METADATA_KEYS))
    if unknown:
        raise InvalidFrame(f"unknown metadata key(s) {unknown}; known: {sorted(METADATA_KEYS)}")
    wire = wire_dtype(array)

    f = frame if frame is not None else frame_pb2.Frame()
    f.sequence = sequence
    f.pixels.dtype = wire
    f.pixels.height, f.pixels.width = (int(n) for n in array.shape)
    if sink is None:
        f.pixels.data = np.ascontiguousarray(array, dtype=_WIRE_DTYPES[wire]).tobytes()

    if "pixel_size" in meta:
        f.pixel_size_x_angstrom = f.pixel_size_y_angstrom = _number(meta, "pixel_size")
    if "pixel_size_x" in meta:
        f.pixel_size_x_angstrom = _number(meta, "pixel_size_x")
    if "pixel_size_y" in meta:
        f.pixel_size_y_angstrom = _number(meta, "pixel_size_y")
    for key, field in (("pixel_dwell_time_us", "pixel_dwell_time_us"),
                       ("line_time_us", "line_time_us"),
                       ("field_of_view_x", "field_of_view_x_angstrom"),
                       ("field_of_view_y", "field_of_view_y_angstrom")):
        if key in meta:
            setattr(f, field, _number(meta, key))
    if "scan_rotation_deg" in meta:
        f.scan_rotation_deg = float(meta["scan_rotation_deg"])
    if "valid_rows" in meta:
        rows = int(meta["valid_rows"])
        if not 0 <= rows <= array.shape[0]:
            raise InvalidFrame(f"valid_rows {rows} is outside [0, {array.shape[0]}]")
        f.valid_rows = rows
    if "channel" in meta:
        f.channel = str(meta["channel"])
    if "acquisition_time" in meta:
        _timestamp(meta["acquisition_time"], "acquisition_time", f.acquisition_time)
    if sink is not None:
        region, offset = sink(array, _WIRE_DTYPES[wire])
        f.pixels.shared_memory.region = region
        f.pixels.shared_memory.offset = offset
    return f


def image_and_metadata(image: Any, meta: Optional[Metadata] = None) -> Tuple[np.ndarray, dict]:
    """A frame's pixels and metadata from a numpy array or a HyperSpy
    Signal2D. A signal gives its pixel size (Å) from its axes' scale and
    units, and its pixels converted without loss as when read from a file
    (logstar.files: e.g. int32 to float64); a pixel size in ``meta``
    replaces the axes'."""
    meta = dict(meta or {})
    from . import files  # files imports this module
    if files.is_signal(image):
        image, from_axes = files.signal_frame(image)
        if not {"pixel_size", "pixel_size_x", "pixel_size_y"} & set(meta):
            meta.update(from_axes)  # a pixel size the caller gives wins over the axes'
    return image, meta


def split_item(item: Any) -> Tuple[np.ndarray, dict]:
    """An item of a frame stream: an array or a HyperSpy Signal2D, or
    (either, metadata)."""
    if isinstance(item, tuple):
        if len(item) != 2:
            raise InvalidFrame(f"a stream item is an array or (array, metadata), "
                               f"got a tuple of {len(item)}")
        array, meta = item
        if meta is not None and not isinstance(meta, Mapping):
            raise InvalidFrame(f"frame metadata must be a dict, got {type(meta).__name__}")
        return image_and_metadata(array, meta)
    return image_and_metadata(item)


def from_frame(frame: frame_pb2.Frame) -> np.ndarray:
    """The image a Frame envelope carries (a read-only view of its bytes,
    in native byte order on little-endian machines)."""
    px = frame.pixels
    dt = _WIRE_DTYPES.get(px.dtype)
    if dt is None:
        raise InvalidFrame(f"frame {frame.sequence}: unknown pixel dtype {px.dtype}")
    expected = px.width * px.height * dt.itemsize
    if len(px.data) != expected:
        raise InvalidFrame(f"frame {frame.sequence}: {px.height}×{px.width} "
                           f"{frame_pb2.DType.Name(px.dtype)} pixels need {expected} bytes, "
                           f"got {len(px.data)}")
    return np.frombuffer(px.data, dtype=dt).reshape(px.height, px.width)


def frame_metadata(frame: frame_pb2.Frame) -> dict:
    """The metadata dict of a Frame envelope (the fields that are set)."""
    meta: dict = {}
    if frame.pixel_size_x_angstrom > 0:
        meta["pixel_size_x"] = frame.pixel_size_x_angstrom
    if frame.pixel_size_y_angstrom > 0:
        meta["pixel_size_y"] = frame.pixel_size_y_angstrom
    for key, field in (("pixel_dwell_time_us", "pixel_dwell_time_us"),
                       ("line_time_us", "line_time_us"),
                       ("field_of_view_x", "field_of_view_x_angstrom"),
                       ("field_of_view_y", "field_of_view_y_angstrom"),
                       ("scan_rotation_deg", "scan_rotation_deg"),
                       ("valid_rows", "valid_rows"),
                       ("channel", "channel")):
        value = getattr(frame, field)
        if value:
            meta[key] = value
    if frame.HasField("acquisition_time"):
        meta["acquisition_time"] = frame.acquisition_time.ToNanoseconds() / 1e9
    return meta


def now_timestamp(out) -> None:
    """Sets a Timestamp message to the current wall-clock time."""
    out.FromNanoseconds(time.time_ns())
