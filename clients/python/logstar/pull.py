"""An adapter for pull-based microscope APIs.

Many control programs acquire on request: the script asks for the next
frame (``scope.acquire()``, ``camera.get_next_image()``) and gets it when
the scan is done. :class:`PullAdapter` turns such a ``next_frame()``
callable into the iterable :meth:`logstar.Session.stream` takes, so frames
are acquired exactly as fast as the stream sends them::

    scope = MyMicroscope()
    frames = PullAdapter(scope.acquire, max_frames=100)
    for record in session.stream(frames):
        steer(scope, record)          # e.g. move to record.regions_of_interest[0]
        if done: frames.stop()

Contract of ``next_frame()``: it blocks until the next frame is acquired and
returns a 2-D array, ``(array, metadata)`` or a ``Frame`` message; it
returns None when the acquisition has ended. If it raises, the stream ends
after the frames before are answered and the exception reaches the caller
of ``stream`` (see Session.stream).

Pacing: ``next_frame`` is called from the stream's sending thread whenever
the stream can take another frame. Under the "block" overload policy the
server's flow control therefore paces the acquisition (the microscope never
runs ahead of the analysis by more than the queue); under "latest-wins" it
acquires as fast as it can and the server keeps the freshest frames.

Thread-safety: :meth:`stop` may be called from any thread (typically the
one consuming the results); iteration happens on one thread (gRPC's).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterator, Optional

NextFrame = Callable[[], Any]


class PullAdapter:
    """Iterable of frames pulled from ``next_frame``; ends when it returns
    None, after ``max_frames`` frames, or after :meth:`stop`."""

    def __init__(self, next_frame: NextFrame, *, max_frames: Optional[int] = None) -> None:
        if not callable(next_frame):
            raise TypeError(f"next_frame must be callable, got {type(next_frame).__name__}")
        self._next_frame = next_frame
        self._max_frames = max_frames
        self._stop = threading.Event()
        self.pulled = 0  # frames taken from next_frame so far

    def stop(self) -> None:
        """Ends the stream after the frame being acquired (if any)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[Any]:
        while not self._stop.is_set():
            if self._max_frames is not None and self.pulled >= self._max_frames:
                return
            item = self._next_frame()
            if item is None:
                return
            self.pulled += 1
            yield item
