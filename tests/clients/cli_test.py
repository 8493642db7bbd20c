#!/usr/bin/env python3
"""The logstar command-line tool, run as a user runs it.

Outputs are checked with numpy and against the ground truth that
`logstar synth` writes, never against logstar's own reading of them.

    cli_test.py --logstar PATH/TO/logstar
"""
import argparse
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import zlib

import numpy as np

LOGSTAR = None


def load_json(path):
    with open(path) as f:
        return json.load(f)


def write_file(path, data, mode='w'):
    with open(path, mode) as f:
        f.write(data)


def run(*args):
    p = subprocess.run([LOGSTAR, *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def match_f1(det_xy, true_xy, radius):
    """Greedy one-to-one matching by increasing distance within radius."""
    if len(det_xy) == 0 or len(true_xy) == 0:
        return 0.0
    d = np.hypot(det_xy[:, None, 0] - true_xy[None, :, 0], det_xy[:, None, 1] - true_xy[None, :, 1])
    pairs = np.argwhere(d <= radius)
    pairs = pairs[np.argsort(d[pairs[:, 0], pairs[:, 1]], kind='stable')]
    used_d, used_t = set(), set()
    for i, j in pairs:
        if i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
    tp = len(used_d)
    p, r = tp / len(det_xy), tp / len(true_xy)
    return 2 * p * r / max(p + r, 1e-12)


class SynthAnalyzeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = os.path.join(cls.tmp.name, 'frame')
        code, out, err = run('synth', '--out', cls.dir, '--size', '256', '--lattice', 'ybco',
                             '--noise', '0.05', '--seed', '3')
        assert code == 0, err
        cls.synth_stdout = out

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def analyze(self, result_name, *extra):
        """Runs analyze on the synthetic frame; returns (stdout, result JSON)."""
        result_path = os.path.join(self.tmp.name, result_name)
        code, out, err = run('analyze', os.path.join(self.dir, 'image.npy'), '--prior',
                             os.path.join(self.dir, 'prior.json'), '--out', result_path, *extra)
        self.assertEqual(code, 0, err)
        return out, load_json(result_path)

    def truth_xy(self):
        gt = np.genfromtxt(os.path.join(self.dir, 'atoms.csv'), delimiter=',', names=True,
                           dtype=None, encoding=None)
        return np.column_stack([gt['x'], gt['y']])

    def test_synth_writes_the_reference_layout(self):
        img = np.load(os.path.join(self.dir, 'image.npy'))
        self.assertEqual(img.dtype, np.float32)
        self.assertEqual(img.shape, (256, 256))
        mask = np.load(os.path.join(self.dir, 'amorphous_mask.npy'))
        self.assertEqual(mask.dtype, np.uint8)
        self.assertEqual(mask.shape, (256, 256))
        meta = load_json(os.path.join(self.dir, 'meta.json'))
        for key in ('pixel_size_angstrom', 'px_per_angstrom', 'atom_density_per_px2', 'nn_min_px'):
            self.assertIn(key, meta)
        self.assertAlmostEqual(meta['px_per_angstrom'] * meta['pixel_size_angstrom'], 1.0)
        atoms = np.genfromtxt(os.path.join(self.dir, 'atoms.csv'), delimiter=',', names=True,
                              dtype=None, encoding=None)
        self.assertIn('amorphous', atoms.dtype.names)
        # YBCO [100]: 6 columns per 3.82 x 11.68 A cell -> 13.45 per nm^2.
        expected = 13.4476 * (256 * 0.125 / 10) ** 2
        self.assertLess(abs(len(atoms) - expected) / expected, 0.06)

    def test_analyze_finds_the_true_atoms(self):
        overlay = os.path.join(self.tmp.name, 'overlay.png')
        out, res = self.analyze('result.json', '--overlay', overlay)
        self.assertIn('atoms', out)
        for key in ('atoms', 'parameters', 'rewards', 'timings_ms', 'image', 'prior'):
            self.assertIn(key, res)
        self.assertEqual(res['num_atoms'], len(res['atoms']))
        for key in ('qc', 'er'):
            self.assertIn(key, res['rewards'])
        det = np.array([[a['x'], a['y']] for a in res['atoms']])
        meta = load_json(os.path.join(self.dir, 'meta.json'))
        f1 = match_f1(det, self.truth_xy(), 0.3 * meta['nn_min_px'])
        self.assertGreater(f1, 0.9, f'F1 {f1:.3f} against the ground truth')
        # QC from its definition: |n - n_expected| / n_expected.
        n_exp = meta['atom_density_per_px2'] * 256 * 256
        self.assertAlmostEqual(res['rewards']['qc'], abs(len(det) - n_exp) / n_exp, places=3)
        with open(overlay, 'rb') as f:
            self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')

    def test_truth_accuracy_agrees_with_independent_matching(self):
        out, res = self.analyze('truth.json', '--truth', os.path.join(self.dir, 'atoms.csv'))
        self.assertIn('F1', out)
        det = np.array([[a['x'], a['y']] for a in res['atoms']])
        true_xy = self.truth_xy()
        radius = res['accuracy']['match_radius_px']
        meta = load_json(os.path.join(self.dir, 'meta.json'))
        self.assertAlmostEqual(radius, 0.3 * meta['nn_min_px'], places=6)
        f1 = match_f1(det, true_xy, radius)
        self.assertAlmostEqual(res['accuracy']['f1'], f1, places=9)
        self.assertEqual(res['accuracy']['num_true'], len(true_xy))

    def test_fixed_parameters_are_used(self):
        _, res = self.analyze('fixed.json', '--fixed', '2,6,5,0.1,0.5')
        p = res['parameters']
        self.assertEqual(p['source'], 'fixed')
        self.assertEqual((p['min_sigma'], p['max_sigma'], p['num_sigma'], p['threshold'],
                          p['overlap']), (2, 6, 5, 0.1, 0.5))
        sigmas = {a['sigma'] for a in res['atoms']}
        self.assertTrue(sigmas <= set(np.linspace(2, 6, 5).tolist()))

    def test_every_input_dtype(self):
        img = np.load(os.path.join(self.dir, 'image.npy')).astype(np.float64)
        img = (img - img.min()) / (img.max() - img.min())
        for dtype, scale in ((np.uint8, 255), (np.uint16, 65535), (np.int16, 30000),
                             (np.float64, 1.0), ('>f4', 1.0)):
            with self.subTest(dtype=str(dtype)):
                path = os.path.join(self.tmp.name, f'img_{np.dtype(dtype).str[1:]}.npy')
                np.save(path, (img * scale).astype(dtype))
                code, _, err = run('analyze', path, '--prior', os.path.join(self.dir, 'prior.json'),
                                   '--out', os.path.join(self.tmp.name, 'r.json'))
                self.assertEqual(code, 0, err)
                n = load_json(os.path.join(self.tmp.name, 'r.json'))['num_atoms']
                self.assertGreater(n, 100)

    def test_tiff_and_png_inputs(self):
        try:
            import tifffile
            from PIL import Image
        except ImportError:
            self.skipTest('tifffile or PIL missing')
        img = np.load(os.path.join(self.dir, 'image.npy'))
        u16 = ((img - img.min()) / np.ptp(img) * 65535).astype(np.uint16)
        tif = os.path.join(self.tmp.name, 'frame.tif')
        png = os.path.join(self.tmp.name, 'frame.png')
        tifffile.imwrite(tif, img)
        Image.fromarray(u16).save(png)
        for path in (tif, png):
            with self.subTest(path=path):
                code, _, err = run('analyze', path, '--prior', os.path.join(self.dir, 'prior.json'),
                                   '--out', os.path.join(self.tmp.name, 'r.json'))
                self.assertEqual(code, 0, err)


def read_truth(frame_dir):
    gt = np.genfromtxt(os.path.join(frame_dir, 'atoms.csv'), delimiter=',', names=True,
                       dtype=None, encoding=None)
    return np.column_stack([gt['x'], gt['y']])


def atoms_xy(result):
    return np.array([[a['x'], a['y']] for a in result['atoms']]).reshape(-1, 2)


def front_is_nondominated(front, pair='published'):
    """No point of `front` dominated in the pair it was searched in."""
    keys = ('misses', 'spurious') if pair == 'lattice' else ('qc', 'er')
    pts = [(p[keys[0]], p[keys[1]]) for p in front]
    for i, a in enumerate(pts):
        for j, b in enumerate(pts):
            if i != j and b[0] <= a[0] and b[1] <= a[1] and b != a:
                return False
    return True


class LogStarTest(unittest.TestCase):
    """The default path: LoG* over windows, with its per-window record and cache."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = os.path.join(cls.tmp.name, 'frame')
        code, _, err = run('synth', '--out', cls.dir, '--size', '256', '--lattice', 'ybco',
                           '--noise', '0.1', '--seed', '5')
        assert code == 0, err
        cls.prior = os.path.join(cls.dir, 'prior.json')
        cls.image = os.path.join(cls.dir, 'image.npy')
        # A short sequence: same size and lattice, different noise and atoms' jitter.
        cls.seq = os.path.join(cls.tmp.name, 'seq')
        os.makedirs(cls.seq)
        cls.seq_dirs = []
        for i, seed in enumerate((21, 22, 23)):
            d = os.path.join(cls.tmp.name, f'synth{i}')
            code, _, err = run('synth', '--out', d, '--size', '256', '--noise', '0.1', '--seed',
                               str(seed))
            assert code == 0, err
            os.link(os.path.join(d, 'image.npy'), os.path.join(cls.seq, f'frame_{i}.npy'))
            cls.seq_dirs.append(d)
        # Not a frame: the directory listing must skip it.
        write_file(os.path.join(cls.seq, 'notes.txt'), 'not a frame\n')

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def analyze(self, name, *extra, image=None):
        out_path = os.path.join(self.tmp.name, name)
        args = [image] if image else []
        code, out, err = run('analyze', *args, '--prior', self.prior, '--out', out_path, *extra)
        self.assertEqual(code, 0, err)
        return out, load_json(out_path)

    def check_windows(self, res, width, height, evals):
        """Per-window record: layout, cache states, fronts and atom ownership agree."""
        windows = res['windows']
        cover = np.zeros((height, width), int)
        for i, w in enumerate(windows):
            self.assertEqual(w['index'], i)
            t, c = w['tile'], w['core']
            # The core lies in the tile; the cores tile the frame exactly once.
            for start, size in (('col0', 'cols'), ('row0', 'rows')):
                self.assertLessEqual(t[start], c[start])
                self.assertLessEqual(c[start] + c[size], t[start] + t[size])
            cover[c['row0']:c['row0'] + c['rows'], c['col0']:c['col0'] + c['cols']] += 1
            self.assertIn(w['cache'], ('miss', 'hit', 'retuned'))
            if w['cache'] == 'hit':
                self.assertEqual(w['evaluations'], 0)
            else:
                self.assertTrue(1 <= w['evaluations'] <= evals, w['evaluations'])
            front = w['front']
            self.assertGreater(len(front), 0)
            self.assertTrue(0 <= w['chosen'] < len(front), (w['chosen'], len(front)))
            self.assertTrue(front_is_nondominated(front, w.get('objectives', 'published')), front)
            chosen = front[w['chosen']]
            for key in ('min_sigma', 'max_sigma', 'threshold', 'overlap'):
                self.assertAlmostEqual(w['parameters'][key], chosen[key], places=12)
            for key in ('qc', 'er', 'num_found', 'num_expected', 'num_erroneous'):
                self.assertIn(key, w['rewards'])
            for key in ('qc', 'er'):
                self.assertIn(key, w['tuned_rewards'])
        self.assertTrue((cover == 1).all(), 'window cores must tile the frame')
        owned = [0] * len(windows)
        for a in res['atoms']:
            core = windows[a['window']]['core']
            self.assertTrue(core['col0'] - 0.5 <= a['x'] < core['col0'] + core['cols'] - 0.5, a)
            self.assertTrue(core['row0'] - 0.5 <= a['y'] < core['row0'] + core['rows'] - 0.5, a)
            self.assertAlmostEqual(a['radius'], a['sigma'] * np.sqrt(2))
            owned[a['window']] += 1
        self.assertEqual(owned, [w['num_atoms'] for w in windows])
        self.assertEqual(res['num_atoms'], len(res['atoms']))
        cache = res['cache']
        self.assertEqual(cache['hits'] + cache['misses'] + cache['retunes'], len(windows))
        for state, key in (('hit', 'hits'), ('miss', 'misses'), ('retuned', 'retunes')):
            self.assertEqual(cache[key], sum(w['cache'] == state for w in windows))

    def test_default_logstar_finds_the_true_atoms(self):
        out, res = self.analyze('default.json', image=self.image)
        p = res['parameters']
        self.assertEqual(p['source'], 'logstar')
        self.assertEqual((p['window'], p['stride'], p['evaluations_per_window'], p['seed'],
                          p['choose'], p['num_sigma']), (256, 256, 50, 0, 'euclidean', 10))
        self.assertIn('windows', out)
        meta = load_json(os.path.join(self.dir, 'meta.json'))
        f1 = match_f1(atoms_xy(res), read_truth(self.dir), 0.3 * meta['nn_min_px'])
        self.assertGreaterEqual(f1, 0.95, f'F1 {f1:.3f} against the ground truth')
        # Sub-pixel refinement is on by default: positions are not all pixel centres.
        self.assertFalse(np.all(atoms_xy(res) == np.round(atoms_xy(res))))
        n_exp = meta['atom_density_per_px2'] * 256 * 256
        self.assertAlmostEqual(res['rewards']['qc'], abs(res['num_atoms'] - n_exp) / n_exp,
                               places=3)
        self.check_windows(res, 256, 256, 50)
        self.assertEqual(res['cache'], {'hits': 0, 'misses': 1, 'retunes': 0})
        self.assertIn('windows', res['timings_ms'])

    def test_lattice_objectives(self):
        """--objectives lattice: each window's front is non-dominated in (misses,
        spurious), its ends trade recall for precision against the truth, and
        the chosen point finds the true atoms. On a frame whose crystal cannot
        be mapped (256² YBCO, a 93 px cell) the windows fall back to the
        published pair and say why."""
        _, res = self.analyze('lattice_ybco.json', '--objectives', 'lattice', '--window', '128',
                              '--evals', '12', image=self.image)
        for w in res['windows']:
            self.assertEqual(w['objectives'], 'published')
            self.assertIn('not where it shows', w.get('lattice_note', ''))
        # A perovskite's small cell is mapped at 256².
        d = os.path.join(self.tmp.name, 'perovskite')
        code, _, err = run('synth', '--out', d, '--size', '256', '--lattice', 'perovskite',
                           '--noise', '0.1', '--seed', '5')
        self.assertEqual(code, 0, err)
        out_path = os.path.join(self.tmp.name, 'lattice.json')
        code, _, err = run('analyze', os.path.join(d, 'image.npy'), '--prior',
                           os.path.join(d, 'prior.json'), '--out', out_path, '--objectives',
                           'lattice', '--window', '128')
        self.assertEqual(code, 0, err)
        res = load_json(out_path)
        self.assertEqual(res['parameters']['objectives'], 'lattice')
        meta = load_json(os.path.join(d, 'meta.json'))
        truth = read_truth(d)
        f1 = match_f1(atoms_xy(res), truth, 0.3 * meta['nn_min_px'])
        self.assertGreaterEqual(f1, 0.95, f'F1 {f1:.3f} against the ground truth')
        for w in res['windows']:
            self.assertEqual(w['objectives'], 'lattice', w.get('lattice_note'))
            self.assertIn('lattice_rewards', w)
            pts = [(p['misses'], p['spurious']) for p in w['front']]
            for i, a in enumerate(pts):
                for j, b in enumerate(pts):
                    self.assertFalse(i != j and b[0] <= a[0] and b[1] <= a[1] and b != a, pts)
        code, _, err = run('analyze', self.image, '--prior', self.prior, '--out',
                           os.path.join(self.tmp.name, 'x.json'), '--objectives', 'count')
        self.assertEqual(code, 2, err)  # a usage error, as a bad --choose
        self.assertIn('--objectives', err)

    def test_overlapping_windows(self):
        _, res = self.analyze('overlap.json', '--window', '128', '--stride', '96', '--evals', '20',
                              image=self.image)
        self.assertEqual((res['parameters']['window'], res['parameters']['stride']), (128, 96))
        # Starts 0, 96 and 128 (the last moved in to end at the edge) on each axis.
        self.assertEqual(len(res['windows']), 9)
        self.check_windows(res, 256, 256, 20)
        self.assertEqual(res['cache']['misses'], 9)
        meta = load_json(os.path.join(self.dir, 'meta.json'))
        f1 = match_f1(atoms_xy(res), read_truth(self.dir), 0.3 * meta['nn_min_px'])
        self.assertGreaterEqual(f1, 0.9, f'F1 {f1:.3f} with overlapping windows')

    def test_frames_reuse_the_cache(self):
        overlays = os.path.join(self.tmp.name, 'overlays')
        # A generous tolerance: every window of the later frames must be a hit.
        out, res = self.analyze('frames.json', '--frames', self.seq, '--window', '128', '--evals',
                                '20', '--drift-tolerance', '10', '--overlay', overlays)
        frames = res['frames']
        self.assertEqual([os.path.basename(f['path']) for f in frames],
                         ['frame_0.npy', 'frame_1.npy', 'frame_2.npy'])
        layouts = [[(w['tile'], w['core']) for w in f['windows']] for f in frames]
        self.assertEqual(len(layouts[0]), 4)
        self.assertTrue(layouts[0] == layouts[1] == layouts[2], 'window layouts differ')
        self.assertEqual(frames[0]['cache'], {'hits': 0, 'misses': 4, 'retunes': 0})
        for f in frames[1:]:
            self.assertEqual(f['cache'], {'hits': 4, 'misses': 0, 'retunes': 0})
            # A hit runs the parameters tuned on the first frame.
            for w, w0 in zip(f['windows'], frames[0]['windows']):
                self.assertEqual(w['parameters'], w0['parameters'])
        for f, d in zip(frames, self.seq_dirs):
            self.assertEqual((f['width'], f['height']), (256, 256))
            self.check_windows(f, 256, 256, 20)
            meta = load_json(os.path.join(d, 'meta.json'))
            f1 = match_f1(atoms_xy(f), read_truth(d), 0.3 * meta['nn_min_px'])
            self.assertGreaterEqual(f1, 0.9, f'{f["path"]}: F1 {f1:.3f}')
        s = res['summary']
        self.assertEqual((s['frames'], s['hits'], s['misses'], s['retunes']), (3, 8, 4, 0))
        per_frame = [f['timings_ms']['analyze'] for f in frames]
        self.assertAlmostEqual(s['total_ms'], sum(per_frame), places=6)
        self.assertAlmostEqual(s['mean_ms_after_first'], sum(per_frame[1:]) / 2, places=6)
        for key in ('logstar_version', 'coordinates', 'prior', 'parameters'):
            self.assertIn(key, res)
        lines = out.strip().splitlines()
        self.assertEqual(len(lines), 4, out)
        self.assertIn('frame_2.npy', lines[2])
        for name in ('frame_0', 'frame_1', 'frame_2'):
            with open(os.path.join(overlays, name + '.png'), 'rb') as f:
                self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')

    def test_frames_glob(self):
        _, res = self.analyze('glob.json', '--frames', os.path.join(self.seq, 'frame_[02].npy'),
                              '--window', '0', '--evals', '5')
        self.assertEqual([os.path.basename(f['path']) for f in res['frames']],
                         ['frame_0.npy', 'frame_2.npy'])
        self.assertEqual([len(f['windows']) for f in res['frames']], [1, 1])

    def test_seed_reproduces_the_atoms(self):
        args = ('--window', '128', '--evals', '20', '--seed', '7')
        _, a = self.analyze('seed_a.json', *args, '--threads', '1', image=self.image)
        _, b = self.analyze('seed_b.json', *args, '--threads', '2', image=self.image)
        self.assertEqual(a['parameters']['seed'], 7)
        self.assertEqual(a['atoms'], b['atoms'])
        self.assertEqual([w['front'] for w in a['windows']], [w['front'] for w in b['windows']])

    def test_no_refine_gives_pixel_centres(self):
        _, res = self.analyze('norefine.json', '--no-refine', '--window', '0', '--evals', '10',
                              image=os.path.join(self.seq, 'frame_0.npy'))
        xy = atoms_xy(res)
        self.assertGreater(len(xy), 20)
        self.assertTrue(np.all(xy == np.round(xy)))

    def test_gaussian_refine_reports_calibrated_uncertainties(self):
        """--refine gaussian: each atom gains x_err, y_err, its amplitude,
        intensity and shape, and the generator's true positions lie within
        2 sigma of the reported uncertainty for most coordinates."""
        overlay = os.path.join(self.tmp.name, 'gaussian.png')
        _, res = self.analyze('gaussian.json', '--refine', 'gaussian', '--window', '0',
                              '--evals', '10', '--overlay', overlay, image=self.image)
        self.assertEqual(res['parameters']['refine'], 'gaussian')
        atoms = res['atoms']
        self.assertGreater(len(atoms), 50)
        for a in atoms:
            for key in ('x_err', 'y_err', 'amplitude', 'intensity', 'sigma_x', 'sigma_y',
                        'rotation'):
                self.assertIn(key, a)
                self.assertTrue(np.isfinite(a[key]), (key, a))
        ok = [a for a in atoms if 'fit_status' not in a]
        self.assertGreaterEqual(len(ok), 0.9 * len(atoms))
        for a in ok:
            self.assertAlmostEqual(a['intensity'],
                                   2 * np.pi * a['amplitude'] * a['sigma_x'] * a['sigma_y'],
                                   delta=1e-9 * abs(a['intensity']))
        # Each fitted atom against its nearest true column (within a third of
        # the spacing); the share of coordinates within 2 sigma is about 95 %
        # for calibrated uncertainties.
        truth = read_truth(self.dir)
        meta = load_json(os.path.join(self.dir, 'meta.json'))
        within, counted = 0, 0
        for a in ok:
            d = np.hypot(truth[:, 0] - a['x'], truth[:, 1] - a['y'])
            k = int(np.argmin(d))
            if d[k] > 0.3 * meta['nn_min_px']:
                continue
            within += abs(a['x'] - truth[k, 0]) <= 2 * a['x_err']
            within += abs(a['y'] - truth[k, 1]) <= 2 * a['y_err']
            counted += 2
        self.assertGreater(counted, 100)
        self.assertGreaterEqual(within / counted, 0.8, (within, counted))
        # The overlay draws the fits: the legend's "fit failed" swatch (RGB
        # (255, 165, 0), 12 x 10 px) is there exactly when a fit failed.
        try:
            from PIL import Image
        except ImportError:
            Image = None
        if Image is not None:
            picture = np.asarray(Image.open(overlay).convert('RGB'))
            orange = int(np.all(picture == (255, 165, 0), axis=-1).sum())
            if len(ok) < len(atoms):
                self.assertGreaterEqual(orange, 120)
            else:
                self.assertEqual(orange, 0)
        # Without --refine gaussian the atoms carry no fit.
        _, para = self.analyze('paraboloid.json', '--refine', 'paraboloid', '--window', '0',
                               '--evals', '10', image=self.image)
        self.assertNotIn('x_err', para['atoms'][0])
        self.assertEqual(para['parameters']['refine'], 'paraboloid')

    def test_refine_and_no_refine_together_are_refused(self):
        code, _, err = run('analyze', self.image, '--prior', self.prior, '--out',
                           os.path.join(self.tmp.name, 'bad.json'), '--refine', 'gaussian',
                           '--no-refine')
        self.assertEqual(code, 2, err)
        self.assertIn('--refine', err.splitlines()[0])
        self.assertIn('--no-refine', err.splitlines()[0])
        code, _, err = run('analyze', self.image, '--prior', self.prior, '--out',
                           os.path.join(self.tmp.name, 'bad.json'), '--refine', 'cubic')
        self.assertEqual(code, 2, err)
        self.assertIn('--refine', err.splitlines()[0])

    def test_choice_weights_pick_the_front_end(self):
        for weights, objective in (('1,0', 'qc'), ('0,1', 'er')):
            _, res = self.analyze('weights.json', '--choose', 'weights:' + weights, '--window',
                                  '128', '--evals', '10',
                                  image=os.path.join(self.seq, 'frame_1.npy'))
            self.assertEqual(res['parameters']['choose'], 'weights')
            self.assertEqual(res['parameters']['choice_weights'],
                             [float(w) for w in weights.split(',')])
            for w in res['windows']:
                values = [p[objective] for p in w['front']]
                self.assertEqual(values[w['chosen']], min(values), (weights, w['front']))

    def test_usage_errors_name_the_flag(self):
        base = ['analyze', self.image, '--prior', self.prior, '--out',
                os.path.join(self.tmp.name, 'bad.json')]
        for extra, flag in ((['--choose', 'median'], '--choose'),
                            (['--choose', 'weights:1'], '--choose'),
                            (['--window', '5'], '--window'),
                            (['--window', '64', '--stride', '65'], '--stride'),
                            (['--evals', '0'], '--evals'),
                            (['--num-sigma', '65'], '--num-sigma'),
                            (['--drift-tolerance', '0'], '--drift-tolerance'),
                            (['--fixed', '2,6,5,0.1,0.5', '--window', '64'], '--window')):
            with self.subTest(extra=extra):
                code, _, err = run(*base, *extra)
                self.assertEqual(code, 2, err)
                self.assertTrue(err.startswith('logstar: error: '), err)
                self.assertIn(flag, err.splitlines()[0])
        code, _, err = run('analyze', '--frames', self.seq, '--prior', self.prior, '--out',
                           os.path.join(self.tmp.name, 'bad.json'), '--truth',
                           os.path.join(self.dir, 'atoms.csv'))
        self.assertEqual(code, 2, err)
        self.assertIn('--truth', err.splitlines()[0])

    def test_frames_without_frames_is_an_error(self):
        empty = os.path.join(self.tmp.name, 'empty')
        os.makedirs(empty, exist_ok=True)
        code, _, err = run('analyze', '--frames', empty, '--prior', self.prior, '--out',
                           os.path.join(self.tmp.name, 'bad.json'))
        self.assertEqual(code, 1, err)
        self.assertIn('no frames', err)


class AmorphousTest(unittest.TestCase):
    """analyze --gmm: the mask against synth's amorphous_mask.npy, RESULT.json's
    amorphous fields and their units."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.frames = {}
        # (amorphous share, noise, seed); 512 px so that the regions hold
        # enough atoms for the mixture (about 1 s each).
        for name, share, noise, seed in (('amorphous', 0.2, 0.3, 1), ('crystal', 0.0, 0.3, 2)):
            d = os.path.join(cls.tmp.name, name)
            code, _, err = run('synth', '--out', d, '--size', '512', '--lattice', 'ybco',
                               '--noise', str(noise), '--amorphous', str(share), '--seed', str(seed))
            assert code == 0, err
            mask = os.path.join(d, 'mask.png')
            result = os.path.join(d, 'result.json')
            overlay = os.path.join(d, 'overlay.png')
            code, out, err = run('analyze', os.path.join(d, 'image.npy'), '--prior',
                                 os.path.join(d, 'prior.json'), '--out', result, '--gmm',
                                 '--amorphous-mask', mask, '--overlay', overlay)
            assert code == 0, err
            cls.frames[name] = (d, mask, load_json(result), overlay, out)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def read_png(self, path):
        try:
            from PIL import Image
        except ImportError:
            self.skipTest('PIL missing')
        return np.asarray(Image.open(path))

    def test_mask_matches_the_truth(self):
        d, mask_path, _, _, out = self.frames['amorphous']
        mask = self.read_png(mask_path)
        truth = np.load(os.path.join(d, 'amorphous_mask.npy')) > 0
        self.assertEqual(mask.dtype, np.uint8)
        self.assertEqual(mask.shape, truth.shape)
        self.assertTrue(set(np.unique(mask)) <= {0, 255})
        inside = mask == 255
        iou = (inside & truth).sum() / (inside | truth).sum()
        self.assertGreaterEqual(iou, 0.6, out)

    def test_crystalline_frame_has_no_region(self):
        _, mask_path, res, _, _ = self.frames['crystal']
        self.assertLessEqual((self.read_png(mask_path) == 255).mean(), 0.02)
        self.assertLessEqual(res['amorphous']['area_fraction'], 0.02)
        # A clean crystal: the stage stands by its "no region".
        self.assertEqual(res['amorphous']['verdict']['state'], 'confident',
                         res['amorphous']['verdict'])

    def test_uncertain_when_the_disorder_is_below_resolution(self):
        """Noise 0.5 and 10 % amorphous (512², seed 1): the regions are not
        resolved, and RESULT.json, the console and the overlay say so instead
        of a plain "0 regions"."""
        d = os.path.join(self.tmp.name, 'faint')
        code, _, err = run('synth', '--out', d, '--size', '512', '--lattice', 'ybco', '--noise',
                           '0.5', '--amorphous', '0.1', '--seed', '1')
        self.assertEqual(code, 0, err)
        out_path = os.path.join(d, 'r.json')
        code, out, err = run('analyze', os.path.join(d, 'image.npy'), '--prior',
                             os.path.join(d, 'prior.json'), '--out', out_path, '--gmm')
        self.assertEqual(code, 0, err)
        verdict = load_json(out_path)['amorphous']['verdict']
        self.assertEqual(verdict['state'], 'uncertain', verdict)
        self.assertEqual(verdict['code'], 'below_resolution')
        self.assertIn('UNCERTAIN (below_resolution)', out)

    def test_result_fields_and_units(self):
        d, mask_path, res, overlay, _ = self.frames['amorphous']
        pixel = load_json(os.path.join(d, 'prior.json'))['pixel_size_angstrom']
        mask = self.read_png(mask_path) == 255
        stage = res['amorphous']
        threshold = stage['parameters']['threshold']
        for key in ('patch_size_px', 'threshold', 'covariance_type', 'num_components'):
            self.assertIn(key, stage['parameters'])
        self.assertTrue(stage['front'])
        self.assertEqual(sum(p['chosen'] for p in stage['front']), 1)
        self.assertTrue(stage['front'][stage['chosen_index']]['chosen'])
        n_amorphous = 0
        for atom in res['atoms']:
            self.assertIsInstance(atom['amorphous'], bool)
            if atom['posterior'] is None:  # too near the border to classify
                self.assertFalse(atom['amorphous'])
                continue
            self.assertTrue(0.0 <= atom['posterior'] <= 1.0)
            self.assertEqual(atom['amorphous'], atom['posterior'] > threshold)
            n_amorphous += atom['amorphous']
        self.assertEqual(n_amorphous, stage['amorphous_atoms'])
        self.assertGreater(n_amorphous, 0)
        regions = res['regions']
        self.assertEqual(len(regions), stage['num_regions'])
        self.assertTrue(regions)
        # Areas in angstrom^2 add up to the PNG's pixel count times the pixel area.
        total = sum(r['area_angstrom2'] for r in regions)
        self.assertAlmostEqual(total, mask.sum() * pixel * pixel, places=6)
        for r in regions:
            self.assertAlmostEqual(r['perimeter_angstrom'], r['perimeter_px'] * pixel, places=9)
            b = r['bbox']
            inside = mask[b['row0']:b['row0'] + b['rows'], b['col0']:b['col0'] + b['cols']]
            self.assertTrue(inside.any())
            contour = np.array(r['contour'])
            self.assertEqual(contour.shape[1], 2)
            # Contour points are region pixels (x = column, y = row).
            self.assertTrue(mask[contour[:, 1].astype(int), contour[:, 0].astype(int)].all())
            self.assertTrue(b['col0'] <= r['centroid']['x'] < b['col0'] + b['cols'])
            self.assertTrue(b['row0'] <= r['centroid']['y'] < b['row0'] + b['rows'])
            # The perimeter is at least a disk's of the same area.
            self.assertGreaterEqual(r['perimeter_angstrom'],
                                    0.9 * 2 * np.sqrt(np.pi * r['area_angstrom2']))
        self.assertIn('amorphous', res['timings_ms'])
        picture = self.read_png(overlay)
        # The frame x4, then the footer (whole lines of 20 px) below it.
        self.assertEqual(picture.shape[1:], (512, 3))
        self.assertEqual((picture.shape[0] - 512) % 20, 0)
        self.assertGreater(picture.shape[0], 512)

    def test_usage_errors(self):
        d = self.frames['crystal'][0]
        base = ['analyze', os.path.join(d, 'image.npy'), '--prior', os.path.join(d, 'prior.json'),
                '--out', os.path.join(self.tmp.name, 'r.json')]
        code, _, err = run(*base, '--amorphous-mask', os.path.join(self.tmp.name, 'm.png'))
        self.assertEqual(code, 2)
        self.assertIn('--amorphous-mask needs --gmm', err)
        code, _, err = run(*base, '--gmm', '--fixed', '2.5,5,5,0.05,0.5')
        self.assertEqual(code, 2)
        self.assertIn('--gmm', err)


class BadInputTest(unittest.TestCase):
    """Bad input: one clear line naming the problem and a non-zero exit."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        cls.prior = os.path.join(d, 'prior.json')
        write_file(cls.prior, json.dumps({'pixel_size_angstrom': 0.125, 'column_density_per_nm2': 13.4,
                   'nearest_neighbor_angstrom': 2.55}))
        cls.good = os.path.join(d, 'good.npy')
        np.save(cls.good, np.random.default_rng(0).random((64, 64)).astype(np.float32))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def expect_error(self, args, *words):
        code, out, err = run(*args)
        self.assertNotEqual(code, 0, f'expected failure for {args}')
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertTrue(lines, 'no error message')
        self.assertTrue(lines[0].startswith('logstar: error: '), err)
        for w in words:
            self.assertIn(w, lines[0])
        return lines[0]

    def analyze(self, image, prior=None):
        return ['analyze', image, '--prior', prior or self.prior, '--out', self.path('r.json')]

    def test_missing_file(self):
        self.expect_error(self.analyze(self.path('nope.npy')), 'nope.npy', 'no such file')

    def test_unsupported_dtype(self):
        # int32 is read (widened to float64); int64 is not.
        np.save(self.path('i64.npy'), np.zeros((8, 8), np.int64))
        self.expect_error(self.analyze(self.path('i64.npy')), 'i64.npy', 'dtype', '<i8')

    def test_nan_pixels(self):
        a = np.random.default_rng(1).random((16, 16)).astype(np.float32)
        a[5, 9] = np.nan
        np.save(self.path('nan.npy'), a)
        self.expect_error(self.analyze(self.path('nan.npy')), 'x=9, y=5')

    def test_empty_frame(self):
        np.save(self.path('empty.npy'), np.zeros((0, 5), np.float32))
        self.expect_error(self.analyze(self.path('empty.npy')), 'empty')

    def test_three_dimensional(self):
        np.save(self.path('cube.npy'), np.zeros((3, 8, 8), np.float32))
        self.expect_error(self.analyze(self.path('cube.npy')), '2-D')

    def test_truncated_npy(self):
        with open(self.good, 'rb') as f:
            raw = f.read()
        write_file(self.path('trunc.npy'), raw[:len(raw) // 2], 'wb')
        self.expect_error(self.analyze(self.path('trunc.npy')), 'truncated')

    def test_not_an_image(self):
        write_file(self.path('junk.png'), b'not a png at all', 'wb')
        self.expect_error(self.analyze(self.path('junk.png')), 'junk.png')

    def test_zero_pixel_size(self):
        write_file(self.path('p0.json'), json.dumps({'pixel_size_angstrom': 0, 'column_density_per_nm2': 13.4,
                   'nearest_neighbor_angstrom': 2.55}))
        self.expect_error(self.analyze(self.good, self.path('p0.json')), 'pixel_size_angstrom')

    def test_broken_prior_json(self):
        write_file(self.path('broken.json'), '{"pixel_size_angstrom": 0.1,')
        self.expect_error(self.analyze(self.good, self.path('broken.json')), 'JSON')

    def test_prior_numbers_out_of_range(self):
        # Issue 16: these aborted analyze and record (exit 134, an uncaught
        # exception); now one error line and exit 1.
        for value in ('1e999', '-1e400'):
            path = self.path('range.json')
            write_file(path, '{"pixel_size_angstrom": %s, "column_density_per_nm2": 13.4, '
                       '"nearest_neighbor_angstrom": 2.55}' % value)
            for args in (self.analyze(self.good, path),
                         ['record', '--from', self.good, '--prior', path, '--out', self.path('r.lsr')]):
                self.assertEqual(run(*args)[0], 1, args)
                self.expect_error(args, 'range.json')

    def test_unknown_prior_field(self):
        write_file(self.path('typo.json'), json.dumps({'pixel_size_angstrom': 0.125, 'column_density_per_nm2': 13.4,
                   'nearest_neighbour_angstrom': 2.55}))
        self.expect_error(self.analyze(self.good, self.path('typo.json')),
                          'nearest_neighbour_angstrom')

    def test_bad_fixed(self):
        self.expect_error(self.analyze(self.good) + ['--fixed', '1,2,3'], 'fixed')
        self.expect_error(self.analyze(self.good) + ['--fixed', '3,2,10,0.1,0.5'], 'max_sigma')

    def test_truth_without_xy_columns(self):
        write_file(self.path('bad.csv'), 'a,b\n1,2\n')
        self.expect_error(self.analyze(self.good) + ['--truth', self.path('bad.csv')], 'x and y')

    def test_usage_errors_exit_2(self):
        code, _, err = run('analyze', self.good)
        self.assertEqual(code, 2)
        self.assertIn('--prior', err)
        code, _, _ = run('frobnicate')
        self.assertEqual(code, 2)
        code, _, err = run('synth', '--out', self.path('s'), '--noise', '2')
        self.assertNotEqual(code, 0)
        self.assertIn('noise', err)

    def test_synth_scene_flags(self):
        """--scene and its options reach the generator: the crystal covers the
        asked share of the frame (crystalline_mask.npy), every true atom lies
        on the mask, and the A/B labels and brightness ratio are as asked."""
        d = self.path('particle')
        code, out, err = run('synth', '--out', d, '--size', '192', '--lattice', 'perovskite',
                             '--scene', 'nanoparticle', '--crystal-fraction', '0.3',
                             '--ab-ratio', '2', '--noise', '0', '--seed', '4')
        self.assertEqual(code, 0, err)
        self.assertIn('nanoparticle', out)
        mask = np.load(os.path.join(d, 'crystalline_mask.npy'))
        self.assertAlmostEqual(float(mask.mean()), 0.3, delta=0.02)
        atoms = np.genfromtxt(os.path.join(d, 'atoms.csv'), delimiter=',', names=True,
                              dtype=None, encoding='utf-8')
        rows = np.clip(np.round(atoms['y']).astype(int), 0, mask.shape[0] - 1)
        cols = np.clip(np.round(atoms['x']).astype(int), 0, mask.shape[1] - 1)
        self.assertGreater(len(atoms), 20)
        self.assertTrue(np.all(mask[rows, cols] == 1))
        self.assertEqual(set(atoms['sublattice']), {'A', 'B'})
        a = atoms['intensity'][atoms['sublattice'] == 'A']
        b = atoms['intensity'][atoms['sublattice'] == 'B']
        self.assertAlmostEqual(float(np.median(a) / np.median(b)), 2.0, delta=0.05)
        meta = load_json(os.path.join(d, 'meta.json'))
        self.assertEqual(meta['scene'], 'nanoparticle')
        for flags, field in ((['--scene', 'cloud'], 'scene'),
                             (['--scene', 'edge', '--crystal-fraction', '2'], 'crystal_fraction'),
                             (['--lattice', 'ybco', '--ab-ratio', '2'], 'ab_brightness_ratio')):
            code, _, err = run('synth', '--out', self.path('bad'), *flags)
            self.assertEqual(code, 1, err)
            self.assertIn(field, err)


# ---------------------------------------------------------------- through logstard

class PriorChecksTest(unittest.TestCase):
    """The prior against the frame (issue 15): --strict, --prior auto, the
    warnings and the prior used in RESULT.json, synth's sublattices and
    `logstar prior`, checked against the generator's meta.json and atoms.csv."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        # At 0.1 A/px, so that a pixel size 10x too large still samples the
        # columns (2.55 A at 1 A/px) and the analysis runs to its warning.
        cls.ybco = os.path.join(cls.tmp.name, 'ybco')
        code, _, err = run('synth', '--out', cls.ybco, '--size', '256', '--noise', '0.1',
                           '--seed', '11', '--pixel-size', '0.1')
        assert code == 0, err
        cls.perovskite = os.path.join(cls.tmp.name, 'perovskite')
        code, _, err = run('synth', '--out', cls.perovskite, '--size', '256', '--noise', '0.3',
                           '--seed', '12', '--lattice', 'perovskite')
        assert code == 0, err
        cls.noise = os.path.join(cls.tmp.name, 'noise.npy')
        np.save(cls.noise, np.random.default_rng(3).normal(size=(256, 256)).astype(np.float32))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def prior_with(self, frame, name, change):
        prior = load_json(os.path.join(frame, 'prior.json'))
        change(prior)
        path = self.path(name)
        write_file(path, json.dumps(prior))
        return path

    def analyze(self, frame, prior, *extra):
        """(exit code, stderr, RESULT.json or None) of analyze with --truth."""
        out = self.path('r-%d.json' % len(os.listdir(self.tmp.name)))
        code, _, err = run('analyze', os.path.join(frame, 'image.npy'), '--prior', prior, '--out',
                           out, '--truth', os.path.join(frame, 'atoms.csv'), '--window', '128',
                           '--evals', '20', *extra)
        return code, err, load_json(out) if os.path.exists(out) else None

    def test_synth_prior_lists_the_first_crystals_sublattices_of_meta(self):
        for frame in (self.ybco, self.perovskite):
            prior = load_json(os.path.join(frame, 'prior.json'))
            meta = load_json(os.path.join(frame, 'meta.json'))
            expected = [s for s in meta['sublattices'] if s['crystal'] == 0]
            got = prior['sublattices']
            self.assertEqual([s['name'] for s in got], [s['name'] for s in expected])
            for g, e in zip(got, expected):
                self.assertAlmostEqual(g['column_density_per_nm2'], e['density_per_nm2'], places=6)
                self.assertAlmostEqual(g['relative_brightness'], e['relative_brightness'], places=6)
                self.assertRegex(g['name'], r'^[A-Za-z0-9_-]+$')
            # Brightest first, each in (0, 1], adding up to the column density.
            brightness = [g['relative_brightness'] for g in got]
            self.assertEqual(brightness, sorted(brightness, reverse=True))
            self.assertEqual(brightness[0], 1.0)
            total = sum(g['column_density_per_nm2'] for g in got)
            self.assertLess(abs(total / meta['column_density_per_nm2'] - 1), 0.05)
        # SrTiO3 [100]: one Sr and one Ti-O column per 3.905 A cell each.
        prior = load_json(os.path.join(self.perovskite, 'prior.json'))
        self.assertEqual([s['name'] for s in prior['sublattices']], ['A', 'B'])
        for s in prior['sublattices']:
            self.assertAlmostEqual(s['column_density_per_nm2'], 100 / 3.905 ** 2, places=6)

    def test_the_true_prior_passes_strict_with_its_sublattices(self):
        code, err, res = self.analyze(self.ybco, os.path.join(self.ybco, 'prior.json'), '--strict')
        self.assertEqual(code, 0, err)
        self.assertEqual(res['warnings'], [])
        self.assertFalse(res['prior']['derived'])
        self.assertEqual(len(res['prior']['sublattices']), 3)
        meta = load_json(os.path.join(self.ybco, 'meta.json'))
        self.assertTrue(res['lattice']['found'])
        self.assertLess(abs(res['lattice']['nearest_neighbor_px'] / meta['nn_min_px'] - 1), 0.02)
        self.assertGreater(res['accuracy']['f1'], 0.9)
        self.assertTrue(0.0 <= res['crystalline_fraction'] <= 1.0)
        names = {s['name'] for s in res['prior']['sublattices']}
        for atom in res['atoms']:
            self.assertIn('sublattice', atom)
            self.assertTrue(atom['sublattice'] is None or atom['sublattice'] in names)
        self.assertIn('sublattices', res)
        self.assertIn('sublattice_note', res)

    def test_strict_exits_3_on_a_pixel_size_10x_too_large(self):
        meta = load_json(os.path.join(self.ybco, 'meta.json'))
        prior = self.prior_with(self.ybco, 'p10.json',
                                lambda p: p.update(pixel_size_angstrom=10 * p['pixel_size_angstrom']))
        code, err, res = self.analyze(self.ybco, prior, '--strict')
        self.assertEqual(code, 3, err)
        self.assertIn('warning', err)
        self.assertIn('pixel_size_angstrom', err)
        self.assertEqual([w['field'] for w in res['warnings']], ['pixel_size_angstrom'])
        self.assertLess(abs(res['warnings'][0]['measured'] / meta['pixel_size_angstrom'] - 1), 0.05)
        # Without --strict the same run exits 0, the warning still reported.
        code, err, res = self.analyze(self.ybco, prior)
        self.assertEqual(code, 0, err)
        self.assertEqual(len(res['warnings']), 1)

    def test_strict_exits_3_on_a_density_100x_too_low(self):
        meta = load_json(os.path.join(self.ybco, 'meta.json'))

        def lower(p):
            p['column_density_per_nm2'] /= 100
            for s in p['sublattices']:
                s['column_density_per_nm2'] /= 100
        prior = self.prior_with(self.ybco, 'd100.json', lower)
        code, err, res = self.analyze(self.ybco, prior, '--strict')
        self.assertEqual(code, 3, err)
        self.assertEqual([w['field'] for w in res['warnings']], ['column_density_per_nm2'])
        self.assertLess(abs(res['warnings'][0]['measured'] / meta['column_density_per_nm2'] - 1),
                        0.10)

    def test_auto_prior_is_as_good_as_the_true_one(self):
        for frame in (self.ybco, self.perovskite):
            meta = load_json(os.path.join(frame, 'meta.json'))
            code, err, true = self.analyze(frame, os.path.join(frame, 'prior.json'))
            self.assertEqual(code, 0, err)
            code, err, auto = self.analyze(frame, 'auto', '--strict')
            self.assertEqual(code, 0, err)
            code, err, auto_a = self.analyze(frame, 'auto', '--pixel-size',
                                             str(meta['pixel_size_angstrom']))
            self.assertEqual(code, 0, err)
            # In pixels without a pixel size; in angstrom with one.
            self.assertTrue(auto['prior']['derived'] and auto['prior']['pixel_units'])
            self.assertIsNone(auto['prior']['pixel_size_angstrom'])
            self.assertLess(abs(auto['prior']['nearest_neighbor_px'] / meta['nn_min_px'] - 1), 0.02)
            self.assertLess(abs(auto['prior']['column_density_per_px2']
                                / meta['atom_density_per_px2'] - 1), 0.10)
            p = auto_a['prior']
            self.assertTrue(p['derived'] and not p['pixel_units'])
            self.assertEqual(p['pixel_size_angstrom'], meta['pixel_size_angstrom'])
            self.assertLess(abs(p['nearest_neighbor_angstrom'] / meta['nearest_neighbor_angstrom']
                                - 1), 0.02)
            self.assertLess(abs(p['column_density_per_nm2'] / meta['column_density_per_nm2'] - 1),
                            0.10)
            # F1 against the truth, each at its own (derived) matching radius.
            det = np.array([[a['x'], a['y']] for a in auto['atoms']])
            gt = np.genfromtxt(os.path.join(frame, 'atoms.csv'), delimiter=',', names=True,
                               dtype=None, encoding=None)
            f1_auto = match_f1(det, np.column_stack([gt['x'], gt['y']]), 0.3 * meta['nn_min_px'])
            for f1 in (f1_auto, auto_a['accuracy']['f1']):
                self.assertGreaterEqual(f1, true['accuracy']['f1'] - 0.03, frame)

    def test_a_prior_file_with_only_a_pixel_size_is_auto(self):
        meta = load_json(os.path.join(self.ybco, 'meta.json'))
        path = self.path('pixel-only.json')
        write_file(path, json.dumps({'pixel_size_angstrom': meta['pixel_size_angstrom']}))
        code, err, res = self.analyze(self.ybco, path)
        self.assertEqual(code, 0, err)
        self.assertTrue(res['prior']['derived'])
        self.assertEqual(res['prior']['pixel_size_angstrom'], meta['pixel_size_angstrom'])
        write_file(path, json.dumps({'auto': True}))
        code, err, res = self.analyze(self.ybco, path)
        self.assertEqual(code, 0, err)
        self.assertTrue(res['prior']['pixel_units'])

    def test_auto_on_a_frame_without_lattice_names_the_prior(self):
        code, _, err = run('analyze', self.noise, '--prior', 'auto', '--out', self.path('n.json'))
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith('logstar: error: '), err)
        self.assertIn('--prior', err)
        self.assertIn('no lattice', err)

    def test_a_frame_without_lattice_says_its_counts_are_over_the_whole_frame(self):
        # Pure noise shows no lattice: the crystal cannot be mapped, the
        # expected counts are the whole frame's and the result says why.
        out = self.path('noise.json')
        code, _, err = run('analyze', self.noise, '--prior', os.path.join(self.ybco, 'prior.json'),
                           '--out', out, '--window', '128', '--evals', '10')
        self.assertEqual(code, 0, err)
        res = load_json(out)
        self.assertEqual(res['crystalline_fraction'], 1.0)
        self.assertIn('lattice', res['crystal_note'])
        # A crystal frame too small for its cell (YBCO, 256 px) is not mapped
        # either, and the note says so.
        code, _, err = run('analyze', os.path.join(self.ybco, 'image.npy'), '--prior',
                           os.path.join(self.ybco, 'prior.json'), '--out', self.path('c.json'),
                           '--window', '128', '--evals', '10')
        self.assertEqual(code, 0, err)
        self.assertIn('too small', load_json(self.path('c.json'))['crystal_note'])

    def test_flag_combinations(self):
        prior = os.path.join(self.ybco, 'prior.json')
        image = os.path.join(self.ybco, 'image.npy')
        base = ['analyze', image, '--out', self.path('f.json')]
        code, _, err = run(*base, '--prior', prior, '--pixel-size', '0.1')
        self.assertEqual(code, 1)
        self.assertIn('--pixel-size', err)
        code, _, err = run(*base, '--prior', 'auto', '--sublattice', 'Ba')
        self.assertEqual(code, 1)
        self.assertIn('--sublattice', err)
        code, _, err = run(*base, '--prior', prior, '--sublattice', 'Sr')
        self.assertEqual(code, 1)
        self.assertIn('Sr', err)
        code, _, err = run(*base, '--prior', prior, '--fixed', '2,6,5,0.1,0.5', '--strict')
        self.assertEqual(code, 2)
        code, _, err = run(*base, '--prior', 'auto', '--fixed', '2,6,5,0.1,0.5')
        self.assertEqual(code, 2)
        code, _, err = run(*base, '--prior', prior, '--sublattice', 'Ba', '--window', '128',
                           '--evals', '10')
        self.assertEqual(code, 0, err)
        self.assertEqual(load_json(self.path('f.json'))['parameters']['sublattice'], 'Ba')

    def test_frames_carry_the_warnings_of_every_frame(self):
        seq = self.path('seq')
        os.makedirs(seq, exist_ok=True)
        for i in range(2):
            os.link(os.path.join(self.ybco, 'image.npy'), os.path.join(seq, 'f%d.npy' % i))
        prior = self.prior_with(self.ybco, 'p10f.json',
                                lambda p: p.update(pixel_size_angstrom=10 * p['pixel_size_angstrom']))
        out = self.path('frames.json')
        code, _, err = run('analyze', '--frames', seq, '--prior', prior, '--out', out, '--window',
                           '128', '--evals', '10', '--strict')
        self.assertEqual(code, 3, err)
        res = load_json(out)
        self.assertEqual(res['summary']['frames_with_warnings'], 2)
        for frame in res['frames']:
            self.assertEqual([w['field'] for w in frame['warnings']], ['pixel_size_angstrom'])
        # Printed once: the second frame's are the first's.
        self.assertEqual(err.count('warning:'), 1, err)

    def test_recording_headers_carry_the_new_prior_fields(self):
        """RecordingHeader.settings (field 2) .prior (field 1): auto (field 6)
        from `record --prior auto`, the sublattices (field 5: name 1,
        density 2, brightness 3) from `synth --frames`, read by hand."""
        code, _, err = run('record', '--from', os.path.join(self.ybco, 'image.npy'), '--prior',
                           'auto', '--out', self.path('auto.lsr'))
        self.assertEqual(code, 0, err)
        header = read_lsr(self.path('auto.lsr'))[0][1]
        prior = dict(proto_fields(dict(proto_fields(dict(proto_fields(header))[2]))[1]))
        self.assertEqual(prior.get(6), 1)
        code, _, err = run('synth', '--frames', '2', '--size', '64', '--lattice', 'perovskite',
                           '--out', self.path('perovskite.lsr'))
        self.assertEqual(code, 0, err)
        header = read_lsr(self.path('perovskite.lsr'))[0][1]
        prior = proto_fields(dict(proto_fields(dict(proto_fields(header))[2]))[1])
        subs = [dict(proto_fields(v)) for f, v in prior if f == 5]
        self.assertEqual([s[1] for s in subs], [b'A', b'B'])
        for sub in subs:
            self.assertAlmostEqual(sub[2], 100 / 3.905 ** 2, places=6)
        self.assertEqual(subs[0][3], 1.0)
        self.assertLess(subs[1][3], 1.0)

    def test_prior_command_checks_a_file_against_a_frame(self):
        image = os.path.join(self.ybco, 'image.npy')
        code, out, err = run('prior', os.path.join(self.ybco, 'prior.json'))
        self.assertEqual(code, 0, err)
        shown = json.loads(out)['prior']
        self.assertEqual(len(shown['sublattices']), 3)
        meta = load_json(os.path.join(self.ybco, 'meta.json'))
        self.assertAlmostEqual(shown['nearest_neighbor_px'], meta['nn_min_px'], places=6)
        code, out, err = run('prior', os.path.join(self.ybco, 'prior.json'), '--frame', image,
                             '--strict')
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)['warnings'], [])
        prior = self.prior_with(self.ybco, 'p10c.json',
                                lambda p: p.update(pixel_size_angstrom=10 * p['pixel_size_angstrom']))
        code, out, err = run('prior', prior, '--frame', image, '--strict')
        self.assertEqual(code, 3, err)
        self.assertEqual([w['field'] for w in json.loads(out)['warnings']], ['pixel_size_angstrom'])
        code, out, err = run('prior', 'auto', '--frame', image, '--pixel-size', '0.1')
        self.assertEqual(code, 0, err)
        derived = json.loads(out)['prior']
        self.assertLess(abs(derived['nearest_neighbor_angstrom'] / meta['nearest_neighbor_angstrom']
                            - 1), 0.02)
        code, _, err = run('prior', 'auto', '--frame', self.noise)
        self.assertEqual(code, 1)
        self.assertIn('no lattice', err)
        bad = self.path('bad-prior.json')
        write_file(bad, json.dumps({'auto': True, 'nearest_neighbor_angstrom': 2.55}))
        code, _, err = run('prior', bad)
        self.assertEqual(code, 1)
        self.assertIn('auto', err)


