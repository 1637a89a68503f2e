"""One scale for every detector: how unusual a raw score is *among benign traffic*.

Each detector's raw score has its own units (path lengths, kernel distances, reconstruction
errors, probabilities). :class:`BenignCalibrator` learns the distribution of a detector's raw
scores on benign validation traffic and maps a score to its benign CDF value F(s): benign events
land uniformly on [0, 1], and F(s) > 0.999 means "fewer than 1 benign event in 1000 scores this
high". Beyond the highest benign score the empirical CDF runs out, so its tail is extrapolated
exponentially: 1 - F falls by a factor e per ``tail_scale_`` of score, and an attack far beyond
anything benign comes out as 1 - 1e-9 instead of flattening at (n - 1) / n. The tail's scale
is fitted to the highest benign scores only (the top 0.1%, at least 20), since that is the
region the decisions are made in.

Internally scores are kept as *surprisal* z = -ln(1 - F): F = 0.999 is z = 6.9, and the tail
stays linear and exact in floating point where F itself would round to 1.0.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

# Surprisal is capped here (1 - F ~ 2e-22): beyond it evidence is certain, and unbounded values
# would only make the fusion's fit ill-conditioned.
MAX_SURPRISAL = 50.0


class BenignCalibrator(BaseEstimator):  # type: ignore[misc]
    def __init__(
        self, max_knots: int = 4096, tail_fraction: float = 0.001, tail_count: int = 20
    ) -> None:
        self.max_knots = max_knots
        self.tail_fraction = tail_fraction
        self.tail_count = tail_count

    def fit(self, scores: ArrayLike, y: ArrayLike | None = None) -> Self:
        """Learn from raw scores of *benign* validation events."""
        s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
        if s.size == 0 or not np.isfinite(s).all():
            raise ValueError("calibration needs at least one finite benign score")
        n = s.size
        values, counts = np.unique(s, return_counts=True)
        below = np.cumsum(counts) - counts
        # Mid-ranks, so ties (many benign events share a score of exactly 0) sit in the middle of
        # their step; n + 1 keeps F < 1 at the benign maximum.
        cdf = (below + counts / 2.0) / (n + 1.0)
        if values.size > self.max_knots:
            keep = np.unique(np.linspace(0, values.size - 1, self.max_knots).round().astype(int))
            values, cdf = values[keep], cdf[keep]
        self.knots_ = values
        self.cdf_ = cdf
        self.n_samples_ = n
        top = float(values[-1])
        # The tail's scale is the mean excess of the top k scores over the (k+1)-th: the maximum
        # likelihood scale of an exponential tail fitted to the highest benign scores alone.
        k = min(max(self.tail_count, math.ceil(self.tail_fraction * n)), n - 1)
        excess = float(s[n - k :].mean() - s[n - k - 1]) if k > 0 else 0.0
        self.tail_scale_ = max(excess, (top - float(values[0])) * 1e-3, 1e-12)
        self.top_surprisal_ = float(-np.log1p(-cdf[-1]))
        return self

    def surprisal(self, scores: ArrayLike) -> NDArray[np.float64]:
        """z = -ln(1 - F(s)) of each raw score (0 for the most normal, ~ln(n) at the benign max,
        growing linearly beyond)."""
        check_is_fitted(self)
        s = np.asarray(scores, dtype=np.float64)
        inside = -np.log1p(-np.interp(s, self.knots_, self.cdf_))
        beyond = self.top_surprisal_ + (s - self.knots_[-1]) / self.tail_scale_
        z: NDArray[np.float64] = np.minimum(
            np.where(s > self.knots_[-1], beyond, inside), MAX_SURPRISAL
        )
        return z

    def surprisal_one(self, score: float) -> float:
        top = float(self.knots_[-1])
        if score > top:
            return min(float(self.top_surprisal_ + (score - top) / self.tail_scale_), MAX_SURPRISAL)
        return -math.log1p(-float(np.interp(score, self.knots_, self.cdf_)))

    def transform(self, scores: ArrayLike) -> NDArray[np.float64]:
        """Calibrated scores F(s) in [0, 1]."""
        return to_probability(self.surprisal(scores))


def to_probability(z: NDArray[np.float64]) -> NDArray[np.float64]:
    result: NDArray[np.float64] = -np.expm1(-z)
    return result
