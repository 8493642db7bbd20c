#!/usr/bin/python3
"""Times scikit-image blob_log on the frames the logstar benchmark uses.

The C++ benchmark (tests/bench/log_benchmark.cc, --frames_dir=DIR) writes its
frames as DIR/lattice_<N>.npy; this script loads the same files, so both sides
detect on identical pixels. Each frame is normalised as the reference workflow
does (float64 min-max, shared/reference/reference_logstar.py) and passed to
blob_log with the benchmark's parameters.

Per size it reports the best of N timed calls (the normalisation is not timed,
as on the C++ side) and the peak memory of one call, measured in a fresh
subprocess so earlier calls' allocations cannot hide it: peak RSS during the
call minus RSS with the frame loaded.

Run with Debian's interpreter (python3-numpy, python3-scipy, python3-skimage):
    /usr/bin/python3 tests/bench/skimage_blob_log_bench.py --frames-dir DIR [--out FILE]
"""

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

# Must match BenchOptions() in log_benchmark.cc.
PARAMS = dict(min_sigma=2, max_sigma=6, num_sigma=10, threshold=0.1, overlap=0.5)


def normalise(img):
    """Exactly reference_logstar.normalise: float64 min-max to [0, 1]."""
    img = np.asarray(img, np.float64)
    return (img - img.min()) / max(img.max() - img.min(), 1e-12)


def current_rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def reset_peak_rss():
    """Resets the kernel's peak-RSS mark to the current RSS (Linux >= 4.0).

    Without it the baseline would be the peak of loading and normalising,
    whose freed temporaries the call may reuse; log_benchmark.cc does the same.
    Free heap memory is given back first (glibc malloc_trim) for the same reason.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def measure_memory(path):
    """Child mode: one blob_log call; prints a JSON line with its peak memory."""
    from skimage.feature import blob_log
    img = normalise(np.load(path))
    # A tiny call first so lazily imported modules count in the baseline.
    blob_log(img[:64, :64], **PARAMS)
    reset = reset_peak_rss()
    baseline = current_rss_mb() if reset else peak_rss_mb()
    blobs = blob_log(img, **PARAMS)
    peak = peak_rss_mb()
    print(json.dumps(dict(blobs=int(len(blobs)), baseline_mb=baseline, peak_mb=peak,
                          delta_mb=peak - baseline, peak_reset=reset)))


def default_repeats(size):
    # blob_log takes ~9 s at 2048^2 on this project's 2-core machines.
    return 5 if size <= 512 else 3 if size <= 1024 else 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--frames-dir', required=True, help='directory of lattice_<N>.npy')
    ap.add_argument('--sizes', default='256,1024,2048')
    ap.add_argument('--repeats', type=int, default=0,
                    help='timed calls per size (default: 5, 3 at 1024, 2 at 2048)')
    ap.add_argument('--out', help='write the results as JSON here')
    ap.add_argument('--no-memory', action='store_true',
                    help='skip the peak-memory measurement (times only)')
    ap.add_argument('--measure-memory', metavar='NPY', help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.measure_memory:
        measure_memory(args.measure_memory)
        return

    import skimage
    from skimage.feature import blob_log

    results = []
    for size in [int(s) for s in args.sizes.split(',')]:
        path = os.path.join(args.frames_dir, 'lattice_%d.npy' % size)
        if not os.path.exists(path):
            sys.exit('missing %s (run log_benchmark --frames_dir=%s first)'
                     % (path, args.frames_dir))
        img = normalise(np.load(path))
        times = []
        n_blobs = 0
        for _ in range(args.repeats or default_repeats(size)):
            t0 = time.perf_counter()
            blobs = blob_log(img, **PARAMS)
            times.append(time.perf_counter() - t0)
            n_blobs = len(blobs)
        memory = dict(peak_mb=None, baseline_mb=None, delta_mb=None, peak_reset=None)
        if not args.no_memory:
            mem = subprocess.run([sys.executable, os.path.abspath(__file__), '--frames-dir',
                                  args.frames_dir, '--measure-memory', path],
                                 check=True, capture_output=True, text=True)
            memory = json.loads(mem.stdout.strip().splitlines()[-1])
        row = dict(size=size, seconds=min(times), seconds_all=times, blobs=n_blobs,
                   peak_mb=memory['peak_mb'], baseline_mb=memory['baseline_mb'],
                   delta_mb=memory['delta_mb'], peak_reset=memory['peak_reset'])
        results.append(row)
        peak = '' if row['delta_mb'] is None else ', +%.1f MB peak' % row['delta_mb']
        print('skimage %4d: best %.3f s of %d, %d blobs%s' % (
            size, row['seconds'], len(times), n_blobs, peak), file=sys.stderr)

    report = dict(skimage=skimage.__version__, numpy=np.__version__, params=PARAMS,
                  results=results)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=1)
            f.write('\n')
    else:
        print(json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
