"""Generates the package's messages and gRPC stubs (logstar/v1/*_pb2.py,
service_pb2_grpc.py) from proto/logstar/v1/*.proto.

The one implementation of that rule, used by the CMake build
(clients/python/CMakeLists.txt) and by pip (setup.py's build_py hook):

    python3 build_stubs.py --proto-dir proto --out DIR [--protoc P] [--grpc-python-plugin G]

writes DIR/logstar/v1/. The generated modules import each other as
``logstar.v1.frame_pb2``, the proto's own path, which resolves inside the
package as it is.

Tools, in this order: ``--protoc``/``--grpc-python-plugin`` (or the
environment's PROTOC and GRPC_PYTHON_PLUGIN), else ``protoc`` and
``grpc_python_plugin`` on PATH (Debian: protobuf-compiler,
protobuf-compiler-grpc), else ``python -m grpc_tools.protoc`` when the
grpcio-tools wheel is installed (pip, conda; not Debian's python3-grpc-tools,
whose protoc 3.6 refuses the protos' ``optional`` fields). Neither:
:class:`MissingTools` saying what to install. The protoc used must not be
newer than the protobuf runtime the package then runs with.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from typing import List, Optional

PROTOS = ("frame", "session", "result", "service", "daemon", "recording")
# Only service.proto has a service; the plugin would write empty
# *_pb2_grpc.py files for the others.
SERVICES = ("service",)


class MissingTools(RuntimeError):
    """No protoc with a gRPC Python plugin was found."""


def find_proto_dir(start: str) -> str:
    """proto/ from LOGSTAR_PROTO_DIR, or beside ``start`` (an unpacked sdist),
    or two levels up (clients/python in the repository)."""
    candidates = [os.environ.get("LOGSTAR_PROTO_DIR", ""), os.path.join(start, "proto"),
                  os.path.join(start, "..", "..", "proto")]
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "logstar", "v1", "service.proto")):
            return os.path.abspath(c)
    raise MissingTools(
        f"logstar: proto/logstar/v1/*.proto not found (looked in "
        f"{', '.join(os.path.abspath(c) for c in candidates if c)}); build from the "
        f"repository's clients/python, or set LOGSTAR_PROTO_DIR to the proto/ directory")


def _commands(proto_dir: str, out: str, protoc: Optional[str],
              plugin: Optional[str]) -> List[List[str]]:
    files = [os.path.join(proto_dir, "logstar", "v1", f"{n}.proto") for n in PROTOS]
    services = [os.path.join(proto_dir, "logstar", "v1", f"{n}.proto") for n in SERVICES]
    protoc = protoc or os.environ.get("PROTOC") or shutil.which("protoc")
    plugin = plugin or os.environ.get("GRPC_PYTHON_PLUGIN") or shutil.which("grpc_python_plugin")
    if protoc and plugin:
        return [[protoc, f"--proto_path={proto_dir}", f"--python_out={out}", *files],
                [protoc, f"--proto_path={proto_dir}", f"--grpc_python_out={out}",
                 f"--plugin=protoc-gen-grpc_python={plugin}", *services]]
    try:
        import grpc_tools  # noqa: F401  (pip's grpcio-tools bundles both)
    except ImportError:
        raise MissingTools(
            "logstar: generating the gRPC stubs from proto/ needs protoc and "
            "grpc_python_plugin (Debian: apt-get install protobuf-compiler "
            "protobuf-compiler-grpc; or set PROTOC and GRPC_PYTHON_PLUGIN to their paths), "
            f"or the grpcio-tools package; found protoc={protoc or 'none'}, "
            f"grpc_python_plugin={plugin or 'none'}") from None
    tool = [sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={proto_dir}"]
    return [[*tool, f"--python_out={out}", *files], [*tool, f"--grpc_python_out={out}", *services]]


def generate(proto_dir: str, out: str, protoc: Optional[str] = None,
             plugin: Optional[str] = None) -> List[str]:
    """Writes out/logstar/v1/ (with its __init__.py); returns the files written."""
    package = os.path.join(out, "logstar", "v1")
    os.makedirs(package, exist_ok=True)
    for command in _commands(proto_dir, out, protoc, plugin):
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"logstar: {' '.join(command)} failed "
                               f"({run.returncode}):\n{run.stderr}")
    init = os.path.join(package, "__init__.py")
    with open(init, "a"):
        pass
    return [init] + [os.path.join(package, f"{n}_pb2.py") for n in PROTOS] + [
        os.path.join(package, f"{n}_pb2_grpc.py") for n in SERVICES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--out", required=True, help="writes OUT/logstar/v1/")
    parser.add_argument("--protoc")
    parser.add_argument("--grpc-python-plugin")
    args = parser.parse_args()
    try:
        generate(args.proto_dir, args.out, args.protoc, args.grpc_python_plugin)
    except (MissingTools, RuntimeError) as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()
