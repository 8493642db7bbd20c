"""The client against a real logstard: streaming generated frames scored
against their ground truth, bad frames among good ones, session calls,
errors, token authentication."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import logstar
from conftest import FAST, TOKEN, Daemon, f1_score, free_port, synth


@pytest.fixture(scope="module")
def frames(workdir):
    # Noise up to 0.3, the limit the accuracy contract holds at.
    return [synth(workdir, seed=s, noise=n) for s, n in ((1, 0.1), (2, 0.2), (3, 0.3))]


@pytest.fixture(scope="module")
def client(daemon):
    with logstar.Client(daemon.addr) as c:
        yield c


def test_stream_finds_the_true_atoms_in_order(client, frames):
    prior_path = f"{frames[0].directory}/prior.json"
    session = client.session(prior=prior_path, settings=FAST, overload="block")
    items = [(f.image, {"pixel_size": f.pixel_size, "channel": "HAADF", "tag": i})
             for i, f in enumerate(frames)]
    records = list(session.stream(items))
    assert [r.kind for r in records] == ["result"] * 3, records
    assert [r.tag for r in records] == [0, 1, 2]
    assert records[0].sequence < records[1].sequence < records[2].sequence
    for r, f in zip(records, frames):
        assert r.atoms.dtype == np.float64 and r.atoms.ndim == 2 and r.atoms.shape[1] == 2
        assert r.channel == "HAADF"
        score = f1_score(r.atoms, f.truth, 0.3 * f.nn_px)
        assert score >= 0.9, f"F1 {score:.3f} on {f.directory}"


def test_atoms_are_x_column_y_row(client, frames):
    # A frame wider than tall: a swapped convention puts atoms outside it
    # and misses the truth.
    f = frames[0]
    cols = 80
    image = np.ascontiguousarray(f.image[:, :cols])
    session = client.session(prior=f.prior, settings=FAST, overload="block")
    (r,) = session.stream([image])
    assert (r.width, r.height) == (cols, image.shape[0])
    assert r.atoms[:, 0].max() <= cols - 0.5 and r.atoms[:, 1].max() <= image.shape[0] - 0.5
    truth = f.truth[f.truth[:, 0] < cols - 0.5]
    interior = lambda p: p[(p[:, 0] > 3) & (p[:, 0] < cols - 4)]  # the cut edge is not scored
    assert f1_score(interior(r.atoms), interior(truth), 0.3 * f.nn_px) >= 0.9


def test_gaussian_refinement_gives_calibrated_errors(client, workdir):
    # refine REFINE_MODE_GAUSSIAN: per-atom uncertainties and intensities;
    # the generator's true positions lie within 2 sigma for most coordinates.
    f = synth(workdir, seed=2, noise=0.2, size=256)
    session = client.session(prior=f.prior, settings={**FAST, "refine": "REFINE_MODE_GAUSSIAN"},
                              overload="block")
    (r,) = session.stream([f.image])
    n = len(r.atoms)
    assert n > 50
    assert r.atom_errors.shape == (n, 2) and r.atom_shape.shape == (n, 3)
    assert r.atom_intensity.shape == (n,) and len(r.atom_fit_status) == n
    ok = np.array([s == "ok" for s in r.atom_fit_status])
    assert ok.mean() >= 0.9
    assert np.all(r.atom_errors[ok] > 0)
    np.testing.assert_allclose(
        r.atom_intensity[ok],
        2 * np.pi * r.atom_amplitude[ok] * r.atom_shape[ok, 0] * r.atom_shape[ok, 1], rtol=1e-9)
    d = np.hypot(r.atoms[:, None, 0] - f.truth[None, :, 0], r.atoms[:, None, 1] - f.truth[None, :, 1])
    nearest = d.argmin(axis=1)
    matched = ok & (d.min(axis=1) < 0.3 * f.nn_px)
    assert matched.sum() > 50
    within = np.abs(r.atoms[matched] - f.truth[nearest[matched]]) <= 2 * r.atom_errors[matched]
    assert within.mean() >= 0.8, within.mean()
    pytest.importorskip("pandas")
    table = r.to_dataframe()
    np.testing.assert_array_equal(table["x_err"].to_numpy(), r.atom_errors[:, 0])
    assert list(table["fit_status"]) == r.atom_fit_status
    # The default refinement carries no fits.
    (plain,) = client.session(prior=f.prior, settings=FAST, overload="block").stream([f.image])
    assert plain.atom_errors is None and plain.atom_fit_status is None


def test_bad_frames_get_errors_and_good_frames_are_still_answered(client, frames):
    f = frames[0]
    nan = f.image.copy()
    nan[5, 7] = np.nan  # row 5, column 7
    items = [
        (f.image, {"tag": "good-1"}),
        (nan, {"tag": "nan"}),
        (f.image.astype(np.int32), {"tag": "int32"}),
        (np.stack([f.image, f.image], axis=-1), {"tag": "3-D"}),
        (f.image, {"tag": "bad-meta", "pixel_sise": 0.1}),
        (f.image, {"tag": "good-2"}),
    ]
    session = client.session(prior=f.prior, settings=FAST, overload="block")
    records = list(session.stream(items))
    assert [r.tag for r in records] == [t for _, t in ((i, m["tag"]) for i, m in items)]
    by_tag = {r.tag: r for r in records}
    assert by_tag["good-1"].ok and by_tag["good-2"].ok
    assert len(by_tag["good-2"].atoms) > 0

    nan_rec = by_tag["nan"]
    assert isinstance(nan_rec, logstar.Failed) and nan_rec.origin == "server"
    assert nan_rec.code == "INVALID_ARGUMENT"
    assert "NaN" in nan_rec.message and "x=7" in nan_rec.message and "y=5" in nan_rec.message
    for tag, words in (("int32", "int32"), ("3-D", "2-D"), ("bad-meta", "pixel_sise")):
        rec = by_tag[tag]
        assert isinstance(rec, logstar.Failed) and rec.origin == "client", rec
        assert words in rec.message, rec.message
    with pytest.raises(logstar.FrameNotAnalysed):
        _ = nan_rec.atoms
    # The server saw the two good frames and the NaN one, not the refused ones.
    counters = session.info().counters
    assert (counters.frames_received, counters.frames_analysed, counters.frames_failed) == (3, 2, 1)


def test_unary_analyze_raises_naming_the_problem(client, frames):
    f = frames[0]
    session = client.session(prior=f.prior, settings=FAST)
    bad = f.image.copy()
    bad[3, 2] = np.inf
    with pytest.raises(logstar.InvalidFrame, match="x=2 y=3"):
        session.analyze(bad)
    with pytest.raises(logstar.InvalidFrame, match="complex128"):
        session.analyze(f.image.astype(np.complex128))
    r = session.analyze(f.image)
    assert f1_score(r.atoms, f.truth, 0.3 * f.nn_px) >= 0.9


def test_session_update_info_and_health(client, frames):
    f = frames[1]
    assert client.health() == "SERVING"
    assert client.health("logstar.v1.LogStar") == "SERVING"
    session = client.session(prior=f.prior, settings=FAST, overload="block")
    assert session.settings.overload_policy == logstar.v1.session_pb2.OVERLOAD_POLICY_BLOCK
    info = session.update(settings=dict(FAST, evaluations=4))
    assert info.settings.analysis.evaluations == 4
    # The parts not given stay as they were.
    assert info.settings.prior.nearest_neighbor_angstrom == f.prior["nearest_neighbor_angstrom"]
    assert info.settings.overload_policy == logstar.v1.session_pb2.OVERLOAD_POLICY_BLOCK
    list(session.stream([f.image, f.image]))
    info = session.info(include_cache=True)
    assert info.counters.frames_analysed == 2
    assert info.counters.cache_hits > 0  # the second frame used the first one's tuning
    assert len(info.cache.windows) > 0

    # A second Session object on the same id resumes it.
    again = client.session(session_id=session.id)
    assert again.info().counters.frames_analysed == 2
    listed = {s.session_id: s for s in client.sessions()}
    assert listed[session.id].counters.frames_analysed == 2  # the two frames sent
    assert not listed[session.id].HasField("cache")
    assert not listed[session.id].HasField("settings")
    listed = {s.session_id: s for s in client.sessions(include_settings=True)}
    assert listed[session.id].settings.analysis.evaluations == 4
    session.reset(delete=True)
    assert session.id not in {s.session_id for s in client.sessions()}
    with pytest.raises(logstar.RpcFailed, match="NOT_FOUND"):
        session.info()


def test_invalid_prior_is_refused_when_the_session_opens(client):
    with pytest.raises(logstar.InvalidSettings, match="pixel_size_angstrom"):
        client.session(prior={"pixel_size_angstrom": -1.0, "nearest_neighbor_angstrom": 3.8,
                              "column_density_per_nm2": 7.0})
    with pytest.raises(logstar.InvalidSettings, match="no_such_field"):
        client.session(prior={"no_such_field": 1})


def test_unreachable_server_is_named():
    addr = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(logstar.ServerUnavailable, match=addr):
        logstar.Client(addr, connect_timeout=0.5)


def test_token_authentication(token_daemon, frames):
    f = frames[0]
    with logstar.Client(token_daemon.addr) as anonymous:
        # The standard health service answers without the token (probes
        # have none); logstar's own RPCs do not.
        assert anonymous.health() == "SERVING"
        with pytest.raises(logstar.AuthenticationError):
            anonymous.session(prior=f.prior, settings=FAST)
    with logstar.Client(token_daemon.addr, token="wrong") as wrong:
        with pytest.raises(logstar.AuthenticationError):
            wrong.session(prior=f.prior, settings=FAST)
        with pytest.raises(logstar.AuthenticationError):
            wrong.sessions()
    with logstar.Client(token_daemon.addr, token=TOKEN) as ok:
        assert ok.health() == "SERVING"
        session = ok.session(prior=f.prior, settings=FAST, overload="block")
        (r,) = session.stream([f.image])
        assert f1_score(r.atoms, f.truth, 0.3 * f.nn_px) >= 0.9


def test_server_shutdown_mid_stream_loses_no_frame_silently(workdir, frames):
    # A daemon of its own, stopped (SIGTERM) while frames are still coming.
    directory = os.path.join(workdir, "shutdown-daemon")
    os.makedirs(directory, exist_ok=True)
    daemon = Daemon(directory, [])
    f = frames[0]
    taken = []

    def source():
        for i in range(30):
            if i == 3:
                daemon.proc.terminate()  # SIGTERM: drain, then exit 0
            taken.append(i)
            yield f.image, {"tag": i}
            time.sleep(0.02)

    records = []
    with logstar.Client(daemon.addr) as client:
        session = client.session(prior=f.prior, settings=FAST, overload="block")
        with pytest.raises(logstar.StreamBroken) as e:
            for r in session.stream(source()):
                records.append(r)
    assert e.value.code == "UNAVAILABLE"
    # Every frame taken from the source was answered or is listed as unanswered.
    answered = [r.sequence for r in records]
    assert len(answered) + len(e.value.unanswered) == len(taken) < 30
    assert not set(answered) & set(e.value.unanswered)
    assert all(r.ok or r.kind == "dropped" for r in records)
    assert daemon.stop() == 0, daemon.log()
