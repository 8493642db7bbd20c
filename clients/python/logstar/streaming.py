"""One :meth:`logstar.Session.stream` call: the requests gRPC reads from
the frames, the records the caller reads, and — with ``reconnect`` — the
connections after the first when the daemon goes away.

Contracts
---------
* Every frame given gets exactly one record, in the order given, however
  many connections it took. With ``reconnect`` > 0 a stream that breaks
  with UNAVAILABLE (the daemon was killed, restarted or shut down) is opened
  again on the same session (with its settings, so a daemon that lost it
  makes it anew), a shared memory ring is registered again, and every frame
  sent and not answered is sent again, in order, before new ones. An answer
  for a frame answered already is counted in :class:`StreamStats`
  ``duplicates`` and not yielded; a frame the daemon dropped because it was
  shutting down (``REASON_SHUTTING_DOWN``) counts as unanswered and goes
  again. Each outage may last ``reconnect`` seconds (attempts 0.2 s apart,
  doubling to 2 s); then :class:`~logstar.errors.StreamBroken` is raised.
  Each record's ``connection`` says which connection answered it (0 the
  first, k after the k-th reconnect), as ``logstar replay --results``.
  The C++ library's ReconnectingStream (clients/cpp/reconnecting_stream.h)
  keeps the same contract.
* Threads: gRPC reads the requests in its own thread (one per connection);
  the caller's thread reads the answers and reconnects. ``lock`` guards the
  frames in flight and what the current connection must send; ``items_lock``
  lets one connection at a time read the caller's frames.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any, Deque, Iterable, Iterator, List, Optional, Tuple

import grpc

from . import frames as _frames
from .errors import InvalidFrame, LogstarError, ServerUnavailable, StreamBroken
from .v1 import frame_pb2, service_pb2

_FIRST_BACKOFF_S = 0.2
_MAX_BACKOFF_S = 2.0
_END = object()  # no more frames from the caller


def _connection_lost(e: grpc.RpcError) -> bool:
    """Whether the daemon went away: UNAVAILABLE, or a proxy in front of the
    replicas (nginx, Envoy, HAProxy: docs/scale-out.md) resetting the stream
    when the replica behind it died (HTTP/2 RST_STREAM, which gRPC reports as
    INTERNAL, or CANCELLED for HAProxy's CANCEL; or a stream ended without a
    grpc-status, UNKNOWN "No status received"). A cancel of the client's own
    says neither."""
    code, details = e.code(), e.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return True
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED):
        return "RST_STREAM" in details
    return code == grpc.StatusCode.UNKNOWN and "No status received" in details


@dataclasses.dataclass
class StreamStats:
    """What a stream's connections went through: ``reconnects`` (streams
    opened again), ``resent`` (frames sent again), ``duplicates`` (answers
    for frames answered already, ignored)."""
    reconnects: int = 0
    resent: int = 0
    duplicates: int = 0


@dataclasses.dataclass
class Pending:
    """A frame given to the stream, until its record is yielded."""
    sequence: int
    tag: Any
    failure: Optional[InvalidFrame] = None  # set: refused by the client, not sent
    holds_slot: bool = False  # its pixels sit in a shared memory slot until answered
    frame: Optional[frame_pb2.Frame] = None  # with reconnect: to send it again


def _is_shutdown_drop(response: service_pb2.StreamResponse) -> bool:
    return (response.WhichOneof("kind") == "dropped"
            and response.dropped.reason == service_pb2.FrameDropped.REASON_SHUTTING_DOWN)


def _is_array_item(item: Any) -> bool:
    """An item whose pixels the client encodes (a Frame message goes as it is)."""
    return not isinstance(item, frame_pb2.Frame) and not (
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], frame_pb2.Frame))


class Streamer:
    """Made by Session.stream; :meth:`records` is the generator it returns."""

    def __init__(self, session, frames: Iterable[Any], timeout: Optional[float], ring,
                 reconnect: float, stats: StreamStats) -> None:
        if reconnect < 0:
            raise ValueError(f"reconnect must be >= 0 seconds, got {reconnect}")
        self.session = session
        self.client = session._client
        self.items = iter(frames)
        self.timeout = timeout
        self.ring = ring
        self.reconnect = reconnect
        self.stats = stats
        self.source_error: List[BaseException] = []
        self.ended = threading.Event()  # the stream is over: wakes a sender waiting for a slot
        self.lock = threading.Lock()
        self.items_lock = threading.Lock()
        self.pending: Deque[Pending] = collections.deque()  # guarded by lock
        self.generation = 0  # the current connection; guarded by lock
        # Frames the current connection sends before new ones: (frame, sent
        # before); guarded by lock.
        self.outbox: Deque[Tuple[frame_pb2.Frame, bool]] = collections.deque()
        self.opened = False  # some connection was opened (caller's thread)
        self.call = None

    # -- the requests (gRPC's thread)
    def requests(self, generation: int, open_: service_pb2.OpenSession
                 ) -> Iterator[service_pb2.StreamRequest]:
        yield service_pb2.StreamRequest(open=open_)
        while True:
            frame = self._next_frame(generation)
            if frame is None:
                return
            yield service_pb2.StreamRequest(frame=frame)

    def _next_frame(self, generation: int) -> Optional[frame_pb2.Frame]:
        """The next frame for connection ``generation``: one to send again,
        else a new one; None when this connection or the frames are over."""
        while True:
            with self.lock:
                if generation != self.generation:
                    return None
                if self.outbox:
                    frame, again = self.outbox.popleft()
                    self.stats.resent += again
                    return frame
            with self.items_lock:
                with self.lock:
                    if generation != self.generation:
                        return None
                    if self.outbox:
                        continue  # left by a connection that ended meanwhile
                got = self._pull()
                if got is _END:
                    return None
                frame, p = got
                with self.lock:
                    # Registered before it is sent, so its answer always finds it.
                    self.pending.append(p)
                    if frame is None:
                        continue  # refused by the client: its record waits in pending
                    if generation != self.generation:
                        self.outbox.append((frame, False))  # the next connection sends it
                        return None
                    return frame

    def _pull(self):
        """The caller's next item as (frame or None, Pending), or _END."""
        try:
            item = next(self.items)
        except StopIteration:
            return _END
        except Exception as e:  # the caller's frame source failed: half-close
            self.source_error.append(e)
            return _END
        ring = self.ring if _is_array_item(item) else None
        slot = -1
        if ring is not None:
            slot = ring._acquire(self.ended)
            if slot < 0:
                return _END
        frame, p = self.session._prepare(item, ring, slot)
        if slot >= 0 and not p.holds_slot:
            ring._give_back(slot)
        if frame is not None:
            _frames.now_timestamp(frame.send_time)
            if self.reconnect > 0:
                p.frame = frame
        return frame, p

    # -- the answers (the caller's thread)
    def records(self) -> Iterator[Any]:
        try:
            yield from self._connections()
        finally:
            self.ended.set()
            if self.call is not None:
                self.call.cancel()  # no-op when finished; frees the call when the caller stops early
            # The stream is over: the daemon reads none of its frames any more.
            with self.lock:
                for p in self.pending:
                    if p.holds_slot:
                        p.holds_slot = False
                        self.ring._release()
        unanswered = []
        while self.pending:
            p = self.pending.popleft()
            if p.failure is not None:
                record = self.session._local_failure(p)
                record.connection = self.stats.reconnects
                yield record
            else:
                unanswered.append(p.sequence)
        if unanswered:
            raise StreamBroken(f"stream of session {self.session.id} ended OK but "
                               f"{len(unanswered)} frame(s) got no answer", "OK", unanswered)
        if self.source_error:
            raise self.source_error[0]

    def _connections(self) -> Iterator[Any]:
        open_ = service_pb2.OpenSession(session_id=self.session.id,
                                        compression=self.client._compression)
        outage: Optional[float] = None  # when the current outage began
        backoff = _FIRST_BACKOFF_S
        while True:
            with self.lock:
                generation = self.generation
            self.call = self.client._stub.Stream(self.requests(generation, open_),
                                                 metadata=self.client._session_metadata(
                                                     self.session.id),
                                                 timeout=self.timeout)
            try:
                for response in self.call:
                    if response.WhichOneof("kind") == "opened":
                        self.session._info = response.opened
                        if outage is not None:
                            self.stats.reconnects += 1
                        self.opened, outage, backoff = True, None, _FIRST_BACKOFF_S
                        continue
                    yield from self._answer(response)
                return
            except grpc.RpcError as e:
                if not self._may_reconnect(e):
                    raise self._broken(e) from None
                outage = time.monotonic() if outage is None else outage
                left = self.reconnect - (time.monotonic() - outage)
                if left <= 0:
                    raise self._broken(e, gave_up=True) from None
                time.sleep(min(backoff, left))
                backoff = min(2 * backoff, _MAX_BACKOFF_S)
                open_ = self._next_connection(outage)

    def _answer(self, response: service_pb2.StreamResponse) -> Iterator[Any]:
        records = []
        with self.lock:
            if self.reconnect > 0:
                if response.sequence not in [p.sequence for p in self.pending if p.failure is None]:
                    # Answered already (sent again after a reconnect): counted once.
                    self.stats.duplicates += 1
                    return
                if _is_shutdown_drop(response):
                    return  # still unanswered: sent again after the reconnect
            # Frames the client refused sit between the ones sent.
            while self.pending and (self.pending[0].failure is not None
                                    and self.pending[0].sequence != response.sequence):
                records.append(self.session._local_failure(self.pending.popleft()))
            if not self.pending or self.pending[0].sequence != response.sequence:
                raise LogstarError(f"stream: the server answered frame {response.sequence} "
                                   f"out of order (protocol error)")
            answered = self.pending.popleft()
            if answered.holds_slot:
                answered.holds_slot = False
                self.ring._release()
        records.append(self.session._record(response, answered.tag))
        for r in records:
            r.connection = self.stats.reconnects
        yield from records

    # -- reconnecting (the caller's thread)
    def _may_reconnect(self, e: grpc.RpcError) -> bool:
        return self.reconnect > 0 and self.opened and _connection_lost(e)

    def _next_connection(self, outage: float) -> service_pb2.OpenSession:
        """Prepares the next attempt: once the daemon answers, the ring is
        registered again; the unanswered frames are what it sends first.
        Returns its OpenSession (with the settings, for a daemon that lost
        the session)."""
        left = self.reconnect - (time.monotonic() - outage)
        if self.client._wait_ready(max(left, 0.0)) and self.ring is not None:
            try:
                self.ring.register()  # a restarted daemon forgot the region
            except ServerUnavailable:
                pass  # down again: the next attempt fails and tries again
        with self.lock:
            self.generation += 1
            self.outbox = collections.deque(
                (p.frame, True) for p in self.pending if p.failure is None and p.frame is not None)
        return service_pb2.OpenSession(session_id=self.session.id,
                                       settings=self.session._info.settings,
                                       compression=self.client._compression)

    def _broken(self, e: grpc.RpcError, gave_up: bool = False) -> LogstarError:
        if self.source_error and e.code() == grpc.StatusCode.CANCELLED:
            return self.source_error[0]
        if not self.opened:
            return self.client._error(e, "stream")
        with self.lock:
            unanswered = [p.sequence for p in self.pending if p.failure is None]
        why = f"gave up reconnecting after {self.reconnect:g} s: " if gave_up else ""
        return StreamBroken(
            f"stream of session {self.session.id} ended with {e.code().name}: {why}"
            f"{e.details()}; {len(unanswered)} frame(s) sent got no answer", e.code().name,
            unanswered)
