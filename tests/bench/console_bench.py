"""What operator consoles cost the controlling stream (issue 18, item 4).

Starts logstard, makes a recorded stream (`logstar synth --frames`, the
lattice objective pair so that fronts have points to pick), tunes a session
on it, then replays it into that session with 0, 1 and 5 `logstar console`
processes attached, each with a reader of its event stream (as an open page
is: the daemon makes a frame preview for it, the console a PNG):
  - paced (the recording's 10 frames/s): the replay's latency p50 (push to
    answer) and the server's time p50;
  - as fast as it goes (--speed max): the replay's throughput.
Configurations alternate over --repeats rounds, so that drift in the
machine's load spreads over all of them. Then click-to-effect: during a
paced replay with one console, a pick is sent through the console's
/api/choose, and the frames between the click (the last result a watcher
had seen) and the first result that runs the picked point are counted.

Not a timed test: run it by hand (tests/bench/run_console_bench.sh) on a
quiet machine and read the ratios against 0 consoles; on a busy machine
they carry its noise (the spread over rounds is printed).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import logstar

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def wait_for(path: str, timeout: float = 30.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            text = open(path).read().strip()
            if text:
                return text
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {path}")


class Console:
    """A `logstar console` process and one reader of its event stream."""

    def __init__(self, logstar_bin: str, daemon: str, session: str, work: str, n: int) -> None:
        port_file = os.path.join(work, f"console{n}.port")
        if os.path.exists(port_file):
            os.remove(port_file)
        self.proc = subprocess.Popen(
            [logstar_bin, "console", "--server", daemon, "--listen", "127.0.0.1:0",
             "--port-file", port_file], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{wait_for(port_file)}"
        self.events = 0
        self.attached = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(session,), daemon=True)
        self.thread.start()
        if not self.attached.wait(10):
            raise RuntimeError("the console did not attach")

    def _read(self, session: str) -> None:
        try:
            with urllib.request.urlopen(
                    f"{self.url}/api/events?session={urllib.parse.quote(session)}") as r:
                for line in r:
                    if line.startswith(b"event: watching"):
                        self.attached.set()
                    elif line.startswith(b"event: result"):
                        self.events += 1
        except OSError:
            pass  # the console stopped

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.thread.join(timeout=10)


class BareWatcher:
    """A Watch call read as fast as it comes, without a console: what the
    daemon's side of watching costs, apart from the consoles' own work."""

    def __init__(self, daemon: str, session: str) -> None:
        self.client = logstar.Client(daemon)
        self.watch = self.client.watch(session)
        self.events = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for _ in self.watch:
                self.events += 1
        except logstar.LogstarError:
            pass

    def stop(self) -> None:
        self.watch.close()
        self.thread.join(timeout=10)
        self.client.close()


def replay(logstar_bin: str, daemon: str, stream: str, session: str, speed: str,
           results: str | None = None) -> dict:
    args = [logstar_bin, "replay", stream, "--server", daemon, "--session", session,
            "--speed", speed]
    if results:
        args += ["--results", results]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"replay failed:\n{out.stdout}\n{out.stderr}")
    figures = {}
    if m := re.search(r"throughput\s+([\d.]+) frames/s", out.stdout):
        figures["fps"] = float(m.group(1))
    if m := re.search(r"latency\s+p50 ([\d.]+)", out.stdout):
        figures["latency_p50_ms"] = float(m.group(1))
    if m := re.search(r"server time\s+p50 ([\d.]+)", out.stdout):
        figures["server_p50_ms"] = float(m.group(1))
    return figures


def click_to_effect(args, daemon: str, stream: str, session: str, work: str) -> dict:
    """Frames from a click (sent through a console) to the first result
    that runs the picked point."""
    client = logstar.Client(daemon)
    console = Console(args.logstar, daemon, session, work, 99)
    watched = client.watch(session)
    seen = []  # (sequence, windows) of every result the watcher read
    reader = threading.Thread(target=lambda: [seen.append(
        (w.result.sequence, w.result.proto.windows)) for w in watched], daemon=True)
    reader.start()
    results = os.path.join(work, "click.jsonl")
    player = threading.Thread(target=replay, args=(args.logstar, daemon, stream, session, "1",
                                                   results))
    player.start()
    while len(seen) < 5:
        time.sleep(0.01)
    # The window with the longest front and its point farthest from the one
    # in use (a pick that differs).
    _, windows = seen[-1]
    w = max(windows, key=lambda w: len(w.front))
    pick = max(range(len(w.front)), key=lambda i: abs(w.front[i].misses - w.front[w.chosen].misses)
               + abs(w.front[i].spurious - w.front[w.chosen].spurious))
    threshold = w.front[pick].parameters.threshold
    clicked_after = seen[-1][0]
    body = urllib.parse.urlencode({"session": session, "window": w.index,
                                   "front_index": pick}).encode()
    t0 = time.monotonic()
    urllib.request.urlopen(f"{console.url}/api/choose", data=body).read()
    request_ms = (time.monotonic() - t0) * 1e3
    player.join()
    watched.close()
    console.stop()
    client.close()
    first = None
    with open(results) as f:
        for line in f:
            r = json.loads(line)
            if "windows" not in r or r["sequence"] <= clicked_after:
                continue
            used = r["windows"][w.index]
            if used["chosen"] == pick and abs(used["parameters"]["threshold"] - threshold) < 1e-12:
                first = r["sequence"]
                break
    return {"window": w.index, "point": pick, "click_after_frame": clicked_after,
            "first_frame_using_it": first,
            "frames": None if first is None else first - clicked_after,
            "choose_request_ms": round(request_ms, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--logstard", required=True)
    p.add_argument("--logstar", required=True)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--consoles", default="0,1,5")
    p.add_argument("--kind", choices=["consoles", "watchers"], default="consoles",
                   help="attach `logstar console`s with a page reader each, or bare Watch calls")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    counts = [int(c) for c in args.consoles.split(",")]
    work = tempfile.mkdtemp(prefix="logstar-console-bench-")
    daemon_proc = subprocess.Popen(
        [args.logstard, "--listen_address=127.0.0.1:0", f"--port_file={work}/port",
         "--log_level=warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        daemon = f"127.0.0.1:{wait_for(os.path.join(work, 'port'))}"
        synth = os.path.join(work, "synth.lsr")
        stream = os.path.join(work, "stream.lsr")
        subprocess.run([args.logstar, "synth", "--frames", str(args.frames), "--out", synth,
                        "--size", str(args.size), "--stage-drift", "0,0"],
                       check=True, capture_output=True)
        subprocess.run([sys.executable, os.path.join(REPO, "tests/console/lattice_stream.py"),
                        synth, stream], check=True)
        session = "bench"
        replay(args.logstar, daemon, stream, session, "max")  # tunes the cache
        rounds = {n: [] for n in counts}
        for _ in range(args.repeats):
            for n in counts:
                consoles = [Console(args.logstar, daemon, session, work, i)
                            if args.kind == "consoles" else BareWatcher(daemon, session)
                            for i in range(n)]
                paced = replay(args.logstar, daemon, stream, session, "1")
                fast = replay(args.logstar, daemon, stream, session, "max")
                events = [c.events for c in consoles]
                for c in consoles:
                    c.stop()
                rounds[n].append({"latency_p50_ms": paced["latency_p50_ms"],
                                  "server_p50_ms": paced["server_p50_ms"],
                                  "fps_max": fast["fps"], "events_per_console": events})
        click = click_to_effect(args, daemon, stream, session, work)
    finally:
        daemon_proc.send_signal(signal.SIGTERM)
        daemon_proc.wait(timeout=60)

    def med(n, key):
        return statistics.median(r[key] for r in rounds[n])

    def spread(n, key):
        v = [r[key] for r in rounds[n]]
        return max(v) - min(v)

    print(f"console bench: {args.kind}, {args.frames} frames of {args.size}², {args.repeats} "
          f"rounds, medians (spread max-min)")
    print(f"{args.kind:>9} {'latency p50 ms':>16} {'server p50 ms':>15} {'max frames/s':>14} "
          f"{'ratio lat':>10} {'ratio fps':>10}")
    base = counts[0]
    for n in counts:
        print(f"{n:>9} {med(n, 'latency_p50_ms'):>9.1f} ({spread(n, 'latency_p50_ms'):4.1f}) "
              f"{med(n, 'server_p50_ms'):>8.1f} ({spread(n, 'server_p50_ms'):4.1f}) "
              f"{med(n, 'fps_max'):>7.1f} ({spread(n, 'fps_max'):5.1f}) "
              f"{med(n, 'latency_p50_ms') / med(base, 'latency_p50_ms'):>10.2f} "
              f"{med(n, 'fps_max') / med(base, 'fps_max'):>10.2f}")
    print(f"click-to-effect: {click['frames']} frame(s) (click after frame "
          f"{click['click_after_frame']}, first using it {click['first_frame_using_it']}; "
          f"the choose request took {click['choose_request_ms']} ms)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": rounds, "click_to_effect": click}, f, indent=1)
    return 0 if click["frames"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
