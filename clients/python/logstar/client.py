"""The gRPC client of logstard: :class:`Client`, :class:`Session` and the
records a stream yields (:class:`Result`, :class:`Dropped`, :class:`Failed`).

Contracts
---------
* Every frame sent on a stream gets exactly one record, in the order the
  frames were given: a :class:`Result`, a :class:`Dropped` (the session's
  overload policy dropped it) or a :class:`Failed` (the server refused it,
  or the client could not encode it — wrong dtype or shape — in which case
  it was not sent and the stream went on). None is skipped silently; asking
  a Dropped or Failed record for ``atoms`` raises
  :class:`~logstar.errors.FrameNotAnalysed`.
* Atom positions are numpy arrays N×2 of float64 ``(x, y)``, x = column,
  y = row, in pixels of the frame as sent, origin at the centre of the
  top-left pixel. Lengths in settings and metadata are in ångström.
* Sessions: :meth:`Client.session` opens (or resumes) a session on the
  server at once, so a bad prior fails there and then; the session lives on
  the server between streams (until its idle timeout) and ``stream`` may be
  called again. The overload policy is the server's default (latest-wins,
  right for live steering: stale frames are dropped) unless ``overload`` is
  given — use ``"block"`` when every frame must be analysed.
* Thread-safety: a Client and its Sessions may be shared between threads
  (gRPC channels are thread-safe; the session's sequence counter is
  locked). Each generator returned by ``stream`` must be consumed by one
  thread; the frames iterable given to it is read from a gRPC thread.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import threading
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import grpc
import numpy as np

from . import amorphous as _amorphous
from . import checks as _checks
from . import compression as _compression
from . import frames as _frames
from . import settings as _settings
from . import shared_memory as _shared_memory
from . import streaming as _streaming
from . import tables as _tables
from .errors import (AuthenticationError, FrameNotAnalysed, InvalidFrame, InvalidSettings,
                     LogstarError, RpcFailed, ServerUnavailable)
from .v1 import frame_pb2, result_pb2, service_pb2, service_pb2_grpc, session_pb2

# Frames up to 4096² float64 plus the envelope; results of dense frames can
# exceed gRPC's 4 MiB default receive limit.
_MAX_MESSAGE_BYTES = 256 << 20
_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


@dataclasses.dataclass(frozen=True)
class Tls:
    """TLS options. Paths of PEM files; ``ca`` verifies the server (None:
    the system's roots); ``cert`` and ``key`` are the client's for mutual
    TLS; ``server_name`` overrides the name checked in the server's
    certificate (e.g. when connecting to an IP address)."""
    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    server_name: Optional[str] = None


# ---------------------------------------------------------------------------
# What a stream yields.

class _Record:
    ok: bool = False
    kind: str = ""
    # The stream's connection that answered it: 0 the first, k after the
    # k-th reconnect (Session.stream with ``reconnect``).
    connection: int = 0

    def __init__(self, sequence: int, tag: Any) -> None:
        self.sequence = sequence
        self.tag = tag


@dataclasses.dataclass(frozen=True)
class Region:
    """One amorphous region of a frame (result.proto AmorphousRegion):
    amorphous atoms' disks, closed and split into connected components.
    Pixel coordinates as everywhere (x = column, y = row); ``contour`` is
    the outer boundary, N×2 float64 ``(x, y)`` through boundary pixel
    centres, in order; ``bbox`` is ``(col0, row0, cols, rows)``, half-open;
    ``score`` its share of the frame's area; ``id`` its identity across the
    session's frames (kept while it overlaps its predecessor; 0: none)."""
    area_angstrom2: float
    perimeter_angstrom: float
    area_px2: float
    perimeter_px: float
    centroid: Tuple[float, float]
    bbox: Tuple[int, int, int, int]
    contour: np.ndarray
    score: float
    id: int = 0

    @classmethod
    def from_proto(cls, g: result_pb2.AmorphousRegion) -> "Region":
        contour = np.column_stack((np.asarray(g.contour_x, dtype=np.float64),
                                   np.asarray(g.contour_y, dtype=np.float64)))
        b = g.bounding_box
        return cls(g.area_angstrom2, g.perimeter_angstrom, g.area_px2, g.perimeter_px,
                   (g.centroid_x, g.centroid_y), (b.col0, b.row0, b.cols, b.rows),
                   contour.reshape(-1, 2), g.score, g.id)


class Result(_Record):
    """The analysis of one frame. ``atoms`` is N×2 float64 (x=column,
    y=row, px); ``sigma`` (px) and ``response`` are per atom; ``proto``
    is the full FrameResult (windows, rewards, regions of interest,
    latency breakdown, counters).

    The amorphous stage (when the session enables it, e.g.
    ``client.session(prior, amorphous=True)``): ``amorphous`` is a bool
    per atom, ``amorphous_posterior`` float64 per atom in [0, 1] with NaN
    for atoms not classified (too near the border, or the stage is off);
    ``regions`` the amorphous regions as :class:`Region`, largest first;
    ``amorphous_stage`` the AmorphousStage message (tuned parameters,
    fronts, cache states) or None when the stage is off;
    ``amorphous_verdict`` (:class:`logstar.amorphous.AmorphousVerdict`,
    None when off), ``amorphous_uncertain`` and ``amorphous_reason``: an
    uncertain frame's regions (or their absence) mean "cannot tell".

    The prior and the frame (:mod:`logstar.checks`): ``warnings`` (list of
    PriorWarning, empty when the prior agrees with the lattice the frame
    shows), ``prior_used`` (the PhysicsPrior the frame ran with; derived from
    the frame with ``prior="auto"``: ``prior_derived``; in px when derived
    without a pixel size: ``prior_pixel_units``), ``lattice``
    (MeasuredLattice or None), ``crystalline_fraction``, ``crystal_note``, and with prior
    sublattices ``sublattice`` (int per atom: index into
    ``sublattice_names``, -1 none), ``sublattices`` (SublatticeCount per
    sublattice) and ``sublattice_note``.

    Gaussian refinement (the session's ``refine`` is
    ``REFINE_MODE_GAUSSIAN``): ``atom_errors`` N×2 float64, each atom's
    position uncertainty (x_err, y_err; px, one standard deviation);
    ``atom_amplitude`` and ``atom_intensity`` (the fitted Gaussian's peak
    height and volume 2π·A·σx·σy, normalised frame units); ``atom_shape``
    N×3 (sigma_x, sigma_y px, rotation rad); ``atom_fit_status`` per atom
    ("ok", or why the fit failed: the position is then the detection's and
    the error the fallback 0.5 px). Atoms not fitted read NaN and "". All
    are None when no atom of the frame was fitted (another refinement)."""
    ok = True
    kind = "result"

    def __init__(self, proto: result_pb2.FrameResult, tag: Any = None) -> None:
        super().__init__(proto.sequence, tag)
        self.proto = proto
        n = len(proto.atoms)
        self.atoms = np.fromiter(
            itertools.chain.from_iterable((a.x, a.y) for a in proto.atoms),
            dtype=np.float64, count=2 * n).reshape(n, 2)
        self.sigma = np.fromiter((a.sigma for a in proto.atoms), dtype=np.float64, count=n)
        self.response = np.fromiter((a.response for a in proto.atoms), dtype=np.float64, count=n)
        self.width, self.height = proto.width, proto.height
        self.partial = proto.partial
        self.channel = proto.channel
        self.rewards = proto.rewards
        self.latency = proto.latency
        self.regions_of_interest = list(proto.regions_of_interest)
        self.counters = proto.counters
        stage_on = proto.HasField("amorphous")
        self.amorphous_stage: Optional[result_pb2.AmorphousStage] = (
            proto.amorphous if stage_on else None)
        self.amorphous = np.fromiter((a.amorphous for a in proto.atoms), dtype=bool, count=n)
        if stage_on:
            self.amorphous_posterior = np.fromiter(
                (a.amorphous_posterior for a in proto.atoms), dtype=np.float64, count=n)
        else:  # proto3's default 0.0 would read as "certainly crystalline"
            self.amorphous_posterior = np.full(n, np.nan)
        self.regions: List[Region] = [Region.from_proto(g) for g in proto.amorphous_regions]
        self.atom_errors: Optional[np.ndarray] = None
        self.atom_amplitude: Optional[np.ndarray] = None
        self.atom_intensity: Optional[np.ndarray] = None
        self.atom_shape: Optional[np.ndarray] = None
        self.atom_fit_status: Optional[List[str]] = None
        if any(a.fit_status for a in proto.atoms):
            self._read_fits(proto)
        self.amorphous_verdict, self.amorphous_uncertain, self.amorphous_reason = (
            _amorphous.verdict_fields(proto))
        checks = _checks.checks_of(proto)
        self.warnings: List[_checks.PriorWarning] = checks.warnings
        self.prior_used: Optional[session_pb2.PhysicsPrior] = checks.prior_used
        self.prior_derived = checks.prior_derived
        self.prior_pixel_units = checks.prior_pixel_units
        self.lattice: Optional[_checks.MeasuredLattice] = checks.lattice
        self.crystalline_fraction = checks.crystalline_fraction
        self.crystal_note = checks.crystal_note
        self.sublattice = checks.sublattice
        self.sublattice_names = checks.sublattice_names
        self.sublattices: List[_checks.SublatticeCount] = checks.sublattices
        self.sublattice_note = checks.sublattice_note

    def _read_fits(self, proto: result_pb2.FrameResult) -> None:
        """The Gaussian fits' per-atom arrays; NaN where an atom carries none."""
        n = len(proto.atoms)
        fields = ("x_err", "y_err", "amplitude", "intensity", "sigma_x", "sigma_y", "rotation")
        values = np.full((n, len(fields)), np.nan)
        for i, a in enumerate(proto.atoms):
            if a.fit_status:
                values[i] = [getattr(a, f) for f in fields]
        self.atom_errors = values[:, 0:2].copy()
        self.atom_amplitude = values[:, 2].copy()
        self.atom_intensity = values[:, 3].copy()
        self.atom_shape = values[:, 4:7].copy()
        self.atom_fit_status = [a.fit_status for a in proto.atoms]

    @functools.cached_property
    def windows(self) -> np.ndarray:
        """One row per window: a numpy structured array of
        :data:`logstar.tables.WINDOW_DTYPE` (tile, core, ``cache_state``
        ``"miss"``/``"hit"``/``"retuned"``, parameters, rewards, ...)."""
        return _tables.windows(self.proto)

    @functools.cached_property
    def fronts(self) -> np.ndarray:
        """Every window's Pareto front, one row per point: a numpy
        structured array of :data:`logstar.tables.FRONT_DTYPE` (``window``,
        ``index``, ``chosen``, ``qc``, ``er``, ..., the LoG parameters)."""
        return _tables.fronts(self.proto)

    @functools.cached_property
    def amorphous_windows(self) -> np.ndarray:
        """The amorphous stage's windows, one row each (empty when the stage
        is off): :data:`logstar.tables.AMORPHOUS_WINDOW_DTYPE` (tile, core,
        ``cache_state``, ``skipped``, ``verdict`` ``"confident"``/
        ``"uncertain"``, evidence, counts, tuned parameters)."""
        return _tables.amorphous_windows(self.proto)

    @property
    def cache_states(self) -> List[str]:
        """Each window's cache state: ``"miss"``, ``"hit"`` or ``"retuned"``."""
        return [str(s) for s in self.windows["cache_state"]]

    def to_dataframe(self, what: str = "atoms"):
        """A pandas DataFrame (pandas must be installed) of the ``"atoms"``
        (x, y, sigma, response, window, amorphous, amorphous_posterior,
        sublattice name; px; the fits' columns with Gaussian refinement),
        the ``"windows"``, the ``"fronts"`` or the
        ``"amorphous_windows"``."""
        return _tables.to_dataframe(self, what)

    def to_hyperspy_markers(self, signal: Any = None, color: str = "red",
                            size: float = 20) -> List[Any]:
        """The atoms as HyperSpy markers (HyperSpy must be installed), in the
        axes' units of ``signal`` (the frame's Signal2D) or in px without
        it: ``signal.add_marker(result.to_hyperspy_markers(signal),
        permanent=True)``. Amorphous atoms in blue."""
        return _tables.to_hyperspy_markers(self, signal, color, size)

    def __repr__(self) -> str:
        extra = ""
        if self.amorphous_stage is not None:
            extra = f", amorphous={int(self.amorphous.sum())}, regions={len(self.regions)}"
        if self.warnings:
            extra += f", warnings={len(self.warnings)}"
        return (f"Result(sequence={self.sequence}, atoms={len(self.atoms)}{extra}, "
                f"total_ms={self.latency.total_ms:.1f})")


class _NotAnalysed(_Record):
    @property
    def atoms(self) -> np.ndarray:
        raise FrameNotAnalysed(f"frame {self.sequence} has no atoms: {self}")


class Dropped(_NotAnalysed):
    """A frame the session's overload policy dropped; ``reason`` is the
    FrameDropped.Reason name, e.g. ``"REASON_SUPERSEDED"``."""
    kind = "dropped"

    def __init__(self, sequence: int, reason: str, tag: Any = None) -> None:
        super().__init__(sequence, tag)
        self.reason = reason

    def __repr__(self) -> str:
        return f"Dropped(sequence={self.sequence}, reason={self.reason})"


class Failed(_NotAnalysed):
    """A frame that could not be analysed. ``code`` is the gRPC status
    name (e.g. ``"INVALID_ARGUMENT"``), ``message`` names the problem,
    ``origin`` is ``"server"`` or ``"client"`` (refused before sending)."""
    kind = "error"

    def __init__(self, sequence: int, code: str, message: str, origin: str,
                 tag: Any = None) -> None:
        super().__init__(sequence, tag)
        self.code = code
        self.message = message
        self.origin = origin

    def __repr__(self) -> str:
        return f"Failed(sequence={self.sequence}, {self.code} from {self.origin}: {self.message})"


Record = Union[Result, Dropped, Failed]


def _code_name(code: int) -> str:
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return c.name
    return str(code)


# ---------------------------------------------------------------------------

class Watched:
    """One answer of :meth:`Client.watch`: ``result`` (a :class:`Result`)
    when watching a session, ``summary`` (its SessionInfo, without settings
    or cache) when watching all sessions; ``skipped``: answers for this
    watcher overwritten by newer ones before it read them; ``preview``: the
    frame as analysed, uint8 rows × columns (1st..99th percentile stretched),
    downscaled by ``preview_scale`` (preview px per frame px), or None."""

    def __init__(self, proto: service_pb2.WatchResponse) -> None:
        self.proto = proto
        self.skipped: int = proto.skipped
        self.result: Optional[Result] = (Result(proto.result)
                                         if proto.HasField("result") else None)
        self.summary: Optional[service_pb2.SessionInfo] = (
            proto.summary if proto.HasField("summary") else None)
        self.preview: Optional[np.ndarray] = None
        self.preview_scale: float = proto.preview.scale
        px = proto.preview.pixels
        if px.width and px.height and len(px.data) == px.width * px.height:
            self.preview = np.frombuffer(px.data, np.uint8).reshape(px.height, px.width)

    def __repr__(self) -> str:
        what = (f"result {self.result.sequence}" if self.result is not None
                else f"summary {self.summary.session_id}" if self.summary is not None else "empty")
        return f"Watched({what}, skipped={self.skipped})"


class Watch:
    """The answers of :meth:`Client.watch`, an iterator of :class:`Watched`;
    also a context manager. :meth:`close` may be called from any thread: an
    iteration blocked on the next answer then ends."""

    def __init__(self, client: "Client", call: Any, what: str) -> None:
        self._client = client
        self._call = call
        self._what = what

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> Watched:
        try:
            return Watched(next(self._call))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise self._client._error(e, f"watch {self._what}") from None

    def close(self) -> None:
        """Stops watching (cancels the call)."""
        self._call.cancel()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self._call.cancel()


# The gRPC metadata key that carries a session's id on every RPC of that
# session (as the C++ client's kSessionMetadataKey).
SESSION_METADATA_KEY = "x-logstar-session"


class Client:
    """A connection to logstard.

    ``addr`` is ``host:port``. ``token`` is sent as ``authorization: Bearer
    <token>`` on every RPC. ``tls``: False (plaintext, the daemon's default
    on loopback), True (TLS with the system's roots) or a :class:`Tls`.
    The constructor waits up to ``connect_timeout`` seconds for the
    connection and raises :class:`ServerUnavailable` otherwise.
    ``compression``: ``"none"`` (default), ``"zstd"`` or ``"zstd-delta"``, lossless
    compression of the pixels streams send in their messages, for slow
    links (:mod:`logstar.compression`); used when the daemon accepts it
    (``Session.compression``), never for shared memory or ``analyze``."""

    def __init__(self, addr: str, token: Optional[str] = None,
                 tls: Union[bool, Tls] = False, *, connect_timeout: float = 10.0,
                 compression: str = "none") -> None:
        self.addr = addr
        self._compression = _compression.parse_codec(compression)
        self._metadata: Tuple[Tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ())
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                   # After the daemon went away, try it again every 0.2 s
                   # doubling to 2 s (gRPC's default grows to 2 min), so that
                   # a stream with `reconnect` finds a restarted daemon soon.
                   ("grpc.initial_reconnect_backoff_ms", 200),
                   ("grpc.max_reconnect_backoff_ms", 2000)]
        if tls is False or tls is None:
            self._channel = grpc.insecure_channel(addr, options=options)
        else:
            t = Tls() if tls is True else tls

            def read(path: Optional[str]) -> Optional[bytes]:
                if path is None:
                    return None
                with open(path, "rb") as f:
                    return f.read()
            creds = grpc.ssl_channel_credentials(read(t.ca), read(t.key), read(t.cert))
            if t.server_name:
                options.append(("grpc.ssl_target_name_override", t.server_name))
            self._channel = grpc.secure_channel(addr, creds, options=options)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise ServerUnavailable(
                f"cannot connect to logstard at {addr} within {connect_timeout:g} s "
                f"(is it running and listening there? do the TLS settings match?)") from None
        self._stub = service_pb2_grpc.LogStarStub(self._channel)
        self._health = self._channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)

    # -- plumbing
    def _session_metadata(self, session_id: str) -> Tuple[Tuple[str, str], ...]:
        # Every RPC of a session carries its id, so that a proxy in front of
        # several daemons routes the session to the replica that holds it
        # (docs/scale-out.md); without an id (the server picks one) none.
        if not session_id:
            return self._metadata
        return self._metadata + ((SESSION_METADATA_KEY, session_id),)

    def _wait_ready(self, timeout: float) -> bool:
        """Whether the channel connects within ``timeout`` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
            return True
        except grpc.FutureTimeoutError:
            return False

    def _error(self, e: grpc.RpcError, what: str,
               invalid: type = InvalidSettings) -> LogstarError:
        code, details = e.code(), e.details()
        msg = f"{what}: {code.name}: {details}"
        if code == grpc.StatusCode.UNAVAILABLE:
            return ServerUnavailable(f"{what}: logstard at {self.addr} is unavailable: {details}")
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return AuthenticationError(f"{what}: {details} (give Client(token=...))")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return invalid(msg)
        return RpcFailed(msg, code.name)

    # -- API
    def health(self, service: str = "", timeout: float = 10.0) -> str:
        """The standard gRPC health check: ``"SERVING"``, ``"NOT_SERVING"``,
        ... for ``service`` (``""``: the server; ``"logstar.v1.LogStar"``).
        logstard answers it without the bearer token, as probes have none."""
        # HealthCheckRequest{string service = 1} and HealthCheckResponse
        # {enum status = 1}, encoded by hand: Debian ships no Python stubs
        # of grpc.health.v1.
        name = service.encode()
        if len(name) > 127:
            raise ValueError("health: service name too long")
        request = (b"\x0a" + bytes([len(name)]) + name) if name else b""
        try:
            response = self._health(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as e:
            raise self._error(e, "health check") from None
        status = response[1] if len(response) >= 2 and response[0] == 0x08 else 0
        return _HEALTH_STATUS.get(status, str(status))

    def sessions(self, include_settings: bool = False) -> List[service_pb2.SessionInfo]:
        """Every session on the server, by id (ListSessions): counters,
        attached streams, timestamps, and settings when asked; never the
        cache (``Session.info(include_cache=True)`` has it). Through a proxy
        to replicas sharing a session store (docs/scale-out.md), also the
        sessions other replicas hold: those have ``only_in_store`` set and
        only their ``session_id``."""
        try:
            response = self._stub.ListSessions(
                service_pb2.ListSessionsRequest(include_settings=include_settings),
                metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._error(e, "list sessions") from None
        return list(response.sessions)

    def session(self, prior: Optional[_settings.PriorLike] = None,
                settings: Optional[Union[_settings.AnalysisLike,
                                         session_pb2.SessionSettings]] = None,
                *, overload: Optional[str] = None, queue_capacity: Optional[int] = None,
                amorphous: Optional[_settings.AmorphousLike] = None,
                session_id: str = "") -> "Session":
        """Opens a session with a prior (and analysis settings), or resumes
        the session ``session_id`` (its settings are kept unless given).

        ``settings``: AnalysisSettings or a dict of its fields, e.g.
        ``{"window": 128, "evaluations": 20}``; or a whole SessionSettings.
        ``overload``: ``"block"``, ``"latest-wins"`` or ``"reject"``.
        ``amorphous``: True turns the amorphous stage on (results then carry
        ``amorphous``, ``amorphous_posterior`` and ``regions``); a dict of
        AmorphousSettings fields, e.g. ``{"evaluations": 16}``, turns it on
        with those settings."""
        given = prior is not None or settings is not None or overload is not None \
            or queue_capacity is not None or amorphous is not None
        if not given and not session_id:
            raise InvalidSettings("a new session needs a prior (or settings); "
                                  "give prior=... or session_id= of an existing session")
        open_ = service_pb2.OpenSession(session_id=session_id, compression=self._compression)
        if given:
            open_.settings.CopyFrom(_settings.session_settings(
                prior, settings, overload, queue_capacity, amorphous=amorphous))
        info = self._open(open_)
        return Session(self, info)

    def _open(self, open_: service_pb2.OpenSession) -> service_pb2.SessionInfo:
        # A stream with only the open request: the server creates (or
        # resumes) the session, answers `opened` and ends the stream.
        try:
            call = self._stub.Stream(iter([service_pb2.StreamRequest(open=open_)]),
                                     metadata=self._session_metadata(open_.session_id),
                                     timeout=30)
            responses = list(call)
        except grpc.RpcError as e:
            raise self._error(e, "opening the session") from None
        if not responses or responses[0].WhichOneof("kind") != "opened":
            raise RpcFailed("opening the session: the server did not answer `opened`")
        return responses[0].opened

    def shared_memory_ring(self, slots: int, slot_bytes: int, *, region: Optional[str] = None,
                           mode: int = 0o600,
                           memfd: Optional[bool] = None) -> "_shared_memory.SharedMemoryRing":
        """A ring of ``slots`` shared memory slots of ``slot_bytes`` each,
        registered with the daemon, for ``Session.stream(...,
        shared_memory=ring)``: pixels go through shared memory instead of
        the message. Only for a client on the daemon's host; see
        :mod:`logstar.shared_memory` for the contract (``memfd``: a sealed
        memory file the daemon maps, over its Unix socket)."""
        return _shared_memory.SharedMemoryRing(self, slots, slot_bytes, region=region, mode=mode,
                                               memfd=memfd)

    def shared_memory_regions(self) -> List[service_pb2.SharedMemoryRegion]:
        """The shared memory regions the daemon holds (ListSharedMemory)."""
        try:
            response = self._stub.ListSharedMemory(service_pb2.ListSharedMemoryRequest(),
                                                   metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._error(e, "list shared memory") from None
        return list(response.regions)

    def _register_shared_memory(self, region: str, key: str, byte_size: int) -> None:
        try:
            self._stub.RegisterSharedMemory(service_pb2.RegisterSharedMemoryRequest(
                region=region, key=key, byte_size=byte_size), metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._error(e, f"registering shared memory {key}") from None

    def _unregister_shared_memory(self, region: str) -> None:
        try:
            self._stub.UnregisterSharedMemory(
                service_pb2.UnregisterSharedMemoryRequest(region=region), metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._error(e, f"unregistering shared memory region {region}") from None

    def watch(self, session_id: Optional[str] = None, *, all_sessions: bool = False,
              preview: bool = False) -> "Watch":
        """Watches the daemon read-only (the Watch RPC): yields a
        :class:`Watched` for each result of session ``session_id`` as its
        frames are analysed (with ``preview`` also the frame as an 8-bit
        image), or with ``all_sessions`` each session's summary as it
        answers a frame. A watcher never slows the session's streams: when
        it reads slowly it gets the latest and ``skipped`` counts the ones
        it missed. Returns a :class:`Watch` (an iterator) once the daemon
        has attached the watcher. Runs until :meth:`Watch.close` (from any
        thread; iteration then ends) or the daemon shuts down
        (:class:`ServerUnavailable`); an unknown session raises
        :class:`RpcFailed` with code ``NOT_FOUND`` at the first answer."""
        if all_sessions == bool(session_id):
            raise ValueError("watch: give either session_id or all_sessions=True")
        request = service_pb2.WatchRequest(session_id=session_id or "",
                                           all_sessions=all_sessions, include_preview=preview)
        call = self._stub.Watch(request, metadata=self._session_metadata(session_id or ""))
        # The daemon sends its headers once the watcher is attached: every
        # frame analysed after this returns is seen.
        call.initial_metadata()
        return Watch(self, call, session_id or "all sessions")

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Session:
    """A session on the server: its id, settings and cache. Made by
    :meth:`Client.session`."""

    def __init__(self, client: Client, info: service_pb2.SessionInfo) -> None:
        self._client = client
        self.id: str = info.session_id
        self._info = info
        self._lock = threading.Lock()
        # Sequence numbers increase over all streams of this Session object.
        self._sequence = itertools.count(1)
        # The last stream's reconnects, frames sent again, duplicate answers.
        self.stream_stats = _streaming.StreamStats()

    @property
    def settings(self) -> session_pb2.SessionSettings:
        """The settings as last seen from the server."""
        return self._info.settings

    @property
    def compression(self) -> str:
        """The codec frames of this session's streams go with: the one the
        client asked for (``"zstd"``, ``"zstd-delta"``) when the daemon
        accepted it, else ``"none"``."""
        return _compression.NAMES[self._client._compression] if self._compresses() else "none"

    def _compresses(self) -> bool:
        return (self._client._compression != frame_pb2.PIXEL_CODEC_NONE
                and self._info.compression == self._client._compression)

    def _compress(self, frame: frame_pb2.Frame) -> frame_pb2.Frame:
        """Pixels in the message compressed when the daemon accepts it."""
        if self._compresses() and frame.HasField("pixels"):
            _compression.compress_pixels(frame.pixels, self._client._compression)
        return frame

    def _next_sequence(self) -> int:
        with self._lock:
            return next(self._sequence)

    def _prepare(self, item: Any, ring: Optional["_shared_memory.SharedMemoryRing"] = None,
                 slot: int = -1) -> Tuple[Optional[frame_pb2.Frame], _streaming.Pending]:
        """A frame stream item to a Frame; an item the client cannot encode
        becomes a Pending with its failure instead. With a ring, an array's
        pixels go to ``slot`` (a Frame message is sent as it is)."""
        message, tag = item, None
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], frame_pb2.Frame):
            message, tag = item[0], dict(item[1] or {}).get("tag")
        if isinstance(message, frame_pb2.Frame):  # e.g. from a recording: sent as recorded
            f = frame_pb2.Frame()
            f.CopyFrom(message)
            if f.sequence == 0:
                f.sequence = self._next_sequence()
            f.session_id = ""
            return self._compress(f), _streaming.Pending(f.sequence, tag)
        sequence = self._next_sequence()
        tag = None
        try:
            array, meta = _frames.split_item(item)
            tag = meta.pop("tag", None)
            sink = ring._sink(slot) if ring is not None else None
            return (self._compress(_frames.to_frame(array, meta, sequence, sink=sink)),
                    _streaming.Pending(sequence, tag, holds_slot=sink is not None))
        except InvalidFrame as e:
            return None, _streaming.Pending(sequence, tag, e)

    def stream(self, frames: Iterable[Any], *, timeout: Optional[float] = None,
               shared_memory: Optional["_shared_memory.SharedMemoryRing"] = None,
               reconnect: float = 0.0) -> Iterator[Record]:
        """Streams frames and yields one record per frame, in order.

        Items of ``frames``: a 2-D numpy array, ``(array, metadata)`` with
        metadata as in :data:`logstar.frames.METADATA_KEYS` (a ``"tag"``
        comes back on the record), or a ``Frame`` message (e.g. from a
        recording; ``(frame, {"tag": ...})`` to tag it). ``frames`` may be a generator producing frames as the
        microscope delivers them; it is read as the server takes frames
        (back-pressure under the "block" policy). If it raises, the frames
        before are still answered and then the exception is re-raised.
        Raises :class:`StreamBroken` when the stream ends before every sent
        frame is answered (e.g. the server shut down), after yielding what
        was answered.

        ``shared_memory``: a ring from :meth:`Client.shared_memory_ring`;
        arrays' pixels then go through it instead of the message (client
        and daemon on one host), at most its ``slots`` frames in flight.

        ``reconnect``: seconds to keep trying, per outage, when the stream
        breaks because the daemon went away (UNAVAILABLE): the stream is
        opened again on this session, the ring registered again, and the
        frames sent but not answered are sent again; every frame still gets
        exactly one record, in order (see :mod:`logstar.streaming`). 0 (the
        default): raise :class:`StreamBroken` at once. ``stream_stats``
        counts the stream's reconnects, frames sent again and duplicate
        answers."""
        self.stream_stats = _streaming.StreamStats()
        return _streaming.Streamer(self, frames, timeout, shared_memory, reconnect,
                                   self.stream_stats).records()

    @staticmethod
    def _local_failure(p: _streaming.Pending) -> Failed:
        return Failed(p.sequence, "INVALID_ARGUMENT", str(p.failure), "client", p.tag)

    @staticmethod
    def _record(response: service_pb2.StreamResponse, tag: Any) -> Record:
        kind = response.WhichOneof("kind")
        if kind == "result":
            return Result(response.result, tag)
        if kind == "dropped":
            return Dropped(response.sequence,
                           service_pb2.FrameDropped.Reason.Name(response.dropped.reason), tag)
        if kind == "error":
            return Failed(response.sequence, _code_name(response.error.code),
                          response.error.message, "server", tag)
        raise LogstarError(f"stream: unexpected answer {kind!r} for frame {response.sequence}")

    def analyze(self, array: np.ndarray, meta: Optional[_frames.Metadata] = None,
                timeout: Optional[float] = None) -> Result:
        """One frame through the unary AnalyzeFrame with this session's
        settings and cache. Raises InvalidFrame (naming the problem) for a
        frame the client or server refuses."""
        array, meta = _frames.image_and_metadata(array, meta)
        tag = meta.pop("tag", None)
        request = service_pb2.AnalyzeFrameRequest()
        _frames.to_frame(array, meta, self._next_sequence(), request.frame)
        request.frame.session_id = self.id
        _frames.now_timestamp(request.frame.send_time)
        try:
            result = self._client._stub.AnalyzeFrame(
                request, metadata=self._client._session_metadata(self.id), timeout=timeout)
        except grpc.RpcError as e:
            raise self._client._error(e, f"analyze (session {self.id})", InvalidFrame) from None
        return Result(result, tag)

    def update(self, prior: Optional[_settings.PriorLike] = None,
               settings: Optional[_settings.AnalysisLike] = None, *,
               overload: Optional[str] = None, queue_capacity: Optional[int] = None,
               amorphous: Optional[_settings.AmorphousLike] = None,
               choices: Sequence[Tuple[int, int]] = ()) -> service_pb2.SessionInfo:
        """Changes the session's settings mid-stream, only the parts given,
        and/or the operator's choices on Pareto fronts, ``(window,
        front_index)`` pairs (window -1: every window). Applies from the
        next frame analysed. Returns the SessionInfo.

        The daemon replaces a session's settings whole, so this fetches the
        settings it holds (GetSession) and sends them back changed:
        ``settings={"evaluations": 10}`` changes the evaluations and keeps
        window, seed and everything else (a dict changes the fields it
        names, nested dicts field by field; an AnalysisSettings message
        replaces the analysis settings whole); ``amorphous=False`` turns the
        stage off and keeps its settings; ``prior`` replaces the prior whole.
        (Two clients updating one session at once: the last one wins.)"""
        request = service_pb2.UpdateSessionRequest(session_id=self.id)
        if any(v is not None for v in (prior, settings, overload, queue_capacity, amorphous)):
            request.settings.CopyFrom(_settings.session_settings(
                prior, settings, overload, queue_capacity, base=self.info().settings,
                amorphous=amorphous))
        for window, index in choices:
            request.choices.add(window=window, front_index=index)
        try:
            info = self._client._stub.UpdateSession(
                request, metadata=self._client._session_metadata(self.id))
        except grpc.RpcError as e:
            raise self._client._error(e, f"update session {self.id}") from None
        self._info = info
        return info

    def info(self, include_cache: bool = False) -> service_pb2.SessionInfo:
        """The session's settings, counters and (optionally) cache."""
        try:
            info = self._client._stub.GetSession(
                service_pb2.GetSessionRequest(session_id=self.id, include_cache=include_cache),
                metadata=self._client._session_metadata(self.id))
        except grpc.RpcError as e:
            raise self._client._error(e, f"session {self.id}") from None
        self._info = info
        return info

    def reset(self, delete: bool = False) -> service_pb2.SessionInfo:
        """Empties the session's cache, or deletes the session."""
        try:
            return self._client._stub.ResetSession(
                service_pb2.ResetSessionRequest(session_id=self.id, delete_session=delete),
                metadata=self._client._session_metadata(self.id))
        except grpc.RpcError as e:
            raise self._client._error(e, f"reset session {self.id}") from None
