"""Recording files (.lsr): recorded frame streams with their timing.

The layout is specified in proto/logstar/v1/recording.proto (all integers
little-endian)::

    offset 0   8 magic bytes  b"LSR1\\r\\n\\x1a\\n"
    then records, back to back:
      uint32 length N (at most 1 GiB) | uint32 CRC-32 of the payload (zlib.crc32)
      | N payload bytes: a serialized protobuf message
    the first payload is a RecordingHeader, every later one a RecordedFrame.

Reading: a record whose length runs past the end of the file (truncated
write), whose CRC does not match, or whose payload does not parse ends the
readable part. :class:`RecordingError` then reports the byte offset of that
record's length field and what was wrong; every frame before it stays
usable (iterate :class:`RecordingReader`, or ``read_recording(path,
allow_damaged=True)``).

Writing: :class:`RecordingWriter` appends one record per frame and flushes
it, so a crash loses at most the record being written.

Units: offsets in ns since the first frame; truth positions in px, x =
column, y = row, origin at the centre of the top-left pixel.

Thread-safety: readers and writers are not thread-safe (one file position
each); use one per thread.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import struct
import time
import zlib
from typing import Any, BinaryIO, Iterator, List, Optional, Sequence, Union

import numpy as np
from google.protobuf.message import DecodeError

from . import frames as _frames
from .errors import RecordingError
from .v1 import frame_pb2, recording_pb2, session_pb2

MAGIC = b"LSR1\r\n\x1a\n"
FORMAT_VERSION = 1
MAX_RECORD_BYTES = 1 << 30
_PREFIX = struct.Struct("<II")  # length, crc32


@dataclasses.dataclass
class RecordedFrame:
    """One frame of a recording. ``offset_ns``: time since the first
    frame; ``frame``: the envelope as it is to be sent; ``truth``: N×2
    float64 (x, y) px of the true columns of a generated frame (empty when
    the recording has none), ``truth_amorphous`` their flags; ``position``:
    byte offset of the record in the file."""
    offset_ns: int
    frame: frame_pb2.Frame
    truth: np.ndarray
    truth_amorphous: np.ndarray
    position: int

    @property
    def image(self) -> np.ndarray:
        """The pixels as a 2-D numpy array (read-only)."""
        return _frames.from_frame(self.frame)

    @property
    def metadata(self) -> dict:
        return _frames.frame_metadata(self.frame)


@dataclasses.dataclass
class Recording:
    """A recording read into memory. ``damage`` is the RecordingError that
    ended reading early, or None when the whole file was intact."""
    path: str
    header: recording_pb2.RecordingHeader
    frames: List[RecordedFrame]
    damage: Optional[RecordingError] = None


class RecordingReader:
    """Reads a recording record by record: the header on opening (errors
    there raise at once), then the frames by iteration, which raises
    RecordingError at the first damaged record after yielding every frame
    before it."""

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = os.fspath(path)
        self._file: BinaryIO = open(self.path, "rb")
        self._size = os.fstat(self._file.fileno()).st_size
        self.frames_read = 0
        try:
            magic = self._file.read(len(MAGIC))
            if magic != MAGIC:
                what = ("file is shorter than the 8-byte magic" if len(magic) < len(MAGIC)
                        else f"not a logstar recording (magic {magic!r}, expected {MAGIC!r})")
                raise RecordingError(self.path, 0, what)
            offset = self._file.tell()
            payload = self._next_payload()
            if payload is None:
                raise RecordingError(self.path, offset, "no header record (empty recording)")
            header = recording_pb2.RecordingHeader()
            self._parse(header, payload, offset, "RecordingHeader")
            if header.format_version != FORMAT_VERSION:
                raise RecordingError(self.path, offset,
                                     f"format_version {header.format_version} is not known "
                                     f"(this reader knows {FORMAT_VERSION})")
            self.header = header
        except BaseException:
            self._file.close()
            raise

    def _next_payload(self) -> Optional[bytes]:
        """The next record's payload, None at a clean end of file."""
        offset = self._file.tell()
        prefix = self._file.read(_PREFIX.size)
        if not prefix:
            return None
        if len(prefix) < _PREFIX.size:
            raise self._damage(offset, f"truncated record: {len(prefix)} of the 8 bytes of "
                                       f"length and CRC, then end of file")
        length, crc = _PREFIX.unpack(prefix)
        if length > MAX_RECORD_BYTES:
            raise self._damage(offset, f"record length {length} exceeds 1 GiB (corrupt length)")
        remaining = self._size - offset - _PREFIX.size
        if length > remaining:
            raise self._damage(offset, f"truncated record: length {length} but only "
                                       f"{remaining} bytes left in the file")
        payload = self._file.read(length)
        actual = zlib.crc32(payload)
        if actual != crc:
            raise self._damage(offset, f"CRC mismatch (stored {crc:#010x}, computed "
                                       f"{actual:#010x}): corrupt record")
        return payload

    def _damage(self, offset: int, problem: str) -> RecordingError:
        header_read = hasattr(self, "header")
        return RecordingError(self.path, offset, problem,
                              self.frames_read if header_read else None)

    def _parse(self, message, payload: bytes, offset: int, what: str) -> None:
        try:
            message.ParseFromString(payload)
        except DecodeError as e:
            raise self._damage(offset, f"payload is not a valid {what}: {e}") from None

    def __iter__(self) -> Iterator[RecordedFrame]:
        while True:
            offset = self._file.tell()
            payload = self._next_payload()
            if payload is None:
                return
            rf = recording_pb2.RecordedFrame()
            self._parse(rf, payload, offset, "RecordedFrame")
            n = len(rf.truth)
            truth = np.array([(t.x, t.y) for t in rf.truth], dtype=np.float64).reshape(n, 2)
            amorphous = np.array([t.amorphous for t in rf.truth], dtype=bool)
            self.frames_read += 1
            yield RecordedFrame(rf.offset_ns, rf.frame, truth, amorphous, offset)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RecordingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_recording(path: Union[str, os.PathLike], allow_damaged: bool = False) -> Recording:
    """Reads a whole recording. A damaged file raises RecordingError (with
    the byte offset), unless ``allow_damaged``: then the intact frames are
    returned with ``damage`` set. A bad magic or header always raises."""
    with RecordingReader(path) as reader:
        out = Recording(reader.path, reader.header, [])
        try:
            for f in reader:
                out.frames.append(f)
        except RecordingError as e:
            if not allow_damaged:
                raise
            out.damage = e
    return out


