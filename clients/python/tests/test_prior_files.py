"""The prior file is read one way everywhere: the same good and bad
PRIOR.json files go to the CLI (`logstar record --prior`) and to the Python
client (`Client.session(prior=path)` against a real logstard, which checks
the values), and both must accept or refuse each one as expected here; a
refused unknown field is named by both."""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

import logstar
from conftest import FAST, LOGSTAR_CLI

DENSITY = {"pixel_size_angstrom": 0.125, "column_density_per_nm2": 13.4,
           "nearest_neighbor_angstrom": 2.55}
LATTICE = {"a_angstrom": 3.82, "b_angstrom": 11.68, "gamma_deg": 90, "columns_per_cell": 6}
WITH_LATTICE = {"pixel_size_angstrom": 0.125, "lattice": LATTICE,
                "nearest_neighbor_angstrom": 2.55}


def _without(d, key):
    return {k: v for k, v in d.items() if k != key}


# name -> (file text, accepted, a word both messages must contain when refused)
CASES = {
    # README's two forms, and what the protobuf JSON mapping also allows.
    "density": (json.dumps(DENSITY), True, None),
    "lattice": (json.dumps(WITH_LATTICE), True, None),
    "lattice without gamma (90)": (json.dumps(
        {**WITH_LATTICE, "lattice": _without(LATTICE, "gamma_deg")}), True, None),
    "density and lattice agreeing": (json.dumps({**DENSITY, "lattice": LATTICE}), True, None),
    "lowerCamelCase names": (json.dumps({"pixelSizeAngstrom": 0.125, "columnDensityPerNm2": 13.4,
                                         "nearestNeighborAngstrom": 2.55}), True, None),
    "a number in a string": (json.dumps({**DENSITY, "pixel_size_angstrom": "0.125"}), True, None),
    "null density beside a lattice": (json.dumps({**WITH_LATTICE,
                                                  "column_density_per_nm2": None}), True, None),
    # Not the format.
    "misspelt field": (json.dumps({**_without(DENSITY, "nearest_neighbor_angstrom"),
                                   "nearest_neighbour_angstrom": 2.55}), False,
                       "nearest_neighbour_angstrom"),
    "lattice fields at the top level": (json.dumps({**_without(WITH_LATTICE, "lattice"),
                                                    **LATTICE}), False, "a_angstrom"),
    "unknown lattice field": (json.dumps({**WITH_LATTICE, "lattice": {**LATTICE, "c": 1}}),
                              False, None),
    "broken JSON": ('{"pixel_size_angstrom": 0.125,', False, None),
    "not an object": ("[0.125, 13.4, 2.55]", False, None),
    "true for a number": (json.dumps({**DENSITY, "column_density_per_nm2": True}), False,
                          "column_density_per_nm2"),
    "words for a number": (json.dumps({**DENSITY, "nearest_neighbor_angstrom": "far"}), False,
                           "nearest_neighbor_angstrom"),
    "NaN literal": ('{"pixel_size_angstrom": 0.125, "column_density_per_nm2": NaN, '
                    '"nearest_neighbor_angstrom": 2.55}', False, None),
    # The format, but values the daemon refuses.
    "negative distance": (json.dumps({**DENSITY, "nearest_neighbor_angstrom": -2.55}), False,
                          "nearest_neighbor_angstrom"),
    "no distance": (json.dumps(_without(DENSITY, "nearest_neighbor_angstrom")), False,
                    "nearest_neighbor_angstrom"),
    "neither density nor lattice": (json.dumps(_without(DENSITY, "column_density_per_nm2")),
                                    False, None),
    "density disagreeing with the lattice": (json.dumps(
        {**DENSITY, "column_density_per_nm2": 20.0, "lattice": LATTICE}), False, None),
    "distance too large for the density": (json.dumps({**DENSITY,
                                                       "nearest_neighbor_angstrom": 9.0}),
                                           False, "nearest_neighbor_angstrom"),
}
# Not here: pixel_size_angstrom 0 (or absent). In a session it means "from
# each frame's pixel size", so the client and the daemon take it; the CLI's
# frames (.npy, .tif, .png) carry none, so its commands need the prior's
# (tests/clients/cli_test.py BadInputTest.test_zero_pixel_size).


@pytest.fixture(scope="module")
def frame_file(workdir):
    path = os.path.join(workdir, "prior-files-frame.npy")
    np.save(path, np.random.default_rng(0).random((32, 32)).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def client(daemon):
    with logstar.Client(daemon.addr) as c:
        yield c


def _cli(path, frame_file, workdir):
    """(accepted, message) from `logstar record --prior path`."""
    if not LOGSTAR_CLI:
        pytest.skip("LOGSTAR_CLI not set (run through ctest)")
    out = subprocess.run([LOGSTAR_CLI, "record", "--from", frame_file, "--prior", path, "--out",
                          os.path.join(workdir, "prior-files.lsr")],
                         capture_output=True, text=True, timeout=60)
    return out.returncode == 0, out.stderr


def _python(path, client):
    """(accepted, message) from opening a session with the prior file."""
    try:
        client.session(prior=path, settings=FAST)
    except logstar.InvalidSettings as e:
        return False, str(e)
    return True, ""


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_cli_and_the_python_client_take_and_refuse_the_same_prior_files(
        name, workdir, frame_file, client):
    text, accepted, word = CASES[name]
    path = os.path.join(workdir, "prior-" + "".join(c if c.isalnum() else "_" for c in name)
                        + ".json")
    with open(path, "w") as f:
        f.write(text)
    cli_ok, cli_message = _cli(path, frame_file, workdir)
    py_ok, py_message = _python(path, client)
    assert (cli_ok, py_ok) == (accepted, accepted), (cli_message, py_message)
    if not accepted:
        assert cli_message.startswith("logstar: error: "), cli_message
        assert len(cli_message.strip().splitlines()) == 1, cli_message
        if word is not None:
            assert word in cli_message and word in py_message, (cli_message, py_message)
