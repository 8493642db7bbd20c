"""Copies a recorded stream with its session settings' objective pair set
to the lattice pair, whose Pareto fronts have several points (the published
pair's often has one point that dominates), so the browser test has points
to pick. Usage: lattice_stream.py IN.lsr OUT.lsr"""
import sys

import logstar
from logstar.v1 import session_pb2

source = logstar.read_recording(sys.argv[1])
settings = session_pb2.SessionSettings()
settings.CopyFrom(source.header.settings)
settings.analysis.objectives = session_pb2.OBJECTIVE_PAIR_LATTICE
with logstar.RecordingWriter(sys.argv[2], settings, has_truth=source.header.has_truth) as out:
    for f in source.frames:
        out.write(f.frame, offset_ns=f.offset_ns, truth=f.truth if len(f.truth) else None,
                  truth_amorphous=f.truth_amorphous if len(f.truth) else None)
