#!/usr/bin/env python3
"""Golden values for tests/explore/scaling_law.cpp, from scipy (scipy.optimize.curve_fit, scipy.stats).

    /work/venv/bin/python tests/reference/scaling_law_reference.py   # writes tests/golden/explore/scaling_law.json

Synthetic data sets, from known parameters plus Gaussian noise with a fixed seed (numpy's default_rng):
- three of Scaling ViT's saturating power law E(x) = a·(x + d)^(−b) + c (Zhai et al. 2022, Eq. 1), one each for
  compute, data size and model size (the last with 7 points: 3 degrees of freedom, where Student's t matters).
  Fitted with curve_fit (unweighted, absolute_sigma=False, MINPACK's Levenberg–Marquardt, analytic Jacobian,
  tolerances at 1e-15) from several starts that must agree; stores the parameters, pcov, and at a few x the
  prediction with its delta-method standard error and confidence interval (Student's t, n − 4 degrees of freedom).
- one log-log line ln L = α + β·ln C (Smith et al. 2023), fitted with scipy.stats.linregress; its standard
  errors, and predictions with intervals the same way (in ln L, mapped through exp).
- Student's t quantiles (scipy.stats.t.ppf) for a few degrees of freedom and probabilities.
Values are written with Python's repr, so the test reads the same doubles.
"""
import json
import os

import numpy as np
import scipy
from scipy import optimize, stats

LEVELS = [0.95, 0.68]


def model(x, a, b, c, d):
    return a * (x + d) ** (-b) + c


def jac(x, a, b, c, d):
    g = (x + d) ** (-b)
    return np.stack([g, -a * g * np.log(x + d), np.ones_like(x), -a * b * g / (x + d)], axis=1)


POWER_CASES = {
    # name: variable, true (a, b, c, d), x, noise sigma, seed
    "compute": ("compute", (0.35, 0.4, 0.09, 0.5), np.logspace(-1, 3.5, 14), 0.004, 2022),
    "data": ("data", (2.0, 0.3, 0.15, 8.0), np.logspace(0, 3.5, 10), 0.01, 2106),
    "model_size": ("model_size", (1.2, 0.5, 0.2, 2.0), np.logspace(0.7, 3.3, 7), 0.005, 4560),
}


def power_case(variable, truth, x, sigma, seed):
    rng = np.random.default_rng(seed)
    y = model(x, *truth) + sigma * rng.standard_normal(x.size)
    fits = []
    for scale in [1.0, 0.5, 2.0]:
        p0 = [truth[0] * scale, truth[1] * scale, truth[2], truth[3] * scale]
        popt, pcov = optimize.curve_fit(model, x, y, p0=p0, jac=jac, method="lm", xtol=1e-15, ftol=1e-15,
                                        maxfev=100000)
        fits.append((float(np.sum((model(x, *popt) - y) ** 2)), popt, pcov))
    # The starts agree to about 1e-8 (MINPACK stops there on these data); the golden keeps the lowest RSS.
    _, popt, pcov = min(fits, key=lambda f: f[0])
    for _, other, _ in fits:
        assert np.allclose(other, popt, rtol=1e-6, atol=0), (other, popt)
    assert popt[0] > 0 and popt[1] > 0 and popt[3] >= 0, popt
    n, p = x.size, 4
    rss = float(np.sum((model(x, *popt) - y) ** 2))
    at = [float(x.min()), float(np.sqrt(x.min() * x.max())), float(x.max()), float(10 * x.max())]
    predictions = []
    for xi in at:
        g = jac(np.array([xi]), *popt)[0]
        value = float(model(xi, *popt))
        se = float(np.sqrt(g @ pcov @ g))
        for level in LEVELS:
            t = float(stats.t.ppf(0.5 + level / 2, n - p))
            predictions.append(dict(x=xi, level=level, value=value, standard_error=se, lower=value - t * se,
                                    upper=value + t * se))
    return dict(variable=variable, truth=list(truth), x=x.tolist(), y=y.tolist(), params=popt.tolist(),
                covariance=pcov.tolist(), standard_errors=np.sqrt(np.diag(pcov)).tolist(), rss=rss,
                predictions=predictions)


def loglog_case():
    rng = np.random.default_rng(2310)
    c = np.logspace(0, 3, 8)
    loss = 2.6 * c ** (-0.08) * np.exp(0.01 * rng.standard_normal(c.size))
    lx, ly = np.log(c), np.log(loss)
    fit = stats.linregress(lx, ly)
    n = c.size
    s2 = float(np.sum((ly - fit.intercept - fit.slope * lx) ** 2) / (n - 2))
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    predictions = []
    for xi in [1.0, 30.0, 1000.0, 1e5]:
        mean = fit.intercept + fit.slope * np.log(xi)
        se = float(np.sqrt(s2 * (1 / n + (np.log(xi) - lx.mean()) ** 2 / sxx)))
        for level in LEVELS:
            t = float(stats.t.ppf(0.5 + level / 2, n - 2))
            predictions.append(dict(x=xi, level=level, value=float(np.exp(mean)), standard_error=se,
                                    lower=float(np.exp(mean - t * se)), upper=float(np.exp(mean + t * se))))
    return dict(x=c.tolist(), y=loss.tolist(), alpha=float(fit.intercept), beta=float(fit.slope),
                se_alpha=float(fit.intercept_stderr), se_beta=float(fit.stderr), residual_variance=s2,
                predictions=predictions)


def main():
    out = dict(scipy=scipy.__version__, numpy=np.__version__,
               power_law={name: power_case(*case) for name, case in POWER_CASES.items()},
               loglog=loglog_case(),
               student_t=[dict(p=p, dof=dof, t=float(stats.t.ppf(p, dof)))
                          for dof in [1, 2, 3, 4, 5, 10, 30, 200] for p in [0.975, 0.84, 0.995, 0.6]])
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "explore", "scaling_law.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
