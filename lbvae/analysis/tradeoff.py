"""The numbers of the λ stage's trade-off figures: which (β, λ) cells are Pareto-optimal in
(train-window NLL, MIG), and two scalarisations that pick one for a reconstruction weight w.
Pure functions of seed-mean grids (lbvae/analysis/report.py draws them)."""
from __future__ import annotations

import numpy as np

TCHEBYCHEFF_RHO = 0.001             # the augmentation weight of the original's trade-off figures


def pareto_mask(nll, mig) -> np.ndarray:
    """True for the non-dominated points of (NLL to minimise, MIG to maximise): no other
    point has NLL ≤ and MIG ≥ with one of them strict (Pareto optimality; e.g. Miettinen,
    *Nonlinear Multiobjective Optimization*, 1999, def. 2.2.1). Identical points do not
    dominate each other, so ties are all kept. Points with a NaN are never on the front."""
    nll, mig = np.asarray(nll, float).ravel(), np.asarray(mig, float).ravel()
    valid = np.isfinite(nll) & np.isfinite(mig)
    mask = np.zeros(nll.shape, bool)
    for k in np.flatnonzero(valid):
        no_worse = valid & (nll <= nll[k]) & (mig >= mig[k])
        better = (nll < nll[k]) | (mig > mig[k])
        mask[k] = not (no_worse & better).any()
    return mask


def utopia_distances(nll, mig) -> tuple[np.ndarray, np.ndarray]:
    """(dN, dM): each cell's distance to the utopia point (min NLL, max MIG) in each
    objective, normalised by the objective's range over the cells where both are finite,
    so both lie in [0, 1]. A zero range (one cell, or all equal) gives distance 0.
    NaN where either objective is missing."""
    nll, mig = np.asarray(nll, float), np.asarray(mig, float)
    valid = np.isfinite(nll) & np.isfinite(mig)
    if not valid.any():
        return np.full(nll.shape, np.nan), np.full(nll.shape, np.nan)
    n_lo, n_hi = nll[valid].min(), nll[valid].max()
    m_lo, m_hi = mig[valid].min(), mig[valid].max()
    d_nll = (nll - n_lo) / ((n_hi - n_lo) or 1.0)
    d_mig = (m_hi - mig) / ((m_hi - m_lo) or 1.0)
    return np.where(valid, d_nll, np.nan), np.where(valid, d_mig, np.nan)


def weighted_sum(nll, mig, w: float) -> np.ndarray:
    """w·nNLL + (1 − w)·nMIG, to maximise, with nNLL = 1 − dN and nMIG = 1 − dM the
    objectives rescaled per dataset to [0, 1] (1 = best), and w the weight on
    reconstruction. The classical weighted-sum scalarisation (Zadeh 1963; Marler & Arora,
    Struct. Multidisc. Optim. 26, 2004): it reaches only the convex part of the front."""
    d_nll, d_mig = utopia_distances(nll, mig)
    return w * (1 - d_nll) + (1 - w) * (1 - d_mig)


def tchebycheff(nll, mig, w: float, rho: float = TCHEBYCHEFF_RHO) -> np.ndarray:
    """max(w·dN, (1 − w)·dM) + ρ·(w·dN + (1 − w)·dM), to minimise: the augmented weighted
    Tchebycheff distance to the utopia point (Steuer & Choo, Math. Programming 26, 1983).
    Unlike the weighted sum it can select points on non-convex parts of the front; the
    small ρ term breaks ties towards points that are not weakly dominated."""
    d_nll, d_mig = utopia_distances(nll, mig)
    return np.maximum(w * d_nll, (1 - w) * d_mig) + rho * (w * d_nll + (1 - w) * d_mig)


SCALARISATIONS = {  # name -> (score function, True if maximised, label)
    "weighted sum": (weighted_sum, True, "weighted sum w·nNLL + (1−w)·nMIG (higher is better)"),
    "augmented Tchebycheff": (tchebycheff, False, "augmented Tchebycheff distance to utopia (lower is better)"),
}


def best_cells(score, maximise: bool) -> list[tuple[int, int]]:
    """Every (row, column) whose score equals the best finite score (to float rounding):
    ties are all reported rather than broken by grid order."""
    score = np.asarray(score, float)
    finite = np.isfinite(score)
    if not finite.any():
        return []
    best = score[finite].max() if maximise else score[finite].min()
    hits = finite & np.isclose(score, best, rtol=1e-12, atol=1e-12)
    return [tuple(map(int, ij)) for ij in np.argwhere(hits)]
