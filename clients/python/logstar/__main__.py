"""``python3 -m logstar``: replay and record recordings (.lsr).

    python3 -m logstar replay FILE.lsr --server HOST:PORT [--speed 1|N|max] [--loop K]
        [--overload block|latest-wins|reject] [--reconnect-s S] [--session ID]
        [--results R.jsonl] [--token T | --token-file F]
        [--tls] [--tls-ca CA.pem] [--tls-cert C.pem --tls-key K.pem] [--compress none|zstd]
    python3 -m logstar record --from FILE|DIR|GLOB... --prior PRIOR.json --out S.lsr [--fps F]

replay sends the recorded frames at their original pace divided by
``--speed`` (``max``: as fast as the server takes them, which implies the
"block" overload policy unless ``--overload`` says otherwise), shows a
progress line on stderr and a summary on stdout. Exit status: 0 when every
frame was analysed; 1 when frames were lost (dropped, failed, unanswered,
or a damaged file whose intact part was replayed); 2 for usage errors or an
unreachable server.

``--session`` and ``--results`` mean what they mean for the C++ CLI's
``logstar replay`` (clients/cli/replay.cc): the session to open or resume
(behind a proxy routing by ``x-logstar-session``, docs/scale-out.md, a fixed
id keeps the session on one replica), and one JSON line per answered frame
with the same keys (sequence, file_sequence, loop, connection, latency_ms,
status, and per status the atoms, cache counts, ... or the drop reason or
error), written as answers come; only the windows' details (``windows``)
are left out (``Result.windows`` has them).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time
from typing import Iterator, List, Optional, Sequence

import numpy as np

from . import score
import grpc

from .client import Client, Dropped, Failed, Record, Result, Tls
from .errors import LogstarError, RecordingError, StreamBroken
from .files import read_frames
from .recording import RecordedFrame, RecordingWriter, read_recording
from .settings import session_settings


def _paced(frames: Sequence[RecordedFrame], speed: float, loops: int,
           sent: List[float]) -> Iterator[tuple]:
    """The recorded frames at their recorded offsets divided by speed
    (speed inf: no waiting); the k-th item is tagged k."""
    start = time.monotonic()
    span = frames[-1].offset_ns if frames else 0
    k = 0
    for loop in range(loops):
        for rf in frames:
            if math.isfinite(speed):
                # Later loops continue after the previous one, one mean frame interval apart.
                gap = span / max(len(frames) - 1, 1)
                target = start + (loop * (span + gap) + rf.offset_ns) / 1e9 / speed
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            frame = type(rf.frame)()
            frame.CopyFrom(rf.frame)
            frame.sequence = 0  # the session numbers them, increasing over loops
            sent.append(time.monotonic())
            yield frame, {"tag": k}
            k += 1


def _percentile(values: List[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _status_code(name: str) -> int:
    """A gRPC status name's number (the C++ CLI's --results writes numbers)."""
    try:
        return grpc.StatusCode[name].value[0]
    except KeyError:
        return grpc.StatusCode.UNKNOWN.value[0]


def _result_fields(res, f1: Optional[float], line: dict) -> None:
    """A FrameResult's part of a --results line, as the C++ CLI writes it."""
    line["status"] = "result"
    line["num_atoms"] = len(res.atoms)
    line["atoms_xy_sigma"] = [[a.x, a.y, a.sigma] for a in res.atoms]
    line["rewards"] = {"qc": res.rewards.qc, "er": res.rewards.er}
    line["cache"] = {"hits": res.cache_hits, "misses": res.cache_misses,
                     "retunes": res.cache_retunes}
    line["server_total_ms"] = res.latency.total_ms
    line["server_decode_ms"] = res.latency.decode_ms
    line["warnings"] = [{"field": w.field, "given": w.given, "measured": w.measured,
                         "message": w.message} for w in res.warnings]
    if res.prior_used.derived:
        line["prior_derived"] = {
            "nearest_neighbor": res.prior_used.prior.nearest_neighbor_angstrom,
            "column_density": res.prior_used.prior.column_density_per_nm2,
            "pixel_units": res.prior_used.pixel_units}
    if res.HasField("amorphous"):
        st = res.amorphous
        line["amorphous"] = {
            "regions": len(res.amorphous_regions), "area_fraction": st.area_fraction,
            "atoms": sum(bool(a.amorphous) for a in res.atoms),
            "cache": {"hits": st.cache_hits, "misses": st.cache_misses,
                      "retunes": st.cache_retunes, "skipped": st.skipped},
            "ms": res.latency.gmm_ms}
    if f1 is not None:
        line["f1"] = f1


