#!/usr/bin/env python3
"""Goldens for engine/gmm and engine/pca from scikit-learn (run by hand).

    /usr/bin/python3 tests/conformance/make_gmm_goldens.py

Writes tests/data/gmm/gmm_goldens.json: for each covariance type, a data set,
the initial weights / means / precisions given to sklearn's GaussianMixture
(weights_init, means_init, precisions_init) and what it fitted (weights,
means, covariances as full matrices, lower_bound_, score, n_iter_, the BIC
and the posteriors of the first rows). And tests/data/gmm/pca_goldens.json:
sklearn PCA (full SVD) on a fixed matrix. Debian's python3-sklearn (1.2).
"""
import json
import os

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'gmm')


def r(a):
    return np.round(np.asarray(a, float), 12).tolist()


def full_covs(g, k, d):
    c = g.covariances_
    t = g.covariance_type
    if t == 'full':
        return c
    if t == 'tied':
        return np.repeat(c[None], k, 0)
    if t == 'diag':
        return np.array([np.diag(v) for v in c])
    return np.array([v * np.eye(d) for v in c])


def precisions_for(t, covs):
    p = np.array([np.linalg.inv(c) for c in covs])
    if t == 'full':
        return p, p
    if t == 'tied':
        return p[0], np.repeat(p[:1], len(p), 0)
    if t == 'diag':
        v = np.array([np.diag(m) for m in p])
        return v, np.array([np.diag(x) for x in v])
    s = np.array([np.mean(np.diag(m)) for m in p])
    return s, np.array([x * np.eye(p.shape[1]) for x in s])


def main():
    rng = np.random.default_rng(20240604)
    cases = []
    for t, d, k in (('full', 2, 3), ('tied', 3, 2), ('diag', 2, 2), ('spherical', 3, 3)):
        centres = rng.normal(0, 4, (k, d))
        x = np.vstack([rng.multivariate_normal(centres[c], np.diag(rng.uniform(0.3, 2.0, d)) +
                                               0.2 * np.ones((d, d)), 60 + 20 * c)
                       for c in range(k)])
        w0 = np.full(k, 1.0 / k)
        m0 = centres + rng.normal(0, 1.0, (k, d))
        covs0 = np.array([np.eye(d) * rng.uniform(1.0, 3.0) + 0.1 * np.ones((d, d)) for _ in range(k)])
        if t == 'tied':
            covs0[:] = covs0[0]
        if t in ('diag', 'spherical'):
            covs0 = np.array([np.diag(np.diag(c)) for c in covs0])
        p_sklearn, p_full = precisions_for(t, covs0)
        for tol, max_iter in ((1e-3, 100), (0.0, 25)):
            g = GaussianMixture(k, covariance_type=t, weights_init=w0, means_init=m0,
                                precisions_init=p_sklearn, tol=tol, max_iter=max_iter,
                                reg_covar=1e-6).fit(x)
            cases.append(dict(covariance_type=t, tol=tol, max_iter=max_iter, reg_covar=1e-6,
                              x=r(x), weights_init=r(w0), means_init=r(m0),
                              precisions_init=r(p_full),
                              weights=r(g.weights_), means=r(g.means_),
                              covariances=r(full_covs(g, k, d)),
                              lower_bound=float(g.lower_bound_), score=float(g.score(x)),
                              bic=float(g.bic(x)), n_iter=int(g.n_iter_),
                              converged=bool(g.converged_),
                              proba_head=r(g.predict_proba(x[:5]))))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'gmm_goldens.json'), 'w') as f:
        json.dump(dict(sklearn=sklearn.__version__, cases=cases), f, separators=(',', ':'))

    # PCA: a low-rank signal plus noise, more features than the sklearn 'full'
    # solver needs, with distinct eigenvalues so components are defined up to sign.
    a = rng.normal(0, 1, (40, 3)) @ rng.normal(0, 1, (3, 15)) * np.array([3.0, 2.0, 1.0]).repeat(5)
    a += rng.normal(0, 0.1, a.shape) + 5.0
    p = PCA(n_components=3, svd_solver='full').fit(a)
    wide = rng.normal(0, 1, (8, 30)) * np.linspace(3, 0.5, 30)
    q = PCA(n_components=2, svd_solver='full').fit(wide)
    pca = []
    for m, fitted in ((a, p), (wide, q)):
        pca.append(dict(x=r(m), num_components=int(fitted.n_components_), mean=r(fitted.mean_),
                        components=r(fitted.components_),
                        explained_variance=r(fitted.explained_variance_),
                        explained_variance_ratio=r(fitted.explained_variance_ratio_),
                        transformed_head=r(fitted.transform(m[:4]))))
    with open(os.path.join(OUT, 'pca_goldens.json'), 'w') as f:
        json.dump(dict(sklearn=sklearn.__version__, cases=pca), f, separators=(',', ':'))


if __name__ == '__main__':
    main()
