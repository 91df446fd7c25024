"""Figures for ``babyaipp compare``: success per split (grouped bars) and learning curves.

matplotlib runs on the Agg backend (no display needed) and every figure is written atomically.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from babyaipp.utils import atomic_savefig

PROGRESS_CSV = "progress.csv"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def success_bar_chart(
    labelled: Sequence[tuple[str, Mapping[str, Any]]],
    path: str | os.PathLike,
    title: str = "Success rate per split (error bars: ± 1 SE)",
) -> Path:
    """Grouped bars: one group per split, one bar per run (references hatched)."""
    plt = _pyplot()
    import numpy as np

    splits: list[str] = []
    for _, res in labelled:
        splits += [s for s in res.get("splits", {}) if s not in splits]
    n_bars = max(len(labelled), 1)
    width = 0.8 / n_bars
    x = np.arange(len(splits))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(splits) + 0.5 * n_bars), 4.2))
    for i, (label, res) in enumerate(labelled):
        rates = [res.get("splits", {}).get(s, {}).get("success_rate") for s in splits]
        ses = [res.get("splits", {}).get(s, {}).get("success_se") for s in splits]
        heights = [np.nan if r is None else r for r in rates]
        errs = [0.0 if e is None else e for e in ses]
        reference = label.startswith("*")
        bars = ax.bar(
            x - 0.4 + width * (i + 0.5),
            heights,
            width,
            yerr=errs,
            capsize=3,
            label=label.replace("*", ""),
            hatch="//" if reference else None,
            alpha=0.6 if reference else 1.0,
            edgecolor="black",
            linewidth=0.5,
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)  # so a zero bar is still visible
    ax.set_xticks(x, splits)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("success rate")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    try:
        return atomic_savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)


def read_progress(run_dir: str | os.PathLike) -> tuple[list[float], list[float]] | None:
    """(timesteps, success_rate) from ``DIR/progress.csv``; ``None`` when absent or without a
    finished training episode."""
    path = Path(run_dir) / PROGRESS_CSV
    if not path.is_file():
        return None
    steps: list[float] = []
    success: list[float] = []
    try:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                try:
                    step, rate = float(row["timesteps"]), float(row["success_rate"])
                except (KeyError, TypeError, ValueError):
                    continue
                if math.isfinite(step) and math.isfinite(rate):  # nan before the first finished episode
                    steps.append(step)
                    success.append(rate)
    except OSError:
        return None
    return (steps, success) if steps else None


def _steps_formatter():
    """Tick labels like 50k / 1.5M, so six-digit step counts don't run into each other."""
    from matplotlib.ticker import FuncFormatter

    def fmt(x: float, _pos: int) -> str:
        if abs(x) >= 1e6:
            return f"{x / 1e6:g}M"
        return f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"

    return FuncFormatter(fmt)


def learning_curves(
    runs: Sequence[tuple[str, str | os.PathLike]],
    path: str | os.PathLike,
) -> tuple[Path, list[str]]:
    """Training success rate vs timesteps of each run; returns the figure and the runs without
    a usable ``progress.csv`` (named in the figure too, so a missing curve is never silent)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    missing: list[str] = []
    for label, run_dir in runs:
        curve = read_progress(run_dir)
        if curve is None:
            missing.append(label)
            continue
        ax.plot(*curve, label=label, marker="." if len(curve[0]) < 30 else None)
    ax.set_xlabel("training timesteps")
    ax.xaxis.set_major_formatter(_steps_formatter())
    ax.set_ylabel("training success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("Learning curves (Train episodes during training)")
    if missing:
        note = "no curve (no progress.csv / no finished episode): " + ", ".join(missing)
        ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize=7)
    if len(missing) < len(runs):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    try:
        return atomic_savefig(fig, path, dpi=120), missing
    finally:
        plt.close(fig)