class RecordingWriter:
    """Writes a recording: the header on opening, then one record per
    :meth:`write`, flushed at once.

    ``settings``: the SessionSettings replay opens its session with (see
    :func:`logstar.settings.session_settings` to build them from a prior)."""

    def __init__(self, path: Union[str, os.PathLike],
                 settings: Optional[session_pb2.SessionSettings] = None, *,
                 description: str = "", created_by: str = "logstar (Python)",
                 has_truth: bool = False) -> None:
        self.path = os.fspath(path)
        self._file: BinaryIO = open(self.path, "wb")
        self._first_ns: Optional[int] = None
        self._last_offset = 0
        self._sequence = 0
        self.has_truth = has_truth
        header = recording_pb2.RecordingHeader(format_version=FORMAT_VERSION,
                                               created_by=created_by, description=description,
                                               has_truth=has_truth)
        if settings is not None:
            header.settings.CopyFrom(settings)
        header.created.FromDatetime(_dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None))
        self._file.write(MAGIC)
        self._record(header.SerializeToString())

    def _record(self, payload: bytes) -> None:
        if len(payload) > MAX_RECORD_BYTES:
            raise ValueError(f"record of {len(payload)} bytes exceeds the format's 1 GiB")
        self._file.write(_PREFIX.pack(len(payload), zlib.crc32(payload)) + payload)
        self._file.flush()

    def write(self, frame: Union[np.ndarray, frame_pb2.Frame],
              meta: Optional[_frames.Metadata] = None, *, offset_ns: Optional[int] = None,
              truth: Optional[Union[np.ndarray, Sequence[Sequence[float]]]] = None,
              truth_amorphous: Optional[Sequence[bool]] = None) -> None:
        """Appends a frame: an array with metadata, or a Frame message.

        ``offset_ns``: its time since the first frame; by default the time
        elapsed since the first write. Sequence numbers are assigned 1, 2, ...
        ``truth``: N×2 (x, y) px of its true columns."""
        now = time.monotonic_ns()
        if self._first_ns is None:
            self._first_ns = now
        if offset_ns is None:
            offset_ns = now - self._first_ns
        if offset_ns < self._last_offset:
            raise ValueError(f"offset_ns {offset_ns} < previous {self._last_offset}: "
                             f"offsets must not decrease")
        self._last_offset = offset_ns
        self._sequence += 1
        rf = recording_pb2.RecordedFrame(offset_ns=offset_ns)
        if isinstance(frame, frame_pb2.Frame):
            rf.frame.CopyFrom(frame)
            rf.frame.sequence = self._sequence
            rf.frame.session_id = ""
        else:
            meta = dict(meta or {})
            meta.pop("tag", None)
            _frames.to_frame(frame, meta, self._sequence, rf.frame)
        if truth is not None:
            pts = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
            flags = list(truth_amorphous) if truth_amorphous is not None else [False] * len(pts)
            for (x, y), a in zip(pts, flags):
                rf.truth.add(x=float(x), y=float(y), amorphous=bool(a))
        self._record(rf.SerializeToString())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
