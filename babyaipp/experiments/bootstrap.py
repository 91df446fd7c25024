"""Statistics for a sweep summary: the IQM and stratified-bootstrap intervals, after rliable.

:func:`iqm` is ``rliable.metrics.aggregate_iqm``; :func:`stratified_bootstrap_ci` resamples seeds
within each task as ``rliable.library.get_interval_estimates`` does, but from a seeded
``np.random.Generator``; :func:`bootstrap_mean_band` gives the band of a mean learning curve, and
:class:`BootstrapOptions` carries replicates, coverage and seed. Kept apart from
:mod:`babyaipp.experiments.aggregate` (which reads trials, groups them and writes the summary) so
the method has one home and imports nothing of that flow; everything here is re-exported there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from babyaipp.errors import check_range

DEFAULT_REPS = 10_000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP_SEED = 0


def iqm(scores: np.ndarray | Sequence[float]) -> float:
    """Interquartile mean over all runs (and tasks), exactly ``rliable.metrics.aggregate_iqm``."""
    from rliable.metrics import aggregate_iqm

    return float(aggregate_iqm(np.asarray(scores, dtype=float)))


def _iqm_rows(samples: np.ndarray) -> np.ndarray:
    """IQM of every row of a (reps, values) array: ``aggregate_iqm`` of each bootstrap replicate."""
    from scipy.stats import trim_mean

    return np.asarray(trim_mean(samples, 0.25, axis=1), dtype=float)


def _mean_rows(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=1)


STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"iqm": _iqm_rows, "mean": _mean_rows}


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval, from ``n`` seeds."""

    point: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"point": self.point, "ci": [self.low, self.high], "n": self.n}


def stratified_bootstrap_ci(
    scores: np.ndarray | Sequence[float] | Sequence[Sequence[float]],
    statistic: str = "iqm",
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> Estimate:
    """Point estimate and percentile interval of ``statistic`` over a stratified bootstrap.

    ``scores`` is (runs,) or (runs, tasks), as in rliable: each replicate resamples the runs with
    replacement independently within every task (column), then applies the statistic to the whole
    replicate (the IQM pools runs and tasks, as ``aggregate_iqm`` does). With one run, or with all
    runs equal, the interval has zero width.
    """
    check_range("reps", reps, 1, None)
    check_range("confidence", confidence, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    stat = STATISTICS[statistic]
    data = np.asarray(scores, dtype=float)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty (runs,) or (runs, tasks) array, got shape {data.shape}")
    runs, tasks = data.shape
    point = float(stat(data.reshape(1, -1))[0])
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    replicates = data[rows, np.arange(tasks)[None, None, :]].reshape(reps, -1)
    values = stat(replicates)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    # Float rounding can put a bound a hair past the point on constant data: clamp.
    return Estimate(point, float(min(low, point)), float(max(high, point)), runs)


def bootstrap_mean_band(
    curves: np.ndarray, reps: int = 2000, confidence: float = DEFAULT_CONFIDENCE, seed: int = DEFAULT_BOOTSTRAP_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds of (seeds, points) curves, with a percentile bootstrap band (seeds resampled)."""
    curves = np.asarray(curves, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, curves.shape[0], size=(reps, curves.shape[0]))
    means = curves[idx].mean(axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail], axis=0)
    mean = curves.mean(axis=0)
    return mean, np.minimum(low, mean), np.maximum(high, mean)


@dataclass(frozen=True)
class BootstrapOptions:
    """How intervals are computed: replicates, coverage, and the generator's seed."""

    reps: int = DEFAULT_REPS
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = DEFAULT_BOOTSTRAP_SEED

    def __post_init__(self) -> None:
        check_range("reps", self.reps, 1, None)
        check_range("confidence", self.confidence, 0.0, 1.0, low_inclusive=False, high_inclusive=False)


__all__ = [
    "DEFAULT_BOOTSTRAP_SEED",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_REPS",
    "STATISTICS",
    "BootstrapOptions",
    "Estimate",
    "bootstrap_mean_band",
    "iqm",
    "stratified_bootstrap_ci",
]