def _results_line(record: Record, rf: RecordedFrame, loop: int, latency_ms: float,
                  f1: Optional[float]) -> str:
    """One --results line: the keys and order of `logstar replay --results`."""
    line = {"sequence": record.sequence, "file_sequence": rf.frame.sequence, "loop": loop,
            "connection": record.connection, "latency_ms": latency_ms}
    if isinstance(record, Result):
        _result_fields(record.proto, f1, line)
    elif isinstance(record, Dropped):
        line.update(status="dropped", reason=record.reason)
    elif isinstance(record, Failed):
        line.update(status="error", code=_status_code(record.code), message=record.message)
    return json.dumps(line, separators=(",", ":"))


def replay(args: argparse.Namespace) -> int:
    try:
        rec = read_recording(args.file, allow_damaged=True)
    except (OSError, RecordingError) as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    if rec.damage is not None:
        print(f"replay: warning: {rec.damage}; replaying the {len(rec.frames)} intact frames",
              file=sys.stderr)
    speed = math.inf if args.speed == "max" else float(args.speed)
    if not speed > 0:
        print("replay: --speed must be > 0 or 'max'", file=sys.stderr)
        return 2
    overload = args.overload or ("block" if math.isinf(speed) else None)
    token = args.token
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    tls = False
    if args.tls or args.tls_ca or args.tls_cert:
        tls = Tls(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key,
                  server_name=args.tls_server_name)

    results = None
    try:
        if args.results:
            os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
            results = open(args.results, "w")
    except OSError as e:
        print(f"replay: --results: {e}", file=sys.stderr)
        return 2
    try:
        client = Client(args.server, token=token, tls=tls, connect_timeout=args.connect_timeout,
                        compression=args.compress)
        prior = args.prior if args.prior else None
        session = client.session(prior, rec.header.settings if prior is None else None,
                                 overload=overload, session_id=args.session or "")
    except LogstarError as e:
        print(f"replay: {e}", file=sys.stderr)
        if results is not None:
            results.close()
        return 2

    pixel = session.settings.prior.pixel_size_angstrom
    nn = session.settings.prior.nearest_neighbor_angstrom
    counts = {"result": 0, "dropped": 0, "error": 0}
    rtt_ms: List[float] = []
    server_ms: List[float] = []
    f1: List[float] = []
    hits = lookups = 0
    sent: List[float] = []
    failures: List[str] = []
    warnings: List[str] = []  # distinct prior warnings, in order
    with_warnings = 0
    unanswered = 0
    output_failed = False
    tty = sys.stderr.isatty()
    last_progress = 0.0
    t0 = time.monotonic()

    def progress(final: bool = False) -> None:
        elapsed = max(time.monotonic() - t0, 1e-9)
        done = sum(counts.values())
        line = (f"sent {len(sent)}  answered {done}  {done / elapsed:5.1f} fps  "
                f"latency p50 {_percentile(rtt_ms, 50):6.1f} ms p99 "
                f"{_percentile(rtt_ms, 99):6.1f} ms  cache hits "
                f"{100.0 * hits / lookups if lookups else 0.0:5.1f} %  "
                f"dropped {counts['dropped']}  failed {counts['error']}")
        if tty:
            print("\r" + line, end="\n" if final else "", file=sys.stderr, flush=True)
        elif final or int(elapsed) != int(last_elapsed[0]):
            print(line, file=sys.stderr, flush=True)
        last_elapsed[0] = elapsed

    last_elapsed = [0.0]
    try:
        for record in session.stream(_paced(rec.frames, speed, args.loop, sent),
                                     reconnect=args.reconnect_s):
            counts[record.kind] += 1
            k = record.tag
            latency_ms = (time.monotonic() - sent[k]) * 1e3
            frame_f1: Optional[float] = None
            if isinstance(record, Result):
                rtt_ms.append(latency_ms)
                server_ms.append(record.latency.total_ms)
                hits += record.proto.cache_hits
                lookups += (record.proto.cache_hits + record.proto.cache_misses
                            + record.proto.cache_retunes)
                with_warnings += bool(record.warnings)
                warnings.extend(w.message for w in record.warnings if w.message not in warnings)
                rf = rec.frames[k % len(rec.frames)]
                if rec.header.has_truth and len(rf.truth):
                    if record.prior_used is not None:  # the prior it ran with (auto: derived)
                        px, spacing = (record.prior_used.pixel_size_angstrom,
                                       record.prior_used.nearest_neighbor_angstrom)
                    else:
                        px, spacing = pixel or rf.frame.pixel_size_x_angstrom, nn
                    if px > 0 and spacing > 0:
                        frame_f1 = score.match(record.atoms, rf.truth, 0.3 * spacing / px).f1
                        f1.append(frame_f1)
            elif isinstance(record, Failed):
                failures.append(f"frame {k}: {record.code}: {record.message}")
            elif isinstance(record, Dropped):
                pass
            if results is not None:
                # Flushed per line: a reader (tests/load/scale_out.sh) counts
                # the answers as they come.
                results.write(_results_line(record, rec.frames[k % len(rec.frames)],
                                            k // len(rec.frames), latency_ms, frame_f1) + "\n")
                results.flush()
            now = time.monotonic()
            if now - last_progress > 0.25:
                progress()
                last_progress = now
    except StreamBroken as e:
        unanswered = len(e.unanswered)
        failures.append(str(e))
    except LogstarError as e:
        print(f"\nreplay: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        failures.append("interrupted")
    except OSError as e:  # writing --results
        failures.append(f"--results: {e}")
        output_failed = True
    finally:
        if results is not None:
            results.close()
    progress(final=True)
    elapsed = time.monotonic() - t0

    total = len(rec.frames) * args.loop
    rows = [
        ("recording", f"{args.file} ({len(rec.frames)} frames"
                      f"{', damaged at byte ' + str(rec.damage.offset) if rec.damage else ''})"),
        ("session", session.id),
        ("frames sent", f"{len(sent)} of {total}"),
        ("analysed", str(counts["result"])),
        ("dropped", str(counts["dropped"])),
        ("failed", str(counts["error"])),
        ("unanswered", str(unanswered)),
    ]
    if args.reconnect_s > 0:
        st = session.stream_stats
        rows.append(("reconnects", f"{st.reconnects} (frames sent again {st.resent}, "
                                   f"duplicate answers ignored {st.duplicates})"))
    rows += [
        ("wall time", f"{elapsed:.2f} s ({sum(counts.values()) / max(elapsed, 1e-9):.1f} fps)"),
        ("latency (client)", f"p50 {_percentile(rtt_ms, 50):.1f} ms  p95 "
                             f"{_percentile(rtt_ms, 95):.1f} ms  p99 "
                             f"{_percentile(rtt_ms, 99):.1f} ms"),
        ("latency (server)", f"p50 {_percentile(server_ms, 50):.1f} ms  p99 "
                             f"{_percentile(server_ms, 99):.1f} ms"),
        ("cache hit rate", f"{100.0 * hits / lookups:.1f} %" if lookups else "-"),
    ]
    if f1:
        rows.append(("F1 vs truth", f"mean {np.mean(f1):.3f}  min {np.min(f1):.3f}"))
    rows.append(("prior warnings", f"{with_warnings} results"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for line in warnings:
        print(f"replay: warning: prior: {line}", file=sys.stderr)
    for line in failures[:10]:
        print(f"replay: {line}", file=sys.stderr)
    lost = counts["dropped"] + counts["error"] + unanswered + (total - len(sent))
    return 1 if lost or output_failed or rec.damage is not None else 0


def record(args: argparse.Namespace) -> int:
    paths: List[str] = []
    for pattern in args.sources:
        if os.path.isdir(pattern):
            found = sorted(p for p in glob.glob(os.path.join(pattern, "*"))
                           if os.path.splitext(p)[1].lower() in (".npy", ".tif", ".tiff", ".dm3",
                                                                 ".dm4", ".emd"))
        else:
            found = sorted(glob.glob(pattern)) or [pattern]
        paths.extend(found)
    if not paths:
        print("record: no input files", file=sys.stderr)
        return 2
    interval_ns = int(round(1e9 / args.fps))
    try:
        settings = session_settings(prior=args.prior)
        n = 0
        with RecordingWriter(args.out, settings, description=args.description,
                             created_by="python3 -m logstar record") as w:
            for path in paths:
                for array, meta in read_frames(path):
                    w.write(array, meta, offset_ns=n * interval_ns)
                    n += 1
    except (OSError, LogstarError) as e:
        print(f"record: {e}", file=sys.stderr)
        return 2
    print(f"record: {n} frames from {len(paths)} file(s) -> {args.out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m logstar",
                                     description="logstar Python client tools")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("replay", help="replay a recording through logstard")
    p.add_argument("file")
    p.add_argument("--server", required=True, help="HOST:PORT of logstard")
    p.add_argument("--speed", default="1", help="1 (recorded pace), N (N times faster) or max")
    p.add_argument("--loop", type=int, default=1, help="replay the recording K times")
    p.add_argument("--overload", choices=["block", "latest-wins", "reject"],
                   help="overload policy (default: the recording's; block with --speed max)")
    p.add_argument("--prior", help="PRIOR.json to use instead of the recording's settings")
    p.add_argument("--reconnect-s", type=float, default=0.0,
                   help="when logstard goes away, reconnect for up to S s per outage and send "
                        "the unanswered frames again (default 0: give up)")
    p.add_argument("--session", help="the session to open or resume (default: a new one); "
                                     "behind a proxy it routes the session to one replica")
    p.add_argument("--results", help="R.jsonl: one JSON line per frame as answered (as "
                                     "`logstar replay --results`, without the windows)")
    p.add_argument("--token")
    p.add_argument("--token-file")
    p.add_argument("--tls", action="store_true", help="TLS with the system's roots")
    p.add_argument("--tls-ca")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-server-name")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--compress", choices=["none", "zstd"], default="none",
                   help="lossless compression of the pixels, for slow links (used when the "
                        "daemon accepts it)")
    p.set_defaults(run=replay)

    p = sub.add_parser("record", help="write image files into a recording")
    p.add_argument("--from", dest="sources", nargs="+", required=True,
                   help="image files, directories or globs (.npy, .tif, .dm3/.dm4/.emd)")
    p.add_argument("--prior", required=True, help="PRIOR.json")
    p.add_argument("--out", required=True)
    p.add_argument("--fps", type=float, default=1.0, help="frame rate to record (default 1)")
    p.add_argument("--description", default="")
    p.set_defaults(run=record)

    args = parser.parse_args(argv)
    if getattr(args, "loop", 1) < 1:
        parser.error("--loop must be >= 1")
    if getattr(args, "reconnect_s", 0.0) < 0:
        parser.error("--reconnect-s must be >= 0")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
