#!/usr/bin/env python3
"""The CLI's usability (issue 17, items 5-7), against independent references:
EMD/TIFF/.npy frames and their calibrations written here with h5py, tifffile
and numpy; pictures read back and checked for what they must show; the prior
table's figures against closed forms of the crystallography.

Run: cli_usability_test.py --logstar build/clients/logstar
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time
import unittest

import numpy as np

# The CLI runner and helpers of cli_test.py (its LOGSTAR set in __main__ below).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_test  # noqa: E402
from cli_test import free_port, load_json, run  # noqa: E402


def read_png_rgb(path):
    from PIL import Image
    return np.asarray(Image.open(path).convert('RGB'))


def bgr(b, g, r):
    """A colour as OpenCV's BGR scalar names it, as the RGB the PNG holds."""
    return np.array([r, g, b], np.uint8)


def mask_of(img, colour):
    return np.all(img == colour, axis=-1)


def blobs_of(img, colour):
    """Connected components (8-connected) of exactly `colour`: their centroids (x, y)."""
    from scipy import ndimage
    labels, n = ndimage.label(mask_of(img, colour), structure=np.ones((3, 3)))
    return [tuple(reversed(c)) for c in ndimage.center_of_mass(labels > 0, labels, range(1, n + 1))]


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.frame_dir = os.path.join(cls.tmp.name, 'synth')
        code, _, err = run('synth', '--out', cls.frame_dir, '--size', '128', '--seed', '3')
        assert code == 0, err
        cls.image = np.load(os.path.join(cls.frame_dir, 'image.npy'))
        cls.prior = os.path.join(cls.frame_dir, 'prior.json')
        cls.pixel = load_json(cls.prior)['pixel_size_angstrom']  # 0.125

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)


