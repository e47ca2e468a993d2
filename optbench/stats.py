"""The small interval estimators every analysis and verdict shares (one definition of each CI)."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

NAN_CI = (math.nan, math.nan, math.nan, 0)


def finite(values) -> np.ndarray:
    values = np.asarray(list(values), dtype=float)
    return values[np.isfinite(values)]


def mean_ci(values, confidence: float) -> tuple[float, float, float, int]:
    """(mean, low, high, n): Student-t interval over the finite values; no interval below n = 2."""
    values = finite(values)
    n = len(values)
    if n == 0:
        return NAN_CI
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def geometric_ci(values, confidence: float) -> tuple[float, float, float, int]:
    """mean_ci in log space, mapped back: geometric mean and its interval (positive values only)."""
    values = finite(values)
    mean, low, high, n = mean_ci(np.log(values[values > 0]), confidence)
    return tuple(math.exp(v) if np.isfinite(v) else math.nan for v in (mean, low, high)) + (n,)


def relative_drop_ci(ends, starts, confidence: float) -> tuple[float, float, float, int]:
    """1 − end/start as (estimate, low, high, n), bounded above by 1 as a loss ratio must be.

    The t interval is taken on log(end/start) (a ratio of positive losses) and mapped back through
    1 − exp(·), so the interval never reaches past a 100 % drop; the estimate is 1 − the geometric
    mean ratio. Pairs with a non-finite or non-positive member are left out.
    """
    ends, starts = np.asarray(list(ends), dtype=float), np.asarray(list(starts), dtype=float)
    keep = np.isfinite(ends) & np.isfinite(starts) & (ends > 0) & (starts > 0)
    mean, low, high, n = mean_ci(np.log(ends[keep] / starts[keep]), confidence)
    drop = [1 - math.exp(v) if np.isfinite(v) else math.nan for v in (mean, high, low)]
    return drop[0], drop[1], drop[2], n


def median_range(values) -> tuple[float, float, float, int]:
    """(median, min, max, n) of the finite values — a spread, not a confidence interval."""
    values = finite(values)
    if not len(values):
        return NAN_CI
    return float(np.median(values)), float(values.min()), float(values.max()), len(values)


def family_level(confidence: float, tests: int) -> float:
    """Bonferroni: each of `tests` intervals at 1 − (1 − confidence)/tests covers all at `confidence`."""
    return 1 - (1 - confidence) / max(tests, 1)


def t_ci_around(values, confidence: float) -> tuple[float, float, float, int]:
    """mean_ci, but NaN interval when the values do not vary (a t interval of zero width says nothing)."""
    values = finite(values)
    if len(values) > 1 and values.std() == 0:
        return float(values.mean()), math.nan, math.nan, len(values)
    return mean_ci(values, confidence)