def read_lsr(path):
    """The records of a .lsr file as recording.proto lays them out, read here
    by hand: [(byte offset, payload)] up to the first bad record."""
    with open(path, 'rb') as f:
        data = f.read()
    assert data[:8] == b'LSR1\r\n\x1a\n', 'bad magic'
    off, records = 8, []
    while off + 8 <= len(data):
        n, crc = struct.unpack_from('<II', data, off)
        payload = data[off + 8:off + 8 + n]
        if len(payload) < n or zlib.crc32(payload) != crc:
            break
        records.append((off, payload))
        off += 8 + n
    return records


def proto_fields(buf):
    """(field number, value) of a protobuf message: ints, bytes or 8-byte doubles."""
    i, out = 0, []
    def varint():
        nonlocal i
        v, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7f) << shift
            shift += 7
            if b < 0x80:
                return v
    while i < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 1:
            out.append((field, struct.unpack_from('<d', buf, i)[0]))
            i += 8
        elif wire == 2:
            n = varint()
            out.append((field, buf[i:i + n]))
            i += n
        elif wire == 5:
            out.append((field, buf[i:i + 4]))
            i += 4
        else:
            raise ValueError('wire type %d' % wire)
    return out


def truth_of(payload):
    """A RecordedFrame's truth atoms (field 3: TruthAtom x = 1, y = 2) as an N x 2 array."""
    xy = []
    for field, value in proto_fields(payload):
        if field == 3:
            atom = dict(proto_fields(value))
            xy.append((atom.get(1, 0.0), atom.get(2, 0.0)))
    return np.array(xy)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


