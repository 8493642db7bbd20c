"""The amorphous stage through the Python client: per-atom flags and
posteriors and the regions' contours, checked against the amorphous mask
`logstar synth` writes with the frame (its ground truth), not against the
daemon's own figures."""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from skimage.draw import polygon

import logstar
from conftest import FAST, LOGSTAR_CLI, synth
from logstar.settings import session_settings


@pytest.fixture(scope="module")
def client(daemon):
    with logstar.Client(daemon.addr) as c:
        yield c


@pytest.fixture(scope="module")
def amorphous_frame(workdir):
    """256² YBCO with a quarter of the frame amorphous (as the daemon's own
    integration test uses): image, prior, truth mask (rows × columns)."""
    if not LOGSTAR_CLI:
        pytest.skip("LOGSTAR_CLI not set (run through ctest)")
    out = os.path.join(workdir, "synth-amorphous")
    subprocess.run([LOGSTAR_CLI, "synth", "--out", out, "--size", "256", "--amorphous", "0.25",
                    "--noise", "0.1", "--seed", "5"], check=True, capture_output=True, timeout=60)
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    mask = np.load(os.path.join(out, "amorphous_mask.npy")) != 0
    image = np.load(os.path.join(out, "image.npy"))
    assert mask.shape == image.shape
    assert 0.15 < mask.mean() < 0.35  # the frame is what the test asked for
    return image, os.path.join(out, "prior.json"), mask, meta["pixel_size_angstrom"]


def test_settings_helper_turns_the_stage_on():
    prior = {"pixel_size_angstrom": 0.125, "column_density_per_nm2": 13.4,
             "nearest_neighbor_angstrom": 2.55}
    s = session_settings(prior, {"window": 64}, amorphous=True)
    assert s.analysis.window == 64 and s.analysis.amorphous.enabled
    s = session_settings(prior, amorphous={"evaluations": 12})
    assert s.analysis.amorphous.enabled and s.analysis.amorphous.evaluations == 12
    s = session_settings(base=s, amorphous=False)
    assert not s.analysis.amorphous.enabled
    # The settings dict may carry it too, in the proto's own field names.
    s = session_settings(prior, {"amorphous": {"enabled": True}})
    assert s.analysis.amorphous.enabled
    with pytest.raises(logstar.InvalidSettings, match="amorphous"):
        session_settings(prior, amorphous={"evals": 3})
    with pytest.raises(logstar.InvalidSettings, match="amorphous"):
        session_settings(prior, amorphous="yes")


