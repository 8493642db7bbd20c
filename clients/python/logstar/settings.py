"""Session settings from the forms people have them in.

* A physics prior: a ``PhysicsPrior`` message, a dict with its field names
  (the ``prior.json`` that ``logstar synth`` writes and ``logstar analyze``
  reads: ``pixel_size_angstrom``, ``column_density_per_nm2``,
  ``nearest_neighbor_angstrom``, optionally ``lattice`` and ``sublattices``
  [{``name``, ``column_density_per_nm2``, ``relative_brightness``}], brightest
  first), or the path of such a JSON file. Lengths in Å, densities per nm².
  ``"auto"`` (or ``{"auto": True}``, optionally with
  ``pixel_size_angstrom``; or a dict or file with only a pixel size): the
  daemon derives the prior from the stream's first frame. A file literally
  named ``auto`` is given as ``"./auto"``.
* The analysis settings may ask for one sublattice (``"sublattice": "A"``)
  and set how far the prior may be from the frame before results carry a
  warning (``"prior_tolerances": {"spacing": 0.15, "density": 0.3225}``).
* Analysis settings: an ``AnalysisSettings`` message or a dict of its
  fields (``window``, ``evaluations``, ``seed``, ...; px where lengths).
* The amorphous stage: True/False, an ``AmorphousSettings`` message or a
  dict of its fields (``evaluations``, ``window``, ...; a dict turns the
  stage on unless it says ``"enabled": False``).
* The overload policy by name: ``"block"``, ``"latest-wins"``,
  ``"reject"`` (see session.proto).

Pure functions; thread-safe.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Union

from google.protobuf import json_format

from .errors import InvalidSettings
from .v1 import session_pb2

PriorLike = Union[session_pb2.PhysicsPrior, Mapping[str, Any], str, os.PathLike]
AnalysisLike = Union[session_pb2.AnalysisSettings, Mapping[str, Any]]
AmorphousLike = Union[bool, session_pb2.AmorphousSettings, Mapping[str, Any]]

OVERLOAD_POLICIES = {
    "block": session_pb2.OVERLOAD_POLICY_BLOCK,
    "latest-wins": session_pb2.OVERLOAD_POLICY_LATEST_WINS,
    "reject": session_pb2.OVERLOAD_POLICY_REJECT,
}


def _reject_bools(value: Any, descriptor, what: str) -> None:
    """Refuses true/false for a field that is not a bool. json_format takes
    them as 1 and 0 (a Python bool is an int); the protobuf JSON mapping,
    and so the C++ parser the CLI reads prior files with, refuses them."""
    if not isinstance(value, Mapping):
        return
    for key, v in value.items():
        field = (descriptor.fields_by_name.get(key)
                 or descriptor.fields_by_camelcase_name.get(key))
        if field is None:
            continue  # ParseDict names the unknown field
        if field.type == field.TYPE_MESSAGE:
            for item in (v if isinstance(v, list) else [v]):
                _reject_bools(item, field.message_type, f"{what}.{key}")
        elif field.type != field.TYPE_BOOL and any(
                isinstance(item, bool) for item in (v if isinstance(v, list) else [v])):
            raise InvalidSettings(f"{what}: {key}: invalid value {v!r} for a "
                                  f"{'number' if field.type != field.TYPE_ENUM else 'name'}")


def _from_dict(message, value: Mapping[str, Any], what: str):
    if not isinstance(value, Mapping):
        raise InvalidSettings(f"{what}: expected a JSON object of {message.DESCRIPTOR.name} "
                              f"fields, got {type(value).__name__}")
    _reject_bools(value, message.DESCRIPTOR, what)
    try:
        return json_format.ParseDict(dict(value), message)
    except json_format.ParseError as e:
        raise InvalidSettings(f"{what}: {e}") from None


def prior_message(prior: PriorLike) -> session_pb2.PhysicsPrior:
    """A PhysicsPrior from a message, a dict, a JSON file's path, or
    ``"auto"`` (derived by the daemon from the first frame)."""
    if isinstance(prior, session_pb2.PhysicsPrior):
        return prior
    if isinstance(prior, str) and prior == "auto":
        return session_pb2.PhysicsPrior(auto=True)
    if isinstance(prior, (str, os.PathLike)):
        try:
            with open(prior) as f:
                value = json.load(f)
        except (OSError, ValueError) as e:
            raise InvalidSettings(f"prior file {os.fspath(prior)}: {e}") from None
        return _from_dict(session_pb2.PhysicsPrior(), value, f"prior file {os.fspath(prior)}")
    if isinstance(prior, Mapping):
        return _from_dict(session_pb2.PhysicsPrior(), prior, "prior")
    raise InvalidSettings(f"prior: expected a PhysicsPrior, a dict or a JSON path, "
                          f"got {type(prior).__name__}")


def analysis_message(settings: AnalysisLike) -> session_pb2.AnalysisSettings:
    if isinstance(settings, session_pb2.AnalysisSettings):
        return settings
    if isinstance(settings, Mapping):
        return _from_dict(session_pb2.AnalysisSettings(), settings, "settings")
    raise InvalidSettings(f"settings: expected AnalysisSettings or a dict, "
                          f"got {type(settings).__name__}")


def amorphous_message(amorphous: AmorphousLike) -> session_pb2.AmorphousSettings:
    if isinstance(amorphous, session_pb2.AmorphousSettings):
        return amorphous
    if isinstance(amorphous, bool):
        return session_pb2.AmorphousSettings(enabled=amorphous)
    if isinstance(amorphous, Mapping):
        value = dict(amorphous)
        value.setdefault("enabled", True)
        return _from_dict(session_pb2.AmorphousSettings(), value, "amorphous")
    raise InvalidSettings(f"amorphous: expected True/False, AmorphousSettings or a dict, "
                          f"got {type(amorphous).__name__}")


def overload_value(policy: Union[str, int]) -> int:
    if isinstance(policy, int):
        return policy
    try:
        return OVERLOAD_POLICIES[policy]
    except KeyError:
        raise InvalidSettings(f"overload policy {policy!r}: use one of "
                              f"{sorted(OVERLOAD_POLICIES)}") from None


def session_settings(prior: Optional[PriorLike] = None,
                     settings: Optional[Union[AnalysisLike, session_pb2.SessionSettings]] = None,
                     overload: Optional[Union[str, int]] = None,
                     queue_capacity: Optional[int] = None,
                     base: Optional[session_pb2.SessionSettings] = None,
                     amorphous: Optional[AmorphousLike] = None
                     ) -> session_pb2.SessionSettings:
    """SessionSettings: ``base`` (copied) with the given parts replaced.

    ``settings`` may also be a whole SessionSettings, which then takes the
    place of ``base``. ``amorphous`` replaces ``analysis.amorphous`` after
    ``settings`` is applied."""
    out = session_pb2.SessionSettings()
    if isinstance(settings, session_pb2.SessionSettings):
        out.CopyFrom(settings)
        settings = None
    elif base is not None:
        out.CopyFrom(base)
    if prior is not None:
        out.prior.CopyFrom(prior_message(prior))
    if settings is not None:
        out.analysis.CopyFrom(analysis_message(settings))
    if amorphous is not None:
        out.analysis.amorphous.CopyFrom(amorphous_message(amorphous))
    if overload is not None:
        out.overload_policy = overload_value(overload)
    if queue_capacity is not None:
        out.queue_capacity = int(queue_capacity)
    return out
