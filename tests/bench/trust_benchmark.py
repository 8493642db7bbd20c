#!/usr/bin/python3
"""Can LoG* be trusted on a real sample? (issue 15, "Measured and published")

Sweeps the generated scenes of `logstar synth` and the real images of
../shared/data/real through `logstar analyze`, with logstar's default settings
and as "LoG* as published", and scores every result against the truth.

  tests/bench/trust_benchmark.py --logstar BIN [--work DIR] [--out-md FILE]
      [--out-csv FILE] [--size 512] [--noise 0,0.3,0.6] [--seeds 100,101,102]
      [--kinds crystal,nanoparticle,edge,support,ab,interface]
      [--scene-lattices ybco,perovskite,hex] [--ab-lattices perovskite,hex]
      [--ab-ratios 1.2,2,3] [--interface-lattices perovskite]
      [--crystal-fractions 0.2,0.4,0.6] [--threads 2] [--evals 50]
      [--published-flags "--objectives published --choose euclidean --no-refine"]
      [--sublattice-only 0|1] [--real DIR | --no-real]
      [--first-result BIN [--first-result-size 2048] [--first-result-repeat 2]]
      [--check]

(tests/bench/run_trust_benchmark.sh builds the binaries and calls this.)
Needs only /usr/bin/python3 with numpy.

Generated frames (`logstar synth --size N --noise L --seed S ...`), one
"kind" per scene and lattice:
  crystal (L)        the plain crystal filling the frame, for reference;
  nanoparticle (L)   a particle in vacuum covering --crystal-fractions of
                     the frame (one fraction per seed, in turn: seeds
                     100/101/102 -> 0.2/0.4/0.6, i.e. 20-60 %);
  edge (L)           a crystal ending along a straight line (same fractions);
  support (L)        a particle on an amorphous film of light atoms (same
                     fractions; the film's atoms are not columns, so a
                     detection on them is a false positive);
  A/B R (L)          perovskite and hex with A/B brightness ratio R
                     (`--ab-ratio`, 1.2 / 2 / 3), whole frame;
  interface (L)      two crystals meeting along a line (`--scene interface`,
                     the second rotated by 30 degrees; first crystal's share
                     as the fractions above).
Seeds are held back: >= 100 (default 100, 101, 102). Tests and the method's
development use seeds below 100, so these frames were never looked at while
tuning anything.

Each frame is analysed one after the other (`--threads 2` by default) with
  default    `logstar analyze IMAGE --prior prior.json --out R.json
              --truth atoms.csv --match-radius R --threads T --evals E`:
              logstar's defaults (R = the matching radius below, so that the
              CLI's figures use the same one);
  published  the same plus --published-flags, default
             `--objectives published --choose euclidean --no-refine`: the
             published rewards (QC, ER), the published choice on the front
             (closest to the ideal point) and blob_log's pixel-centre
             positions. The published sigma ranges (min_sigma 0.1-3 px,
             max_sigma 1-6 px at 8 px/A) cannot be set through the CLI: these
             rows search logstar's prior-derived sigma ranges (the threshold
             and overlap ranges are the published ones). Windows are the
             CLI's default (256 px) for both;
  brightest only  (--sublattice-only 1, the default; A/B and interface
             frames, real images with sublattices) the default settings
             asking for the brightest sublattice alone (synth's A; Pb of
             CsPbBr3), scored against that sublattice's true positions. When
             the CLI knows sublattices: the prior with its sublattices and
             `--sublattice NAME`; until then a prior for that sublattice
             alone (its column density and its own nearest-neighbour spacing,
             measured on its true positions), what an operator can do today;
  auto       (only when `logstar analyze --help` mentions `--prior auto`)
             the default settings with `--prior auto` (a failed run is
             reported, not counted by --check: an auto prior may rightly
             refuse a frame without lattice).
The prior is synth's prior.json. When it has no sublattices but the CLI knows
them (`analyze --help` mentions sublattices) and the frame's first crystal has
two or more, they are added from meta.json (name, column density, relative
brightness) so that atoms can be labelled.

Scoring (this script's own, from RESULT.json's atoms and atoms.csv):
one-to-one matching by mutual nearest neighbours, iterated: every detection
and true position that are each other's nearest among the still unmatched
ones, within 0.3 x the nearest-neighbour distance of meta.json (nn_min_px),
are paired, until no new pair appears. It is a second implementation beside
the CLI's greedy-by-distance matching (`--truth`, engine/physics/accuracy.h),
reported as "F1 (CLI)" and checked against it (--check): with distinct
distances both find the same (the unique stable) pairs, so a disagreement
means a different radius, truth or set of atoms, i.e. a bug. Then
  precision, recall, F1;
  count err   |found - true| / true;
  fronts >= 3 share of tuned windows whose Pareto front has >= 3 points
              (RESULT.json windows[].front), pooled over seeds; mean front:
              their mean size;
  warnings    number of RESULT.json `warnings` ("-" when the CLI writes none);
  sublattice F1  when the atoms carry a `sublattice`: per name, detections
              labelled X against true positions whose atoms.csv `sublattice`
              is X, same matching.
Per kind x noise x configuration the mean over seeds is reported.

Real images (--real, default ../shared/data/real; skipped with a message when
absent): every image with reference positions (IMAGE.positions.csv, x, y and
an optional sublattice column; rows outside the frame dropped), analysed in
place (nothing is copied into the project; derived priors and truth files go
to --work). The prior: pixel size from the JSON sidecar; nearest-neighbour
distance from the sidecar (Pt single atoms: 2.77 A, the Pt-Pt bond: the image
has no lattice); column density from the reference positions' Voronoi cells
that are closed (not on the frame's border and no farther than 1.25 x the
reference spacing from their column), count / area, over the central
particle's rows for pb_nanoparticle_adf (the first 212); graphene: 38.2 /nm^2
(honeycomb, C-C 1.42 A); Pt single atoms: the labelled count over the frame.
CsPbBr3 gets sublattices Pb and Cs (order only) when the CLI knows them.

--first-result BIN runs tests/bench/first_result.cc's program (a 2048^2 frame
with every window tuned, best of --first-result-repeat fresh analyzers, then
the same frame cached) with --threads T and adds its figures.

Output: progress on stderr; Markdown (machine, commands, summary table, the
full table, real images, notes) on stdout and in --out-md; the table as CSV
in --out-csv, one line per frame and run in FRAMES.csv beside it.
--check exits 1 when a run failed or this script's F1 and the CLI's differ
by more than 0.02 (the two matchings should agree to a few pairs).
"""