class FrameFileTest(Base):
    """.emd (EMD 0.2 and Velox), calibrated TIFF and the wider .npy dtypes."""

    def write_emd(self, path, pixels, step_nm, units='[n_m]'):
        import h5py
        with h5py.File(path, 'w') as f:
            f.attrs['version_major'] = 0
            f.attrs['version_minor'] = 2
            g = f.create_group('data/frame')
            g.attrs['emd_group_type'] = 1
            g['data'] = pixels
            for name, n, label in (('dim1', pixels.shape[0], 'y'), ('dim2', pixels.shape[1], 'x')):
                d = g.create_dataset(name, data=np.arange(n) * step_nm)
                d.attrs['name'] = label
                d.attrs['units'] = units

    def write_velox(self, path, pixels, pixel_m):
        import h5py
        meta = json.dumps({'BinaryResult': {'PixelSize': {'width': repr(pixel_m),
                                                          'height': repr(pixel_m)},
                                            'PixelUnitX': 'm', 'PixelUnitY': 'm'}}).encode()
        with h5py.File(path, 'w') as f:
            g = f.create_group('Data/Image/0123abcd')
            g['Data'] = pixels[:, :, None]  # rows, columns, frames
            m = np.zeros((len(meta) + 16, 1), np.uint8)
            m[:len(meta), 0] = np.frombuffer(meta, np.uint8)
            g['Metadata'] = m

    def atoms(self, image, prior='auto', *extra):
        out = self.path('r-%s.json' % os.path.basename(image))
        code, _, err = run('analyze', image, '--prior', prior, '--out', out, '--window', '0',
                           '--evals', '8', *extra)
        self.assertEqual(code, 0, err)
        return load_json(out), err

    def test_emd_frames_give_the_npy_atoms_and_their_pixel_size(self):
        lo, hi = self.image.min(), self.image.max()
        u16 = np.round((self.image - lo) / (hi - lo) * 60000).astype(np.uint16)
        np.save(self.path('ref.npy'), u16)
        self.write_emd(self.path('berkeley.emd'), u16, 0.0125)  # nm per pixel
        self.write_velox(self.path('velox.emd'), u16, 1.25e-11)  # m per pixel
        reference, _ = self.atoms(self.path('ref.npy'), self.prior)
        for name in ('berkeley.emd', 'velox.emd'):
            given, _ = self.atoms(self.path(name), self.prior)
            self.assertEqual(given['image']['dtype'], 'uint16')
            self.assertEqual([a['x'] for a in given['atoms']], [a['x'] for a in reference['atoms']])
            derived, err = self.atoms(self.path(name))
            self.assertAlmostEqual(derived['prior']['pixel_size_angstrom'], 0.125, places=9)
            self.assertFalse(derived['prior']['pixel_units'])
            self.assertIn('pixel size 0.125 A from its', err)
            self.assertIn('the prior gives none', err)

    def test_emd_in_angstrom_and_without_image(self):
        import h5py
        self.write_emd(self.path('a.emd'), self.image.astype(np.float32), 0.2, units='A')
        res, _ = self.atoms(self.path('a.emd'))
        self.assertAlmostEqual(res['prior']['pixel_size_angstrom'], 0.2, places=9)
        with h5py.File(self.path('empty.emd'), 'w') as f:
            f.create_group('data/nothing')
        code, _, err = run('analyze', self.path('empty.emd'), '--prior', 'auto', '--out',
                           self.path('x.json'))
        self.assertEqual(code, 1)
        self.assertIn('empty.emd', err)
        self.assertIn('without an image', err)

    def test_tiff_calibration(self):
        import tifffile
        f32 = self.image.astype(np.float32)
        tifffile.imwrite(self.path('imagej.tif'), f32, imagej=True,
                         resolution=(1 / 0.0125, 1 / 0.0125), metadata={'unit': 'nm'})
        tifffile.imwrite(self.path('cm.tif'), f32, resolution=(1 / 1.25e-9, 1 / 1.25e-9),
                         resolutionunit='CENTIMETER')
        tifffile.imwrite(self.path('dpi.tif'), f32, resolution=(72, 72), resolutionunit='INCH')
        for name in ('imagej.tif', 'cm.tif'):
            res, err = self.atoms(self.path(name))
            self.assertAlmostEqual(res['prior']['pixel_size_angstrom'], 0.125, places=6, msg=name)
            self.assertIn(name + ': pixel size 0.125 A from its TIFF', err)
        # A 72 dpi default is no microscope calibration: pixel units, nothing said.
        res, err = self.atoms(self.path('dpi.tif'))
        self.assertTrue(res['prior']['pixel_units'])
        self.assertNotIn('pixel size', err)
        # --pixel-size wins over the file, silently.
        res, err = self.atoms(self.path('imagej.tif'), 'auto', '--pixel-size', '0.1')
        self.assertEqual(res['prior']['pixel_size_angstrom'], 0.1)
        self.assertNotIn('from its', err)

    def test_int32_uint32_float16_npy_give_the_float64_atoms(self):
        lo, hi = self.image.min(), self.image.max()
        values = np.round((self.image - lo) / (hi - lo) * 30000)
        np.save(self.path('f8.npy'), values.astype(np.float64))
        np.save(self.path('i4.npy'), values.astype(np.int32))
        np.save(self.path('u4.npy'), values.astype('>u4'))  # big-endian too
        reference, _ = self.atoms(self.path('f8.npy'), self.prior)
        for name in ('i4.npy', 'u4.npy'):
            got, _ = self.atoms(self.path(name), self.prior)
            self.assertEqual(got['atoms'], reference['atoms'], name)
        # float16 holds these small integers exactly.
        small = np.round((self.image - lo) / (hi - lo) * 1000)
        np.save(self.path('f2.npy'), small.astype(np.float16))
        np.save(self.path('f4.npy'), small.astype(np.float32))
        self.assertEqual(self.atoms(self.path('f2.npy'), self.prior)[0]['atoms'],
                         self.atoms(self.path('f4.npy'), self.prior)[0]['atoms'])
        np.save(self.path('i8.npy'), values.astype(np.int64))
        code, _, err = run('analyze', self.path('i8.npy'), '--prior', self.prior, '--out',
                           self.path('x.json'))
        self.assertEqual(code, 1)
        self.assertIn('<i8', err)

    def test_frames_directory_takes_emd(self):
        d = self.path('seq')
        os.makedirs(d, exist_ok=True)
        self.write_emd(os.path.join(d, 'f1.emd'), self.image.astype(np.float32), 0.0125)
        np.save(os.path.join(d, 'f2.npy'), self.image.astype(np.float32))
        code, _, err = run('analyze', '--frames', d, '--prior', 'auto', '--out', self.path('s.json'),
                           '--window', '64', '--evals', '8')
        self.assertEqual(code, 0, err)
        res = load_json(self.path('s.json'))
        self.assertEqual(len(res['frames']), 2)
        self.assertAlmostEqual(res['prior']['pixel_size_angstrom'], 0.125, places=9)


