"""logstar: the Python client of the logstar daemon (logstard).

    import logstar
    client = logstar.Client("127.0.0.1:50051")            # token=..., tls=...
    session = client.session(prior="prior.json", settings={"window": 128},
                             overload="block")
    for record in session.stream(frames):                  # arrays, Signal2Ds, or (either, metadata)
        if record.ok:
            xy = record.atoms                              # N×2 float64, x=column, y=row, px
            record.windows, record.fronts                  # numpy structured arrays; .to_dataframe()
    # client.session(prior=..., amorphous=True): record.amorphous (bool per atom),
    # record.amorphous_posterior (NaN: unclassified), record.regions (Region: contour N×2, ...)
    # record.warnings (PriorWarning: the prior against the frame's lattice), record.prior_used;
    # client.session(prior="auto"): the prior derived from the first frame
        else:
            print(record)                                  # Dropped or Failed, never skipped

Conventions everywhere: coordinates x = column, y = row, in pixels of the
frame as sent, origin at the centre of the top-left pixel; lengths in
ångström (Å) unless a name says px. Modules:

* :mod:`logstar.client`    Client, Session, Result/Dropped/Failed records, Watch(ed)
* :mod:`logstar.checks`    a result's prior warnings, measured lattice, sublattices
* :mod:`logstar.frames`    numpy images ↔ Frame envelopes, metadata keys
* :mod:`logstar.shared_memory`  pixels through shared memory on the daemon's host
* :mod:`logstar.streaming` one stream's connections: ``stream(..., reconnect=S)``
* :mod:`logstar.settings`  priors and settings from dicts and JSON files
* :mod:`logstar.recording` .lsr recording files: read, write
* :mod:`logstar.files`     .npy, TIFF, DM3/DM4/EMD (HyperSpy, optional)
* :mod:`logstar.pull`      adapter for pull-based microscope APIs
* :mod:`logstar.score`     matching atoms to ground truth
* :mod:`logstar.tables`    a result's windows and fronts as arrays, DataFrames, HyperSpy markers
* ``python3 -m logstar``  replay and record (see logstar.__main__)

The messages and gRPC stubs in :mod:`logstar.v1` are generated from
proto/logstar/v1 when the package is built (by pip, or by CMake into
build/clients/python).
"""
try:
    from .v1 import frame_pb2 as _frame_pb2  # noqa: F401  (generated at build time)
except ImportError as _e:  # the source tree, not the built package
    raise ImportError(
        f"logstar.v1, the gRPC stubs generated from proto/ at build time, is missing "
        f"({_e}); install the package (pip install --no-build-isolation ./clients/python) "
        f"or put BUILD_DIR/clients/python on PYTHONPATH, not the source tree") from None

from . import score, tables
from .checks import MeasuredLattice, PriorWarning, SublatticeCount
from .client import Client, Dropped, Failed, Record, Region, Result, Session, Tls, Watch, Watched
from .errors import (AuthenticationError, FrameNotAnalysed, InvalidFrame, InvalidSettings,
                     LogstarError, MissingDependency, RecordingError, RpcFailed,
                     ServerUnavailable, StreamBroken)
from .files import read_frames, read_image
from .pull import PullAdapter
from .recording import (Recording, RecordedFrame, RecordingReader, RecordingWriter,
                        read_recording)
from .settings import session_settings
from .shared_memory import SharedMemoryRing
from .streaming import StreamStats

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError", "Client", "Dropped", "Failed", "FrameNotAnalysed", "InvalidFrame",
    "InvalidSettings", "LogstarError", "MeasuredLattice", "MissingDependency", "PriorWarning",
    "PullAdapter", "Record",
    "RecordedFrame", "Recording", "RecordingError", "RecordingReader", "RecordingWriter",
    "Region", "Result", "RpcFailed", "ServerUnavailable", "Session", "SharedMemoryRing",
    "StreamBroken", "StreamStats", "SublatticeCount", "Tls", "Watch", "Watched",
    "read_frames", "read_image", "read_recording", "session_settings",
]
