"""The exceptions the logstar client raises.

Every exception is a :class:`LogstarError`; most also derive from the
built-in exception a caller would naturally catch (``ValueError`` for bad
input, ``ConnectionError`` for an unreachable server), so code that does
not know about logstar still handles them sensibly.
"""
from __future__ import annotations

from typing import Optional


class LogstarError(Exception):
    """Base class of everything this package raises on purpose."""


class InvalidFrame(LogstarError, ValueError):
    """A frame cannot be sent as it is: wrong dtype, shape, non-finite
    pixels, unknown metadata. The message names the problem."""


class InvalidSettings(LogstarError, ValueError):
    """A prior or settings value the client or the server refused."""


class ServerUnavailable(LogstarError, ConnectionError):
    """logstard cannot be reached (not running, wrong address, TLS
    mismatch) or is shutting down."""


class AuthenticationError(LogstarError, PermissionError):
    """The server requires a bearer token and none, or the wrong one, was
    given."""


class RpcFailed(LogstarError):
    """An RPC failed for another reason; ``code`` is the gRPC status code
    name (e.g. ``"NOT_FOUND"``)."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


class StreamBroken(LogstarError):
    """A stream ended before every frame sent on it was answered.

    ``unanswered`` lists the sequence numbers of the frames that got no
    answer; every answer received before the break has been yielded."""

    def __init__(self, message: str, code: str, unanswered: list[int]) -> None:
        super().__init__(message)
        self.code = code
        self.unanswered = unanswered


class FrameNotAnalysed(LogstarError):
    """Raised when the atoms of a frame that was dropped or failed are
    asked for: such frames have no atoms, and pretending they had none
    would hide the loss."""


class RecordingError(LogstarError):
    """A recording file (.lsr) is corrupt, truncated or not a recording.

    ``offset`` is the byte offset in the file of the record (its length
    field) where reading stopped, ``path`` the file. Frames before that
    offset were intact; :func:`logstar.read_recording` with
    ``allow_damaged=True`` returns them."""

    def __init__(self, path: str, offset: int, problem: str,
                 frames_before: Optional[int] = None) -> None:
        where = f"{path}: byte offset {offset}: {problem}"
        if frames_before is not None:
            where += f" ({frames_before} intact frame{'s' if frames_before != 1 else ''} before it)"
        super().__init__(where)
        self.path = path
        self.offset = offset
        self.problem = problem
        self.frames_before = frames_before


class MissingDependency(LogstarError, ImportError):
    """An optional package (e.g. HyperSpy for DM3/DM4/EMD) is needed for
    this and is not installed."""