def test_regions_and_flagged_atoms_match_the_truth_mask(client, amorphous_frame):
    image, prior, truth, pixel_size = amorphous_frame
    session = client.session(prior=prior, settings={"window": 0, "evaluations": 16, "seed": 1},
                             overload="block", amorphous={"evaluations": 16})
    assert session.settings.analysis.amorphous.enabled
    (r,) = session.stream([(image, {"pixel_size": pixel_size})])
    assert r.ok, r
    assert r.amorphous_stage is not None and len(r.amorphous_stage.windows) == 1
    n = len(r.atoms)
    assert r.amorphous.dtype == bool and r.amorphous.shape == (n,)
    assert r.amorphous_posterior.dtype == np.float64 and r.amorphous_posterior.shape == (n,)

    # Posteriors: in [0, 1] where classified; an unclassified atom (NaN) is
    # never amorphous; most atoms are classified (only a border strip is not).
    classified = ~np.isnan(r.amorphous_posterior)
    assert classified.mean() > 0.5
    # (a sum of component posteriors: 1 within rounding)
    assert np.all((r.amorphous_posterior[classified] >= 0)
                  & (r.amorphous_posterior[classified] <= 1 + 1e-9))
    assert not np.any(r.amorphous[~classified])

    # The regions' contours, filled, against the truth mask.
    assert r.regions, "no amorphous region found"
    filled = np.zeros(truth.shape, dtype=bool)
    for g in r.regions:
        assert isinstance(g, logstar.Region)
        assert g.contour.dtype == np.float64 and g.contour.ndim == 2 and g.contour.shape[1] == 2
        assert len(g.contour) >= 3
        x, y = g.contour[:, 0], g.contour[:, 1]  # x = column, y = row
        assert x.min() >= -0.5 and x.max() <= truth.shape[1] - 0.5
        assert y.min() >= -0.5 and y.max() <= truth.shape[0] - 0.5
        col0, row0, cols, rows = g.bbox
        assert col0 <= x.min() and x.max() < col0 + cols
        assert row0 <= y.min() and y.max() < row0 + rows
        rr, cc = polygon(y, x, truth.shape)
        region = np.zeros(truth.shape, dtype=bool)
        region[rr, cc] = True
        # The contour runs through boundary pixel centres, so its fill
        # misses about half of each boundary pixel: the area it reports is
        # between the fill and the fill plus its perimeter.
        assert region.sum() <= g.area_px2 <= region.sum() + g.perimeter_px + 4
        assert g.area_angstrom2 == pytest.approx(g.area_px2 * pixel_size ** 2, rel=1e-6)
        assert g.perimeter_angstrom == pytest.approx(g.perimeter_px * pixel_size, rel=1e-6)
        cy, cx = np.nonzero(region)
        assert g.centroid == pytest.approx((cx.mean(), cy.mean()), abs=1.5)
        filled |= region
    iou = (filled & truth).sum() / (filled | truth).sum()
    assert iou >= 0.5, f"IoU {iou:.3f} of the filled contours with the truth mask"

    # Flagged atoms lie in the truth's amorphous area.
    flagged = r.atoms[r.amorphous]
    assert len(flagged) > 0
    cols_ = np.clip(np.rint(flagged[:, 0]).astype(int), 0, truth.shape[1] - 1)
    rows_ = np.clip(np.rint(flagged[:, 1]).astype(int), 0, truth.shape[0] - 1)
    inside = truth[rows_, cols_].mean()
    assert inside >= 0.7, f"{inside:.2f} of the flagged atoms lie in the truth mask"

    # A clear region (a quarter of the frame at noise 0.1): the daemon stands
    # by it, and each region has an id.
    assert r.amorphous_verdict is not None
    assert r.amorphous_verdict.state == "confident", r.amorphous_reason
    assert not r.amorphous_uncertain and r.amorphous_reason == ""
    ids = [g.id for g in r.regions]
    assert all(i >= 1 for i in ids) and len(set(ids)) == len(ids)


def test_region_ids_last_over_a_stream(client, amorphous_frame):
    """The same field shifted by 2 px per frame: the largest region keeps
    its id from frame to frame."""
    image, prior, truth, pixel_size = amorphous_frame
    session = client.session(prior=prior, settings={"window": 0, "evaluations": 16, "seed": 1},
                             overload="block", amorphous={"evaluations": 16})
    frames = [(np.ascontiguousarray(image[2 * k:2 * k + 224, 2 * k:2 * k + 224]),
               {"pixel_size": pixel_size}) for k in range(4)]
    largest = []
    for r in session.stream(frames):
        assert r.ok, r
        assert r.regions, "no amorphous region found"
        largest.append(max(r.regions, key=lambda g: g.area_px2).id)
    assert largest[0] >= 1 and largest == [largest[0]] * len(largest), largest


def test_uncertain_verdict_reads_from_the_proto():
    """The verdict fields of a result, from a hand-made FrameResult."""
    from logstar.amorphous import verdict_fields
    from logstar.v1 import result_pb2
    p = result_pb2.FrameResult()
    assert verdict_fields(p) == (None, False, "")  # the stage is off
    v = p.amorphous.verdict
    v.state = result_pb2.AmorphousVerdict.STATE_UNCERTAIN
    v.code = result_pb2.AmorphousVerdict.CODE_BELOW_RESOLUTION
    v.reason = "a second population ..."
    p.amorphous_regions.add(id=3, area_px2=10.0)
    r = logstar.Result(p)
    assert r.amorphous_uncertain and r.amorphous_reason == "a second population ..."
    assert r.amorphous_verdict.code == "below_resolution"
    assert r.regions[0].id == 3
    # A daemon without verdicts: the stage is on, the state unknown, not uncertain.
    p.amorphous.ClearField("verdict")
    verdict, uncertain, reason = verdict_fields(p)
    assert verdict.state == "unknown" and not uncertain and reason == ""


def test_without_the_stage_nothing_is_classified(client, workdir):
    f = synth(workdir, seed=11)
    session = client.session(prior=f.prior, settings=FAST, overload="block")
    (r,) = session.stream([f.image])
    assert r.ok and len(r.atoms) > 0
    assert r.amorphous_stage is None and r.regions == []
    assert r.amorphous_verdict is None and not r.amorphous_uncertain
    assert not r.amorphous.any()
    assert np.isnan(r.amorphous_posterior).all()
