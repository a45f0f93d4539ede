"""Scores: each criterion on a scale in [0, 1], with differences inside the noise scored as ties.

``levels`` (the default profile's method) puts every value on a fixed scale anchored on the
study's levels, so a configuration's score depends on its own value alone: adding or removing
another candidate never changes it.  ``minmax`` (1 = best candidate, 0 = worst) is kept for
profiles that ask for it; it is not independent of irrelevant alternatives.
"""

from __future__ import annotations

import numpy as np


def scale(values: np.ndarray, reference: np.ndarray, crit) -> np.ndarray:
    """Scores in [0, 1] (1 = best); NaN values score 0."""
    out = np.zeros(len(values))
    ok = np.isfinite(values)
    if crit.normalize == "levels":
        best, worst = float(crit.best), float(crit.worst)
        if crit.scale == "log":
            v = np.where(ok & (values > 0), values, np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                s = (np.log(v) - np.log(worst)) / (np.log(best) - np.log(worst))
            # a non-positive value is at the bad end of a log scale
            s = np.where(ok & ~(values > 0), 0.0 if crit.direction == "max" else 1.0, s)
            out[ok] = np.clip(s[ok], 0.0, 1.0) + 0.0
            return out
    else:
        ref = reference[np.isfinite(reference)]
        if ref.size == 0:
            ref = values[ok]
        if ref.size == 0:
            return out
        lo, hi = float(ref.min()), float(ref.max())
        best, worst = (lo, hi) if crit.direction == "min" else (hi, lo)
        if best == worst:  # a single candidate, or a tie: as good as the best scores 1
            better = values <= best if crit.direction == "min" else values >= best
            out[ok & better] = 1.0
            return out
    out[ok] = np.clip((values[ok] - worst) / (best - worst), 0.0, 1.0) + 0.0  # + 0.0: no -0.0
    return out


def share_ties(values: np.ndarray, scores: np.ndarray, bands: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """Values within the noise of a better one share its score.

    Walk the values from best to worst; each starts a tie group unless it lies within the noise
    band (the larger of the two values' bands) of the group's first, best value, whose score it
    then takes.  Returns (scores, group id per value; -1 for a missing value).  A value can only
    gain from a better one it cannot be told apart from; one worse than every other changes
    nobody's score.
    """
    out = scores.copy()
    group = np.full(len(values), -1)
    ok = np.flatnonzero(np.isfinite(values))
    order = ok[np.argsort(values[ok], kind="mergesort")]
    if direction == "max":
        order = order[::-1]
    leader, gid = None, -1
    for i in order:
        if leader is not None and abs(values[i] - values[leader]) <= max(bands[i], bands[leader]):
            out[i] = out[leader]
        else:
            leader, gid = i, gid + 1
        group[i] = gid
    return out, group


def bands_for(values: np.ndarray, crit, measured: np.ndarray | None) -> np.ndarray:
    """Each value's noise band: its measured spread between runs where there is one, and at
    least the criterion's relative ``tie`` tolerance."""
    floor = np.abs(np.nan_to_num(values)) * float(crit.tie)
    if measured is None:
        return floor
    return np.fmax(floor, np.nan_to_num(measured, nan=0.0))