import argparse
import csv
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_REAL = os.path.normpath(os.path.join(REPO, '..', 'shared', 'data', 'real'))
PUBLISHED_FLAGS = '--objectives published --choose euclidean --no-refine'
MATCH_FACTOR = 0.3        # matching radius = MATCH_FACTOR x nearest-neighbour distance
F1_AGREEMENT = 0.02       # --check: this script's F1 vs the CLI's
SCENE_KINDS = ('crystal', 'nanoparticle', 'edge', 'support')


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def floats(text):
    return [float(v) for v in text.split(',') if v]


def names(text):
    return [v for v in text.split(',') if v]


# --------------------------------------------------------------- matching
def match_pairs(det, truth, radius):
    """Mutual-nearest-neighbour matching, iterated (see the docstring).
    det, truth: (n, 2) arrays of x, y. Returns the number of pairs."""
    if len(det) == 0 or len(truth) == 0:
        return 0
    d = np.hypot(det[:, None, 0] - truth[None, :, 0], det[:, None, 1] - truth[None, :, 1])
    d[d > radius] = np.inf
    pairs = 0
    while True:
        if not np.isfinite(d).any():
            return pairs
        nearest_truth = np.argmin(d, axis=1)
        nearest_det = np.argmin(d, axis=0)
        rows = np.arange(len(det))
        mutual = (nearest_det[nearest_truth] == rows) & np.isfinite(d[rows, nearest_truth])
        if not mutual.any():
            return pairs
        i, j = rows[mutual], nearest_truth[mutual]
        pairs += len(i)
        d[i, :] = np.inf
        d[:, j] = np.inf


def prf(tp, n_det, n_true):
    p = tp / n_det if n_det else 0.0
    r = tp / n_true if n_true else 0.0
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


# --------------------------------------------------------------- inputs
def read_truth(path):
    """x, y (n, 2) and the sublattice names (or None) of a truth CSV."""
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    xy = np.array([[float(r['x']), float(r['y'])] for r in rows]).reshape(-1, 2)
    sub = [r['sublattice'] for r in rows] if rows and 'sublattice' in rows[0] else None
    return xy, sub


def result_atoms(res):
    """x, y (n, 2) and per-atom sublattice names (None when not labelled).
    A sublattice may be a name or the engine's 0-based index into the
    prior's sublattices (-1 = none)."""
    atoms = res.get('atoms', [])
    xy = np.array([[a['x'], a['y']] for a in atoms], dtype=float).reshape(-1, 2)
    if not any('sublattice' in a for a in atoms):
        return xy, None
    table = [s.get('name') for s in (res.get('prior') or {}).get('sublattices', [])] or \
        [s.get('name') for s in res.get('sublattices', [])]
    labels = []
    for a in atoms:
        v = a.get('sublattice')
        if isinstance(v, int) and not isinstance(v, bool):
            v = table[v] if 0 <= v < len(table) else None
        labels.append(v if isinstance(v, str) and v else None)
    return xy, labels


def cli_help(logstar):
    p = subprocess.run([logstar, 'analyze', '--help'], capture_output=True, text=True)
    return p.stdout + p.stderr


# --------------------------------------------------------------- frames
class Frame:
    """One image to analyse: where it is, its truth and prior, how to label it."""

    def __init__(self, group, kind, noise, seed, image, prior, truth, nn_px, directory):
        self.group, self.kind, self.noise, self.seed = group, kind, noise, seed
        self.image, self.prior, self.truth, self.nn_px = image, prior, truth, nn_px
        self.dir = directory
        self.notes = []
        # The brightest sublattice alone (frames with sublattices): its name,
        # a prior for it alone, and its true positions; see only_variant.
        self.only = None

    @property
    def name(self):
        if self.noise is None:
            return self.kind
        return '%s noise %.1f seed %d' % (self.kind, self.noise, self.seed)


