#!/usr/bin/python3
"""Writes the LoG conformance goldens: scikit-image blob_log outputs.

logstar's DetectBlobsLog promises scikit-image 0.19 `blob_log` semantics
(engine/log/log_detector.h). This script fixes what "the same" means by running
scikit-image itself on a set of frames and parameter sets and committing the
results; tests/engine/log_conformance_test.cc compares logstar against them.

Frames:
  * four lattice frames generated here with numpy alone (not with logstar's
    synthesiser, so a bug there cannot hide a bug in the detector), stored as
    uint16 .npy so the C++ test reads exactly the values this script used;
  * the two real images of <shared>/data/real, read in place: only their blob
    lists are committed, never the images.

Every frame is normalised min-max to [0, 1] in float64 exactly as the
reference workflow (shared/reference/reference_logstar.py) does, then passed
to skimage.feature.blob_log.

Outputs under tests/data/conformance/: <frame>.npy for generated frames,
<frame>__<params>.csv (y,x,sigma per blob, blob_log's row order) and
goldens.json, the index the test reads. Paths in the index are relative to
tests/data; real frames are written "shared:data/real/<name>.npy", relative to
the shared directory.

Run with Debian's interpreter (python3-numpy, python3-scipy, python3-skimage):
    /usr/bin/python3 tests/conformance/make_goldens.py [--shared DIR]
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy
import skimage
from skimage.feature import blob_log

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA_DIR = os.path.join(REPO, 'tests', 'data')
OUT_DIR = os.path.join(DATA_DIR, 'conformance')

# The goldens are only meaningful for the scikit-image release whose semantics
# the detector documents; other releases changed peak_local_max and pruning.
EXPECTED_SKIMAGE = '0.19'

# Generated lattice frames: HAADF-like columns of sigma ~3.5 px on a square
# lattice ~20 px apart, a checkerboard of heavy single columns and light
# dumbbells (two columns `dumbbell_px` apart along the lattice's x axis). The
# dumbbells give even the noise-free frame overlapping scale-space peaks (each
# column at small sigma, the pair at large sigma), so pruning is exercised
# without noise. Noise std is `noise` x (max - min) of the clean frame, the
# published convention.
LATTICE_FRAMES = [
    dict(name='lattice_n000', width=192, height=192, noise=0.0, seed=1001),
    dict(name='lattice_n010', width=192, height=192, noise=0.1, seed=1002),
    # Non-square, so a transposed index (x for y) in the detector shows.
    dict(name='lattice_n030', width=256, height=200, noise=0.3, seed=1003),
    dict(name='lattice_n060', width=192, height=192, noise=0.6, seed=1004),
]
LATTICE = dict(spacing_px=20.0, rotation_deg=7.0, sigma_px=3.5, heavy=1.0, light=0.45,
               background=0.05, jitter_px=0.25, dumbbell_px=9.0)

REAL_FRAMES = ['srtio3_110_haadf', 'graphene_si_dopant_madf']


def p(min_sigma, max_sigma, num_sigma, threshold, overlap, log_scale=False, exclude_border=0):
    """One blob_log parameter set, in blob_log's own names."""
    return dict(min_sigma=min_sigma, max_sigma=max_sigma, num_sigma=num_sigma,
                threshold=threshold, overlap=overlap, log_scale=log_scale,
                exclude_border=exclude_border)


