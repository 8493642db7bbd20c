"""The amorphous stage's verdict on a frame (result.proto AmorphousVerdict):
whether the daemon stands by the regions it found — or by finding none.

An uncertain verdict means "cannot tell", not "crystalline": e.g. the frame
is too noisy for the stage to locate disorder it sees, or the chosen regions
disagree with the frame's own evidence. :class:`logstar.Result` carries it as
``amorphous_verdict`` (None when the stage is off), ``amorphous_uncertain``
(bool) and ``amorphous_reason`` (str, empty when confident).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from .v1 import result_pb2

_CODES = {
    result_pb2.AmorphousVerdict.CODE_UNSPECIFIED: "",
    result_pb2.AmorphousVerdict.CODE_TOO_FEW_ATOMS: "too_few_atoms",
    result_pb2.AmorphousVerdict.CODE_EVIDENCE_DISAGREES: "evidence_disagrees",
    result_pb2.AmorphousVerdict.CODE_BELOW_RESOLUTION: "below_resolution",
    result_pb2.AmorphousVerdict.CODE_NOT_RUN: "not_run",
}


@dataclasses.dataclass(frozen=True)
class AmorphousVerdict:
    """``state``: "confident", "uncertain", or "unknown" (a daemon without
    verdicts); ``code``: "" when confident, else "too_few_atoms",
    "evidence_disagrees", "below_resolution" or "not_run" (or "unknown" for
    a code this client does not know); ``reason``: one sentence with the
    figures, empty when confident."""
    state: str
    code: str
    reason: str

    @property
    def uncertain(self) -> bool:
        return self.state == "uncertain"

    @classmethod
    def from_proto(cls, v: result_pb2.AmorphousVerdict) -> "AmorphousVerdict":
        state = {result_pb2.AmorphousVerdict.STATE_CONFIDENT: "confident",
                 result_pb2.AmorphousVerdict.STATE_UNCERTAIN: "uncertain"}.get(v.state, "unknown")
        return cls(state, _CODES.get(v.code, "unknown"), v.reason)


def verdict_fields(proto: result_pb2.FrameResult
                   ) -> Tuple[Optional[AmorphousVerdict], bool, str]:
    """(verdict or None when the stage is off, uncertain, reason) of a result."""
    if not proto.HasField("amorphous"):
        return None, False, ""
    v = AmorphousVerdict.from_proto(proto.amorphous.verdict)
    return v, v.uncertain, v.reason