def frame_specs(a):
    """(kind label, synth arguments, uses crystal fraction, sublattice-only
    rows) for every kind."""
    specs = []
    want = set(names(a.kinds))
    for kind in SCENE_KINDS:
        if kind in want:
            for lat in names(a.scene_lattices):
                specs.append(('%s (%s)' % (kind, lat), ['--lattice', lat, '--scene', kind],
                              kind != 'crystal', False))
    if 'ab' in want:
        for lat in names(a.ab_lattices):
            for ratio in floats(a.ab_ratios):
                specs.append(('A/B %g (%s)' % (ratio, lat),
                              ['--lattice', lat, '--ab-ratio', '%g' % ratio], False, True))
    if 'interface' in want:
        for lat in names(a.interface_lattices):
            specs.append(('interface (%s)' % lat, ['--lattice', lat, '--scene', 'interface'],
                          True, True))
    unknown = want - set(SCENE_KINDS) - {'ab', 'interface'}
    if unknown:
        sys.exit('--kinds: unknown %s (known: %s, ab, interface)'
                 % (', '.join(sorted(unknown)), ', '.join(SCENE_KINDS)))
    return specs


def synth_frames(a, sublattices_known):
    frames = []
    fractions = floats(a.crystal_fractions)
    for kind, args, fractional, only in frame_specs(a):
        for noise in floats(a.noise):
            for k, seed in enumerate(int(v) for v in names(a.seeds)):
                slug = re.sub(r'[^A-Za-z0-9.]+', '_', kind).strip('_')
                d = os.path.join(a.work, 'frames', '%s_n%.1f_s%d' % (slug, noise, seed))
                cmd = [a.logstar, 'synth', '--out', d, '--size', str(a.size), '--noise',
                       '%g' % noise, '--seed', str(seed)] + args
                if fractional:
                    cmd += ['--crystal-fraction', '%g' % fractions[k % len(fractions)]]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                meta = json.load(open(os.path.join(d, 'meta.json')))
                prior = synth_prior(d, meta, sublattices_known)
                frame = Frame('generated', kind, noise, seed, os.path.join(d, 'image.npy'),
                              prior, os.path.join(d, 'atoms.csv'), meta['nn_min_px'], d)
                subs = [s for s in meta.get('sublattices', []) if s.get('crystal', 0) == 0]
                if only and len(subs) >= 2 and a.sublattice_only:
                    xy, sub = read_truth(frame.truth)
                    crystal = np.array([r['crystal'] for r in csv.DictReader(open(frame.truth))])
                    name = subs[0]['name']         # synth lists the brightest first
                    mine = np.array(sub) == name
                    spacing = reference_spacing(xy[mine & (crystal == '0')])
                    only_variant(frame, name, json.load(open(prior)), subs[0]['density_per_nm2'],
                                 spacing, xy[mine], sublattices_known)
                frames.append(frame)
    return frames


def only_variant(frame, name, prior, density, spacing_px, xy, sublattices_known):
    """Sets frame.only: the session asks for sublattice `name` alone. With
    sublattices in the CLI: the prior with its sublattices and `--sublattice
    NAME`; without: a prior for that sublattice alone (its column density
    and its own nearest-neighbour spacing), what an operator could do today.
    Truth: that sublattice's positions."""
    truth = os.path.join(frame.dir, 'truth_%s.csv' % name)
    with open(truth, 'w') as f:
        f.write('x,y,sublattice\n')
        for x, y in xy:
            f.write('%.4f,%.4f,%s\n' % (x, y, name))
    if sublattices_known and prior.get('sublattices'):
        frame.only = dict(name=name, prior=frame.prior, truth=truth, flags=['--sublattice', name])
        return
    alone = dict(pixel_size_angstrom=prior['pixel_size_angstrom'], column_density_per_nm2=density,
                 nearest_neighbor_angstrom=spacing_px * prior['pixel_size_angstrom'])
    path = os.path.join(frame.dir, 'prior_%s_only.json' % name)
    json.dump(alone, open(path, 'w'), indent=1)
    frame.only = dict(name=name, prior=path, truth=truth, flags=[])


def synth_prior(d, meta, sublattices_known):
    """prior.json, or a copy with the first crystal's sublattices from meta.json."""
    path = os.path.join(d, 'prior.json')
    prior = json.load(open(path))
    subs = [s for s in meta.get('sublattices', []) if s.get('crystal', 0) == 0]
    if prior.get('sublattices') or not sublattices_known or len(subs) < 2:
        return path
    prior['sublattices'] = [dict(name=s['name'], column_density_per_nm2=s['density_per_nm2'],
                                 relative_brightness=s.get('relative_brightness', 0.0))
                            for s in subs]
    path = os.path.join(d, 'prior_sublattices.json')
    json.dump(prior, open(path, 'w'), indent=1)
    return path


