#!/usr/bin/python3
"""Helpers of tests/bench/run_logstar_bench.sh (LoG* in logstar against the
Python reference workflow, ../shared/reference/reference_logstar.py).

  blob-log --dir D --chosen-from LOGSTAR.json [--calls N]
      Times scikit-image blob_log on D/image.npy, normalised exactly as the
      reference does (float64 min-max), once with the parameters logstar
      chose for that frame (the median over its windows of min_sigma,
      max_sigma, threshold and overlap; num_sigma 10) and once with the
      reference's default-ish sigma 2-6, threshold 0.1, for context. Best of
      N calls each (the normalisation is not timed, as on the C++ side).
      Prints one JSON object.

  report --runs DIR --out FILE [--check]
      Reads the JSON files run_logstar_bench.sh left in DIR, prints the
      markdown table and writes it as JSON to FILE. With --check exits 1
      when a target is not met.

Run with Debian's interpreter (python3-numpy, python3-skimage).
"""

import argparse
import glob
import json
import os
import statistics
import sys
import time

# What the reference README measured for the windowed 1024^2 run on this
# project's machine; used unless run_logstar_bench.sh --full measured it.
PUBLISHED_1024_WINDOWED_S = 215.5


def normalise(img):
    """Exactly reference_logstar.normalise: float64 min-max to [0, 1]."""
    import numpy as np
    img = np.asarray(img, np.float64)
    return (img - img.min()) / max(img.max() - img.min(), 1e-12)


def median_chosen(logstar_json):
    """Median over windows of the parameters logstar chose (num_sigma 10)."""
    chosen = [w['chosen'] for w in logstar_json['per_window']]
    p = {k: statistics.median(c[k] for c in chosen)
         for k in ('min_sigma', 'max_sigma', 'threshold', 'overlap')}
    # Medians of the two bounds are taken independently; blob_log needs an
    # ordered range.
    p['max_sigma'] = max(p['max_sigma'], p['min_sigma'])
    p['num_sigma'] = 10
    return p


def cmd_blob_log(a):
    import numpy as np
    from skimage.feature import blob_log

    img = normalise(np.load(os.path.join(a.dir, 'image.npy')))
    sets = {
        'chosen': median_chosen(json.load(open(a.chosen_from))),
        'default': dict(min_sigma=2.0, max_sigma=6.0, num_sigma=10, threshold=0.1, overlap=0.5),
    }
    out = dict(dir=a.dir, shape=list(img.shape), calls=a.calls)
    for name, p in sets.items():
        best, blobs = float('inf'), None
        for _ in range(a.calls):
            t0 = time.perf_counter()
            b = blob_log(img, **p)
            best = min(best, time.perf_counter() - t0)
            blobs = len(b)
        out[name] = dict(params=p, best_s=best, blobs=blobs)
    print(json.dumps(out))


# ----------------------------------------------------------------- report
def hypervolume(points, ref=(1.0, 1.0)):
    """Area dominated by (qc, er) points, both minimised, up to ref. A point
    with qc >= 1 or er >= 1 dominates nothing inside the box."""
    pts = sorted((q, e) for q, e in points if q < ref[0] and e < ref[1])
    hv, er_bound = 0.0, ref[1]
    for q, e in pts:                       # increasing qc: each new lower er adds a slab
        if e < er_bound:
            hv += (ref[0] - q) * (er_bound - e)
            er_bound = e
    return hv


def reference_hv(ref_json):
    return hypervolume((p['qc'], p['er']) for p in ref_json['pareto'])


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


def load_rounds(runs, stem):
    """The per-round files <stem>_r<k>.json, in round order."""
    paths = sorted(glob.glob(os.path.join(runs, stem + '_r*.json')),
                   key=lambda p: int(p.rsplit('_r', 1)[1][:-5]))
    return [json.load(open(p)) for p in paths]


def same_hv(runs_json, label):
    """logstar is deterministic for a seed; say so if rounds disagree."""
    hvs = {round(r['hypervolume_exact_mean'], 12) for r in runs_json}
    if len(hvs) > 1:
        print('warning: %s hypervolume differs between rounds: %s' % (label, sorted(hvs)),
              file=sys.stderr)
    return runs_json[0]


def fmt_s(s):
    return '%.1f ms' % (s * 1e3) if s < 1 else '%.2f s' % s


