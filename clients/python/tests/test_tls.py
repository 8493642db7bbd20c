"""TLS between the Python client and logstard: a throwaway CA signs the
server's certificate (and a client's, for mutual TLS); the client streams
a frame over TLS and finds the true atoms; a plaintext client, a client
that trusts another CA and (with mutual TLS) a client without a
certificate get nothing through."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import logstar
from conftest import FAST, Daemon, f1_score, synth

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def openssl(directory: str, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def make_ca(directory: str, name: str) -> None:
    openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem")


def make_cert(directory: str, ca: str, name: str, ext: str = "") -> None:
    openssl(directory, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
    extra = ["-extfile", ext] if ext else []
    openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
            f"{ca}.key", "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *extra)


@pytest.fixture(scope="module")
def pki(workdir):
    """ca.pem signs server.pem (for 127.0.0.1 and localhost) and client.pem;
    other-ca.pem is an unrelated CA."""
    d = os.path.join(workdir, "pki")
    os.makedirs(d, exist_ok=True)
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    make_cert(d, "ca", "server", "san.ext")
    make_cert(d, "ca", "client")
    return d


def start(workdir: str, name: str, flags) -> Daemon:
    directory = os.path.join(workdir, name)
    os.makedirs(directory, exist_ok=True)
    return Daemon(directory, flags)


def stream_one_frame(client: logstar.Client, workdir: str) -> None:
    f = synth(workdir, seed=1)
    session = client.session(prior=f.prior, settings=FAST, overload="block")
    (r,) = session.stream([f.image])
    assert r.ok, r
    assert f1_score(r.atoms, f.truth, 0.3 * f.nn_px) >= 0.9


def refused(make_client) -> bool:
    """Whether nothing gets through: the connection never becomes ready, or
    (TLS 1.3 completes the client's side of the handshake before the server
    checks the client's certificate) the first RPC fails."""
    try:
        client = make_client()
    except logstar.ServerUnavailable:
        return True
    with client:
        try:
            client.session(prior={"pixel_size_angstrom": 0.125, "column_density_per_nm2": 13.4,
                                  "nearest_neighbor_angstrom": 2.55})
        except (logstar.ServerUnavailable, logstar.RpcFailed):
            return True
    return False


def test_tls_stream_and_refusals(workdir, pki):
    d = start(workdir, "tls-daemon", [f"--tls_cert_file={pki}/server.pem",
                                      f"--tls_key_file={pki}/server.key"])
    try:
        with logstar.Client(d.addr, tls=logstar.Tls(ca=f"{pki}/ca.pem")) as client:
            assert client.health() == "SERVING"
            stream_one_frame(client, workdir)
        # By name too: the certificate's DNS entry is checked.
        with logstar.Client(d.addr, tls=logstar.Tls(ca=f"{pki}/ca.pem",
                                                    server_name="localhost")) as client:
            assert client.health("logstar.v1.LogStar") == "SERVING"
        assert refused(lambda: logstar.Client(d.addr, connect_timeout=2))
        assert refused(lambda: logstar.Client(d.addr, tls=logstar.Tls(ca=f"{pki}/other-ca.pem"),
                                              connect_timeout=2))
        assert refused(lambda: logstar.Client(
            d.addr, tls=logstar.Tls(ca=f"{pki}/ca.pem", server_name="not-the-server"),
            connect_timeout=2))
    finally:
        code = d.stop()
    assert code == 0, d.log()


def test_mutual_tls_needs_a_client_certificate(workdir, pki):
    d = start(workdir, "mtls-daemon", [f"--tls_cert_file={pki}/server.pem",
                                       f"--tls_key_file={pki}/server.key",
                                       f"--tls_client_ca_file={pki}/ca.pem"])
    try:
        tls = logstar.Tls(ca=f"{pki}/ca.pem", cert=f"{pki}/client.pem", key=f"{pki}/client.key")
        with logstar.Client(d.addr, tls=tls) as client:
            stream_one_frame(client, workdir)
        assert refused(lambda: logstar.Client(d.addr, tls=logstar.Tls(ca=f"{pki}/ca.pem"),
                                              connect_timeout=2))
        assert refused(lambda: logstar.Client(d.addr, connect_timeout=2))
    finally:
        code = d.stop()
    assert code == 0, d.log()
