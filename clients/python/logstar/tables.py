"""A result's windows and Pareto fronts as numpy arrays, pandas tables and
HyperSpy markers, with enum values as the names the docs use.

* :func:`windows` and :func:`fronts` are numpy structured arrays, one row per
  window or front point (``array["qc"]``, ``array[i]``); ``pandas.DataFrame``
  takes them as they are. Pixel coordinates as everywhere: x = column,
  y = row, origin at the centre of the top-left pixel; tiles and cores are
  half-open ``[col0, col0 + cols) × [row0, row0 + rows)``.
* Enum values become lower-case names without their prefix, as the CLI's
  RESULT.json writes them (docs/user-guide.md): cache states ``"miss"``,
  ``"hit"``, ``"retuned"``; objective pairs ``"published"``, ``"lattice"``;
  ``"unspecified"`` for a server that did not say.
* pandas and HyperSpy are optional: :class:`~logstar.errors.MissingDependency`
  when they are asked for and not installed.

Pure functions; thread-safe.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from .errors import MissingDependency
from .v1 import result_pb2, session_pb2

_PARAMETERS = [("min_sigma", "f8"), ("max_sigma", "f8"), ("num_sigma", "i4"),
               ("threshold", "f8"), ("overlap", "f8")]

#: One row per window (result.proto WindowResult): tile and core (px),
#: cache state, the LoG parameters used, this frame's rewards and those at
#: tuning time, the front's chosen index, evaluations, atoms, ms, and
#: whether it adopted a seed window's front without a search (warm starts).
WINDOW_DTYPE = np.dtype([
    ("index", "i4"), ("col0", "i4"), ("row0", "i4"), ("cols", "i4"), ("rows", "i4"),
    ("core_col0", "i4"), ("core_row0", "i4"), ("core_cols", "i4"), ("core_rows", "i4"),
    ("cache_state", "U11"), ("objectives", "U11"), *_PARAMETERS,
    ("qc", "f8"), ("er", "f8"), ("tuned_qc", "f8"), ("tuned_er", "f8"),
    ("num_atoms", "i4"), ("evaluations", "i4"), ("chosen", "i4"),
    ("crystalline_fraction", "f8"), ("ms", "f8"), ("adopted", "?")])

#: One row per point of every window's Pareto front (FrontPoint): its
#: window, its index in that front, whether it is the chosen one, the
#: objectives (misses and spurious are 0 unless the lattice pair was
#: searched) and the LoG parameters.
FRONT_DTYPE = np.dtype([
    ("window", "i4"), ("index", "i4"), ("chosen", "?"), ("qc", "f8"), ("er", "f8"),
    ("misses", "f8"), ("spurious", "f8"), *_PARAMETERS])


#: One row per window of the amorphous stage (AmorphousWindow): tile, core,
#: cache state, ``skipped`` (why it did not run; empty: it ran), its
#: verdict's state (``"confident"``, ``"uncertain"``) and code, the
#: evidence, atoms classified and amorphous, the tuned parameters, ms.
AMORPHOUS_WINDOW_DTYPE = np.dtype([
    ("index", "i4"), ("col0", "i4"), ("row0", "i4"), ("cols", "i4"), ("rows", "i4"),
    ("core_col0", "i4"), ("core_row0", "i4"), ("core_cols", "i4"), ("core_rows", "i4"),
    ("cache_state", "U11"), ("skipped", "O"), ("verdict", "U11"), ("verdict_code", "U19"),
    ("evidence_share", "f8"), ("evidence_area", "f8"), ("num_classified", "i4"),
    ("num_amorphous", "i4"), ("patch_size_px", "i4"), ("threshold", "f8"),
    ("covariance_type", "U9"), ("num_components", "i4"), ("chosen", "i4"),
    ("evaluations", "i4"), ("ms", "f8")])


def enum_name(enum_type: Any, value: int) -> str:
    """A proto enum value's name as the docs write it: lower case, without
    the type's prefix (CACHE_STATE_HIT -> "hit"); the number when unknown."""
    v = enum_type.values_by_number.get(value)
    if v is None:
        return str(value)
    name = v.name
    prefix = "".join("_" + c if c.isupper() else c.upper() for c in enum_type.name).lstrip("_")
    return name[len(prefix) + 1:].lower() if name.startswith(prefix + "_") else name.lower()


def cache_state(value: int) -> str:
    """``"miss"``, ``"hit"``, ``"retuned"`` (or ``"unspecified"``)."""
    return enum_name(result_pb2.CacheState.DESCRIPTOR, value)


def _parameters(p: result_pb2.LogParameters) -> tuple:
    return (p.min_sigma, p.max_sigma, p.num_sigma, p.threshold, p.overlap)


def windows(proto: result_pb2.FrameResult) -> np.ndarray:
    rows = []
    for w in proto.windows:
        t, c = w.tile, w.core
        fraction = w.crystalline_fraction if w.HasField("crystalline_fraction") else 1.0
        rows.append((w.index, t.col0, t.row0, t.cols, t.rows, c.col0, c.row0, c.cols, c.rows,
                     cache_state(w.cache_state),
                     enum_name(session_pb2.ObjectivePair.DESCRIPTOR, w.objectives),
                     *_parameters(w.parameters), w.rewards.qc, w.rewards.er,
                     w.tuned_rewards.qc, w.tuned_rewards.er, w.num_atoms, w.evaluations,
                     w.chosen, fraction, w.ms, w.adopted))
    return np.array(rows, dtype=WINDOW_DTYPE)


