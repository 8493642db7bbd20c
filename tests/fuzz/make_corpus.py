#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (corpus/<target>/): a few small
valid inputs and near-valid ones (one field wrong, truncated, a bad CRC),
so that the fuzzer starts next to every error path instead of finding the
formats from nothing. Messages are encoded by `protoc --encode` from text
format, so this needs no build and no Python protobuf stubs.

  python3 tests/fuzz/make_corpus.py     # rewrites corpus/*/ in place
"""
import pathlib
import struct
import subprocess
import zlib

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"


def encode(message, text):
    """Serialises a text-format logstar.v1 message with protoc."""
    return subprocess.run(
        ["protoc", f"--proto_path={PROTO}", "--proto_path=/usr/include",
         f"--encode=logstar.v1.{message}", "logstar/v1/service.proto",
         "logstar/v1/recording.proto"],
        input=text.encode(), stdout=subprocess.PIPE, check=True).stdout


def pixels(dtype, width, height, data):
    escaped = "".join(f"\\{b:03o}" for b in data)
    return (f'pixels {{ dtype: {dtype} width: {width} height: {height} '
            f'data: "{escaped}" }}')


def raw(mode, dtype, width, height, valid_rows, data):
    """The frame target's raw-pixel modes (2, 3): four uint32 then bytes."""
    return bytes([mode]) + struct.pack("<4I", dtype, width, height, valid_rows) + data


def record(payload):
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


MAGIC = b"LSR1\r\n\x1a\n"
PRIOR = "prior { pixel_size_angstrom: 0.2 column_density_per_nm2: 13.4 nearest_neighbor_angstrom: 2.55 }"


def frame_corpus():
    gray = bytes(range(0, 256, 16))  # 16 uint8 pixels
    floats = struct.pack("<6f", 0.0, 0.5, 1.0, 0.25, 0.75, 0.1)
    return {
        "analyze_uint8_4x4": b"\0" + encode(
            "AnalyzeFrameRequest",
            f"frame {{ {pixels('DTYPE_UINT8', 4, 4, gray)} pixel_size_x_angstrom: 0.2 }} "
            f"settings {{ {PRIOR} analysis {{ window: 0 evaluations: 5 }} }}"),
        "analyze_bad_dtype": b"\0" + encode(
            "AnalyzeFrameRequest",
            f"frame {{ {pixels('DTYPE_UNSPECIFIED', 4, 4, gray)} }} settings {{ {PRIOR} }}"),
        "stream_float32_3x2_partial": b"\1" + encode(
            "StreamRequest",
            f"frame {{ sequence: 7 valid_rows: 1 {pixels('DTYPE_FLOAT32', 3, 2, floats)} }}"),
        "stream_open": b"\1" + encode("StreamRequest", f"open {{ settings {{ {PRIOR} }} }}"),
        "raw_uint16_4x2": raw(2, 2, 4, 2, 0, bytes(range(16))),
        "raw_int16_short": raw(2, 3, 4, 2, 0, bytes(range(15))),
        "raw_float64_nan": raw(3, 5, 2, 1, 0, struct.pack("<2d", 1.0, float("nan"))),
        "raw_over_limit": raw(2, 1, 65536, 65536, 0, b""),
    }


def recording_corpus():
    header = encode("RecordingHeader",
                    f'format_version: 1 created_by: "make_corpus.py" has_truth: true settings {{ {PRIOR} }}')
    frames = [encode("RecordedFrame",
                     f"offset_ns: {i * 1000000} frame {{ sequence: {i} "
                     f"{pixels('DTYPE_UINT8', 4, 4, bytes((16 * j + i) % 256 for j in range(16)))} }} "
                     f"truth {{ x: 1.5 y: 2.5 }} truth {{ x: 3 y: 0.5 amorphous: true }}")
               for i in range(2)]
    good = MAGIC + record(header) + b"".join(record(f) for f in frames)
    bad_crc = bytearray(good)
    bad_crc[len(MAGIC) + len(record(header)) + 4] ^= 0xFF  # first frame's CRC
    return {
        "two_frames": good,
        "header_only": MAGIC + record(header),
        "truncated_payload": good[:-5],
        "truncated_length": good[:len(MAGIC) + len(record(header)) + 3],
        "bad_crc": bytes(bad_crc),
        "bad_magic": b"LSR2" + good[4:],
        "huge_length": MAGIC + record(header) + struct.pack("<II", 0x7FFFFFFF, 0),
        "version_2": MAGIC + record(encode("RecordingHeader", "format_version: 2")),
    }


def config_corpus():
    return {
        "text_full": b"\0" + (
            b'listen_address: "127.0.0.1:0"\nengine_threads: 2\nmax_concurrent_frames: 1\n'
            b'max_message_bytes: 1048576\nmax_pixels: 65536\nsession_idle_timeout_s: 60\n'
            b'default_queue_capacity: 4\nshutdown_grace_s: 1.5\nlog_level: "debug"\n'),
        "text_bad_value": b"\0max_concurrent_frames: 0\n",
        "text_syntax_error": b"\0listen_address: 127.0.0.1\n",
        "text_tls_half": b'\0tls_cert_file: "a.pem"\n',
        "json_full": b"\1" + (
            b'{"listenAddress": "0.0.0.0:50051", "maxPixels": "1024", '
            b'"sessionIdleTimeoutS": 10, "metricsAddress": "127.0.0.1:9100"}'),
        "json_unknown_field": b'\1{"listen_addres": "x"}',
        "json_nan": b'\1{"shutdown_grace_s": "NaN"}',
        "args": b"\2--config=x\n--max_pixels=4096\n--listen_address=[::1]:0\n--log_level=warning",
        "args_bad": b"\2--max_pixels=lots\n--nope=1",
        "args_help": b"\2--engine_threads=1\n--help",
    }


def main():
    for target, inputs in [("frame", frame_corpus()), ("recording", recording_corpus()),
                           ("config", config_corpus())]:
        out = HERE / "corpus" / target
        out.mkdir(parents=True, exist_ok=True)
        for old in out.iterdir():
            old.unlink()
        for name, data in inputs.items():
            (out / name).write_bytes(data)


if __name__ == "__main__":
    main()
