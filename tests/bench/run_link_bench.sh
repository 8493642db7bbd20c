#!/usr/bin/env bash
# Compressed pixels on a real link (issue 21, item 3): time on the wire and
# end-to-end latency of detector-like uint16 frames (Poisson counts from
# `logstar synth --dose`) with and without `--compress zstd` and
# `--compress zstd-delta` (residuals from the row above), over an
# emulated 1 Gbit/s link, and what compression costs on loopback.
#
# The link: a network namespace with a veth pair, each end rate-limited by
# tc's token bucket (tbf) to --rate; logstard runs inside the namespace, the
# client (`logstar replay`, one frame in flight) outside. The script makes
# the namespace, the pair and the qdiscs and removes them (and its daemons
# and files) on exit, also on Ctrl-C or an error. Needs root (ip, tc).
#
#   tests/bench/run_link_bench.sh [--frames N] [--size PX] [--dose C]
#                                 [--rate 1gbit] [--build DIR]
#
# Per mode (none, zstd, zstd-delta) it prints the median over the frames (but the
# first, which tunes every window, when there are more than two) of
#   wire    = latency - server time (the client's push to the answer, minus
#             the daemon's own arrival-to-answer: compressing, sending,
#             receiving; decompressing is in the server's time)
#   latency = push to answer, everything included
#   server  = the daemon's time for the frame (decode and analysis), and
#             its decode stage (decompressing)
# and the payload's size, then the same two modes on loopback with what the
# codec adds (wire + decode) against the latency. Not a timed test: run it
# by hand on a quiet machine. Builds nothing: `logstar` and `logstard` must
# be built in --build (default build/).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${repo}/build"
frames=6
size=2048
dose=200
rate=1gbit
while (($#)); do
  case "$1" in
    --frames) frames="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --dose) dose="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "run_link_bench.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
  esac
done
logstar="${build}/clients/logstar"
logstard="${build}/server/logstard"
for b in "${logstar}" "${logstard}"; do
  [[ -x "${b}" ]] || { echo "run_link_bench.sh: ${b} not built" >&2; exit 2; }
done
if [[ "$(id -u)" != 0 ]]; then
  echo "run_link_bench.sh: needs root (network namespace, tc)" >&2
  exit 2
fi
python=/usr/bin/python3
[[ -x "${python}" ]] || python=python3

# Names unique to this run, so that two runs or a leftover never collide.
ns="lsbench$$"
veth_out="lsb$$o"  # the client's end (this namespace)
veth_in="lsb$$i"   # the daemon's end (in ${ns})
subnet_octet=$((($$ % 200) + 20))
client_ip="10.${subnet_octet}.77.1"
daemon_ip="10.${subnet_octet}.77.2"
work="$(mktemp -d /tmp/logstar-link-bench.XXXXXX)"
daemon_pid=""

cleanup() {
  set +e
  if [[ -n "${daemon_pid}" ]]; then
    kill "${daemon_pid}" 2>/dev/null
    wait "${daemon_pid}" 2>/dev/null
  fi
  ip link del "${veth_out}" 2>/dev/null  # removes its peer too
  ip netns del "${ns}" 2>/dev/null
  rm -rf "${work}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Frames: Poisson counts at --dose (brightest column), as uint16.
echo "frames: ${frames} x ${size}^2 uint16, Poisson counts at dose ${dose} (logstar synth)"
mkdir -p "${work}/frames"
for ((i = 0; i < frames; ++i)); do
  "${logstar}" synth --out "${work}/synth${i}" --size "${size}" --dose "${dose}" --noise 0 \
    --seed $((100 + i)) --drift 0 >/dev/null
done
"${python}" - "${work}" "${frames}" <<'EOF'
import sys, numpy as np
work, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    # synth scales its Poisson counts back to the clean frame's range:
    # count k is k * q, q the smallest step between the values.
    image = np.load(f"{work}/synth{i}/image.npy").astype(np.float64)
    q = np.diff(np.unique(image)).min()
    counts = np.rint(image / q)
    if counts.min() < 0 or counts.max() > 65535:
        sys.exit(f"synth{i}: counts outside uint16 ({counts.min()}, {counts.max()})")
    np.save(f"{work}/frames/{i:03d}.npy", counts.astype(np.uint16))
EOF
"${logstar}" record --from "${work}/frames" --prior "${work}/synth0/prior.json" \
  --out "${work}/counts.lsr" --window 256 --evals 10 >/dev/null

# What the codecs make of these frames, computed on their own (the Python
# client's logstar.compression as built, at the clients' level 1), as a
# check on the wire figures.
PYTHONPATH="${build}/clients/python" "${python}" - "${work}" "${frames}" "${rate}" <<'EOF' || true
import sys, time, numpy as np
try:
    import zstandard
    from logstar import compression, frames
    from logstar.v1 import frame_pb2
except ImportError:
    sys.exit(0)
work, n = sys.argv[1], int(sys.argv[2])
codecs = {"zstd": frame_pb2.PIXEL_CODEC_ZSTD, "zstd-delta": frame_pb2.PIXEL_CODEC_ZSTD_DELTA}
raw, packed = 0, dict.fromkeys(codecs, 0)
for i in range(n):
    a = np.load(f"{work}/frames/{i:03d}.npy")
    raw += a.nbytes
    for name, codec in codecs.items():
        px = frames.to_frame(a, {}, 0).pixels
        compression.compress_pixels(px, codec)
        packed[name] += len(px.compressed.data)
print(f"payload: {raw / n / 2**20:.2f} MiB per frame raw (counts max {a.max()}, "
      f"mean {a.mean():.1f}); " + ", ".join(
          f"{name} {p / n / 2**20:.2f} MiB (ratio {raw / p:.2f})" for name, p in packed.items()))
rate = sys.argv[3].lower()
for unit, scale in (("gbit", 1e9), ("mbit", 1e6)):
    if rate.endswith(unit):
        bps = float(rate[:-len(unit)]) * scale
        print(f"  bytes on a {rate}/s link: {8e3 * raw / n / bps:.1f} ms raw, " + ", ".join(
            f"{name} {8e3 * p / n / bps:.1f} ms" for name, p in packed.items()))
EOF

# ---- The daemon, on `address_prefix` (a namespace command or nothing).
start_daemon() {  # $1: listen ip, rest: command prefix
  local ip="$1"; shift
  rm -f "${work}/port"
  "$@" "${logstard}" --listen_address="${ip}:0" --port_file="${work}/port" \
    --engine_threads=2 --log_level=warning >"${work}/logstard.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 600); do
    [[ -s "${work}/port" ]] && { port="$(cat "${work}/port")"; return 0; }
    kill -0 "${daemon_pid}" 2>/dev/null || break
    sleep 0.1
  done
  echo "run_link_bench.sh: logstard did not start:" >&2
  cat "${work}/logstard.log" >&2
  exit 1
}
stop_daemon() {
  kill "${daemon_pid}" 2>/dev/null || true
  wait "${daemon_pid}" 2>/dev/null || true
  daemon_pid=""
}

# One replay of the recording; prints "wire latency server" medians (ms).
run_mode() {  # $1: address, $2: none|zstd|zstd-delta, $3: results file
  "${logstar}" replay "${work}/counts.lsr" --server "$1" --compress "$2" --speed max \
    --max-in-flight 1 --overload block --results "$3" >"${work}/replay.log" 2>&1 || {
    echo "run_link_bench.sh: replay failed:" >&2
    cat "${work}/replay.log" >&2
    exit 1
  }
  "${python}" - "$3" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if "server_total_ms" in r]
rows = rows[1:] if len(rows) > 2 else rows  # the first frame tunes every window
lat = [r["latency_ms"] for r in rows]
srv = [r["server_total_ms"] for r in rows]
dec = [r.get("server_decode_ms", 0.0) for r in rows]
wire = [l - s for l, s in zip(lat, srv)]
m = statistics.median
print(f"{m(wire):.1f} {m(lat):.1f} {m(srv):.1f} {m(dec):.1f}")
EOF
}

report() {  # $1: label, $2: none figures, then pairs of codec name and its figures
  local label="$1" none="$2"
  shift 2
  read -r wn ln sn dn <<<"${none}"
  printf '%s\n' "${label}"
  printf '  %-10s wire %7.1f ms  latency %8.1f ms  server %8.1f ms (decode %5.1f ms)\n' \
    none "${wn}" "${ln}" "${sn}" "${dn}"
  while (($#)); do
    local codec="$1" wz lz sz dz
    read -r wz lz sz dz <<<"$2"
    shift 2
    printf '  %-10s wire %7.1f ms  latency %8.1f ms  server %8.1f ms (decode %5.1f ms)\n' \
      "${codec}" "${wz}" "${lz}" "${sz}" "${dz}"
    # The codec's cost: what it adds to the wire (compressing included) and
    # to the daemon's decode stage, against the uncompressed latency; the
    # latencies themselves also differ by the analysis's own spread.
    "${python}" -c "
wn, ln, dn, wz, lz, dz = ${wn}, ${ln}, ${dn}, ${wz}, ${lz}, ${dz}
cost = (wz + dz) - (wn + dn)
print(f'    wire {wn / wz:.2f}x less with ${codec}; wire + decode {cost:+.1f} ms = '
      f'{100 * cost / ln:+.1f} % of the latency (latencies differ by {100 * (lz - ln) / ln:+.1f} %)')"
  done
}

# ---- The emulated link.
ip netns add "${ns}"
ip link add "${veth_out}" type veth peer name "${veth_in}"
ip link set "${veth_in}" netns "${ns}"
ip addr add "${client_ip}/24" dev "${veth_out}"
ip link set "${veth_out}" up
ip -n "${ns}" addr add "${daemon_ip}/24" dev "${veth_in}"
ip -n "${ns}" link set "${veth_in}" up
ip -n "${ns}" link set lo up
# Both directions at the link's rate; a burst of 256 kB (above a GSO
# segment, well below a frame) and up to 100 ms of queue.
tc qdisc add dev "${veth_out}" root tbf rate "${rate}" burst 256kb latency 100ms
ip netns exec "${ns}" tc qdisc add dev "${veth_in}" root tbf rate "${rate}" burst 256kb latency 100ms

start_daemon "${daemon_ip}" ip netns exec "${ns}"
link_none="$(run_mode "${daemon_ip}:${port}" none "${work}/link-none.jsonl")"
link_zstd="$(run_mode "${daemon_ip}:${port}" zstd "${work}/link-zstd.jsonl")"
link_delta="$(run_mode "${daemon_ip}:${port}" zstd-delta "${work}/link-delta.jsonl")"
stop_daemon
report "over a ${rate}/s link (veth + tbf, network namespace), medians of ${frames} frames:" \
  "${link_none}" zstd "${link_zstd}" zstd-delta "${link_delta}"

# ---- Loopback: what compressing and decompressing cost where bytes are free.
start_daemon 127.0.0.1
loop_none="$(run_mode "127.0.0.1:${port}" none "${work}/loop-none.jsonl")"
loop_zstd="$(run_mode "127.0.0.1:${port}" zstd "${work}/loop-zstd.jsonl")"
loop_delta="$(run_mode "127.0.0.1:${port}" zstd-delta "${work}/loop-delta.jsonl")"
stop_daemon
report "on loopback, medians of ${frames} frames:" "${loop_none}" zstd "${loop_zstd}" \
  zstd-delta "${loop_delta}"