# --------------------------------------------------------------- real images
# Per image: what its sidecar does not give (see the docstring).
GRAPHENE_DENSITY = 100 * 2 / (np.sqrt(3) / 2 * (np.sqrt(3) * 1.42) ** 2)  # 38.2 /nm^2
REAL_SPECS = {
    'graphene_si_dopant_madf': dict(density_per_nm2=GRAPHENE_DENSITY),
    'pb_nanoparticle_adf': dict(density_rows=212),
    'cspbbr3_100_adf': dict(sublattice_order=['Pb', 'Cs']),
    'pt_single_atoms_support_haadf': dict(nn_angstrom=2.77, density_from_count=True),
}


def reference_spacing(xy):
    """Median over columns of the mean distance to the neighbours within
    1.1 x the nearest one, px."""
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(d, np.inf)
    least = d.min(axis=1, keepdims=True)
    near = np.where(d <= 1.1 * least, d, np.nan)
    return float(np.median(np.nanmean(near, axis=1)))


def reference_density(xy, shape, spacing):
    """Columns per px^2 over the closed Voronoi cells of xy, on the pixel
    grid of a frame of `shape` (see the docstring)."""
    h, w = shape
    n = len(xy)
    area = np.zeros(n)
    reach = np.zeros(n)
    border = np.zeros(n, dtype=bool)
    xs = np.arange(w, dtype=float)
    for r0 in range(0, h, 32):
        ys = np.arange(r0, min(h, r0 + 32), dtype=float)
        gx, gy = np.meshgrid(xs, ys)
        d = np.hypot(gx[..., None] - xy[:, 0], gy[..., None] - xy[:, 1])
        owner = d.argmin(axis=2)
        dist = np.take_along_axis(d, owner[..., None], axis=2)[..., 0]
        area += np.bincount(owner.ravel(), minlength=n)
        np.maximum.at(reach, owner.ravel(), dist.ravel())
        edge = np.zeros(owner.shape, dtype=bool)
        edge[:, [0, -1]] = True
        if r0 == 0:
            edge[0, :] = True
        if r0 + len(ys) == h:
            edge[-1, :] = True
        border[np.unique(owner[edge])] = True
    closed = ~border & (area > 0) & (reach <= 1.25 * spacing)
    return closed.sum() / area[closed].sum()


def real_frames(a, sublattices_known):
    if a.no_real:
        return [], ['real images: skipped (--no-real)']
    if not os.path.isdir(a.real):
        log('note: %s not found: the real images are skipped' % a.real)
        return [], ['real images: %s not found, skipped' % a.real]
    frames, notes = [], []
    for pos in sorted(f for f in os.listdir(a.real) if f.endswith('.positions.csv')):
        name = pos[:-len('.positions.csv')]
        image = os.path.join(a.real, name + '.npy')
        if not os.path.exists(image):
            continue
        frames.append(real_frame(a, name, image, sublattices_known))
    for f in sorted(os.listdir(a.real)):
        stem = os.path.join(a.real, f[:-4])
        if f.endswith('.npy') and not os.path.exists(stem + '.positions.csv'):
            notes.append('real image %s: no reference positions, not scored' % f[:-4])
    return frames, notes


def real_frame(a, name, image, sublattices_known):
    """Writes the prior and the in-frame truth of one real image into --work."""
    spec = REAL_SPECS.get(name, {})
    side = json.load(open(os.path.join(a.real, name + '.json')))
    shape = np.load(image, mmap_mode='r').shape
    px = side['pixel_size_angstrom']
    xy, sub = read_truth(os.path.join(a.real, name + '.positions.csv'))
    spacing = reference_spacing(xy[:spec['density_rows']] if 'density_rows' in spec else xy)
    nn_a = spec.get('nn_angstrom', side.get('nearest_neighbor_angstrom', spacing * px))
    if 'density_per_nm2' in spec:
        density = spec['density_per_nm2']
    elif spec.get('density_from_count'):
        density = len(xy) / (shape[0] * shape[1] * px * px / 100.0)
    else:
        rows = xy[:spec['density_rows']] if 'density_rows' in spec else xy
        density = reference_density(rows, shape, spacing) * 100.0 / (px * px)
    inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= shape[1] - 0.5) & \
             (xy[:, 1] >= -0.5) & (xy[:, 1] <= shape[0] - 0.5)
    d = os.path.join(a.work, 'real', name)
    os.makedirs(d, exist_ok=True)
    truth = os.path.join(d, 'truth.csv')
    with open(truth, 'w') as f:
        f.write('x,y,sublattice\n' if sub else 'x,y\n')
        for k in np.flatnonzero(inside):
            f.write('%.4f,%.4f%s\n' % (xy[k, 0], xy[k, 1], ',' + sub[k] if sub else ''))
    prior = dict(pixel_size_angstrom=px, column_density_per_nm2=density,
                 nearest_neighbor_angstrom=nn_a)
    if sub and sublattices_known:
        order = spec.get('sublattice_order') or list(dict.fromkeys(sub))
        prior['sublattices'] = [dict(name=s, relative_brightness=0.0,
                                     column_density_per_nm2=density * sub.count(s) / len(sub))
                                for s in order]
    prior_path = os.path.join(d, 'prior.json')
    json.dump(prior, open(prior_path, 'w'), indent=1)
    frame = Frame('real', name, None, None, image, prior_path, truth, nn_a / px, d)
    frame.notes.append('%s: %d of %d reference positions in the frame; prior %.4g A/px, nn %.3g A '
                       '(%.1f px), %.3g columns/nm^2%s'
                       % (name, inside.sum(), len(xy), px, nn_a, nn_a / px, density,
                          ', sublattices ' + '/'.join(o['name'] for o in prior['sublattices'])
                          if 'sublattices' in prior else ''))
    if sub and a.sublattice_only:
        first = (spec.get('sublattice_order') or list(dict.fromkeys(sub)))[0]
        mine = (np.array(sub) == first) & inside
        spacing_first = reference_spacing(xy[mine])
        only_variant(frame, first, prior, reference_density(xy[mine], shape, spacing_first) *
                     100.0 / (px * px), spacing_first, xy[mine], sublattices_known)
    return frame


