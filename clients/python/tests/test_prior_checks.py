"""The prior against the frame through the Python client and a real
logstard: prior="auto" derives the prior from the first frame with a lattice
(checked against the generator's prior.json, its truth), a wrong pixel size
comes back as a warning on every result, a sublattice the prior lacks is
refused naming the field, and the settings helper's forms."""
from __future__ import annotations

import numpy as np
import pytest

import logstar
from conftest import FAST, f1_score, synth
from logstar.settings import session_settings

# One window of 128 px over the 256² frames: the lattice (YBCO's c is 93 px
# at 0.125 Å/px) needs the larger frame to be measured.
SETTINGS = {**FAST, "window": 128}


@pytest.fixture(scope="module")
def client(daemon):
    with logstar.Client(daemon.addr) as c:
        yield c


def test_the_settings_helper_takes_auto_sublattices_and_tolerances():
    s = session_settings("auto")
    assert s.prior.auto and s.prior.pixel_size_angstrom == 0
    s = session_settings({"auto": True, "pixel_size_angstrom": 0.1})
    assert s.prior.auto and s.prior.pixel_size_angstrom == 0.1
    prior = {"pixel_size_angstrom": 0.125, "column_density_per_nm2": 13.1,
             "nearest_neighbor_angstrom": 2.76,
             "sublattices": [{"name": "A", "column_density_per_nm2": 6.55,
                              "relative_brightness": 1},
                             {"name": "B", "column_density_per_nm2": 6.55,
                              "relative_brightness": 0.4}]}
    s = session_settings(prior, {"sublattice": "B", "prior_tolerances": {"spacing": 0.1}})
    assert [x.name for x in s.prior.sublattices] == ["A", "B"]
    assert s.prior.sublattices[1].relative_brightness == 0.4
    assert s.analysis.sublattice == "B"
    assert s.analysis.prior_tolerances.spacing == 0.1
    assert not s.analysis.prior_tolerances.HasField("density")
    with pytest.raises(logstar.InvalidSettings, match="sublattices"):
        session_settings({**prior, "sublattices": [{"name": "A", "brightness": 1}]})


def test_auto_prior_is_derived_from_the_first_frame_with_a_lattice(client, workdir):
    f = synth(workdir, seed=7, noise=0.1, size=256)
    noise = np.random.default_rng(0).normal(size=f.image.shape).astype(np.float32)
    session = client.session(prior="auto", settings=SETTINGS, overload="block")
    assert session.settings.prior.auto
    meta = {"pixel_size": f.pixel_size}  # the frames give the pixel size
    noisy, good = session.stream([(noise, {**meta, "tag": "noise"}),
                                  (f.image, {**meta, "tag": "good"})])
    # No lattice: one clear error naming the prior, and the stream goes on.
    assert isinstance(noisy, logstar.Failed) and noisy.code == "INVALID_ARGUMENT"
    assert "settings.prior" in noisy.message and "no lattice" in noisy.message
    assert good.ok, good
    assert good.prior_derived and not good.prior_pixel_units
    p = good.prior_used
    assert p.pixel_size_angstrom == pytest.approx(f.pixel_size)
    assert p.nearest_neighbor_angstrom == pytest.approx(f.prior["nearest_neighbor_angstrom"],
                                                        rel=0.02)
    assert p.column_density_per_nm2 == pytest.approx(f.prior["column_density_per_nm2"], rel=0.10)
    assert good.warnings == []
    assert good.lattice is not None and good.lattice.found
    assert good.lattice.nearest_neighbor_px == pytest.approx(f.nn_px, rel=0.02)
    assert 0.0 <= good.crystalline_fraction <= 1.0
    assert f1_score(good.atoms, f.truth, 0.3 * f.nn_px) >= 0.9
    assert session.info().prior_used.derived


def test_a_wrong_pixel_size_comes_back_as_a_warning(client, workdir):
    # At 0.1 Å/px a pixel size 10× too large still samples the columns.
    f = synth(workdir, seed=8, noise=0.1, size=256, pixel_size=0.1)
    prior = dict(f.prior, pixel_size_angstrom=10 * f.prior["pixel_size_angstrom"])
    session = client.session(prior=prior, settings=SETTINGS, overload="block")
    records = list(session.stream([f.image, f.image]))
    for r in records:
        assert r.ok, r
        assert [w.field for w in r.warnings] == ["pixel_size_angstrom"]
        w = r.warnings[0]
        assert isinstance(w, logstar.PriorWarning)
        assert w.given == pytest.approx(1.0)
        assert w.measured == pytest.approx(f.pixel_size, rel=0.05)
        assert not r.prior_derived
        assert "warnings=1" in repr(r)
    # The true prior: none.
    (r,) = client.session(prior=f.prior, settings=SETTINGS, overload="block").stream([f.image])
    assert r.ok and r.warnings == []


def test_sublattice_choices_are_checked_against_the_prior(client, workdir):
    f = synth(workdir, seed=9, noise=0.1, size=256)
    names = [s["name"] for s in f.prior["sublattices"]]  # synth's YBCO: Ba, Y, Cu
    assert names == ["Ba", "Y", "Cu"]
    with pytest.raises(logstar.InvalidSettings, match="settings.analysis.sublattice"):
        client.session(prior=f.prior, settings={**SETTINGS, "sublattice": "Sr"})
    with pytest.raises(logstar.InvalidSettings, match="settings.analysis.sublattice"):
        client.session(prior="auto", settings={**SETTINGS, "sublattice": "Ba"})
    session = client.session(prior=f.prior, settings={**SETTINGS, "sublattice": "Ba"},
                             overload="block")
    (r,) = session.stream([f.image])
    assert r.ok, r
    assert r.sublattice_names == names
    assert r.sublattice.shape == (len(r.atoms),) and r.sublattice.dtype == np.int32
    assert np.all((r.sublattice >= -1) & (r.sublattice < len(names)))
    for count in r.sublattices:
        assert isinstance(count, logstar.SublatticeCount) and count.name in names
