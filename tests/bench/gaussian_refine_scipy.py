#!/usr/bin/python3
"""The scipy baseline of the Gaussian refinement benchmark (issue 19).

Fits every column of frames written by `gaussian_refine_bench --out=DIR` the
way Atomap does: one column at a time, scipy.optimize.least_squares on a 2-D
Gaussian (x0, y0, sigma_x, sigma_y, rotation, amplitude, background) over
the pixels within --window-sigmas (default 3, logstar's) sigma of the
detection, starting from the detection
(the same detections logstar refined: detections.csv). No neighbour
handling, as in Atomap's per-column fit.

Prints, per frame, for scipy and for logstar (gaussian.csv) on the same
columns: the spread (median |error| / Cramér–Rao bound / 0.6745 per axis,
bounds.csv from the benchmark), the share within 2 reported standard
deviations, and the time per column; and the speed ratio, by wall time
and by CPU time (every thread's; steadier on a shared machine; × logstar's
threads it is the wall-time ratio an idle machine would show).

    gaussian_refine_scipy.py DIR [DIR ...] [--max-columns N] [--window-sigmas S]
                             [--json FILE]
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np
from scipy.optimize import least_squares

WINDOW_SIGMAS = 3.0  # --window-sigmas


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def model(p, dx, dy):
    x0, y0, sx, sy, th, amp, bg = p
    c, s = math.cos(th), math.sin(th)
    u = c * (dx - x0) + s * (dy - y0)
    v = -s * (dx - x0) + c * (dy - y0)
    return bg + amp * np.exp(-0.5 * (u * u / (sx * sx) + v * v / (sy * sy)))


def fit_column(image, x, y, sigma):
    r = WINDOW_SIGMAS * sigma
    ix, iy, ir = int(round(x)), int(round(y)), int(math.ceil(r))
    x0, x1 = max(ix - ir, 0), min(ix + ir, image.shape[1] - 1)
    y0, y1 = max(iy - ir, 0), min(iy + ir, image.shape[0] - 1)
    yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    inside = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    dx, dy = (xx[inside] - x).astype(float), (yy[inside] - y).astype(float)
    v = image[y0:y1 + 1, x0:x1 + 1][inside].astype(float)
    if v.size < 16:
        return None
    bg = float(np.quantile(v, 0.2))
    centre = np.abs(dx) <= 1.5
    centre &= np.abs(dy) <= 1.5
    amp = max(float(v[centre].mean()) - bg, 1e-6)
    p0 = [0.0, 0.0, sigma, sigma, 0.0, amp, bg]
    res = least_squares(lambda p: model(p, dx, dy) - v, p0)
    if not res.success:
        return None
    dof = max(v.size - 7, 1)
    s2 = float(res.fun @ res.fun) / dof
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac) * s2
    except np.linalg.LinAlgError:
        return None
    return (x + res.x[0], y + res.x[1], math.sqrt(max(cov[0, 0], 0)), math.sqrt(max(cov[1, 1], 0)))


def spread(errors, bounds):
    return float(np.median(np.abs(errors) / bounds) / 0.6745)


def run_frame(d, max_columns):
    image = np.load(os.path.join(d, 'image.npy'))
    atoms = read_csv(os.path.join(d, 'atoms.csv'))
    dets = read_csv(os.path.join(d, 'detections.csv'))
    bounds = read_csv(os.path.join(d, 'bounds.csv'))
    ours = read_csv(os.path.join(d, 'gaussian.csv'))
    timing = json.load(open(os.path.join(d, 'timing.json')))
    h, w = image.shape
    chosen = []
    for k, a in enumerate(atoms):
        x, y, s = float(a['x']), float(a['y']), float(a['sigma_px'])
        if 3 * s <= x <= w - 1 - 3 * s and 3 * s <= y <= h - 1 - 3 * s:
            chosen.append(k)
    chosen = chosen[:max_columns]
    rows = {'scipy': [], 'logstar': []}
    t0, cpu0 = time.perf_counter(), time.process_time()
    fits = []
    for k in chosen:
        det = dets[k]
        fits.append(fit_column(image, float(det['x']), float(det['y']), float(det['sigma'])))
    scipy_s, scipy_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    for k, f in zip(chosen, fits):
        a, b = atoms[k], bounds[k]
        tx, ty, bx, by = float(a['x']), float(a['y']), float(b['bx']), float(b['by'])
        if f is not None:
            rows['scipy'].append((f[0] - tx, f[1] - ty, bx, by, f[2], f[3]))
        o = ours[k]
        if o['status'] == 'ok':
            rows['logstar'].append((float(o['x']) - tx, float(o['y']) - ty, bx, by,
                                    float(o['x_err']), float(o['y_err'])))
    out = {'frame': os.path.basename(d.rstrip('/')), 'columns': len(chosen)}
    for name, r in rows.items():
        if not r:
            continue
        a = np.array(r)
        within = np.mean(np.concatenate([np.abs(a[:, 0]) <= 2 * a[:, 4],
                                         np.abs(a[:, 1]) <= 2 * a[:, 5]]))
        out[name] = {'spread_x': spread(a[:, 0], a[:, 2]), 'spread_y': spread(a[:, 1], a[:, 3]),
                     'within2': float(within), 'ok': len(r)}
    out['scipy']['ms_per_column'] = 1000 * scipy_s / max(len(chosen), 1)
    out['logstar_ms_per_column'] = timing['gaussian_ms'] / max(timing['columns'], 1)
    out['speed_ratio'] = out['scipy']['ms_per_column'] / out['logstar_ms_per_column']
    # CPU time per column, every thread's: on a shared machine far steadier
    # than the wall time. scipy runs on one thread, so on an idle machine the
    # wall-time ratio is about this one × logstar's threads.
    out['scipy']['cpu_ms_per_column'] = 1000 * scipy_cpu_s / max(len(chosen), 1)
    out['logstar_cpu_ms_per_column'] = timing['gaussian_cpu_ms'] / max(timing['columns'], 1)
    out['cpu_ratio'] = out['scipy']['cpu_ms_per_column'] / out['logstar_cpu_ms_per_column']
    out['logstar_threads'] = timing['threads']
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('dirs', nargs='+')
    ap.add_argument('--max-columns', type=int, default=300)
    ap.add_argument('--window-sigmas', type=float, default=WINDOW_SIGMAS)
    ap.add_argument('--json')
    args = ap.parse_args()
    globals()['WINDOW_SIGMAS'] = args.window_sigmas
    results = []
    print(f"{'frame':26s} {'cols':>5s} | {'scipy spread x/y':>17s} {'within2':>7s} {'ms/col':>7s} | "
          f"{'logstar spread x/y':>18s} {'within2':>7s} {'ms/col':>7s} | {'speed':>7s} | "
          f"{'CPU ms/col scipy':>16s} {'logstar':>8s} {'ratio':>7s} {'x threads':>9s}")
    for d in args.dirs:
        r = run_frame(d, args.max_columns)
        results.append(r)
        s, o = r['scipy'], r.get('logstar', {})
        print(f"{r['frame']:26s} {r['columns']:5d} | {s['spread_x']:8.3f}/{s['spread_y']:<8.3f} "
              f"{s['within2']:7.3f} {s['ms_per_column']:7.3f} | "
              f"{o.get('spread_x', float('nan')):8.3f}/{o.get('spread_y', float('nan')):<9.3f} "
              f"{o.get('within2', float('nan')):7.3f} {r['logstar_ms_per_column']:7.4f} | "
              f"{r['speed_ratio']:6.0f}x | {s['cpu_ms_per_column']:16.3f} "
              f"{r['logstar_cpu_ms_per_column']:8.4f} {r['cpu_ratio']:6.0f}x "
              f"{r['cpu_ratio'] * r['logstar_threads']:8.0f}x")
        sys.stdout.flush()
    if args.json:
        json.dump(results, open(args.json, 'w'), indent=1)


if __name__ == '__main__':
    main()