class UsageTest(Base):
    def test_a_usage_error_is_one_line_pointing_at_help(self):
        for args, command in ((['analyze', 'x.npy', '--prior', 'p.json'], 'analyze'),
                              (['analyze', 'x.npy', '--frobnicate', '1'], 'analyze'),
                              (['replay'], 'replay'), (['status'], 'status'),
                              (['prior'], 'prior'), (['report', 'x.jsonl'], 'report')):
            code, out, err = run(*args)
            self.assertEqual(code, 2, args)
            self.assertEqual(len(err.splitlines()), 1, err)
            self.assertTrue(err.startswith('logstar: error: '), err)
            self.assertIn("(see 'logstar %s --help')" % command, err)
            self.assertNotIn('usage:', err)
        code, _, err = run('frobnicate')
        self.assertEqual(code, 2)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("see 'logstar --help'", err)

    def test_the_synopsis_shows_what_goes_with_fixed(self):
        code, out, _ = run('analyze', '--help')
        self.assertEqual(code, 0)
        fixed_form = [l for l in out.splitlines()
                      if 'logstar analyze' in l and '--fixed a,b,n,t,o' in l]
        self.assertEqual(len(fixed_form), 1, out)
        # The --fixed form takes none of the LoG* options, and the help says so.
        start = out.splitlines().index(fixed_form[0])
        synopsis = '\n'.join(out.splitlines()[start:start + 3])
        for flag in ('--no-refine', '--window', '--evals', '--server'):
            self.assertNotIn(flag, synopsis)
        self.assertIn('LoG* options (none of them with --fixed)', out)
        self.assertIn('--no-refine', out.split('LoG* options (none of them with --fixed)')[1][:200])
        code, _, err = run('analyze', os.path.join(self.frame_dir, 'image.npy'), '--prior',
                           self.prior, '--out', self.path('x.json'), '--fixed',
                           '1,3,5,0.05,0.5', '--no-refine')
        self.assertEqual(code, 2)
        self.assertIn('--no-refine', err)
        self.assertIn('--fixed', err)

    def test_a_refused_connection_fails_at_once_with_the_reason(self):
        addr = '127.0.0.1:%d' % free_port()
        for args in (['status', '--server', addr],
                     ['analyze', os.path.join(self.frame_dir, 'image.npy'), '--prior', self.prior,
                      '--out', self.path('x.json'), '--server', addr]):
            t0 = time.monotonic()
            code, _, err = run(*args)
            elapsed = time.monotonic() - t0
            self.assertEqual(code, 1, err)
            self.assertLess(elapsed, 2.0, err)
            self.assertIn('cannot reach logstard at ' + addr + ': connection refused', err)
        code, _, err = run('status', '--server', 'unix:' + self.path('no.sock'))
        self.assertEqual(code, 1)
        self.assertIn('no such socket', err)
        # --connect-timeout asks to wait for a daemon that is starting: it is waited.
        t0 = time.monotonic()
        code, _, err = run('status', '--server', addr, '--connect-timeout', '1')
        self.assertEqual(code, 1)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)