@unittest.skipUnless(os.environ.get('LOGSTARD'), 'LOGSTARD (path of logstard) not set')
class DaemonTest(unittest.TestCase):
    """record/synth --frames, replay, status and analyze --server against a
    real logstard process on a free loopback port."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        port_file = os.path.join(cls.tmp.name, 'port')
        cls.log = open(os.path.join(cls.tmp.name, 'logstard.log'), 'w')
        cls.daemon = subprocess.Popen(
            [os.environ['LOGSTARD'], '--listen_address=127.0.0.1:0', '--port_file=' + port_file,
             '--engine_threads=2', '--log_level=warning'], stderr=cls.log)
        deadline = time.time() + 60
        port = ''
        while not port:
            assert cls.daemon.poll() is None and time.time() < deadline, 'logstard did not start'
            time.sleep(0.05)
            if os.path.exists(port_file):
                with open(port_file) as f:
                    port = f.read().strip()
        cls.addr = '127.0.0.1:' + port
        # A short drifting stream: 128^2 frames, small windows, few evaluations.
        cls.lsr = os.path.join(cls.tmp.name, 's.lsr')
        code, _, err = run('synth', '--frames', '4', '--size', '128', '--noise', '0.2', '--seed',
                           '5', '--window', '64', '--evals', '8', '--out', cls.lsr)
        assert code == 0, err

    @classmethod
    def tearDownClass(cls):
        cls.daemon.terminate()
        cls.daemon.wait(timeout=60)
        cls.log.close()
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def test_replay_answers_every_frame_and_finds_the_true_atoms(self):
        records = read_lsr(self.lsr)
        self.assertEqual(len(records), 5)  # header and 4 frames
        results = self.path('r.jsonl')
        code, out, err = run('replay', self.lsr, '--server', self.addr, '--speed', 'max',
                             '--results', results, '--overlays', self.path('ov'))
        self.assertEqual(code, 0, err)
        self.assertIn('results                4', out)
        with open(results) as f:
            lines = [json.loads(l) for l in f]
        self.assertEqual([l['sequence'] for l in lines], [1, 2, 3, 4])
        # The prior in the header: YBCO at 0.125 A/px, nearest neighbour 2.55 A.
        radius = 0.3 * 2.55 / 0.125
        for line, (_, payload) in zip(lines, records[1:]):
            self.assertEqual(line['status'], 'result')
            det = np.array(line['atoms_xy_sigma'])[:, :2]
            truth = truth_of(payload)
            self.assertGreater(len(truth), 20)
            self.assertGreaterEqual(match_f1(det, truth, radius), 0.9)
        self.assertEqual(len(os.listdir(self.path('ov'))), 4)
        # Each line carries its windows as RESULT.json does, and `logstar
        # report` draws one point per answered frame and each window's front.
        for line in lines:
            self.assertEqual(sum(1 for w in line['windows'] if w['cache'] == 'hit'),
                             line['cache']['hits'])
            for w in line['windows']:
                self.assertTrue(0 <= w['chosen'] < len(w['front']))
        code, out, err = run('report', results, '--out', self.path('report'))
        self.assertEqual(code, 0, err)
        self.assertIn('4 frames drawn', out)
        fronts = [f for f in os.listdir(self.path('report')) if f.startswith('front_window_')]
        self.assertEqual(len(fronts), len(lines[-1]['windows']))
        from PIL import Image
        from scipy import ndimage
        timeline = np.asarray(Image.open(self.path('report/timeline.png')).convert('RGB'))
        count_panel = np.all(timeline[:150] == (30, 90, 200), axis=-1)  # BGR (200, 90, 30)
        self.assertEqual(ndimage.label(count_panel, structure=np.ones((3, 3)))[1], 4)
        # The stream drifts: the truth of the last frame is the first's, moved.
        first, last = truth_of(records[1][1]), truth_of(records[4][1])
        self.assertFalse(np.array_equal(first, last))

    def test_replay_through_shared_memory_gives_the_atoms_of_the_messages(self):
        # Two slots for four frames: the ring wraps, so a slot is rewritten
        # once its frame was answered. The reference is the same recording
        # replayed with its pixels in the messages (the same settings and
        # seed: the same tuning).
        by_message, by_shm = self.path('msg.jsonl'), self.path('shm.jsonl')
        code, _, err = run('replay', self.lsr, '--server', self.addr, '--speed', 'max',
                           '--max-in-flight', '2', '--results', by_message)
        self.assertEqual(code, 0, err)
        code, out, err = run('replay', self.lsr, '--server', self.addr, '--speed', 'max',
                             '--max-in-flight', '2', '--results', by_shm, '--shared-memory')
        self.assertEqual(code, 0, err)
        line = next(l for l in out.splitlines() if l.strip().startswith('shared memory'))
        self.assertIn('4 frames through region logstar-', line)
        self.assertIn('(2 slots of %d bytes), 0 in the message' % (128 * 128 * 4), line)
        region = line.split('region ')[1].split()[0]
        self.assertFalse(os.path.exists('/dev/shm/' + region), 'the buffer outlived the replay')
        with open(by_message) as f:
            expected = [json.loads(l) for l in f]
        with open(by_shm) as f:
            got = [json.loads(l) for l in f]
        self.assertEqual([l['status'] for l in got], ['result'] * 4)
        self.assertEqual([l['atoms_xy_sigma'] for l in got],
                         [l['atoms_xy_sigma'] for l in expected])

    def test_shared_memory_mode_is_checked(self):
        code, _, err = run('replay', self.lsr, '--server', self.addr, '--shared-memory',
                           '--shared-memory-mode', '0x1a4')
        self.assertEqual(code, 2)
        self.assertIn('--shared-memory-mode', err)
        code, _, err = run('replay', self.lsr, '--server', self.addr, '--shared-memory-mode',
                           '644')
        self.assertEqual(code, 2)
        self.assertIn('needs --shared-memory', err)

    def test_truncated_recording_replays_its_intact_frames_and_names_the_offset(self):
        records = read_lsr(self.lsr)
        last_offset = records[-1][0]
        cut = self.path('cut.lsr')
        with open(self.lsr, 'rb') as f:
            write_file(cut, f.read()[:last_offset + 20], 'wb')
        results = self.path('cut.jsonl')
        code, out, err = run('replay', cut, '--server', self.addr, '--speed', 'max', '--results',
                             results)
        self.assertEqual(code, 1)
        self.assertIn('byte offset %d' % last_offset, err)
        self.assertIn('truncated', err)
        with open(results) as f:
            self.assertEqual(len(f.readlines()), 3)

    def test_replay_fails_when_the_server_is_down(self):
        addr = '127.0.0.1:%d' % free_port()
        code, _, err = run('replay', self.lsr, '--server', addr, '--connect-timeout', '1')
        self.assertEqual(code, 1)
        self.assertIn('cannot reach logstard at ' + addr, err)

    def test_console_serves_loopback_only_and_checks_requests(self):
        # Refused on a non-loopback address without --allow-remote.
        code, _, err = run('console', '--server', self.addr, '--listen', '0.0.0.0:0')
        self.assertEqual(code, 2)
        self.assertIn('not a loopback address', err)
        port_file = self.path('console.port')
        console = subprocess.Popen([LOGSTAR, 'console', '--server', self.addr, '--listen',
                                    '127.0.0.1:0', '--port-file', port_file],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def bound_port():
            if not os.path.exists(port_file):
                return None
            with open(port_file) as f:
                text = f.read().strip()
            return int(text) if text else None

        try:
            deadline = time.time() + 30
            while bound_port() is None:
                self.assertIsNone(console.poll(), 'logstar console exited')
                self.assertLess(time.time(), deadline)
                time.sleep(0.05)
            port = bound_port()

            def request(method, path, host='127.0.0.1:%d' % port, body=None, headers=None):
                c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
                c.request(method, path, body=body, headers={'Host': host, **(headers or {})})
                r = c.getresponse()
                out = (r.status, r.read().decode())
                c.close()
                return out

            status, page = request('GET', '/')
            self.assertEqual(status, 200)
            self.assertIn('<title>logstar console</title>', page)
            self.assertEqual(request('GET', '/console.js')[0], 200)
            # The sessions come from the daemon (ListSessions as JSON).
            run('replay', self.lsr, '--server', self.addr, '--speed', 'max', '--session',
                'console-probe')
            status, body = request('GET', '/api/sessions')
            self.assertEqual(status, 200)
            ids = [s['session_id'] for s in json.loads(body)['sessions']]
            self.assertIn('console-probe', ids)
            # Another site's name (DNS rebinding) and cross-site posts are refused.
            self.assertEqual(request('GET', '/', host='evil.example:%d' % port)[0], 403)
            form = {'Content-Type': 'application/x-www-form-urlencoded'}
            self.assertEqual(request('POST', '/api/choose', body='session=console-probe&window=0'
                                     '&front_index=0', headers={'Origin': 'http://evil.example',
                                                                **form})[0], 403)
            # A choice without its fields is a 400 naming them; an unknown session a 404.
            status, body = request('POST', '/api/choose', body='session=console-probe',
                                   headers=form)
            self.assertEqual(status, 400)
            self.assertIn('front_index', body)
            self.assertEqual(request('GET', '/api/session?id=nobody')[0], 404)
        finally:
            console.terminate()
            self.assertEqual(console.wait(timeout=30), 0)

    def test_status(self):
        code, out, err = run('status', '--server', self.addr)
        self.assertEqual(code, 0, err)
        self.assertIn('SERVING', out)
        # A session the test makes, with a known number of frames (the
        # recording's 4), is listed with its counters and in the total.
        code, _, err = run('replay', self.lsr, '--server', self.addr, '--speed', 'max',
                           '--session', 'status-probe')
        self.assertEqual(code, 0, err)
        code, out, err = run('status', '--server', self.addr)
        self.assertEqual(code, 0, err)
        rows = {l.split()[0]: l.split() for l in out.splitlines() if l.startswith('  ')}
        self.assertIn('status-probe', rows, out)
        # session, streams, idle, 's', received, analysed, dropped, failed, 3 cache, 3 amorphous
        probe = rows['status-probe']
        self.assertEqual(len(probe), 14, out)
        self.assertEqual(probe[1], '0')  # the replay has ended: no stream attached
        self.assertGreaterEqual(float(probe[2]), 0.0)
        self.assertEqual(probe[4:8], ['4', '4', '0', '0'])
        # Windows of 64 px over 128^2 frames: 4 per frame, 16 in all.
        self.assertEqual(sum(int(v) for v in probe[8:11]), 16)
        self.assertEqual(probe[11:14], ['0', '0', '0'])  # the recording has no amorphous stage
        # The total has no idle column: total, streams, received, ...
        self.assertGreaterEqual(int(rows['total'][2]), 4)
        code, _, err = run('status', '--server', self.addr, '--session', 'no-such-session')
        self.assertEqual(code, 1)
        self.assertIn('no-such-session', err)

    def test_analyze_through_the_daemon_gives_the_same_atoms(self):
        frame = self.path('frame')
        code, _, err = run('synth', '--out', frame, '--size', '128', '--noise', '0.1', '--seed',
                           '9')
        self.assertEqual(code, 0, err)
        common = [os.path.join(frame, 'image.npy'), '--prior', os.path.join(frame, 'prior.json'),
                  '--window', '64', '--evals', '8', '--seed', '2']
        code, _, err = run('analyze', *common, '--out', self.path('local.json'))
        self.assertEqual(code, 0, err)
        code, _, err = run('analyze', *common, '--out', self.path('remote.json'), '--server',
                           self.addr)
        self.assertEqual(code, 0, err)
        local = load_json(self.path('local.json'))['atoms']
        remote = load_json(self.path('remote.json'))['atoms']
        self.assertGreater(len(local), 20)
        self.assertEqual(len(local), len(remote))
        for a, b in zip(local, remote):
            self.assertLess(abs(a['x'] - b['x']), 1e-6)
            self.assertLess(abs(a['y'] - b['y']), 1e-6)

    def test_analyze_through_the_daemon_derives_the_same_auto_prior(self):
        frame = self.path('auto-frame')
        code, _, err = run('synth', '--out', frame, '--size', '128', '--noise', '0.1', '--seed',
                           '19')
        self.assertEqual(code, 0, err)
        common = [os.path.join(frame, 'image.npy'), '--prior', 'auto', '--pixel-size', '0.125',
                  '--window', '64', '--evals', '8', '--seed', '2']
        code, _, err = run('analyze', *common, '--out', self.path('auto-local.json'))
        self.assertEqual(code, 0, err)
        code, _, err = run('analyze', *common, '--out', self.path('auto-remote.json'), '--server',
                           self.addr)
        self.assertEqual(code, 0, err)
        local = load_json(self.path('auto-local.json'))
        remote = load_json(self.path('auto-remote.json'))
        self.assertTrue(remote['prior']['derived'])
        for key in ('nearest_neighbor_angstrom', 'column_density_per_nm2', 'pixel_size_angstrom'):
            self.assertAlmostEqual(local['prior'][key], remote['prior'][key], places=9)
        self.assertEqual(len(local['atoms']), len(remote['atoms']))
        # The daemon's results carry the checks too: a pixel size 4x too large warns.
        prior = load_json(os.path.join(frame, 'prior.json'))
        prior['pixel_size_angstrom'] *= 4
        write_file(self.path('p4.json'), json.dumps(prior))
        code, _, err = run('analyze', os.path.join(frame, 'image.npy'), '--prior',
                           self.path('p4.json'), '--window', '64', '--evals', '8', '--out',
                           self.path('p4-remote.json'), '--server', self.addr, '--strict')
        self.assertEqual(code, 3, err)
        warnings = load_json(self.path('p4-remote.json'))['warnings']
        self.assertEqual([w['field'] for w in warnings], ['pixel_size_angstrom'])
        self.assertLess(abs(warnings[0]['measured'] / 0.125 - 1), 0.05)

    def test_record_from_files(self):
        frames = self.path('frames')
        for i in range(2):
            run('synth', '--out', os.path.join(frames, 'f%d' % i), '--size', '64', '--seed', str(i))
        code, out, err = run('record', '--from', os.path.join(frames, 'f*/image.npy'), '--prior',
                             os.path.join(frames, 'f0', 'prior.json'), '--fps', '4', '--out',
                             self.path('rec.lsr'))
        self.assertEqual(code, 0, err)
        records = read_lsr(self.path('rec.lsr'))
        self.assertEqual(len(records), 3)
        # Frame 2 (field 2: Frame; its pixels, field 5) holds image.npy's float32 bytes.
        fields = dict(proto_fields(records[2][1]))
        self.assertEqual(fields[1], 250_000_000)  # offset_ns at 4 fps
        pixels = dict(proto_fields(dict(proto_fields(fields[2]))[5]))
        expected = np.load(os.path.join(frames, 'f1', 'image.npy')).astype('<f4').tobytes()
        self.assertEqual(pixels[4], expected)


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--logstar', required=True)
    args, rest = ap.parse_known_args()
    LOGSTAR = os.path.abspath(args.logstar)
    unittest.main(argv=[sys.argv[0], '-v'] + rest)