# Parameter sets per frame, chosen for each frame's column size and noise:
#  * typical: a sigma range around the column sigma, threshold between the
#    light columns' response and the noise;
#  * logscale_border: log-spaced sigmas and exclude_border > 0;
#  * prune: a wide sigma range (1..12), a low threshold and overlap 0.1, so
#    that many scale-space peaks overlap and pruning removes a large share
#    (the index records the count before pruning to show it);
#  * a few extra edge cases: a single sigma, one sigma repeated, a threshold that keeps only the
#    heavy columns, overlap 0 (any overlap prunes).
# Thresholds of the noisy frames are lower because min-max normalisation of a
# noisy frame compresses the columns' contrast.
PARAMS = {
    'lattice_n000': {
        'typical': p(2, 6, 10, 0.1, 0.5),
        'logscale_border': p(1.5, 8, 8, 0.05, 0.5, log_scale=True, exclude_border=10),
        'prune': p(1, 12, 12, 0.001, 0.1),
        'single_sigma': p(3.5, 3.5, 1, 0.1, 0.5),
        'heavy_only': p(2, 6, 10, 0.3, 0.5),
    },
    'lattice_n010': {
        'typical': p(2, 6, 10, 0.1, 0.5),
        'logscale_border': p(1.5, 8, 8, 0.05, 0.5, log_scale=True, exclude_border=7),
        'prune': p(1, 12, 12, 0.01, 0.1),
        'overlap0': p(2, 8, 7, 0.05, 0.0),
    },
    'lattice_n030': {
        'typical': p(2, 6, 10, 0.05, 0.5),
        'logscale_border': p(1.5, 8, 8, 0.04, 0.5, log_scale=True, exclude_border=5),
        'prune': p(1, 12, 12, 0.01, 0.1),
        # min_sigma == max_sigma with num_sigma 10, a common tuned choice:
        # ten identical scales, every column a peak in each, pruned in
        # chains among the copies.
        'repeated_sigma': p(4.4, 4.4, 10, 0.02, 0.15),
    },
    'lattice_n060': {
        'typical': p(2, 6, 10, 0.03, 0.5),
        'logscale_border': p(2, 8, 8, 0.025, 0.5, log_scale=True, exclude_border=12),
        'prune': p(1, 12, 12, 0.01, 0.1),
    },
    # SrTiO3 [110]: columns of sigma ~4.5-5 px, ~21 px apart along x.
    'srtio3_110_haadf': {
        'typical': p(3, 8, 10, 0.1, 0.5),
        'logscale_border': p(2, 10, 10, 0.05, 0.5, log_scale=True, exclude_border=8),
        'prune': p(1, 12, 12, 0.05, 0.1),
    },
    # Graphene MADF: weak, very noisy carbon columns (C-C ~18 px) and one
    # bright Si atom; thresholds sit just above the noise of sigma >= 3.
    'graphene_si_dopant_madf': {
        'typical': p(3, 6, 10, 0.025, 0.5),
        'logscale_border': p(2.5, 8, 8, 0.02, 0.5, log_scale=True, exclude_border=6),
        'prune': p(2, 12, 12, 0.005, 0.1),
    },
}


def make_lattice_frame(width, height, noise, seed):
    """A float64 HAADF-like lattice frame (clean frame plus Gaussian noise)."""
    rng = np.random.default_rng(seed)
    a = LATTICE['spacing_px']
    theta = np.deg2rad(LATTICE['rotation_deg'])
    # Random sub-pixel origin and jitter: columns never sit on symmetric
    # positions, so no two scale-space voxels tie exactly (ties make the
    # peak order implementation-defined, which is not what is being tested).
    origin = rng.uniform(0.0, a, size=2)
    reach = int(np.ceil(np.hypot(width, height) / a)) + 2
    ii, jj = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1), indexing='ij')
    u = ii.ravel() * a
    v = jj.ravel() * a
    xs = origin[0] + u * np.cos(theta) - v * np.sin(theta)
    ys = origin[1] + u * np.sin(theta) + v * np.cos(theta)
    heavy = (ii.ravel() + jj.ravel()) % 2 == 0
    # Light sites become two columns at +-dumbbell/2 along the rotated x axis.
    half = 0.5 * LATTICE['dumbbell_px']
    dx, dy = half * np.cos(theta), half * np.sin(theta)
    xs = np.concatenate([xs[heavy], xs[~heavy] - dx, xs[~heavy] + dx])
    ys = np.concatenate([ys[heavy], ys[~heavy] - dy, ys[~heavy] + dy])
    n_light = int((~heavy).sum())
    heights = np.concatenate([np.full(int(heavy.sum()), LATTICE['heavy']),
                              np.full(2 * n_light, LATTICE['light'])])
    xs = xs + rng.normal(0.0, LATTICE['jitter_px'], xs.size)
    ys = ys + rng.normal(0.0, LATTICE['jitter_px'], ys.size)
    s = LATTICE['sigma_px']
    margin = 5 * s
    keep = (xs > -margin) & (xs < width + margin) & (ys > -margin) & (ys < height + margin)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    clean = np.full((height, width), LATTICE['background'])
    for x0, y0, h in zip(xs[keep], ys[keep], heights[keep]):
        # Local window of +-5 sigma: the tail beyond is < 4e-6 of the peak.
        r0, r1 = max(int(y0 - margin), 0), min(int(y0 + margin) + 2, height)
        c0, c1 = max(int(x0 - margin), 0), min(int(x0 + margin) + 2, width)
        if r0 >= r1 or c0 >= c1:
            continue
        d2 = (yy[r0:r1, c0:c1] - y0) ** 2 + (xx[r0:r1, c0:c1] - x0) ** 2
        clean[r0:r1, c0:c1] += h * np.exp(-d2 / (2 * s * s))
    if noise > 0:
        clean = clean + rng.normal(0.0, noise * (clean.max() - clean.min()), clean.shape)
    return clean