class OverlayTest(Base):
    """The overlay read back: frame on top, footer below with frame number,
    enlargement, scale bar and legend; the windows outlined by cache state."""

    FIRST_SUBLATTICE = bgr(255, 255, 0)  # cyan: synth's prior has sublattices
    TUNED = bgr(40, 40, 230)
    HIT = bgr(200, 170, 120)
    WHITE = np.array([255, 255, 255], np.uint8)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # 64 px frames: drawn x8 (512 px wide), 0.125 A per pixel.
        cls.seq = os.path.join(cls.tmp.name, 'seq')
        os.makedirs(cls.seq)
        small = cls.image[:64, :64].astype(np.float32)
        for i in (1, 2):
            np.save(os.path.join(cls.seq, 'f%d.npy' % i), small)
        cls.overlays = os.path.join(cls.tmp.name, 'ov')
        code, _, err = run('analyze', '--frames', cls.seq, '--prior', cls.prior, '--out',
                           os.path.join(cls.tmp.name, 's.json'), '--window', '32', '--evals', '8',
                           '--overlay', cls.overlays)
        assert code == 0, err
        cls.result = load_json(os.path.join(cls.tmp.name, 's.json'))
        cls.first = read_png_rgb(os.path.join(cls.overlays, 'f1.png'))
        cls.second = read_png_rgb(os.path.join(cls.overlays, 'f2.png'))

    def test_the_frame_keeps_its_place_and_the_footer_is_below(self):
        zoom = 8
        self.assertEqual(self.first.shape[1], 64 * zoom)
        footer = self.first.shape[0] - 64 * zoom
        self.assertGreater(footer, 0)
        self.assertEqual(footer % 20, 0)
        # The frame's grey pixels at the top-left (no annotation covers it):
        # pixel (0, 0) of an x8 picture is grey (r = g = b) unless a mark is there.
        top = self.first[:64 * zoom]
        grey = (top[..., 0] == top[..., 1]) & (top[..., 1] == top[..., 2])
        self.assertGreater(grey.mean(), 0.5)

    def test_scale_bar_is_the_longest_round_length_within_a_fifth(self):
        footer = self.first[64 * 8:]
        line = footer[10]  # the middle of the footer's first line
        white = np.flatnonzero(np.all(line == self.WHITE, axis=-1))
        # The bar's run ends 6 px from the right edge.
        run_end = white[-1]
        self.assertEqual(run_end, self.first.shape[1] - 6 - 1)
        start = run_end
        while start - 1 in set(white):
            start -= 1
        bar_px = run_end - start + 1
        bar_angstrom = bar_px / 8 * self.pixel
        # Independently: the longest 1/2/5 x 10^k angstrom in a fifth of 512 px.
        limit = 512 / 5 / 8 * self.pixel
        candidates = [m * 10.0 ** k for k in range(-3, 5) for m in (1, 2, 5) if m * 10.0 ** k <= limit]
        self.assertAlmostEqual(bar_angstrom, max(candidates), delta=1 / 8 * self.pixel)
        # Thickness 4 px.
        column = footer[:, start + bar_px // 2]
        self.assertEqual(int(np.all(column == self.WHITE, axis=-1).sum()), 4)

    def test_legend_swatches_in_the_mark_colours(self):
        for picture, window_colour, other in ((self.first, self.TUNED, self.HIT),
                                              (self.second, self.HIT, self.TUNED)):
            footer = picture[64 * 8 + 20:]
            # A 12 x 10 swatch.
            self.assertGreaterEqual(mask_of(footer, self.FIRST_SUBLATTICE).sum(), 100)
            self.assertGreaterEqual(mask_of(footer, window_colour).sum(), 100)
            self.assertEqual(mask_of(footer, other).sum(), 0)

    def test_windows_are_outlined_by_cache_state(self):
        states = [[w['cache'] for w in f['windows']] for f in self.result['frames']]
        self.assertEqual(states, [['miss'] * 4, ['hit'] * 4])
        for picture, colour in ((self.first, self.TUNED), (self.second, self.HIT)):
            # The tiles meet at column 32 (x 256 in the picture) and row 32.
            frame = picture[:512]
            self.assertGreater(mask_of(frame[:, 256:257], colour).mean(), 0.5)
            self.assertGreater(mask_of(frame[256:257, :], colour).mean(), 0.5)

    def test_frame_number_and_enlargement_are_written(self):
        # Same frame, same atoms: the pictures differ only in the footer's
        # first line (frame 1 / frame 2 at its left) and the window colours.
        a, b = self.first[512:532, :200], self.second[512:532, :200]
        self.assertFalse(np.array_equal(a, b))
        text = np.any(a > 128, axis=-1)
        # "frame 1   x8 (enlarged)": text spans well past the frame label.
        self.assertGreater(np.flatnonzero(text.any(axis=0)).max(), 100)

    def test_the_gmm_overlay_carries_the_footer(self):
        out = self.path('g.png')
        code, _, err = run('analyze', os.path.join(self.frame_dir, 'image.npy'), '--prior',
                           self.prior, '--out', self.path('g.json'), '--evals', '8', '--gmm',
                           '--overlay', out)
        self.assertEqual(code, 0, err)
        picture = read_png_rgb(out)
        self.assertEqual(picture.shape[1], 128 * 4)
        self.assertGreater(picture.shape[0], 128 * 4)


class ReportTest(Base):
    COUNT = bgr(200, 90, 30)
    QC = bgr(40, 40, 220)
    ER = bgr(40, 160, 40)
    AMORPHOUS = bgr(180, 60, 180)
    LATENCY = bgr(30, 140, 230)
    PANEL = 150

    def report(self, source, out):
        code, stdout, err = run('report', source, '--out', out)
        self.assertEqual(code, 0, err)
        return read_png_rgb(os.path.join(out, 'timeline.png')), stdout

    def panel(self, img, k):
        return img[k * self.PANEL:(k + 1) * self.PANEL]

    def test_hand_made_results_are_drawn_point_for_point(self):
        # Five results and one dropped frame; the counts rise, so the points climb.
        lines = []
        fronts = [[(0.30, 0.01), (0.20, 0.05), (0.10, 0.12), (0.05, 0.30)], [(0.0, 0.0)]]
        for seq in range(1, 7):
            if seq == 4:
                lines.append({'sequence': seq, 'status': 'dropped', 'reason': 'QUEUE_FULL'})
                continue
            windows = [{'index': i, 'cache': 'miss' if seq == 1 else 'hit',
                        'front': [{'qc': q, 'er': e} for q, e in fronts[i]], 'chosen': 2 if i == 0 else 0}
                       for i in range(2)]
            lines.append({'sequence': seq, 'status': 'result', 'latency_ms': 10.0 * seq,
                          'num_atoms': 100 + 10 * seq, 'rewards': {'qc': 0.01 * seq, 'er': 0.002},
                          'cache': {'hits': 0 if seq == 1 else 2, 'misses': 2 if seq == 1 else 0,
                                    'retunes': 0},
                          'amorphous': {'area_fraction': 0.05 * seq}, 'windows': windows})
        path = self.path('hand.jsonl')
        with open(path, 'w') as f:
            f.write('\n'.join(json.dumps(l) for l in lines) + '\n')
        img, out = self.report(path, self.path('hand'))
        self.assertIn('5 frames drawn (1 dropped or failed)', out)
        for k, colour in ((0, self.COUNT), (1, self.QC), (1, self.ER), (2, self.AMORPHOUS),
                          (3, self.LATENCY)):
            points = sorted(blobs_of(self.panel(img, k), colour))
            self.assertEqual(len(points), 5, (k, colour))
            xs = [p[0] for p in points]
            # Frames 1, 2, 3, 5, 6: spacing proportional to the sequence.
            steps = np.diff(xs) / (xs[-1] - xs[0]) * 5
            np.testing.assert_allclose(steps, [1, 1, 2, 1], atol=0.05)
            if colour is not self.ER:
                ys = [p[1] for p in points]
                self.assertTrue(all(a > b for a, b in zip(ys, ys[1:])), (k, ys))  # rising values
        # Cache: frame 1 all tuned (red), the others hits (steel blue).
        cache = self.panel(img, 4)
        self.assertEqual(len(blobs_of(cache, bgr(40, 40, 230))), 1)
        self.assertEqual(len(blobs_of(cache, bgr(200, 170, 120))), 4)
        # Window 0's front: four points, the chosen (third by QC from the
        # right, (0.10, 0.12)) ringed in red, the rest blue.
        front = read_png_rgb(os.path.join(self.path('hand'), 'front_window_0.png'))
        blue = sorted(blobs_of(front, bgr(200, 90, 30)))
        red = blobs_of(front, bgr(40, 40, 220))
        self.assertEqual(len(blue), 3)
        # By QC: 0.05 < 0.10 (chosen) < 0.20 < 0.30; by ER (up): 0.30 > 0.12 > 0.05 > 0.01.
        xs, ys = [b[0] for b in blue], [b[1] for b in blue]
        self.assertTrue(ys[0] < ys[1] < ys[2], ys)  # ER falls as QC grows
        # The chosen point's red disk (and ring, same centre) sits between them.
        self.assertTrue(any(xs[0] < x < xs[1] and ys[0] < y < ys[1] for x, y in red), (red, blue))
        self.assertTrue(os.path.exists(os.path.join(self.path('hand'), 'front_window_1.png')))

    def test_an_analyzed_sequence_is_drawn_one_point_per_frame(self):
        d = self.path('frames3')
        os.makedirs(d, exist_ok=True)
        for i in range(3):
            np.save(os.path.join(d, 'f%d.npy' % i), self.image.astype(np.float32))
        result = self.path('seq.json')
        code, _, err = run('analyze', '--frames', d, '--prior', self.prior, '--out', result,
                           '--window', '64', '--evals', '8')
        self.assertEqual(code, 0, err)
        img, out = self.report(result, self.path('seq-report'))
        frames = load_json(result)['frames']
        self.assertEqual(len(blobs_of(self.panel(img, 0), self.COUNT)), len(frames))
        self.assertEqual(len(blobs_of(self.panel(img, 3), self.LATENCY)), len(frames))
        # No amorphous stage: that panel has no point.
        self.assertEqual(len(blobs_of(self.panel(img, 2), self.AMORPHOUS)), 0)
        fronts = sorted(f for f in os.listdir(self.path('seq-report')) if f.startswith('front_'))
        self.assertEqual(fronts, sorted('front_window_%d.png' % w['index']
                                        for w in frames[-1]['windows']))
        for w in frames[-1]['windows']:
            front = read_png_rgb(os.path.join(self.path('seq-report'),
                                              'front_window_%d.png' % w['index']))
            self.assertGreater(mask_of(front, bgr(40, 40, 220)).sum(), 20)  # the chosen point

    def test_bad_input(self):
        with open(self.path('bad.jsonl'), 'w') as f:
            f.write('{"sequence": 1, "status": "result"}\nnot json\n')
        code, _, err = run('report', self.path('bad.jsonl'), '--out', self.path('bad'))
        self.assertEqual(code, 1)
        self.assertIn('line 2', err)


# Closed forms of the projections (angstrom): nearest neighbour, columns per nm^2.
SQRT2, SQRT3 = math.sqrt(2), math.sqrt(3)


class PriorTableTest(Base):
    def write(self, name, *extra):
        out = self.path(name + '.json')
        code, stdout, err = run('prior', '--projection', name, '--pixel-size', '0.1', '--out', out,
                                *extra)
        self.assertEqual(code, 0, err)
        return load_json(out), json.loads(stdout)

    def check(self, name, a_bulk, nn, density, lattice_ab=None):
        prior, shown = self.write(name)
        self.assertAlmostEqual(prior['nearest_neighbor_angstrom'], nn, places=9, msg=name)
        lat = prior['lattice']
        got_density = lat['columns_per_cell'] / (
            lat['a_angstrom'] * lat['b_angstrom'] * math.sin(math.radians(lat['gamma_deg']))) * 100
        self.assertAlmostEqual(got_density, density, places=6, msg=name)
        if lattice_ab:
            self.assertAlmostEqual(lat['a_angstrom'], lattice_ab[0], places=9)
            self.assertAlmostEqual(lat['b_angstrom'], lattice_ab[1], places=9)
        self.assertEqual(prior['pixel_size_angstrom'], 0.1)
        # What `logstar prior` showed is what the file holds, read back by the one parser.
        self.assertEqual(shown['prior']['nearest_neighbor_angstrom'], prior['nearest_neighbor_angstrom'])
        self.assertEqual(shown['projection']['name'].lower(), name.lower())
        self.assertTrue(shown['projection']['source'])
        code, out, err = run('prior', self.path(name + '.json'))
        self.assertEqual(code, 0, err)
        self.assertAlmostEqual(json.loads(out)['prior']['nearest_neighbor_px'], nn / 0.1, places=6)
        return prior

    def test_fcc(self):
        for element, a in (('Au', 4.08), ('Cu', 3.61), ('Pt', 3.92)):
            # [100]: a square of columns a/2 apart.
            self.check(element + '-100', a, a / 2, 1 / (a / 2) ** 2 * 100)
            # [110]: columns a*sqrt(2)/2 apart in rows a/2 apart, rows shifted
            # by half: nearest sqrt((a sqrt2/4)^2 + (a/2)^2).
            p = self.check(element + '-110', a, math.hypot(a * SQRT2 / 4, a / 2),
                           2 / (a * SQRT2 / 2 * a) * 100, (a * SQRT2 / 2, a))
            self.assertAlmostEqual(p['lattice']['b_angstrom'] / 2, a / 2)  # row spacing
            self.assertNotIn('sublattices', p)

    def test_graphene_bonds_are_1_42(self):
        p = self.check('graphene', None, 1.42, 2 / (3 * SQRT3 / 2 * 1.42 ** 2) * 100)
        self.assertAlmostEqual(p['lattice']['gamma_deg'], 120)

    def test_srtio3(self):
        a = 3.905
        z17 = lambda *zs: sum(z ** 1.7 for z in zs)
        p = self.check('SrTiO3-100', a, a * SQRT2 / 2, 2 / a ** 2 * 100, (a, a))
        self.assertEqual([s['name'] for s in p['sublattices']], ['Sr', 'TiO'])
        self.assertAlmostEqual(p['sublattices'][1]['relative_brightness'], z17(22, 8) / z17(38))
        # [110]: Sr-O and Ti columns alternate a/2 apart along [001].
        p = self.check('SrTiO3-110', a, a / 2, 2 / (a * SQRT2 / 2 * a) * 100, (a * SQRT2 / 2, a))
        self.assertEqual([s['name'] for s in p['sublattices']], ['SrO', 'Ti'])
        self.assertAlmostEqual(p['sublattices'][1]['relative_brightness'], z17(22) / z17(38, 8))
        for s in p['sublattices']:
            self.assertAlmostEqual(s['column_density_per_nm2'], 1 / (a * SQRT2 / 2 * a) * 100)

    def test_ybco(self):
        b, c, z_cu2 = 3.89, 11.68, 0.355
        # Y (b/2, c/2) to Cu2 (0, z c): the closest pair of columns.
        p = self.check('YBCO-100', None, math.hypot(b / 2, (0.5 - z_cu2) * c), 6 / (b * c) * 100,
                       (b, c))
        self.assertEqual([s['name'] for s in p['sublattices']], ['Ba', 'Y', 'Cu'])
        densities = [s['column_density_per_nm2'] * b * c / 100 for s in p['sublattices']]
        np.testing.assert_allclose(densities, [2, 1, 3])

    def test_list_names_every_projection_with_its_source(self):
        code, out, err = run('prior', '--list')
        self.assertEqual(code, 0, err)
        for name in ('SrTiO3-100', 'SrTiO3-110', 'YBCO-100', 'graphene', 'Au-100', 'Au-110',
                     'Cu-100', 'Cu-110', 'Pt-100', 'Pt-110'):
            block = out.split('\n' + name + '\n')[1].split('\n\n')[0]
            self.assertIn('source: ', block, name)

    def test_pixel_size_from_a_calibrated_frame_and_the_check_against_it(self):
        import tifffile
        tif = self.path('cal.tif')
        tifffile.imwrite(tif, self.image.astype(np.float32), imagej=True,
                         resolution=(1 / 0.0125, 1 / 0.0125), metadata={'unit': 'nm'})
        out = self.path('from-frame.json')
        code, stdout, err = run('prior', '--projection', 'Au-100', '--frame', tif, '--out', out)
        self.assertIn(code, (0,), err)
        self.assertEqual(load_json(out)['pixel_size_angstrom'], 0.125)
        self.assertIn('pixel size 0.125 A from its TIFF ImageJ calibration', err)
        shown = json.loads(stdout)
        self.assertIn('warnings', shown)  # checked against the frame's lattice
        # A frame without calibration cannot give it.
        np.save(self.path('raw.npy'), self.image.astype(np.float32))
        code, _, err = run('prior', '--projection', 'Au-100', '--frame', self.path('raw.npy'))
        self.assertEqual(code, 1)
        self.assertIn('--pixel-size', err)

    def test_usage(self):
        code, _, err = run('prior', '--projection', 'Fe-100', '--pixel-size', '0.1')
        self.assertEqual(code, 2)
        self.assertIn('SrTiO3-110', err)  # the names it knows
        code, _, err = run('prior', '--projection', 'Au-100')
        self.assertEqual(code, 2)
        self.assertIn('--pixel-size', err)
        code, _, err = run('prior', self.prior, '--out', self.path('x.json'))
        self.assertEqual(code, 2)


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--logstar', required=True)
    args, rest = ap.parse_known_args()
    cli_test.LOGSTAR = os.path.abspath(args.logstar)
    unittest.main(argv=[sys.argv[0], '-v'] + rest)
