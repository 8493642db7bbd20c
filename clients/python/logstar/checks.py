"""What a result says about its prior and the frame (result.proto): the
prior's warnings against the lattice measured on the frame, the prior the
frame was analysed with (derived from the frame with ``prior="auto"``), the
measured lattice, the crystalline share and the sublattices.

:class:`logstar.Result` carries them as

* ``warnings``: list of :class:`PriorWarning`, empty when the prior agrees
  with the frame (repeated on every result of a stream until its cache is
  emptied);
* ``prior_used``: the ``PhysicsPrior`` message the frame ran with (None from
  a daemon that does not report it), ``prior_derived`` (bool: from the frame)
  and ``prior_pixel_units`` (bool: derived without a pixel size, so its
  "angstrom" lengths are px and its pixel size is 1);
* ``lattice``: :class:`MeasuredLattice` or None when not measured;
* ``crystalline_fraction``: share of the frame that shows the lattice (1.0
  from a daemon without it); ``crystal_note``: why expected counts are over
  the whole frame instead (empty when they are over the crystal);
* ``sublattice``: int per atom, an index into ``prior_used.sublattices``,
  -1 for none; ``sublattice_names``: the names in that order;
  ``sublattices``: list of :class:`SublatticeCount`; ``sublattice_note``.

Lengths are px unless a name says angstrom; densities per px² or per nm².
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import numpy as np

from .v1 import result_pb2, session_pb2


@dataclasses.dataclass(frozen=True)
class PriorWarning:
    """A disagreement between the prior and the frame. ``field`` is the
    settings.prior field ("pixel_size_angstrom", "nearest_neighbor_angstrom"
    or "column_density_per_nm2"); ``given`` and ``measured`` are in its unit
    (Å or per nm²); ``message`` one sentence with the figures."""
    field: str
    given: float
    measured: float
    message: str

    @classmethod
    def from_proto(cls, w: result_pb2.PriorWarning) -> "PriorWarning":
        return cls(w.field, w.given, w.measured, w.message)


@dataclasses.dataclass(frozen=True)
class MeasuredLattice:
    """The lattice measured on the frame. ``found`` False: ``reason`` says
    why and the rest is 0. ``a`` and ``b``: the two shortest translations
    (x, y) in px; ``nearest_neighbor_angstrom`` and
    ``column_density_per_nm2`` are 0 when no pixel size is known."""
    found: bool
    reason: str
    a: Tuple[float, float]
    b: Tuple[float, float]
    a_px: float
    b_px: float
    gamma_deg: float
    columns_per_cell: int
    nearest_neighbor_px: float
    column_density_per_px2: float
    nearest_neighbor_angstrom: float
    column_density_per_nm2: float
    significance: float

    @classmethod
    def from_proto(cls, m: result_pb2.MeasuredLattice) -> "MeasuredLattice":
        return cls(m.found, m.reason, (m.a_x, m.a_y), (m.b_x, m.b_y), m.a_px, m.b_px,
                   m.gamma_deg, m.columns_per_cell, m.nearest_neighbor_px,
                   m.column_density_per_px2, m.nearest_neighbor_angstrom,
                   m.column_density_per_nm2, m.significance)


@dataclasses.dataclass(frozen=True)
class SublatticeCount:
    """One sublattice's count over the frame: atoms assigned to it, its
    expected number (its density × the crystalline area), QC, and its
    measured brightness relative to the brightest sublattice's."""
    name: str
    num_found: int
    num_expected: float
    qc: float
    relative_brightness: float

    @classmethod
    def from_proto(cls, c: result_pb2.SublatticeCount) -> "SublatticeCount":
        return cls(c.name, c.num_found, c.num_expected, c.qc, c.relative_brightness)


@dataclasses.dataclass(frozen=True)
class Checks:
    """Everything above, as :class:`logstar.Result` spreads it."""
    warnings: List[PriorWarning]
    prior_used: Optional[session_pb2.PhysicsPrior]
    prior_derived: bool
    prior_pixel_units: bool
    lattice: Optional[MeasuredLattice]
    crystalline_fraction: float
    crystal_note: str
    sublattice: np.ndarray
    sublattice_names: List[str]
    sublattices: List[SublatticeCount]
    sublattice_note: str


def checks_of(proto: result_pb2.FrameResult) -> Checks:
    used = proto.prior_used if proto.HasField("prior_used") else None
    n = len(proto.atoms)
    # 1-based on the wire (0: none), the engine's index here (-1: none).
    sublattice = np.fromiter((a.sublattice - 1 for a in proto.atoms), dtype=np.int32, count=n)
    return Checks(
        warnings=[PriorWarning.from_proto(w) for w in proto.warnings],
        prior_used=used.prior if used is not None else None,
        prior_derived=used.derived if used is not None else False,
        prior_pixel_units=used.pixel_units if used is not None else False,
        lattice=MeasuredLattice.from_proto(proto.lattice) if proto.HasField("lattice") else None,
        crystalline_fraction=(proto.crystalline_fraction
                              if proto.HasField("crystalline_fraction") else 1.0),
        crystal_note=proto.crystal_note,
        sublattice=sublattice,
        sublattice_names=[s.name for s in used.prior.sublattices] if used is not None else [],
        sublattices=[SublatticeCount.from_proto(c) for c in proto.sublattices],
        sublattice_note=proto.sublattice_note)
