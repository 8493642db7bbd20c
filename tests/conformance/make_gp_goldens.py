#!/usr/bin/python3
"""Writes the Gaussian-process and Sobol goldens: scikit-learn and scipy outputs.

engine/optimize/gaussian_process.h promises the model of scikit-learn 1.2's
    GaussianProcessRegressor(ConstantKernel(1.0, (1e-3, 1e3))
        * Matern(ones(d), (1e-2, 1e2), nu=2.5) + WhiteKernel(1e-3, (1e-6, 1)),
        alpha=1e-10, normalize_y=True)
and engine/optimize/sobol.h promises scipy.stats.qmc.Sobol(d, scramble=False)'s points.
This script fixes both by running the libraries on fixed data;
tests/engine/gaussian_process_test.cc and sobol_test.cc compare against them.

Outputs under tests/data/gp/:
  <case>.json  one data set: x (n x d, in the unit box), y, test points, and
               "fixed": the kernel hyperparameters, sklearn's predictions
               (mean, std) at the test points with optimizer=None, the log
               marginal likelihood and its gradient w.r.t. theta =
               (log s^2, log l_1..d, log noise^2);
               "fitted": per n_restarts_optimizer, sklearn's fitted LML and theta.
  sobol.json   the first 256 points of the unscrambled 16-D Sobol sequence.

Run with Debian's interpreter (python3-numpy, python3-scipy, python3-sklearn):
    /usr/bin/python3 tests/conformance/make_gp_goldens.py
"""

import json
import os
import warnings

import numpy as np
import scipy
import sklearn
from scipy.stats import qmc
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'gp')


def kernel(signal, lengths, noise, fixed=False):
    d = len(lengths)
    cb = 'fixed' if fixed else (1e-3, 1e3)
    lb = 'fixed' if fixed else (1e-2, 1e2)
    nb = 'fixed' if fixed else (1e-6, 1e0)
    return (ConstantKernel(signal, cb) * Matern(np.asarray(lengths, float), lb, nu=2.5)
            + WhiteKernel(noise, nb))


def make_cases():
    rng = np.random.default_rng(20240611)
    cases = []

    x = rng.random((8, 1))
    y = np.sin(6 * x[:, 0]) + 0.05 * rng.standard_normal(8)
    cases.append(('d1_n8', x, y, (1.3, [0.25], 1e-3), [2, 5]))

    x = rng.random((20, 2))
    y = (x[:, 1] - 0.5 * x[:, 0] ** 2 + 0.3) ** 2 * 10 + np.cos(5 * x[:, 0]) \
        + 0.02 * rng.standard_normal(20)
    cases.append(('d2_n20', x, y, (0.8, [0.2, 0.6], 1e-2), [2, 3]))

    x = rng.random((50, 4))
    y = np.sin(4 * x[:, 0]) + 0.5 * x[:, 1] + np.cos(3 * x[:, 2] * x[:, 3]) \
        + 0.01 * rng.standard_normal(50)
    cases.append(('d4_n50', x, y, (2.0, [0.3, 1.5, 0.5, 3.0], 1e-4), [2, 4]))

    # ZDT-like log1p(QC)-style target: large values and a steep corner.
    x = rng.random((30, 3))
    y = np.log1p(1000 * np.exp(-8 * x[:, 0]) + 5 * x[:, 1]) + 0.1 * x[:, 2]
    cases.append(('d3_n30', x, y, (1.0, [0.4, 0.7, 2.0], 1e-3), [3, 5]))

    # A repeated input (the noise term keeps K positive definite).
    x = rng.random((12, 2))
    x[5] = x[2]
    y = x[:, 0] * 3 - x[:, 1] + 0.1 * rng.standard_normal(12)
    cases.append(('d2_n12_repeat', x, y, (0.5, [0.8, 0.1], 0.05), [2]))

    # Constant targets: normalize_y's std of 0 becomes 1.
    x = rng.random((10, 3))
    y = np.full(10, 0.5)
    cases.append(('d3_n10_constant', x, y, (1.0, [0.5, 0.5, 0.5], 1e-3), []))
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, x, y, (signal, lengths, noise), restarts in make_cases():
        d = x.shape[1]
        rng = np.random.default_rng(len(name) * 7919 + d)
        x_test = np.vstack([rng.random((30, d)), x[:3]])
        gp = GaussianProcessRegressor(kernel(signal, lengths, noise, fixed=True), alpha=1e-10,
                                      normalize_y=True, optimizer=None).fit(x, y)
        mean, std = gp.predict(x_test, return_std=True)
        # The same kernel with bounds, to get the LML gradient over all of theta.
        gp_free = GaussianProcessRegressor(kernel(signal, lengths, noise), alpha=1e-10,
                                           normalize_y=True, optimizer=None).fit(x, y)
        lml, grad = gp_free.log_marginal_likelihood(gp_free.kernel_.theta, eval_gradient=True)
        case = {
            'name': name,
            'x': x.tolist(),
            'y': y.tolist(),
            'x_test': x_test.tolist(),
            'fixed': {
                'signal_variance': signal,
                'length_scales': list(lengths),
                'noise_variance': noise,
                'mean': mean.tolist(),
                'std': std.tolist(),
                'log_marginal_likelihood': float(gp.log_marginal_likelihood_value_),
                'lml_gradient': grad.tolist(),
            },
            'fitted': [],
        }
        for r in restarts:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', ConvergenceWarning)
                fit = GaussianProcessRegressor(kernel(1.0, np.ones(d), 1e-3), alpha=1e-10,
                                               normalize_y=True, n_restarts_optimizer=r,
                                               random_state=r).fit(x, y)
            case['fitted'].append({
                'n_restarts': r,
                'log_marginal_likelihood': float(fit.log_marginal_likelihood_value_),
                'theta': fit.kernel_.theta.tolist(),
            })
        with open(os.path.join(OUT, name + '.json'), 'w') as f:
            json.dump(case, f, indent=1)
            f.write('\n')
    sobol = qmc.Sobol(16, scramble=False).random(256)
    with open(os.path.join(OUT, 'sobol.json'), 'w') as f:
        json.dump({'dimensions': 16, 'points': sobol.tolist()}, f)
        f.write('\n')
    with open(os.path.join(OUT, 'index.json'), 'w') as f:
        json.dump({'sklearn': sklearn.__version__, 'scipy': scipy.__version__,
                   'numpy': np.__version__,
                   'cases': [c[0] for c in make_cases()]}, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
