#!/usr/bin/python3
"""Renders the performance report of tests/bench/perf_report.sh: one markdown
table from the JSON files the benchmarks wrote, under one header line naming
the machine.

  tests/bench/perf_report.py --raw DIR --out FILE --build-dir DIR
      [--mode quick|full] [--shared DIR]

DIR (what perf_report.sh leaves there; a missing file makes its rows say so):
  log_bench.json       run_log_bench.sh --out
  logstar_bench.json   run_logstar_bench.sh --out (rows with stable keys)
  accuracy.json        run_logstar_accuracy.sh --out
  gmm_bench.json       run_gmm_bench.sh --json
  daemon_bench.K.json  run K (1, 2, ...) of run_daemon_bench.sh --json= (a row per
                       transport; each figure shown as median and range over the runs);
                       an older single daemon_bench.json is read as one run
  stages.tsv           stage, exit code, seconds, log file (one line a stage)
Targets are the issue's, as the benchmarks state them; where a benchmark
gives a verdict (met / not met) the table shows that verdict.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The daemon's targets (issue 5, docs/performance.md, "The daemon"): overhead of a round
# trip through logstard over the in-process engine, p50.
DAEMON_OVERHEAD_MS_512 = 2.0
DAEMON_OVERHEAD_PCT_2048 = 15.0
# The amorphous stage's target (tests/engine/amorphous_test.cc): mask IoU
# >= 0.6 at 10-30 % amorphous area and noise <= 0.3 (the GMM bench frame:
# 20 %, noise 0.3).
AMORPHOUS_IOU_MIN = 0.6


# ----------------------------------------------------------------- machine
def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ''


def run(cmd):
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ''


def machine(build_dir):
    cpuinfo = read('/proc/cpuinfo')
    model = next((line.split(':', 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith('model name')), platform.processor() or 'unknown CPU')
    logical = os.cpu_count() or 0
    # Physical cores: distinct (physical id, core id) pairs.
    cores, socket = set(), '0'
    for line in cpuinfo.splitlines():
        if line.startswith('physical id'):
            socket = line.split(':', 1)[1].strip()
        elif line.startswith('core id'):
            cores.add((socket, line.split(':', 1)[1].strip()))
    ram_kb = next((int(line.split()[1]) for line in read('/proc/meminfo').splitlines()
                   if line.startswith('MemTotal:')), 0)
    os_name = next((line.split('=', 1)[1].strip().strip('"')
                    for line in read('/etc/os-release').splitlines()
                    if line.startswith('PRETTY_NAME=')), platform.system())
    compiler = ''
    for line in read(os.path.join(build_dir, 'CMakeCache.txt')).splitlines():
        if line.startswith('CMAKE_CXX_COMPILER:'):
            path = line.split('=', 1)[1]
            compiler = run([path, '--version']).splitlines()[0:1]
            compiler = compiler[0] if compiler else path
    build_type = ''
    for line in read(os.path.join(build_dir, 'CMakeCache.txt')).splitlines():
        if line.startswith('CMAKE_BUILD_TYPE:'):
            build_type = line.split('=', 1)[1]
    commit = run(['git', '-C', REPO, 'describe', '--always', '--dirty', '--abbrev=12'])
    branch = run(['git', '-C', REPO, 'rev-parse', '--abbrev-ref', 'HEAD'])
    flags = set(next((line.split(':', 1)[1].split() for line in cpuinfo.splitlines()
                      if line.startswith('flags')), []))
    isa = 'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'
    model = '%s (%s)' % (model, isa)
    cpus = '%d logical CPUs' % logical
    if cores:
        cpus += ' (%d cores)' % len(cores)
    return dict(cpu=model, cpus=cpus, ram='%.1f GiB RAM' % (ram_kb / 2 ** 20),
                os='%s, Linux %s' % (os_name, platform.release()),
                compiler='%s (%s)' % (compiler or 'unknown compiler', build_type or 'build type ?'),
                date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
                commit='%s (%s)' % (commit or 'unknown', branch or '?'),
                python='Python %s' % platform.python_version())


# ----------------------------------------------------------------- helpers
def load(raw, name):
    path = os.path.join(raw, name)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt_s(s):
    if s is None:
        return 'n/a'
    if s < 1e-3:
        return '%.0f µs' % (s * 1e6)
    if s < 0.1:
        return '%.1f ms' % (s * 1e3)
    if s < 1:
        return '%.0f ms' % (s * 1e3)
    return '%.2f s' % s


def fmt_ms(ms):
    return fmt_s(None if ms is None else ms / 1e3)


def fmt_x(r):
    if r is None:
        return 'n/a'
    return '%.0f×' % r if r >= 10 else '%.2f×' % r


def yn(v):
    return '—' if v is None else ('yes' if v else '**NO**')


def slash(vals, fmt):
    return ' / '.join('—' if v is None else fmt % v for v in vals)


class Table:
    def __init__(self):
        self.rows = []

    def add(self, section, measure, logstar, baseline, ratio='—', target='—', met=None):
        cells = [section, measure, logstar, baseline, ratio, target, yn(met)]
        # A '|' would split a cell.
        self.rows.append([str(c).replace('|', '/') for c in cells])

    def missing(self, section, what, why):
        self.add(section, what, why if why.startswith('**FAILED**') else 'skipped: %s' % why,
                 '—')

    def markdown(self):
        out = ['| section | measure | logstar | baseline | ratio | target | met |',
               '|---|---|---|---|---|---|---|']
        out += ['| ' + ' | '.join(r) + ' |' for r in self.rows]
        return '\n'.join(out)


def stage_problem(stages, name, raw_file, data):
    """Why a stage has no figures: not run, failed, or no JSON."""
    st = stages.get(name)
    if st is None:
        return 'not run (--only)'
    rc, _, logfile = st
    if rc != 0:
        return '**FAILED** (exit %d), see %s' % (rc, logfile)
    if data is None:
        return '**FAILED**: no %s written, see %s' % (raw_file, logfile)
    return None


# ----------------------------------------------------------------- sections
def log_rows(t, raw, stages):
    sec = 'speed vs scikit-image'
    data = load(raw, 'log_bench.json')
    why = stage_problem(stages, 'log', 'log_bench.json', data)
    if why:
        t.missing(sec, 'LoG detection vs blob_log (run_log_bench.sh)', why)
        return
    threads = data['rows'][0].get('logstar_threads') if data['rows'] else None
    for r in data['rows']:
        t.add(sec, 'LoG detection %d² (σ 2–6, 10 scales, thr 0.1; logstar %s threads) vs blob_log'
              % (r['size'], threads),
              fmt_s(r['logstar_s']), fmt_s(r['skimage_s']) + ' (skimage)', fmt_x(r['speedup']),
              '≥ 100×' if r['speed_target_100x'] is not None else '—', r['speed_target_100x'])
    for r in data['rows']:
        t.add(sec, 'peak memory of one detection, %d²' % r['size'],
              '%.1f MB' % r['logstar_peak_mb'], '%.1f MB (skimage)' % r['skimage_peak_mb'],
              '1/%.0f' % r['memory_ratio'] if r['memory_ratio'] >= 1 else '%.2f×' % (
                  1 / r['memory_ratio']),
              '≤ 1/4', r['memory_target_quarter'])


def logstar_rows(t, raw, stages, have_ref):
    data = load(raw, 'logstar_bench.json')
    why = stage_problem(stages, 'logstar', 'logstar_bench.json', data)
    if why:
        t.missing('speed vs reference', 'LoG* tuning and cached frames (run_logstar_bench.sh)', why)
        return
    rows = {r.get('key'): r for r in data['rows']}
    no_ref = 'skipped: reference not found' if not data.get('have_reference', have_ref) else None

    r = rows.get('cached1024_vs_blob')
    if r:
        p = r.get('skimage_params', {})
        t.add('speed vs scikit-image',
              '1024² YBCO, every window cached (LoG*), vs one blob_log with logstar\'s median '
              'choice (σ %.2f–%.2f, thr %.3f)' % (p.get('min_sigma', 0), p.get('max_sigma', 0),
                                                  p.get('threshold', 0)),
              fmt_s(r['logstar_s']), fmt_s(r['skimage_s']) + ' (skimage)',
              fmt_x(r['skimage_s'] / r['logstar_s']), '≥ 100×', r['met'])
    r = rows.get('cached1024_vs_blob_default')
    if r:
        t.add('speed vs scikit-image', '  same cached frame vs blob_log σ 2–6, thr 0.1 (context)',
              fmt_s(r['logstar_s']), fmt_s(r['skimage_s']) + ' (skimage)',
              fmt_x(r['skimage_s'] / r['logstar_s']))

    sec = 'speed vs reference'
    r = rows.get('tune256')
    if r:
        t.add(sec, '256² YBCO, 50 evaluations: LoG* tune vs reference GP-BO optimiser',
              fmt_s(r['logstar_s']),
              no_ref or fmt_s(r['reference_s']) + ' (GP-BO)',
              'n/a' if no_ref else fmt_x(r['reference_s'] / r['logstar_s']), '≥ 200×',
              None if no_ref else r['met'])
    r = rows.get('tune1024')
    if r:
        ref = '%s (%s)' % (fmt_s(r['reference_s']),
                           'measured in this run' if r.get('reference_measured') else
                           'published figure of the reference README, not measured here')
        what = ('1024² YBCO, %d windows of 256 × 30 evaluations, every window re-tuned: LoG* vs '
                'the reference\'s windowed GP-BO run' % r.get('windows', 16))
        if no_ref:  # a published figure from another machine is no comparison
            t.add(sec, what, fmt_s(r['logstar_s']), no_ref, 'n/a', '≥ 200×')
        else:
            t.add(sec, what, fmt_s(r['logstar_s']), ref, fmt_x(r['reference_s'] / r['logstar_s']),
                  '≥ 200×', r['met'])

    sec = 'quality vs reference'
    seeds = ','.join(map(str, data.get('hv_seeds', []))) or '?'
    for evals in (20, 50):
        g, n = rows.get('hv%d_ls_gpbo' % evals), rows.get('hv%d_ls_nsga2' % evals)
        if not g:
            continue
        what = '256² hypervolume (QC, ER) after %d evaluations, mean of seeds %s' % (evals, seeds)
        if no_ref or g.get('reference_hv') is None:
            t.add(sec, what, '%.3f' % g['logstar_hv'], no_ref or 'n/a')
            continue
        t.add(sec, what, '%.3f' % g['logstar_hv'],
              'GP-BO %.3f / NSGA-II %.3f' % (g['reference_hv'], n['reference_hv']),
              '%.2f / %.2f' % (g['logstar_hv'] / g['reference_hv'],
                               n['logstar_hv'] / n['reference_hv']),
              '≥ reference', bool(g['met'] and n['met']))
    if data.get('logstar_accuracy_256'):
        a, ra = data['logstar_accuracy_256'], data.get('reference_accuracy_256')
        t.add(sec, '256² YBCO bench frame (noise 0.3), F1 after 50 evaluations',
              '%.3f' % a['f1'], no_ref or ('%.3f (GP-BO)' % ra['f1'] if ra else 'n/a'))


def accuracy_rows(t, raw, stages, have_ref, have_real):
    sec = 'accuracy'
    data = load(raw, 'accuracy.json')
    why = stage_problem(stages, 'accuracy', 'accuracy.json', data)
    if why:
        t.missing(sec, 'F1 / count error sweep (run_logstar_accuracy.sh)', why)
        return
    rows = data['rows']
    seeds = sorted({f['seed'] for f in data.get('frames', []) if f.get('seed') is not None})
    groups = []
    for r in rows:
        if r['noise'] is not None and r['group'] not in groups:
            groups.append(r['group'])
    names = {'ybco': 'YBCO (15 % amorphous)', 'perovskite': 'perovskite', 'hex': 'hexagonal'}

    def of(group, method):
        rs = sorted((r for r in rows if r['group'] == group and r['method'] == method),
                    key=lambda r: r['noise'])
        return rs

    for g in groups:
        ls, ref = of(g, 'LoG*'), of(g, 'reference GP-BO')
        noises = [r['noise'] for r in ls]
        nz = slash(noises, '%g')
        label = '%s 256², mean of seeds %s' % (names.get(g, g), ','.join(map(str, seeds)))
        f1_min = [0.95 if n <= 0.3 + 1e-9 else 0.80 if n <= 0.6 + 1e-9 else None for n in noises]
        f1_met = all(m is None or r['f1'] >= m for r, m in zip(ls, f1_min))
        ref_cell = ('GP-BO ' + slash([r['f1'] for r in ref], '%.2f')) if ref else (
            'skipped: reference not found' if not have_ref else 'n/a')
        t.add(sec, '%s: F1 at noise %s' % (label, nz), slash([r['f1'] for r in ls], '%.2f'),
              ref_cell, '—', 'F1 ' + slash(f1_min, '≥ %.2f'), f1_met)
        cnt_met = all(r['abs_count_error'] <= 0.05 for r in ls)
        # The sweep's own verdict covers both; they must agree with the split.
        if all(r['met'] is not None for r in ls) and all(r['met'] for r in ls) != (
                f1_met and cnt_met):
            print('warning: %s: accuracy verdicts disagree with the sweep\'s' % g, file=sys.stderr)
        ref_cnt = ('GP-BO ' + slash([100 * r['abs_count_error'] for r in ref], '%.1f') + ' %'
                   ) if ref else ref_cell
        t.add(sec, '%s: mean abs count error at noise %s' % (label, nz),
              slash([100 * r['abs_count_error'] for r in ls], '%.1f') + ' %', ref_cnt, '—',
              '≤ 5 % at every level', cnt_met)

    real = [r for r in rows if r['noise'] is None]
    if not real:
        t.missing(sec, 'real images (graphene, SrTiO3)',
                  '../shared/data/real not found' if not have_real else 'no rows')
    for gname in sorted({r['group'] for r in real}):
        ls = next((r for r in real if r['group'] == gname and r['method'] == 'LoG*'), None)
        ref = next((r for r in real if r['group'] == gname and r['method'] == 'reference GP-BO'),
                   None)
        if ls is None:
            continue
        if ls.get('count_vs_expected') is not None:
            cell = lambda r: '%d atoms (%+.1f %% vs %.0f expected)' % (  # noqa: E731
                r['n_detected'], 100 * r['count_vs_expected'], r['n_expected'])
            what = '%s: count vs the lattice expectation' % gname
        else:
            cell = lambda r: 'F1 %.2f' % r['f1']  # noqa: E731
            what = '%s: F1 against the published positions' % gname
        t.add(sec, what, cell(ls), ('GP-BO ' + cell(ref)) if ref else
              ('skipped: reference not found' if not have_ref else 'n/a'))


def gmm_rows(t, raw, stages):
    data = load(raw, 'gmm_bench.json')
    why = stage_problem(stages, 'gmm', 'gmm_bench.json', data)
    if not why and data.get('skipped'):
        why = data['skipped']
    if why:
        t.missing('speed vs reference', 'GMM (amorphous) stage per evaluation (run_gmm_bench.sh)',
                  why)
        t.missing('accuracy', 'amorphous mask IoU (run_gmm_bench.sh)', why)
        return
    rows = {r['key']: r for r in data['rows']}
    size = '%d²' % data['size'][0]
    r = rows['tune_per_eval']
    t.add('speed vs reference', 'GMM stage, %s YBCO (20 %% amorphous, %d atoms): per evaluation '
          'amortised over a %d-evaluation tuning run, vs reference --gmm per evaluation'
          % (size, data['atoms'], data['logstar']['evaluations']),
          fmt_ms(r['logstar_ms']), fmt_ms(r['reference_ms']) + ' (%d evaluations)'
          % data['reference']['n_evals'], fmt_x(r['ratio']), '≥ 100×', r['met'])
    for key, what in (('eval_warm', 'one evaluation on a prepared scene'),
                      ('eval_cold', 'one cold evaluation, scene + evaluation')):
        r = rows[key]
        t.add('speed vs reference', '  same, %s (context)' % what,
              fmt_ms(r['logstar_ms']), fmt_ms(r['reference_ms']), fmt_x(r['ratio']))
    r = rows.get('cached_frame_1024')
    if r is not None:
        t.add('speed vs scikit-image', '1024² cached frame, LoG* and the amorphous stage, vs one '
              'blob_log with the windows\' median parameters (the cached-frame budget)',
              fmt_ms(r['logstar_ms']), fmt_ms(r['reference_ms']), fmt_x(r['ratio']), '≥ 100×',
              r['met'])
    ref_iou = data['reference'].get('iou')
    t.add('accuracy', 'amorphous mask IoU with the truth, same %s frame (noise 0.3)' % size,
          '%.3f' % data['logstar']['iou'],
          'reference %s' % ('n/a' if ref_iou is None else '%.3f' % ref_iou), '—',
          '≥ %.1f' % AMORPHOUS_IOU_MIN, data['logstar']['iou'] >= AMORPHOUS_IOU_MIN)


def daemon_runs(raw):
    """The daemon stage's runs: daemon_bench.1.json, .2, ... (perf_report.sh
    --daemon-runs), or one daemon_bench.json (older raw directories)."""
    runs, k = [], 1
    while True:
        data = load(raw, 'daemon_bench.%d.json' % k)
        if data is None:
            break
        runs.append(data)
        k += 1
    if not runs:
        one = load(raw, 'daemon_bench.json')
        runs = [one] if one is not None else []
    return runs


def spread(values, fmt):
    """One figure over several runs: "median [min–max]", or the value of a
    single run. The spread is what a user of another quiet machine of the same
    kind should expect, not the best run."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return 'n/a'
    if len(values) == 1:
        return fmt(values[0])
    n = len(values)
    median = values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])
    return '%s [%s–%s]' % (fmt(median), fmt(values[0]), fmt(values[-1]))