def quantise_u16(frame):
    """Maps a float frame min-max to 0..65535 (uint16 keeps the files small)."""
    f = (frame - frame.min()) / (frame.max() - frame.min())
    return np.round(f * 65535.0).astype(np.uint16)


def normalise(img):
    """Exactly reference_logstar.normalise: float64 min-max to [0, 1]."""
    img = np.asarray(img, np.float64)
    return (img - img.min()) / max(img.max() - img.min(), 1e-12)


def run_blob_log(img, params, overlap=None):
    kw = dict(params)
    if overlap is not None:
        kw['overlap'] = overlap
    return blob_log(img, **kw)


def write_csv(path, blobs):
    # %.17g round-trips a float64 exactly.
    with open(path, 'w') as f:
        f.write('y,x,sigma\n')
        for y, x, s in blobs:
            f.write('%.17g,%.17g,%.17g\n' % (y, x, s))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--shared', default=os.path.join(os.path.dirname(REPO), 'shared'),
                    help='shared directory holding data/real (default: <repo>/../shared)')
    ap.add_argument('--force', action='store_true',
                    help='run with a scikit-image other than %s' % EXPECTED_SKIMAGE)
    args = ap.parse_args()

    if not skimage.__version__.startswith(EXPECTED_SKIMAGE + '.') and not args.force:
        sys.exit('scikit-image %s found; the goldens are defined by %s.x (use /usr/bin/python3 '
                 'or --force)' % (skimage.__version__, EXPECTED_SKIMAGE))

    os.makedirs(OUT_DIR, exist_ok=True)
    # Stale CSVs of renamed cases would otherwise linger in the commit.
    for name in os.listdir(OUT_DIR):
        if name.endswith('.csv') or name.endswith('.npy'):
            os.remove(os.path.join(OUT_DIR, name))

    frames = []  # (name, index path, raw array, frame description)
    for spec in LATTICE_FRAMES:
        raw = quantise_u16(make_lattice_frame(spec['width'], spec['height'], spec['noise'],
                                              spec['seed']))
        rel = 'conformance/%s.npy' % spec['name']
        np.save(os.path.join(DATA_DIR, rel), raw)
        desc = dict(kind='generated', generator=dict(spec, **LATTICE))
        frames.append((spec['name'], rel, raw, desc))
    for name in REAL_FRAMES:
        path = os.path.join(args.shared, 'data', 'real', name + '.npy')
        if not os.path.exists(path):
            sys.exit('missing real image %s (pass --shared)' % path)
        frames.append((name, 'shared:data/real/%s.npy' % name, np.load(path), dict(kind='real')))

    cases = []
    for name, rel, raw, desc in frames:
        img = normalise(raw)
        for pname, params in PARAMS[name].items():
            t0 = time.perf_counter()
            blobs = run_blob_log(img, params)
            # overlap=1.0 never prunes (an overlap fraction is at most 1), so
            # this is the number of thresholded scale-space peaks.
            unpruned = run_blob_log(img, params, overlap=1.0)
            dt = time.perf_counter() - t0
            case = '%s__%s' % (name, pname)
            csv_rel = 'conformance/%s.csv' % case
            write_csv(os.path.join(DATA_DIR, csv_rel), blobs)
            cases.append(dict(
                name=case, frame=rel, frame_dtype=str(raw.dtype),
                frame_shape=list(raw.shape), frame_info=desc, params=params, golden=csv_rel,
                num_blobs=int(len(blobs)), num_before_pruning=int(len(unpruned))))
            print('%-42s %5d blobs, %5d before pruning (%4.1f%% pruned)  %.2fs' % (
                case, len(blobs), len(unpruned), 100.0 * (1 - len(blobs) / max(len(unpruned), 1)),
                dt))

    index = dict(
        description='scikit-image blob_log goldens for logstar DetectBlobsLog; written by '
                    'tests/conformance/make_goldens.py, do not edit by hand',
        paths='relative to tests/data; "shared:" paths are relative to the shared directory',
        normalisation='float64 (img - min) / max(max - min, 1e-12), as reference_logstar.py',
        csv_columns='y,x,sigma (blob_log row, col, sigma), in blob_log output order',
        versions=dict(skimage=skimage.__version__, numpy=np.__version__,
                      scipy=scipy.__version__),
        cases=cases)
    with open(os.path.join(OUT_DIR, 'goldens.json'), 'w') as f:
        json.dump(index, f, indent=1)
        f.write('\n')
    total = sum(os.path.getsize(os.path.join(OUT_DIR, n)) for n in os.listdir(OUT_DIR))
    print('%d cases, %d blobs, %s: %.0f kB' % (len(cases), sum(c['num_blobs'] for c in cases),
                                                OUT_DIR, total / 1024))


if __name__ == '__main__':
    main()