# --------------------------------------------------------------- runs
def configurations(a, help_text):
    """(name, extra flags, prior override) per configuration; notes."""
    configs = [('default', [], None), ('published', shlex.split(a.published_flags), None)]
    if a.sublattice_only:
        configs.append(('brightest only', [], 'only'))
    notes = []
    if re.search(r'prior[^\n]*\bauto\b|\bauto\b[^\n]*prior', help_text):
        configs.append(('auto', [], 'auto'))
    else:
        notes.append('`--prior auto`: not in `logstar analyze --help` of this build, no auto rows')
    if a.configs:
        wanted = names(a.configs)
        known = [c[0] for c in configs]
        unknown = [w for w in wanted if w not in known]
        if unknown:
            sys.exit('--configs: unknown %s (known: %s)' % (', '.join(unknown), ', '.join(known)))
        configs = [c for c in configs if c[0] in wanted]
    return configs, notes


def analyze(a, frame, config, flags, prior_override):
    """Runs the CLI on one frame and scores its RESULT.json."""
    out = os.path.join(frame.dir, 'result_%s.json' % config.replace(' ', '_'))
    if os.path.exists(out):
        os.remove(out)
    prior, truth = prior_override or frame.prior, frame.truth
    if prior_override == 'only':
        prior, truth, flags = frame.only['prior'], frame.only['truth'], frame.only['flags']
    cmd = [a.logstar, 'analyze', frame.image, '--prior', prior, '--out', out, '--truth', truth,
           '--match-radius', '%.6g' % (MATCH_FACTOR * frame.nn_px),
           '--threads', str(a.threads), '--evals', str(a.evals)] + flags
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    rec = dict(group=frame.group, kind=frame.kind, noise=frame.noise, seed=frame.seed,
               config=config, wall_s=time.time() - t0, error=None, command=cmd)
    if p.returncode != 0 or not os.path.exists(out):
        lines = (p.stderr or p.stdout).strip().splitlines()
        rec['error'] = 'exit %d: %s' % (p.returncode, lines[0] if lines else '')
        return rec
    rec.update(score(json.load(open(out)), truth, frame.nn_px))
    return rec


def score(res, truth_path, nn_px):
    """The figures of one RESULT.json against the truth in truth_path."""
    det, det_sub = result_atoms(res)
    truth, truth_sub = read_truth(truth_path)
    radius = MATCH_FACTOR * nn_px
    tp = match_pairs(det, truth, radius)
    p, r, f1 = prf(tp, len(det), len(truth))
    acc = res.get('accuracy') or {}
    # Tuned windows only: a cache hit or a window under the crystal share
    # that borrowed its neighbour's parameters (evaluations 0) has no front.
    fronts = [len(w.get('front') or []) for w in res.get('windows', [])
              if w.get('cache') != 'hit' and w.get('evaluations', 1) > 0]
    warnings = res.get('warnings')
    rec = dict(n_true=len(truth), n_found=len(det), tp=tp, precision=p, recall=r, f1=f1,
               f1_cli=acc.get('f1'), count_err=abs(len(det) - len(truth)) / len(truth)
               if len(truth) else None,
               count_err_signed=(len(det) - len(truth)) / len(truth) if len(truth) else None,
               fronts=fronts, warnings=None if warnings is None else len(warnings),
               warning_text='; '.join(w.get('message', w.get('field', '')) if isinstance(w, dict)
                                      else str(w) for w in warnings or []),
               ms=(res.get('timings_ms') or {}).get('total'), sub=None)
    if det_sub is not None and truth_sub is not None:
        rec['sub'] = {}
        labels = np.array([s if s is not None else '' for s in det_sub], dtype=object)
        truth_labels = np.array(truth_sub, dtype=object)
        for name in sorted(set(truth_sub)):
            d, t = det[labels == name], truth[truth_labels == name]
            rec['sub'][name] = prf(match_pairs(d, t, radius), len(d), len(t))[2]
    return rec