def daemon_rows(t, raw, stages):
    sec = 'daemon'
    runs = daemon_runs(raw)
    why = stage_problem(stages, 'daemon', 'daemon_bench.json', runs[0] if runs else None)
    if why:
        t.missing(sec, 'latency and throughput (run_daemon_bench.sh)', why)
        return
    # Each row names its transport: tcp (pixels in the message over TCP
    # loopback), unix (the same over a Unix socket), shm (pixels in shared
    # memory, the copy into it on the clock) or memfd (a sealed memory file
    # handed over the Unix socket). Older JSON has one transport for the
    # whole run, at the top. A row's figures are the same measure in every
    # run, grouped by (size, dtype, transport).
    labels = {'tcp': 'logstard over TCP loopback, pixels in the message',
              'unix': 'logstard over a Unix socket, pixels in the message',
              'shm': 'logstard, pixels in shared memory (copying them in included), '
                     'messages over TCP loopback',
              'memfd': 'logstard, pixels in a sealed memory file (writing them in included), '
                       'messages over a Unix socket'}
    groups = {}
    for data in runs:
        for s in data['sizes']:
            key = (s['size'], s.get('dtype', 'float32'),
                   s.get('transport', data.get('transport', 'tcp')))
            groups.setdefault(key, []).append(s)
    frames = runs[0]['frames']
    for (n, dtype, transport), rows in groups.items():
        label = labels.get(transport, 'logstard over %s' % transport)
        if n <= 512:
            target = 'overhead p50 ≤ %g ms' % DAEMON_OVERHEAD_MS_512
            ok = [s['overhead_p50_ms'] <= DAEMON_OVERHEAD_MS_512 for s in rows]
        elif n >= 2048:
            target = 'overhead p50 ≤ %g %%' % DAEMON_OVERHEAD_PCT_2048
            ok = [s['overhead_p50_pct'] <= DAEMON_OVERHEAD_PCT_2048 for s in rows]
        else:
            target, ok = '—', []
        # Met when every run met it; the cell says how many did otherwise.
        met = None if not ok else all(ok)
        if ok and len(ok) > 1 and not all(ok):
            target += ' (met in %d of %d runs)' % (sum(ok), len(ok))

        def figure(get, fmt, rows=rows):
            return spread([get(s) for s in rows], fmt)

        def lat(side):
            return ' / '.join(figure(lambda s, q=q: s[side][q], fmt_ms)
                              for q in ('p50_ms', 'p95_ms', 'p99_ms'))
        extra = ''
        if all('transport_p50_ms' in s for s in rows):
            extra = '; transport %s' % figure(lambda s: s['transport_p50_ms'], fmt_ms)
        if all('shm_copy_p50_ms' in s for s in rows):
            extra += ' (copy into shared memory %s)' % figure(lambda s: s['shm_copy_p50_ms'],
                                                                fmt_ms)
        t.add(sec, '%d² %s, cached windows, %d frames: latency p50 / p95 / p99, %s (%s) vs the '
              'engine in process' % (n, dtype, frames, label, transport),
              lat('daemon'), lat('engine') + ' (engine)',
              '%s (%s) at p50; server side %s%s'
              % (figure(lambda s: s['overhead_p50_ms'], lambda v: '%+.2f ms' % v),
                 figure(lambda s: s['overhead_p50_pct'], lambda v: '%+.1f %%' % v),
                 figure(lambda s: s['server_total_p50_ms'], fmt_ms), extra),
              target, met)
        inflight = ('at most 4 frames in flight' if transport in ('shm', 'memfd')
                    else 'all frames in flight')
        t.add(sec, '%d² %s, %s: throughput, %s (daemon) vs back to back (engine)'
              % (n, dtype, transport, inflight),
              figure(lambda s: s['daemon']['frames_per_s'], lambda v: '%.2f frames/s' % v),
              figure(lambda s: s['engine']['frames_per_s'], lambda v: '%.2f frames/s' % v)
              + ' (engine)',
              'daemon / engine %s' % figure(lambda s: s['throughput_ratio'],
                                            lambda v: '%.2f×' % v))