def fronts(proto: result_pb2.FrameResult) -> np.ndarray:
    rows = [(w.index, i, i == w.chosen, p.qc, p.er, p.misses, p.spurious,
             *_parameters(p.parameters))
            for w in proto.windows for i, p in enumerate(w.front)]
    return np.array(rows, dtype=FRONT_DTYPE)


def amorphous_windows(proto: result_pb2.FrameResult) -> np.ndarray:
    """Empty when the stage is off."""
    verdict = result_pb2.AmorphousVerdict
    rows = []
    for w in proto.amorphous.windows:
        t, c, p = w.tile, w.core, w.parameters
        rows.append((w.index, t.col0, t.row0, t.cols, t.rows, c.col0, c.row0, c.cols, c.rows,
                     cache_state(w.cache_state), w.skipped,
                     enum_name(verdict.State.DESCRIPTOR, w.verdict.state),
                     enum_name(verdict.Code.DESCRIPTOR, w.verdict.code),
                     w.evidence_share, w.evidence_area, w.num_classified, w.num_amorphous,
                     p.patch_size_px, p.threshold, p.covariance_type, p.num_components,
                     w.chosen, w.evaluations, w.ms))
    return np.array(rows, dtype=AMORPHOUS_WINDOW_DTYPE)


def atom_columns(result: Any) -> Dict[str, np.ndarray]:
    """The per-atom arrays of a Result, by column name."""
    names = np.array(list(result.sublattice_names) + [""], dtype=object)
    columns = {"x": result.atoms[:, 0], "y": result.atoms[:, 1], "sigma": result.sigma,
               "response": result.response,
               "window": np.fromiter((a.window for a in result.proto.atoms), dtype=np.int32,
                                     count=len(result.atoms)),
               "amorphous": result.amorphous, "amorphous_posterior": result.amorphous_posterior,
               "sublattice": names[result.sublattice]}  # -1: "" (none)
    if getattr(result, "atom_errors", None) is not None:  # Gaussian refinement
        columns.update({"x_err": result.atom_errors[:, 0], "y_err": result.atom_errors[:, 1],
                        "amplitude": result.atom_amplitude, "intensity": result.atom_intensity,
                        "sigma_x": result.atom_shape[:, 0], "sigma_y": result.atom_shape[:, 1],
                        "rotation": result.atom_shape[:, 2],
                        "fit_status": np.array(result.atom_fit_status, dtype=object)})
    return columns


def to_dataframe(result: Any, what: str = "atoms"):
    """A pandas DataFrame of the result's ``"atoms"`` (x, y, sigma,
    response, window, amorphous, amorphous_posterior, sublattice name; with
    Gaussian refinement also x_err, y_err, amplitude, intensity, sigma_x,
    sigma_y, rotation, fit_status),
    ``"windows"``, ``"fronts"`` or ``"amorphous_windows"``."""
    try:
        import pandas as pd
    except ImportError:
        raise MissingDependency("to_dataframe needs pandas, which is not installed "
                                "(Debian: apt-get install python3-pandas)") from None
    if what == "atoms":
        return pd.DataFrame(atom_columns(result))
    if what in ("windows", "fronts", "amorphous_windows"):
        return pd.DataFrame(getattr(result, what))
    raise ValueError(f"to_dataframe: what={what!r}: use 'atoms', 'windows', 'fronts' or "
                     f"'amorphous_windows'")


def _axis_values(signal: Any) -> tuple:
    """(offset, scale) of the columns' and rows' axes; pixels without a signal."""
    if signal is None:
        return (0.0, 1.0), (0.0, 1.0)
    ax_x, ax_y = signal.axes_manager.signal_axes[:2]  # HyperSpy's order: x (columns) first
    return (float(ax_x.offset), float(ax_x.scale)), (float(ax_y.offset), float(ax_y.scale))


def to_hyperspy_markers(result: Any, signal: Any = None, color: str = "red",
                        size: float = 20) -> List[Any]:
    """The atoms as HyperSpy markers: ``signal.add_marker(markers,
    permanent=True)`` (HyperSpy 1.x) or ``signal.add_marker(markers)``
    (2.x). With ``signal`` (the Signal2D the frame came from) positions are
    in its axes' units (offset + scale × px), as its plot is; without, in
    px. Amorphous atoms (when the stage is on) are drawn in blue."""
    try:
        import hyperspy.api as hs
    except ImportError:
        raise MissingDependency("to_hyperspy_markers needs HyperSpy, which is not installed "
                                "(Debian: apt-get install python3-hyperspy)") from None
    (x0, sx), (y0, sy) = _axis_values(signal)
    x = x0 + sx * result.atoms[:, 0]
    y = y0 + sy * result.atoms[:, 1]
    colors = np.where(result.amorphous, "blue", color)
    markers = hs.plot.markers
    if hasattr(markers, "Points"):  # HyperSpy >= 2: one marker for all
        return [markers.Points(offsets=np.column_stack((x, y)), color=list(colors),
                               sizes=size)]
    return [markers.point(x=float(a), y=float(b), color=str(c), size=size)
            for a, b, c in zip(x, y, colors)]