# --------------------------------------------------------------- tables
def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def aggregate(records):
    """One row per (group, kind, noise, config), in the order first seen."""
    keys = list(dict.fromkeys((r['group'], r['kind'], r['noise'], r['config']) for r in records))
    rows = []
    for key in keys:
        runs = [r for r in records if (r['group'], r['kind'], r['noise'], r['config']) == key]
        ok = [r for r in runs if r['error'] is None]
        fronts = [n for r in ok for n in r['fronts']]
        row = dict(zip(('group', 'kind', 'noise', 'config'), key), frames=len(ok),
                   errors=len(runs) - len(ok),
                   error_text=next((r['error'] for r in runs if r['error']), ''))
        for m in ('n_true', 'n_found', 'precision', 'recall', 'f1', 'f1_cli', 'count_err',
                  'count_err_signed', 'ms', 'wall_s'):
            row[m] = mean(r.get(m) for r in ok)
        row['fronts_ge3'] = sum(n >= 3 for n in fronts) / len(fronts) if fronts else None
        row['front_mean'] = mean(fronts)
        row['windows'] = len(fronts)
        row['warnings'] = mean(r['warnings'] for r in ok)
        row['warning_text'] = next((r['warning_text'] for r in ok if r['warning_text']), '')
        subs = [r['sub'] for r in ok if r.get('sub') is not None]
        sub_names = sorted({n for s in subs for n in s})
        row['sub'] = {n: mean(s.get(n) for s in subs) for n in sub_names} if subs else None
        rows.append(row)
    return rows


def fmt(v, spec='%.3f'):
    return '-' if v is None else spec % v


def pct(v):
    return '-' if v is None else '%.1f %%' % (100 * v)


def sub_cell(sub):
    if not sub:
        return '-'
    return ', '.join('%s %.2f' % (n, v) for n, v in sub.items() if v is not None)


def row_cells(r):
    if r['frames'] == 0:
        return ['error: ' + r['error_text'].replace('|', '/')] + [''] * 9
    warn = fmt(r['warnings'], '%.1f')
    return [fmt(r['precision']), fmt(r['recall']), fmt(r['f1']), fmt(r['f1_cli']),
            pct(r['count_err']), pct(r['fronts_ge3']), fmt(r['front_mean'], '%.2f'), warn,
            sub_cell(r['sub']), fmt(r['ms'], '%.0f')]


DETAIL_HEAD = ['precision', 'recall', 'F1', 'F1 (CLI)', 'count err', 'fronts ≥ 3',
               'mean front', 'warnings', 'sublattice F1', 'ms']


def md_table(head, rows):
    return ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)] + \
        ['| ' + ' | '.join(r) + ' |' for r in rows]


def percent0(v):
    return '-' if v is None else '%.0f %%' % (100 * v)


def summary_table(gen, configs):
    """Per kind: F1 and count error per configuration, noise levels side by side."""
    noises = list(dict.fromkeys(r['noise'] for r in gen))
    label = ' / '.join('%g' % n for n in noises)

    def cell(kind, config, key, f):
        vals = [next((r[key] for r in gen if r['kind'] == kind and r['noise'] == n
                      and r['config'] == config), None) for n in noises]
        return ' / '.join(f(v) for v in vals)

    head = ['kind'] + ['F1 %s' % c for c in configs] + ['count err %s' % c for c in configs] + \
        ['fronts ≥ 3 (%s)' % configs[0]]
    rows = [[kind] + [cell(kind, c, 'f1', lambda v: fmt(v, '%.2f')) for c in configs] +
            [cell(kind, c, 'count_err', percent0) for c in configs] +
            [cell(kind, configs[0], 'fronts_ge3', percent0)]
            for kind in dict.fromkeys(r['kind'] for r in gen)]
    return ['### Summary: F1 and count error per kind (noise %s; mean over seeds)' % label, ''] + \
        md_table(head, rows)


def markdown_tables(rows, configs):
    gen = [r for r in rows if r['group'] == 'generated']
    real = [r for r in rows if r['group'] == 'real']
    out = []
    if gen:
        out += summary_table(gen, configs)
        out += ['', '### Generated frames, per kind, noise and configuration', '']
        out += md_table(['kind', 'noise', 'config', 'frames'] + DETAIL_HEAD,
                        [[r['kind'], '%g' % r['noise'], r['config'], str(r['frames'])] +
                         row_cells(r) for r in gen])
    if real:
        out += ['', '### Real images (../shared/data/real)', '']
        out += md_table(['image', 'config', 'true', 'found'] + DETAIL_HEAD,
                        [[r['kind'], r['config'], fmt(r['n_true'], '%.0f'),
                          fmt(r['n_found'], '%.0f')] + row_cells(r) for r in real])
    return out


def write_csv(path, rows):
    cols = ['group', 'kind', 'noise', 'config', 'frames', 'errors', 'n_true', 'n_found',
            'precision', 'recall', 'f1', 'f1_cli', 'count_err', 'count_err_signed', 'fronts_ge3',
            'front_mean', 'windows', 'warnings', 'sublattice_f1', 'ms', 'wall_s', 'error_text',
            'warning_text']
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            r = dict(r, sublattice_f1=sub_cell(r.get('sub')) if r.get('sub') else '')
            w.writerow(['' if r.get(c) is None else r.get(c) for c in cols])


