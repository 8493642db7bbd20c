#!/usr/bin/env bash
# Installs every Debian package logstar needs to build, test and benchmark.
# Non-interactive and idempotent: when everything is present it only checks
# (about a second) and touches nothing. Nothing else is ever downloaded.
set -euo pipefail

packages=(
  # toolchain
  cmake ninja-build g++ pkg-config
  # engine: OpenCV, Eigen, oneTBB, Abseil
  libopencv-dev libeigen3-dev libtbb-dev libabsl-dev
  # command-line tool
  nlohmann-json3-dev
  # the command-line tool's EMD frames (HDF5) and the EMD files its tests write
  libhdf5-dev python3-h5py
  # the daemon: gRPC, Protobuf, Prometheus metrics; openssl makes the TLS test certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler prometheus-cpp-dev openssl
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # fuzz targets (tests/fuzz): clang with libFuzzer and the sanitizer runtimes
  clang libclang-rt-14-dev
  # scikit-image / scikit-learn references for goldens, tests and benchmarks
  python3 python3-numpy python3-scipy python3-skimage python3-sklearn
  # the Python client (clients/python): gRPC and Protobuf runtimes, TIFF reading, its tests
  # (its stubs come from protoc and protobuf-compiler-grpc's grpc_python_plugin, above)
  python3-grpcio python3-protobuf python3-tifffile python3-pytest
  # its DM3/DM4/EMD reader and the EMD round-trip tests (clients/python/tests/test_hyperspy.py)
  python3-hyperspy
  # pip-installing it offline into a venv (quickstart_py_test) and Result.to_dataframe's tests
  python3-venv python3-pip python3-setuptools python3-wheel python3-pandas
  # deploy/check.sh: parses the Helm chart and Kubernetes manifests, traces logstard's system calls
  python3-yaml strace
  # the Debian packages (cpack -G DEB, cmake/packaging.cmake): dpkg-shlibdeps finds their Depends
  dpkg-dev file
  # `logstar console` (its HTTP server), and its browser test (tests/console: headless chromium
  # driven by npm's playwright-core, which deploy/test.sh installs with `npm ci`)
  libcpp-httplib-dev chromium nodejs
  # scale-out (issue 20): the Redis session store's client library, and the Redis server and
  # nginx and HAProxy proxies that its tests and tests/load/scale_out.sh start on loopback
  libhiredis-dev redis-server nginx-light haproxy
  # compressed pixels (proto/wire/compression.h, the Python client's), the link benchmark's ip and tc
  libzstd-dev python3-zstandard iproute2
)
# npm: Debian's, unless the installed Node.js brings its own (NodeSource's does).
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
