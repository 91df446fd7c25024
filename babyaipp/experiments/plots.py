"""Figures of a sweep summary: success per split with interval error bars, and learning curves with bands.

Both read the dict :func:`babyaipp.experiments.aggregate.aggregate_sweep` returns, so a figure
never shows a number the JSON does not hold. matplotlib runs on Agg; files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from babyaipp.experiments.aggregate import SPLIT_ORDER
from babyaipp.utils import atomic_savefig

SUCCESS_PNG = "success.png"
CURVES_PNG = "curves.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _bars(ax: Any, groups: list[Mapping[str, Any]], cells: list[list[Mapping[str, Any] | None]], names: list[str]):
    """Grouped bars (IQM) with asymmetric interval error bars and each seed's value as a dot."""
    n = max(len(groups), 1)
    width = 0.8 / n
    x = np.arange(len(names))
    colours = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (group, row) in enumerate(zip(groups, cells)):
        pos = x - 0.4 + width * (i + 0.5)
        height = np.array([c["iqm"] if c else np.nan for c in row])
        low = np.array([c["iqm"] - c["ci"][0] if c else 0.0 for c in row])
        high = np.array([c["ci"][1] - c["iqm"] if c else 0.0 for c in row])
        colour = colours[i % len(colours)]
        ax.bar(
            pos,
            height,
            width,
            yerr=[low, high],
            capsize=3,
            color=colour,
            label=group["label"],
            edgecolor="black",
            linewidth=0.5,
            alpha=0.85,
        )
        for p, c in zip(pos, row):
            if c:
                ax.scatter([p] * len(c["per_seed"]), c["per_seed"], s=9, color="black", zorder=3)
    ax.set_xticks(x, names)
    ax.grid(axis="y", alpha=0.3)


def success_chart(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Per env: IQM success per split and the Train − TargetPairOnly gap, error bars = the intervals."""
    plt = _pyplot()
    envs = summary["envs"]
    conf = f"{summary['method']['confidence']:.0%}"
    n_groups = max((len(e["groups"]) for e in envs.values()), default=1)
    fig, axes = plt.subplots(
        max(len(envs), 1),
        2,
        figsize=(6.5 + 0.6 * n_groups, 3.6 * max(len(envs), 1)),
        gridspec_kw={"width_ratios": [3, 1]},
        squeeze=False,
    )
    for (env_id, env), (ax_split, ax_gap) in zip(envs.items(), axes):
        groups = env["groups"]
        _bars(ax_split, groups, [[g["splits"].get(s) for s in SPLIT_ORDER] for g in groups], list(SPLIT_ORDER))
        ax_split.set_ylim(0, 1.05)
        ax_split.set_ylabel("success rate (IQM over seeds)")
        ax_split.set_title(env_id.split("/")[-1], fontsize=10)
        _bars(ax_gap, groups, [[g["gap"]] for g in groups], ["Train − TargetPairOnly"])
        ax_gap.axhline(0, color="black", linewidth=0.8)
        ax_gap.set_title("gap", fontsize=10)
        ax_gap.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if not envs:
        axes[0][0].text(0.5, 0.5, "no finished trial", ha="center", transform=axes[0][0].transAxes)
    fig.suptitle(
        f"Success: bars = IQM over seeds, error bars = {conf} stratified-bootstrap CI, dots = seeds", fontsize=10
    )
    fig.tight_layout()
    try:
        return atomic_savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)


def curves_chart(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Per env: mean training success over seeds vs steps, band = bootstrap interval of the mean."""
    plt = _pyplot()
    envs = summary["envs"]
    conf = f"{summary['method']['confidence']:.0%}"
    fig, axes = plt.subplots(max(len(envs), 1), 1, figsize=(8.5, 3.6 * max(len(envs), 1)), squeeze=False)
    for (env_id, env), (ax,) in zip(envs.items(), axes):
        drawn = 0
        for group in env["groups"]:
            curve = group.get("curve")
            if not curve:
                continue
            steps = np.asarray(curve["timesteps"])
            (line,) = ax.plot(
                steps,
                curve["mean"],
                label=f"{group['label']} ({curve['n_seeds']} seeds)",
                marker="." if len(steps) < 30 else None,
            )
            ax.fill_between(steps, curve["ci_low"], curve["ci_high"], color=line.get_color(), alpha=0.2)
            if len(steps) == 1:  # a band of one point is invisible: draw it as an error bar
                mean, low, high = curve["mean"][0], curve["ci_low"][0], curve["ci_high"][0]
                ax.errorbar(steps, [mean], yerr=[[mean - low], [high - mean]], color=line.get_color(), capsize=3)
            drawn += 1
        ax.set_title(env_id.split("/")[-1], fontsize=10)
        ax.set_xlabel("training steps")
        ax.set_ylabel("training success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.text(0.5, 0.5, "no progress.csv rows with finished episodes", ha="center", transform=ax.transAxes)
    if not envs:
        axes[0][0].text(0.5, 0.5, "no finished trial", ha="center", transform=axes[0][0].transAxes)
    fig.suptitle(f"Learning curves: mean over seeds, band = {conf} bootstrap CI of the mean", fontsize=10)
    fig.tight_layout()
    try:
        return atomic_savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)


def write_figures(summary: Mapping[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``success.png`` and ``curves.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return success_chart(summary, out_dir / SUCCESS_PNG), curves_chart(summary, out_dir / CURVES_PNG)


__all__ = ["CURVES_PNG", "SUCCESS_PNG", "curves_chart", "success_chart", "write_figures"]
