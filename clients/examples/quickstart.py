"""Stream frames to logstard and read the atoms: the shortest Python client.

    python3 -m venv --system-site-packages env
    env/bin/pip install --no-build-isolation ./clients/python
    env/bin/python clients/examples/quickstart.py 127.0.0.1:50051

acquire() stands in for the microscope: put your camera's read-out there (any
2-D uint8, uint16, int16, float32 or float64 array, or a HyperSpy Signal2D)
and your sample's PRIOR.
"""
import sys

import numpy as np

import logstar


def acquire(frames=5, size=256, spacing=16, sigma=1.8):
    """Gaussian columns (sigma px) on a square lattice of `spacing` px, the
    first at spacing / 2, with noise."""
    rng = np.random.default_rng(0)
    t = np.arange(size)[:, None]
    profile = np.exp(-(t - np.arange(spacing / 2, size, spacing)) ** 2 / (2 * sigma**2)).sum(1)
    for _ in range(frames):
        yield (np.outer(profile, profile) + rng.normal(0, 0.05, (size, size))).astype(np.float32)


# What is known about the sample: 0.25 Å per pixel, one column per 4 × 4 Å
# cell (16 px), no two columns closer than 4 Å.
PRIOR = {"pixel_size_angstrom": 0.25, "nearest_neighbor_angstrom": 4.0,
         "lattice": {"a_angstrom": 4.0, "b_angstrom": 4.0, "columns_per_cell": 1}}

client = logstar.Client(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
session = client.session(prior=PRIOR, overload="block")  # block: analyse every frame
for record in session.stream(acquire()):
    if record.ok:  # atoms: N×2 float64, x = column, y = row, px
        x, y = record.atoms[0]
        print(f"frame {record.sequence}: {len(record.atoms)} atoms, e.g. x={x:.2f} y={y:.2f}")
    else:  # Dropped or Failed, with the reason
        print(f"frame {record.sequence}: {record}")
