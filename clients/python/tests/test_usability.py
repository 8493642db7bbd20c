"""Issue 17, item 4, against a real logstard: Session.update merges field by
field (checked against what the daemon then holds, read by another client),
unknown settings are named in snake_case, results as arrays and tables with
cache states by name, HyperSpy signals wherever numpy frames go, and the
stub generator's message when its tools are missing.

The truth: the settings the test sent, the ground truth of `logstar synth`,
the geometry of a Pareto front (no point dominates another), the cores'
partition of the frame, and calibrations converted by hand here."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import logstar
from conftest import FAST, f1_score, synth


@pytest.fixture(scope="module")
def frame(workdir):
    return synth(workdir, seed=7, noise=0.1)


@pytest.fixture(scope="module")
def other_client(daemon):
    """A second connection: what the daemon holds, not what a Session kept."""
    with logstar.Client(daemon.addr) as c:
        yield c


def held(other_client, session_id):
    return other_client.session(session_id=session_id).info().settings


def test_update_changes_only_the_fields_given(client, other_client, frame):
    session = client.session(prior=frame.prior, settings=dict(FAST, window=64),
                             overload="block", amorphous={"evaluations": 6})
    (first,) = session.stream([frame.image])
    assert first.cache_states == ["miss"] * 4  # 128² in 64² windows

    session.update(settings={"evaluations": 10})
    s = held(other_client, session.id)
    assert (s.analysis.window, s.analysis.seed, s.analysis.evaluations) == (64, 1, 10)
    assert s.analysis.amorphous.enabled and s.analysis.amorphous.evaluations == 6
    assert s.prior.nearest_neighbor_angstrom == frame.prior["nearest_neighbor_angstrom"]
    assert s.overload_policy == logstar.v1.session_pb2.OVERLOAD_POLICY_BLOCK
    # A change of evaluations keeps the cache (docs/api.md): the same frame
    # again is served from it.
    (second,) = session.stream([frame.image])
    assert second.cache_states == ["hit"] * 4
    # The amorphous stage's windows too, by name.
    assert list(first.amorphous_windows["cache_state"]) == ["miss"]  # window 0: the whole frame
    assert list(second.amorphous_windows["cache_state"]) == ["hit"]
    assert second.amorphous_windows["verdict"][0] in ("confident", "uncertain")

    # Off and on again: the stage's own settings stay.
    session.update(amorphous=False)
    s = held(other_client, session.id)
    assert not s.analysis.amorphous.enabled and s.analysis.amorphous.evaluations == 6
    session.update(settings={"amorphous": {"enabled": True, "window": 0}})
    s = held(other_client, session.id)
    assert s.analysis.amorphous.enabled and s.analysis.amorphous.evaluations == 6
    assert s.analysis.window == 64


def test_update_merges_into_what_the_daemon_holds_not_a_stale_copy(client, other_client,
                                                                   frame):
    session = client.session(prior=frame.prior, settings=FAST, overload="block")
    # Another client changes the seed after this Session object last looked.
    other_client.session(session_id=session.id).update(settings={"seed": 99})
    session.update(settings={"evaluations": 5})
    s = held(other_client, session.id)
    assert (s.analysis.seed, s.analysis.evaluations, s.analysis.window) == (99, 5, 128)


def test_unknown_settings_are_named_as_the_docs_name_them(client, frame):
    with pytest.raises(logstar.InvalidSettings) as e:
        client.session(prior=frame.prior, settings={"windw": 64})
    assert "'windw'" in str(e.value) and "did you mean 'window'" in str(e.value)
    assert "column_sigma_angstrom" in str(e.value) and "columnSigma" not in str(e.value)
    with pytest.raises(logstar.InvalidSettings, match=r"settings\.amorphous: unknown field "
                       r"'evalutions' \(did you mean 'evaluations'\?\)"):
        client.session(prior=frame.prior, settings={"amorphous": {"evalutions": 3}})
    with pytest.raises(logstar.InvalidSettings) as e:
        client.session(prior={"pixel_size": 0.1, "nearest_neighbor_angstrom": 3.0})
    assert "pixel_size_angstrom" in str(e.value) and "pixelSize" not in str(e.value)
    session = client.session(prior=frame.prior, settings=FAST)
    with pytest.raises(logstar.InvalidSettings, match="drift_tolerance"):
        session.update(settings={"drift_tolerence": 0.2})


def test_result_windows_and_fronts_as_arrays(client, frame):
    session = client.session(prior=frame.prior, settings=dict(FAST, window=64),
                             overload="block")
    (r,) = session.stream([frame.image])
    w = r.windows
    assert isinstance(w, np.ndarray) and len(w) == len(r.proto.windows) == 4
    assert set(w["cache_state"]) == {"miss"}
    # Four windows to tune are no more than the warm starts' seeds: each is
    # searched, none adopts a seed's choice.
    assert not w["adopted"].any()
    # The cores partition the 128² frame.
    assert (w["core_cols"] * w["core_rows"]).sum() == 128 * 128
    covered = np.zeros((128, 128), int)
    for row in w:
        covered[row["core_row0"]:row["core_row0"] + row["core_rows"],
                row["core_col0"]:row["core_col0"] + row["core_cols"]] += 1
    assert (covered == 1).all()
    # Every atom lies in its window's core (x = column, y = row).
    atom_window = np.array([a.window for a in r.proto.atoms])
    for row in w:
        xy = r.atoms[atom_window == row["index"]]
        assert len(xy) == row["num_atoms"]
        assert (xy[:, 0] >= row["core_col0"] - 0.5).all()
        assert (xy[:, 0] <= row["core_col0"] + row["core_cols"] - 0.5).all()
        assert (xy[:, 1] >= row["core_row0"] - 0.5).all()
        assert (xy[:, 1] <= row["core_row0"] + row["core_rows"] - 0.5).all()

    f = r.fronts
    assert len(f) == sum(len(x.front) for x in r.proto.windows) > 0
    for row in w:
        front = f[f["window"] == row["index"]]
        assert front["chosen"].sum() == 1 and front["index"][front["chosen"]][0] == row["chosen"]
        chosen = front[front["chosen"]][0]
        # A tuned window runs with its chosen point's parameters.
        for name in ("min_sigma", "max_sigma", "num_sigma", "threshold", "overlap"):
            assert chosen[name] == pytest.approx(row[name])
        # A Pareto front: no point is at least as good in both and better in one.
        q, e = front["qc"], front["er"]
        for i in range(len(front)):
            dominated = (q <= q[i]) & (e <= e[i]) & ((q < q[i]) | (e < e[i]))
            assert not dominated.any(), front


def test_to_dataframe(client, frame):
    pd = pytest.importorskip("pandas", reason="python3-pandas is not installed")
    session = client.session(prior=frame.prior, settings=FAST, overload="block")
    (r,) = session.stream([frame.image])
    atoms = r.to_dataframe()
    assert isinstance(atoms, pd.DataFrame) and len(atoms) == len(r.atoms)
    np.testing.assert_array_equal(atoms[["x", "y"]].to_numpy(), r.atoms)
    assert {"sigma", "response", "window", "amorphous", "sublattice"} <= set(atoms.columns)
    assert f1_score(atoms[["x", "y"]].to_numpy(), frame.truth, 0.3 * frame.nn_px) >= 0.9
    windows = r.to_dataframe("windows")
    assert list(windows["cache_state"]) == ["miss"]
    assert len(r.to_dataframe("fronts")) == len(r.proto.windows[0].front)
    with pytest.raises(ValueError, match="'atoms', 'windows', 'fronts' or 'amorphous_windows'"):
        r.to_dataframe("rows")


# -- HyperSpy (optional)

def signal_of(image, scale, units, offset=0.0):
    hs = pytest.importorskip("hyperspy.api", reason="python3-hyperspy is not installed")
    s = hs.signals.Signal2D(image)
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units, ax.offset = scale, units, offset
    return s


def test_hyperspy_signal_is_a_frame_with_its_pixel_size(client, frame):
    # The prior without a pixel size: the frame's (from the axes, in nm) is used.
    prior = {k: v for k, v in frame.prior.items() if k != "pixel_size_angstrom"}
    session = client.session(prior=prior, settings=FAST, overload="block")
    signal = signal_of(frame.image, frame.pixel_size / 10.0, "nm")
    records = list(session.stream([signal, (signal, {"tag": "t"})]))
    assert [r.kind for r in records] == ["result", "result"], records
    assert records[1].tag == "t"
    for r in records:
        assert r.prior_used.pixel_size_angstrom == pytest.approx(frame.pixel_size, rel=1e-9)
        assert f1_score(r.atoms, frame.truth, 0.3 * frame.nn_px) >= 0.9
    r = session.analyze(signal_of(frame.image, frame.pixel_size * 100.0, "pm"))
    assert r.prior_used.pixel_size_angstrom == pytest.approx(frame.pixel_size, rel=1e-9)
    # A pixel size given with the signal wins over its axes.
    (r,) = session.stream([(signal, {"pixel_size": 2 * frame.pixel_size})])
    assert r.prior_used.pixel_size_angstrom == pytest.approx(2 * frame.pixel_size, rel=1e-9)


def test_hyperspy_stack_and_int32_and_refusals(client, frame):
    prior = {k: v for k, v in frame.prior.items() if k != "pixel_size_angstrom"}
    session = client.session(prior=prior, settings=FAST, overload="block")
    counts = np.round(frame.image * 1000).astype(np.int32)  # DM exports: int32
    stack = signal_of(np.stack([counts, counts]), frame.pixel_size, "Å")
    records = list(session.stream(stack))  # iterating a stack yields its frames
    assert [r.kind for r in records] == ["result", "result"], records
    assert f1_score(records[0].atoms, frame.truth, 0.3 * frame.nn_px) >= 0.9
    (failed,) = session.stream([stack])  # the stack as one frame
    assert isinstance(failed, logstar.Failed) and failed.origin == "client"
    assert "stack" in failed.message and "(2, 128, 128)" in failed.message


def test_to_hyperspy_markers_in_the_axes_units(client, frame):
    signal = signal_of(frame.image, 0.02, "nm", offset=1.5)
    session = client.session(prior=frame.prior, settings=FAST, overload="block")
    r = session.analyze(signal)
    markers = r.to_hyperspy_markers(signal)
    if len(markers) == 1 and hasattr(markers[0], "offsets"):  # HyperSpy 2
        xy = np.asarray(markers[0].offsets)
    else:
        assert len(markers) == len(r.atoms)
        xy = np.array([(m.get_data_position("x1"), m.get_data_position("y1")) for m in markers])
    np.testing.assert_allclose(xy, 1.5 + 0.02 * r.atoms)
    signal.add_marker(markers, permanent=True)  # HyperSpy takes them
    in_px = r.to_hyperspy_markers()
    if len(in_px) == len(r.atoms):
        assert in_px[0].get_data_position("x1") == pytest.approx(r.atoms[0, 0])


# -- building the package

def test_missing_stub_tools_are_named(monkeypatch, tmp_path):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.syspath_prepend(here)
    import build_stubs
    monkeypatch.delenv("PROTOC", raising=False)
    monkeypatch.delenv("GRPC_PYTHON_PLUGIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # neither protoc nor the plugin
    monkeypatch.setitem(sys.modules, "grpc_tools", None)  # nor grpcio-tools
    proto_dir = os.path.join(here, "..", "..", "proto")
    with pytest.raises(build_stubs.MissingTools) as e:
        build_stubs.generate(proto_dir, str(tmp_path / "out"))
    for words in ("protoc", "grpc_python_plugin", "protobuf-compiler-grpc", "grpcio-tools"):
        assert words in str(e.value)