# ----------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--raw', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--build-dir', required=True)
    p.add_argument('--mode', choices=('quick', 'full'), default='full')
    p.add_argument('--shared', default=os.path.join(REPO, '..', 'shared'))
    p.add_argument('--load-before', default='')
    a = p.parse_args()

    stages = {}
    for line in read(os.path.join(a.raw, 'stages.tsv')).splitlines():
        name, rc, secs, logfile = line.split('\t')
        stages[name] = (int(rc), float(secs), logfile)
    have_ref = os.path.isfile(os.path.join(a.shared, 'reference', 'reference_logstar.py'))
    have_real = os.path.isdir(os.path.join(a.shared, 'data', 'real'))

    m = machine(a.build_dir)
    log_json = load(a.raw, 'log_bench.json') or {}
    load_after = read('/proc/loadavg').split()[:3]
    mode = ('**QUICK mode: shrunk runs (1 round, fewer seeds/frames/calls), NOT publishable**'
            if a.mode == 'quick' else 'full mode')
    header = ('**Machine:** %s, %s, %s; %s; %s; %s%s; %s; commit %s; %s; load average %s before, '
              '%s after.' % (m['cpu'], m['cpus'], m['ram'], m['os'], m['compiler'], m['python'],
                             ', scikit-image %s' % log_json['skimage_version']
                             if log_json.get('skimage_version') else '',
                             m['date'], m['commit'], mode,
                             a.load_before or '?', ' '.join(load_after)))

    t = Table()
    log_rows(t, a.raw, stages)
    logstar_rows(t, a.raw, stages, have_ref)
    accuracy_rows(t, a.raw, stages, have_ref, have_real)
    gmm_rows(t, a.raw, stages)
    daemon_rows(t, a.raw, stages)
    # Sections in a fixed order, rows within a section in the order added.
    order = ['speed vs scikit-image', 'speed vs reference', 'quality vs reference', 'accuracy',
             'daemon']
    t.rows.sort(key=lambda r: order.index(r[0]) if r[0] in order else len(order))

    verdicts = [r[6] for r in t.rows if r[6] != '—']
    n_met = sum(v == 'yes' for v in verdicts)
    durations = ', '.join('%s %.0f s%s' % (k, v[1], '' if v[0] == 0 else ' (exit %d)' % v[0])
                          for k, v in stages.items())
    n_daemon = len(daemon_runs(a.raw))
    notes = [
        '',
        'Targets met: %d of %d rows with a target. Times are each side\'s best over the rounds, '
        'the two sides taking turns in one run; logstar multi-threaded, scikit-image and the '
        'reference single-threaded. Ratio = baseline / logstar for times (higher: logstar '
        'faster), logstar\'s share for memory, daemon / engine for throughput; accuracy rows '
        'list the values at each noise level. Raw JSON and logs: %s. '
        'Stage durations: %s.' % (n_met, len(verdicts), os.path.relpath(a.raw, REPO)
                                  if a.raw.startswith(REPO) else a.raw, durations or 'n/a'),
    ]
    if n_daemon > 1:
        notes.append('Daemon rows: each figure is the median [min–max] over %d runs of '
                     'run_daemon_bench.sh, one after the other on this machine; a target is met '
                     'when every run met it.' % n_daemon)
    text = header + '\n\n' + t.markdown() + '\n' + '\n'.join(notes) + '\n'
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, 'w') as f:
        f.write(text)
    print(text)
    print('wrote %s' % a.out, file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