def write_frames_csv(path, records):
    cols = ['group', 'kind', 'noise', 'seed', 'config', 'n_true', 'n_found', 'tp', 'precision',
            'recall', 'f1', 'f1_cli', 'count_err_signed', 'fronts', 'warnings', 'sub', 'ms',
            'wall_s', 'error', 'warning_text']
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in records:
            r = dict(r, fronts=' '.join(str(n) for n in r.get('fronts', [])),
                     sub=sub_cell(r.get('sub')) if r.get('sub') else '')
            w.writerow(['' if r.get(c) is None else r.get(c) for c in cols])


# --------------------------------------------------------------- machine
def machine():
    cpu = platform.processor() or '?'
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(['git', '-C', REPO, 'describe', '--always', '--dirty'],
                            capture_output=True, text=True).stdout.strip() or '?'
    return dict(cpu=cpu, nproc=os.cpu_count(), date=datetime.datetime.now(
        datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), commit=commit,
        load=' '.join('%.1f' % v for v in os.getloadavg()))


def first_result(a):
    cmd = [a.first_result, '--size=%d' % a.first_result_size, '--threads=%d' % a.threads,
           '--repeat=%d' % a.first_result_repeat]
    log('== ' + ' '.join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return cmd, None, p.stderr.strip()
    return cmd, json.loads(p.stdout), None


def first_result_lines(cmd, res, err):
    out = ['', '### Time to the first result with every window tuned', '',
           '`%s`' % ' '.join(os.path.basename(c) if k == 0 else c for k, c in enumerate(cmd)), '']
    if res is None:
        return out + ['failed: %s' % err]
    f, first, cached = res['frame'], res['first_ms'], res['cached_ms']
    return out + md_table(
        ['frame', 'windows × evaluations', 'threads', 'first frame', 'cached frame', 'ratio'],
        [['%d² %s, noise %g, seed %d' % (f['size'][0], f['lattice'], f['noise'], f['seed']),
          '%d × %d' % (res['windows'], res['evals_per_window']), str(res['threads']),
          '%.2f s (best of %d, median %.2f s)' % (first['best'] / 1e3, first['runs'],
                                                  first['median'] / 1e3),
          '%.1f ms (best of %d)' % (cached['best'], cached['runs']),
          '%.0f×' % res['ratio_first_to_cached']]])


# --------------------------------------------------------------- main
def parse_args():
    p = argparse.ArgumentParser(description='LoG* on generated scenes and real images, '
                                'default vs as published (see the module docstring)')
    p.add_argument('--logstar', required=True, help='the logstar CLI')
    p.add_argument('--work', default=os.path.join(REPO, 'build', 'trust_benchmark'),
                   help='frames, priors and results (emptied of old frames first)')
    p.add_argument('--out-md', default=None, help='default WORK/trust_benchmark.md')
    p.add_argument('--out-csv', default=None, help='default WORK/trust_benchmark.csv')
    p.add_argument('--size', type=int, default=512)
    p.add_argument('--noise', default='0,0.3,0.6')
    p.add_argument('--seeds', default='100,101,102', help='held back: >= 100')
    p.add_argument('--kinds', default='crystal,nanoparticle,edge,support,ab,interface')
    p.add_argument('--scene-lattices', default='ybco,perovskite,hex',
                   help='lattices of crystal, nanoparticle, edge and support')
    p.add_argument('--ab-lattices', default='perovskite,hex')
    p.add_argument('--ab-ratios', default='1.2,2,3')
    p.add_argument('--interface-lattices', default='perovskite')
    p.add_argument('--crystal-fractions', default='0.2,0.4,0.6', help='one per seed, in turn')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--evals', type=int, default=50)
    p.add_argument('--published-flags', default=PUBLISHED_FLAGS)
    p.add_argument('--configs', default=None,
                   help='only these configurations, comma separated (e.g. "published" while '
                        'trying a change of the rewards); default all')
    p.add_argument('--sublattice-only', type=int, default=1, choices=(0, 1),
                   help='1: also ask for the brightest sublattice alone (A/B, interface, '
                   'real images with sublattices)')
    p.add_argument('--real', default=SHARED_REAL)
    p.add_argument('--no-real', action='store_true')
    p.add_argument('--first-result', default=None, help='first_result_bench binary')
    p.add_argument('--first-result-size', type=int, default=2048)
    p.add_argument('--first-result-repeat', type=int, default=2, help='first frames, best of')
    p.add_argument('--check', action='store_true',
                   help='exit 1 on a failed run or F1 disagreeing with the CLI by > %g'
                   % F1_AGREEMENT)
    a = p.parse_args()
    if any(int(s) < 100 for s in names(a.seeds)):
        log('note: seeds below 100 are not held back (tests and development use them)')
    a.out_md = a.out_md or os.path.join(a.work, 'trust_benchmark.md')
    a.out_csv = a.out_csv or os.path.join(a.work, 'trust_benchmark.csv')
    return a


def run_all(a, frames, configs):
    records = []
    jobs = [(frame, c) for frame in frames for c in configs
            if c[2] != 'only' or frame.only is not None]
    for i, (frame, (config, flags, prior)) in enumerate(jobs):
        rec = analyze(a, frame, config, flags, prior)
        records.append(rec)
        summary = rec['error'] or 'F1 %.3f (CLI %s), %d/%d found, fronts %s, warnings %s' % (
            rec['f1'], fmt(rec['f1_cli']), rec['n_found'], rec['n_true'],
            fmt(mean(rec['fronts']), '%.1f'), fmt(rec['warnings'], '%d'))
        log('[%3d/%d] %s, %s: %s (%.1f s)' % (i + 1, len(jobs), frame.name, config, summary,
                                              rec['wall_s']))
    return records


def check(records):
    """Problems --check fails on: failed default/published runs, F1 disagreements."""
    problems = []
    for r in records:
        where = '%s %s %s seed %s' % (r['kind'], r['noise'], r['config'], r['seed'])
        if r['error']:
            if r['config'] != 'auto':         # an auto prior may rightly refuse a frame
                problems.append('%s: %s' % (where, r['error']))
        elif r['f1_cli'] is not None and abs(r['f1'] - r['f1_cli']) > F1_AGREEMENT:
            problems.append('%s: F1 %.3f here, %.3f by the CLI' % (where, r['f1'], r['f1_cli']))
    if not any(r['error'] is None for r in records):
        problems.append('no run succeeded')
    return problems


def header_lines(a, configs, analyses, elapsed, sublattices_known):
    """The machine, the command and what the columns mean."""
    m = machine()
    only = ('; brightest only = default settings asking for the brightest sublattice alone '
            '(A/B, interface, real images with sublattices; %s), scored against its columns'
            % ('prior with sublattices and `--sublattice NAME`' if sublattices_known else
               'a prior for that sublattice alone: its density and spacing')
            if 'brightest only' in configs else '')
    auto = '; auto = default with `--prior auto`' if 'auto' in configs else ''
    return [
        '## LoG* on generated scenes and real images, default vs as published', '',
        'Machine: %s, %d cores (nproc), load %s at the start; %s; logstar %s.' % (
            m['cpu'], m['nproc'], m['load'], m['date'], m['commit']),
        'Command: `tests/bench/trust_benchmark.py %s` — %d analyses, %.0f s.' % (
            ' '.join(shlex.quote(v) for v in sys.argv[1:]), analyses, elapsed),
        'Configurations: default = `logstar analyze IMAGE --prior prior.json --truth atoms.csv '
        '--match-radius R --threads %d --evals %d`; published = the same with `%s`%s%s.' % (
            a.threads, a.evals, a.published_flags, only, auto),
        'Frames: %d² (`logstar synth`), noise %s, seeds %s (held back), crystal fractions %s '
        'in turn over the seeds; means over seeds. Matching: mutual nearest neighbours within '
        'R = 0.3 × the nearest-neighbour distance; count err = |found − true| / true; '
        'fronts ≥ 3 = share of tuned windows with a Pareto front of ≥ 3 points.' % (
            a.size, a.noise.replace(',', ' / '), a.seeds.replace(',', ', '),
            a.crystal_fractions.replace(',', ' / ')), '']


def main():
    a = parse_args()
    t0 = time.time()
    for sub in ('frames', 'real'):
        d = os.path.join(a.work, sub)
        if os.path.isdir(d):
            subprocess.run(['rm', '-rf', d], check=True)
    os.makedirs(a.work, exist_ok=True)
    help_text = cli_help(a.logstar)
    sublattices_known = 'sublattice' in help_text
    configs, notes = configurations(a, help_text)
    if not sublattices_known:
        notes.append('sublattices: not in `logstar analyze --help` of this build; '
                     'priors without them')
    frames = synth_frames(a, sublattices_known)
    real, real_notes = real_frames(a, sublattices_known)
    frames += real
    log('%d frames x %d configurations in %s' % (len(frames), len(configs), a.work))
    records = run_all(a, frames, configs)
    rows = aggregate(records)
    fr = first_result(a) if a.first_result else None
    elapsed = time.time() - t0

    names_ = [c[0] for c in configs]
    md = header_lines(a, names_, len(records), elapsed, sublattices_known)
    md += markdown_tables(rows, names_)
    if fr is not None:
        md += first_result_lines(*fr)
    notes += real_notes + [n for f in real for n in f.notes]
    md += ['', 'Notes:'] + ['- ' + s for s in notes]
    text = '\n'.join(md) + '\n'
    print(text, end='')
    os.makedirs(os.path.dirname(os.path.abspath(a.out_md)), exist_ok=True)
    open(a.out_md, 'w').write(text)
    write_csv(a.out_csv, rows)
    frames_csv = os.path.splitext(a.out_csv)[0] + '_frames.csv'
    write_frames_csv(frames_csv, records)
    log('wrote %s, %s and %s (%.0f s)' % (a.out_md, a.out_csv, frames_csv, elapsed))
    if a.check:
        problems = check(records)
        for p in problems:
            log('check: ' + p)
        return 1 if problems else 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
