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
  A dict changes only the fields it names (``Session.update`` keeps the
  rest); unknown names are refused, naming the known ones in snake_case.
* The amorphous stage: True/False, an ``AmorphousSettings`` message or a
  dict of its fields (``evaluations``, ``window``, ...; a dict turns the
  stage on unless it says ``"enabled": False``).
* The overload policy by name: ``"block"``, ``"latest-wins"``,
  ``"reject"`` (see session.proto).

Pure functions; thread-safe.
"""
from __future__ import annotations

import difflib
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


def _field(descriptor, key: str):
    """The field ``key`` names (snake_case as in the docs, or the JSON
    camelCase json_format also takes), or None."""
    return descriptor.fields_by_name.get(key) or descriptor.fields_by_camelcase_name.get(key)


def _check_fields(value: Any, descriptor, what: str) -> None:
    """Refuses unknown keys, naming them and the known ones in snake_case as
    the docs do (json_format would name them in camelCase), and true/false
    for a field that is not a bool: json_format takes those as 1 and 0 (a
    Python bool is an int) where the protobuf JSON mapping, and so the C++
    parser the CLI reads prior files with, refuses them."""
    if not isinstance(value, Mapping):
        return
    for key, v in value.items():
        field = _field(descriptor, key)
        if field is None:
            known = [f.name for f in descriptor.fields]
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidSettings(f"{what}: unknown field {key!r}{hint}; {descriptor.name} "
                                  f"fields: {', '.join(known)}")
        if field.type == field.TYPE_MESSAGE:
            for item in (v if isinstance(v, list) else [v]):
                _check_fields(item, field.message_type, f"{what}.{field.name}")
        elif field.type != field.TYPE_BOOL and any(
                isinstance(item, bool) for item in (v if isinstance(v, list) else [v])):
            raise InvalidSettings(f"{what}: {key}: invalid value {v!r} for a "
                                  f"{'number' if field.type != field.TYPE_ENUM else 'name'}")


def _from_dict(message, value: Mapping[str, Any], what: str):
    if not isinstance(value, Mapping):
        raise InvalidSettings(f"{what}: expected a JSON object of {message.DESCRIPTOR.name} "
                              f"fields, got {type(value).__name__}")
    _check_fields(value, message.DESCRIPTOR, what)
    try:
        return json_format.ParseDict(dict(value), message)
    except json_format.ParseError as e:
        raise InvalidSettings(f"{what}: {e}") from None


def _has(message, name: str) -> bool:
    try:
        return message.HasField(name)
    except ValueError:  # a proto3 scalar without presence: always "set"
        return True


def _merge_named(target, parsed, value: Mapping[str, Any]) -> None:
    """Copies into ``target`` the fields ``value`` names, from ``parsed``
    (``value`` parsed): a nested dict merges into its message the same way;
    any other value replaces the field (null clears it)."""
    for key, v in value.items():
        field = _field(target.DESCRIPTOR, key)
        name = field.name
        if (field.type == field.TYPE_MESSAGE and field.label != field.LABEL_REPEATED
                and isinstance(v, Mapping)):
            _merge_named(getattr(target, name), getattr(parsed, name), v)
            continue
        target.ClearField(name)
        if field.label == field.LABEL_REPEATED:
            getattr(target, name).MergeFrom(getattr(parsed, name))
        elif field.type == field.TYPE_MESSAGE:
            if parsed.HasField(name):
                getattr(target, name).CopyFrom(getattr(parsed, name))
        elif _has(parsed, name):
            setattr(target, name, getattr(parsed, name))


def merge_into(target, value: Union[Mapping[str, Any], Any], what: str) -> None:
    """Changes ``target`` (a message) by ``value``: a dict changes only the
    fields it names, nested dicts field by field too, and leaves the others
    as they are; a message of the same type replaces ``target`` whole."""
    if isinstance(value, type(target)):
        target.CopyFrom(value)
        return
    parsed = _from_dict(type(target)(), value, what)
    _merge_named(target, parsed, value)


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
    """SessionSettings: ``base`` (copied) changed by the parts given.

    ``prior`` replaces the prior whole (a prior describes one sample).
    ``settings`` as a dict changes only the analysis fields it names (nested
    dicts such as ``amorphous`` or ``prior_tolerances`` field by field), as
    an AnalysisSettings replaces the analysis settings whole, and as a whole
    SessionSettings takes the place of ``base``. ``amorphous`` is applied
    after ``settings``: True/False switches the stage and keeps its other
    settings; a dict changes the fields it names and turns the stage on
    unless it says ``"enabled": False``; an AmorphousSettings replaces them."""
    out = session_pb2.SessionSettings()
    if isinstance(settings, session_pb2.SessionSettings):
        out.CopyFrom(settings)
        settings = None
    elif base is not None:
        out.CopyFrom(base)
    if prior is not None:
        out.prior.CopyFrom(prior_message(prior))
    if settings is not None:
        if not isinstance(settings, (session_pb2.AnalysisSettings, Mapping)):
            raise InvalidSettings(f"settings: expected AnalysisSettings or a dict, "
                                  f"got {type(settings).__name__}")
        merge_into(out.analysis, settings, "settings")
    if amorphous is not None:
        if isinstance(amorphous, bool):
            out.analysis.amorphous.enabled = amorphous
        elif isinstance(amorphous, (session_pb2.AmorphousSettings, Mapping)):
            value = amorphous
            if isinstance(amorphous, Mapping):
                value = dict(amorphous)
                value.setdefault("enabled", True)
            merge_into(out.analysis.amorphous, value, "amorphous")
        else:
            raise InvalidSettings(f"amorphous: expected True/False, AmorphousSettings or a "
                                  f"dict, got {type(amorphous).__name__}")
    if overload is not None:
        out.overload_policy = overload_value(overload)
    if queue_capacity is not None:
        out.queue_capacity = int(queue_capacity)
    return out