def cmd_report(a):
    runs = a.runs
    rows = []

    def row(what, ls, ref, ratio, target, met, counted=True, **extra):
        rows.append(dict(what=what, logstar=ls, reference=ref, ratio=ratio, target=target,
                         met=met, counted=counted, **extra))

    # --- 1. 256^2, 50 evaluations, the reference's ranges
    ls256 = load_rounds(runs, 'ls256')
    ls_def = load_rounds(runs, 'ls256_default')
    ls20 = load(os.path.join(runs, 'ls256_e20.json'))
    ref50 = load_rounds(runs, 'ref_gpbo50')
    have_ref = bool(ref50)
    t_ls = min(r['tune']['best_ms'] for r in ls256) / 1e3
    t_ls_def = min(r['tune']['best_ms'] for r in ls_def) / 1e3
    ls50 = same_hv(ls256, '256^2 50 evals')
    ls_def0 = same_hv(ls_def, '256^2 own ranges')
    if have_ref:
        t_ref_opt = min(r['timing']['optimizer']['total_s'] for r in ref50)
        t_ref_all = min(r['timing']['total_s'] for r in ref50)
        ratio = t_ref_opt / t_ls
        row('256² YBCO, 50 evals, reference ranges: tune time vs GP-BO optimiser time',
            fmt_s(t_ls), fmt_s(t_ref_opt), '%.0f×' % ratio, '≥ 200×', ratio >= 200,
            logstar_s=t_ls, reference_s=t_ref_opt)
        row('  same, vs the whole reference run (timing.total_s)',
            fmt_s(t_ls), fmt_s(t_ref_all), '%.0f×' % (t_ref_all / t_ls), '—', None, False,
            logstar_s=t_ls, reference_s=t_ref_all)
    else:
        row('256² YBCO, 50 evals, reference ranges: tune time', fmt_s(t_ls), 'n/a', 'n/a',
            '≥ 200×', None, logstar_s=t_ls)

    hv_refs = {}
    for evals, ls in ((20, ls20), (50, ls50)):
        for opt, stem in (('GP-BO', 'ref_gpbo%d' % evals), ('NSGA-II', 'ref_nsga2_%d' % evals)):
            ref = load(os.path.join(runs, stem + '.json'))
            if ref is None and evals == 50 and opt == 'GP-BO' and have_ref:
                ref = ref50[0]             # the timed GP-BO run carries its front
            ls_hv, ls_grid = ls['hypervolume_exact_mean'], ls['hypervolume_grid_mean']
            cell = '%.4f (grid %.4f)' % (ls_hv, ls_grid)
            what = '256² HV after %d evals, reference ranges, vs %s' % (evals, opt)
            if ref is None:
                row(what, cell, 'n/a', 'n/a', '≥ reference', None, logstar_hv=ls_hv)
                continue
            r_hv = reference_hv(ref)
            hv_refs[(evals, opt)] = r_hv
            row(what, cell, '%.4f (front of %d)' % (r_hv, len(ref['pareto'])),
                '%.3f' % (ls_hv / r_hv if r_hv > 0 else float('inf')), '≥ reference',
                ls_hv >= r_hv, logstar_hv=ls_hv, logstar_hv_grid=ls_grid, reference_hv=r_hv)

    # Extra rows: logstar's own prior-derived ranges (sigma 0.1-0.4 x nearest
    # neighbour), the search it runs in production. Shown, not counted.
    ls_hv = ls_def0['hypervolume_exact_mean']
    ls_cell = '%.4f (grid %.4f)' % (ls_hv, ls_def0['hypervolume_grid_mean'])
    if have_ref:
        row('extra: 256², 50 evals, logstar\'s prior ranges: tune time vs GP-BO optimiser',
            fmt_s(t_ls_def), fmt_s(t_ref_opt), '%.0f×' % (t_ref_opt / t_ls_def), '≥ 200×',
            t_ref_opt / t_ls_def >= 200, False, logstar_s=t_ls_def, reference_s=t_ref_opt)
        r_hv = hv_refs[(50, 'GP-BO')]
        row('extra: 256² HV after 50 evals, logstar\'s prior ranges, vs GP-BO', ls_cell,
            '%.4f' % r_hv, '%.3f' % (ls_hv / r_hv if r_hv > 0 else float('inf')),
            '≥ reference', ls_hv >= r_hv, False, logstar_hv=ls_hv, reference_hv=r_hv)
    else:
        row('extra: 256², 50 evals, logstar\'s prior ranges: tune time', fmt_s(t_ls_def),
            'n/a', 'n/a', '≥ 200×', None, False, logstar_s=t_ls_def)
        row('extra: 256² HV after 50 evals, logstar\'s prior ranges', ls_cell, 'n/a', 'n/a',
            '≥ reference', None, False, logstar_hv=ls_hv)

    # --- 2. 1024^2, 16 windows of 256, fully re-tuned
    ls1024 = load_rounds(runs, 'ls1024')
    t_tune = min(r['tune']['best_ms'] for r in ls1024) / 1e3
    ref1024 = load_rounds(runs, 'ref1024')
    if ref1024:
        t_ref = min(r['timing']['total_s'] for r in ref1024)
        t_ref_opt = min(r['timing']['optimizer']['total_s'] for r in ref1024)
        ref_cell = '%s (optimiser %s), measured' % (fmt_s(t_ref), fmt_s(t_ref_opt))
        measured = True
    else:
        t_ref = PUBLISHED_1024_WINDOWED_S
        ref_cell = '%s (published figure, not measured in this run)' % fmt_s(t_ref)
        measured = False
    n_win = ls1024[0]['windows']
    row('1024² YBCO, %d windows of 256 × 30 evals, logstar\'s prior ranges, fully re-tuned' % n_win, fmt_s(t_tune),
        ref_cell, '%.0f×' % (t_ref / t_tune), '≥ 200×', t_ref / t_tune >= 200,
        logstar_s=t_tune, reference_s=t_ref, reference_measured=measured)

    # --- 3. 1024^2, every window cached, vs one blob_log call
    blob = load_rounds(runs, 'blob')
    t_cached = min(r['cached']['best_ms'] for r in ls1024) / 1e3
    t_blob = min(b['chosen']['best_s'] for b in blob)
    t_blob_def = min(b['default']['best_s'] for b in blob)
    p = blob[0]['chosen']['params']
    row('1024², every window cached, vs one blob_log (logstar\'s median choice: '
        'σ %.2f–%.2f, thr %.3f, overlap %.2f; %d blobs)'
        % (p['min_sigma'], p['max_sigma'], p['threshold'], p['overlap'], blob[0]['chosen']['blobs']),
        fmt_s(t_cached), fmt_s(t_blob), '%.0f×' % (t_blob / t_cached), '≥ 100×',
        t_blob / t_cached >= 100, logstar_s=t_cached, skimage_s=t_blob, skimage_params=p)
    row('  same, vs blob_log σ 2–6, thr 0.1 (context; %d blobs)' % blob[0]['default']['blobs'],
        fmt_s(t_cached), fmt_s(t_blob_def), '%.0f×' % (t_blob_def / t_cached), '—', None, False,
        logstar_s=t_cached, skimage_s=t_blob_def)

    def yn(v):
        return '—' if v is None else ('yes' if v else 'NO')

    print('| row | logstar | reference | ratio | target | met |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        print('| %s | %s | %s | %s | %s | %s |' % (r['what'], r['logstar'], r['reference'],
                                                  r['ratio'], r['target'], yn(r['met'])))
    # A target that could not be evaluated (no reference) does not count as met.
    counted = [r for r in rows if r['counted']]
    ok = all(r['met'] is True for r in counted)
    unevaluated = sum(r['met'] is None for r in counted)
    print()
    print('targets (rows not marked extra/context): %s%s'
          % ('all met' if ok else 'NOT all met (%d of %d)'
             % (sum(r['met'] is True for r in counted), len(counted)),
             '; %d not evaluated without the reference' % unevaluated if unevaluated else ''))
    print('times: best of %d rounds, the two sides taking turns; logstar %d threads '
          '(LoG*: %d runs per round, each with a fresh analyzer), reference and scikit-image '
          'single-threaded; HV in (QC, ER), reference point (1, 1); logstar HV = exact blob_log '
          're-detection of its front (grid = as the optimiser saw it)'
          % (len(ls256), ls256[0]['threads'], ls256[0]['tune']['runs']))
    print('frames: logstar synth --lattice ybco --noise 0.3 --amorphous 0.15 --seed 1, '
          '--size 256 and 1024; seed 0 for both optimisers')
    if not have_ref:
        print('reference workflow not found: its columns are n/a')

    json.dump(dict(rows=rows, targets_met=ok, rounds=len(ls256),
                   logstar_accuracy_256=ls50['accuracy'],
                   reference_accuracy_256=ref50[0]['accuracy'] if have_ref else None,
                   logstar_accuracy_1024=ls1024[0]['accuracy']),
              open(a.out, 'w'), indent=1)
    print('wrote %s' % a.out)
    return 1 if a.check and not ok else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    b = sub.add_parser('blob-log')
    b.add_argument('--dir', required=True)
    b.add_argument('--chosen-from', required=True)
    b.add_argument('--calls', type=int, default=3)
    r = sub.add_parser('report')
    r.add_argument('--runs', required=True)
    r.add_argument('--out', required=True)
    r.add_argument('--check', action='store_true')
    a = p.parse_args()
    if a.cmd == 'blob-log':
        cmd_blob_log(a)
        return 0
    return cmd_report(a)


if __name__ == '__main__':
    sys.exit(main())
