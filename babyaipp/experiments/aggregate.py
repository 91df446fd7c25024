"""Aggregate a sweep's trials: interquartile mean across seeds with stratified-bootstrap intervals.

Method (after Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice", whose
``rliable`` library defines it):

* point estimate: the interquartile mean (IQM) of the per-seed success rates,
  ``rliable.metrics.aggregate_iqm`` (``scipy.stats.trim_mean(x, 0.25)``). Trimming removes
  ``floor(0.25 n)`` seeds at each end, so with fewer than 4 seeds the IQM *is* the plain mean; we
  report the plain mean beside it either way;
* interval: 95% percentile interval of the IQM over a stratified bootstrap (seeds resampled with
  replacement within each task, here one task per table cell), as ``rliable.library.
  get_interval_estimates`` computes it. We run that resampling ourselves with a seeded
  ``np.random.Generator``: rliable's ``StratifiedBootstrap`` draws its indices from NumPy's global
  RNG (not reproducible without touching global state), and ``rliable.library`` does not import
  next to pandas 3 (its ``arch`` dependency breaks). ``tests/experiments/test_aggregate.py``
  checks our intervals against rliable's whenever rliable.library imports;
* the Train − TargetPairOnly gap: the same IQM and interval, over the per-seed gaps (each seed's
  Train success minus its TargetPairOnly success), so the pairing of splits by seed is kept;
* learning curves: each seed's ``progress.csv`` success rate interpolated onto a common step
  grid; the band is the bootstrap interval of the mean over seeds at each step.

Nothing here prints or writes except :func:`write_summary`; every draw comes from
``np.random.default_rng(seed)``.

The IQM, the bootstrap and ``BootstrapOptions`` live in :mod:`babyaipp.experiments.bootstrap`; this
module reads the trials, groups them by seed and writes the summary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babyaipp.agents.progress import read_progress
from babyaipp.errors import CheckpointError, ConfigError
from babyaipp.experiments.bootstrap import (
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_CONFIDENCE,
    DEFAULT_REPS,
    BootstrapOptions,
    bootstrap_mean_band,
    stratified_bootstrap_ci,
)
from babyaipp.utils import atomic_write_json, atomic_write_text

SPLIT_ORDER: tuple[str, ...] = ("Train", "Test", "TargetPairOnly")
GAP_SPLITS: tuple[str, str] = ("Train", "TargetPairOnly")
#: At most this many points per learning curve in summary.json and the figure.
CURVE_POINTS = 100
TRIALS_SUBDIR = "trials"
TRIAL_JSON = "trial.json"
RESULTS_PATH = ("eval", "results.json")
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
#: Config fields that, with ``seed`` left out, define a group of seeds aggregated together.
GROUP_FIELDS: tuple[str, ...] = (
    "env_id",
    "model",
    "algo",
    "recurrent",
    "text",
    "steps",
    "episodes",
    "n_envs",
    "env_kwargs",
    "hyperparameters",
    "engine",
)


# --------------------------------------------------------------------------- reading trials
@dataclass
class TrialRecord:
    """One trial on disk: its config, its evaluation (if done) and its learning curve."""

    key: str
    path: Path
    config: dict[str, Any]
    status: str
    results: dict[str, Any] | None
    error: str | None


def read_trial(trial_dir: Path) -> TrialRecord | None:
    """A trial directory's record, or None if it holds no ``trial.json`` (not a sweep trial)."""
    meta_path = trial_dir / TRIAL_JSON
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    results = None
    results_path = trial_dir.joinpath(*RESULTS_PATH)
    if meta.get("status") == "done" and results_path.is_file():
        try:
            results = json.loads(results_path.read_text())
        except (OSError, ValueError):
            results = None
    status = "done" if results is not None else str(meta.get("status", "unknown"))
    if status == "done" and results is None:
        status = "incomplete"
    return TrialRecord(trial_dir.name, trial_dir, dict(meta.get("config", {})), status, results, meta.get("error"))


def read_trials(sweep_dir: str | os.PathLike) -> list[TrialRecord]:
    """Every trial under ``SWEEP/trials``, sorted by key; CheckpointError if there is no such folder."""
    folder = Path(sweep_dir) / TRIALS_SUBDIR
    if not folder.is_dir():
        raise CheckpointError(f"{folder} not found: not a sweep directory (make one with `babyaipp sweep`)")
    records = [read_trial(p) for p in sorted(folder.iterdir()) if p.is_dir()]
    return [r for r in records if r is not None]


def is_sweep_dir(path: str | os.PathLike) -> bool:
    """True for a directory made by ``babyaipp sweep`` (it has ``trials/``)."""
    return (Path(path) / TRIALS_SUBDIR).is_dir()


#: Defaults of config fields that older trial.json files may lack, so old and new trials group together.
_FIELD_DEFAULTS: dict[str, Any] = {"algo": "ppo", "engine": "gym"}


def _field(config: Mapping[str, Any], name: str) -> Any:
    return config.get(name, _FIELD_DEFAULTS.get(name))


def eval_actions(results: Mapping[str, Any]) -> str:
    """``greedy`` or ``sampled``: how the evaluation chose actions (results without the field predate
    sampling and were greedy)."""
    return "greedy" if str(results.get("actions", "greedy")).startswith("greedy") else "sampled"


def _group_key(trial: TrialRecord) -> str:
    fields = {k: _field(trial.config, k) for k in GROUP_FIELDS}
    return json.dumps({**fields, "eval_actions": eval_actions(trial.results or {})}, sort_keys=True)


def group_label(config: Mapping[str, Any], varying: Sequence[str] = ()) -> str:
    """``model/algo/text`` (+ ``lstm``), and any other field that varies within the env."""
    parts = [str(config.get("model")), str(config.get("algo", "ppo"))]
    if config.get("recurrent"):
        parts.append("lstm")
    parts.append(f"text={config.get('text')}")
    for name in varying:
        if name not in ("model", "algo", "recurrent", "text", "env_id"):
            parts.append(f"{name}={json.dumps(_field(config, name), sort_keys=True)}")
    return " ".join(parts)


# --------------------------------------------------------------------------- per-group summary
def _estimate(values: Sequence[float], options: BootstrapOptions) -> dict[str, Any]:
    """IQM with its interval, plus the plain mean and the per-seed values, for one cell."""
    est = stratified_bootstrap_ci(values, "iqm", options.reps, options.confidence, options.seed)
    return {
        "iqm": est.point,
        "ci": [est.low, est.high],
        "mean": float(np.mean(values)),
        "n_seeds": est.n,
        "per_seed": [float(v) for v in values],
    }


def _split_success(results: Mapping[str, Any], split: str) -> float | None:
    cell = (results.get("splits") or {}).get(split) or {}
    rate = cell.get("success_rate")
    return None if rate is None else float(rate)


def summarise_group(
    per_seed: Mapping[int, Mapping[str, Any]], options: BootstrapOptions | None = None
) -> dict[str, Any]:
    """IQM + interval per split, the gap, and per-held-out-pair success of one group of seeds.

    ``per_seed`` maps a training seed to that trial's ``eval/results.json``.
    """
    options = options or BootstrapOptions()
    seeds = sorted(per_seed)
    splits: dict[str, Any] = {}
    for split in SPLIT_ORDER:
        values = [(s, _split_success(per_seed[s], split)) for s in seeds]
        present = [(s, v) for s, v in values if v is not None]
        if present:
            splits[split] = {"seeds": [s for s, _ in present], **_estimate([v for _, v in present], options)}
    gap = None
    gaps = [
        (s, a - b)
        for s in seeds
        if (a := _split_success(per_seed[s], GAP_SPLITS[0])) is not None
        and (b := _split_success(per_seed[s], GAP_SPLITS[1])) is not None
    ]
    if gaps:
        gap = {"splits": list(GAP_SPLITS), "seeds": [s for s, _ in gaps], **_estimate([g for _, g in gaps], options)}
    return {"seeds": seeds, "splits": splits, "gap": gap, "held_out_pairs": _pair_summary(per_seed, seeds, options)}


def _pair_summary(
    per_seed: Mapping[int, Mapping[str, Any]], seeds: Sequence[int], options: BootstrapOptions
) -> dict[str, dict[str, Any]]:
    """Per split and held-out pair: IQM over the seeds whose evaluation met the pair, and pooled rate."""
    out: dict[str, dict[str, Any]] = {}
    for split in SPLIT_ORDER:
        by_pair: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
        for s in seeds:
            cell = ((per_seed[s].get("splits") or {}).get(split) or {}).get("per_held_out_pair") or {}
            for pair, group in cell.items():
                if group.get("episodes"):
                    by_pair.setdefault(pair, []).append((s, group))
        if not by_pair:
            continue
        out[split] = {}
        for pair, items in sorted(by_pair.items()):
            episodes = sum(int(g["episodes"]) for _, g in items)
            successes = sum(int(g["successes"]) for _, g in items)
            out[split][pair] = {
                "seeds": [s for s, _ in items],
                "episodes": episodes,
                "pooled_success": successes / episodes,
                **_estimate([float(g["success_rate"]) for _, g in items], options),
            }
    return out


def _learning_curve(trials: Sequence[TrialRecord], options: BootstrapOptions) -> dict[str, Any] | None:
    """Mean training success over seeds with a bootstrap band, on the steps every seed reached."""
    curves = []
    for trial in trials:
        rows = [r for r in read_progress(trial.path) if np.isfinite(r.get("success_rate", np.nan))]
        if rows:
            curves.append((np.array([r["timesteps"] for r in rows]), np.array([r["success_rate"] for r in rows])))
    if not curves:
        return None
    start = max(float(c[0][0]) for c in curves)
    stop = min(float(c[0][-1]) for c in curves)
    distinct = sorted({float(t) for c in curves for t in c[0] if start <= t <= stop})
    grid = np.array(distinct if len(distinct) <= CURVE_POINTS else np.linspace(start, stop, CURVE_POINTS))
    stacked = np.stack([np.interp(grid, steps, success) for steps, success in curves])
    mean, low, high = bootstrap_mean_band(stacked, min(options.reps, 2000), options.confidence, options.seed)
    return {
        "timesteps": grid.tolist(),
        "mean": mean.tolist(),
        "ci_low": low.tolist(),
        "ci_high": high.tolist(),
        "n_seeds": len(curves),
    }


# --------------------------------------------------------------------------- the sweep summary
def method_description(options: BootstrapOptions) -> dict[str, Any]:
    return {
        "point_estimate": "interquartile mean (IQM) across seeds, rliable.metrics.aggregate_iqm "
        "(25% trimmed mean; with < 4 seeds nothing is trimmed and the IQM equals the mean)",
        "interval": f"{options.confidence:.0%} percentile interval over a stratified bootstrap of seeds "
        f"(rliable's method), {options.reps} replicates, np.random.default_rng({options.seed})",
        "gap": "IQM and interval of the per-seed gap Train − TargetPairOnly",
        "curves": "mean over seeds of progress.csv's training success rate, interpolated to common steps; "
        "band: bootstrap interval of the mean",
        "reps": options.reps,
        "confidence": options.confidence,
        "bootstrap_seed": options.seed,
    }


def aggregate_sweep(
    sweep_dir: str | os.PathLike,
    reps: int = DEFAULT_REPS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """The sweep's summary (JSON-ready): per env, one entry per group of seeds, and trial counts."""
    options = BootstrapOptions(reps, confidence, seed)
    trials = read_trials(sweep_dir)
    done = [t for t in trials if t.status == "done"]
    by_env: dict[str, dict[str, list[TrialRecord]]] = {}
    for t in done:
        by_env.setdefault(str(t.config.get("env_id")), {}).setdefault(_group_key(t), []).append(t)
    envs: dict[str, Any] = {}
    for env_id, groups in sorted(by_env.items()):
        configs = [g[0].config for g in groups.values()]
        varying = [f for f in GROUP_FIELDS if len({json.dumps(_field(c, f), sort_keys=True) for c in configs}) > 1]
        entries = []
        for members in groups.values():
            members = sorted(members, key=lambda t: int(t.config.get("seed", 0)))
            config = members[0].config
            per_seed = {int(t.config.get("seed", 0)): t.results or {} for t in members}
            actions = eval_actions(members[0].results or {})
            entries.append(
                {
                    "label": group_label(config, varying) + (" greedy" if actions == "greedy" else ""),
                    "eval_actions": actions,
                    "config": {k: _field(config, k) for k in GROUP_FIELDS},
                    "trials": [t.key for t in members],
                    **summarise_group(per_seed, options),
                    "curve": _learning_curve(members, options),
                }
            )
        entries.sort(key=lambda e: e["label"])
        envs[env_id] = {"groups": entries}
    return {
        "sweep_dir": str(sweep_dir),
        "method": method_description(options),
        "trials": {
            "total": len(trials),
            "done": len(done),
            "failed": {t.key: t.error for t in trials if t.status == "failed"},
            "not_done": [t.key for t in trials if t.status not in ("done", "failed")],
        },
        "envs": envs,
    }


# --------------------------------------------------------------------------- rliable
def rliable_scores(summary: str | os.PathLike | Mapping[str, Any], split: str = "TargetPairOnly") -> dict[str, Any]:
    """rliable's score dict from a sweep's ``summary.json`` (a path, or the loaded dict).

    ``{group label: array of shape (n_seeds, n_envs)}``: one row per training seed, one column
    per env (rliable's "task"), holding the success rate on ``split`` (``"Train"``, ``"Test"``,
    ``"TargetPairOnly"``, or ``"gap"`` for Train - TargetPairOnly). Feed it to
    ``rliable.library.get_interval_estimates(scores, aggregate_fn, reps=...)``. A group's rows
    are the seeds it has in every env; a group missing from one of the envs is refused, naming
    both, since rliable needs a full matrix per algorithm.
    """
    if not isinstance(summary, Mapping):
        path = Path(summary)
        if path.is_dir():
            path = path / SUMMARY_JSON
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path} cannot be read as a sweep summary: {err}") from None
    valid = (*SPLIT_ORDER, "gap")
    if split not in valid:
        raise ConfigError(f"split {split!r} is not one of {', '.join(valid)}")
    envs = list(summary.get("envs") or {})
    if not envs:
        raise CheckpointError("the summary holds no evaluated env (is the sweep finished?)")
    cells: dict[str, dict[str, dict[int, float]]] = {}
    for env in envs:
        for group in summary["envs"][env]["groups"]:
            cell = group.get("gap") if split == "gap" else group["splits"].get(split)
            if cell:
                cells.setdefault(group["label"], {})[env] = dict(zip(cell["seeds"], cell["per_seed"]))
    scores = {}
    for label, by_env in sorted(cells.items()):
        missing = [env for env in envs if env not in by_env]
        if missing:
            raise ConfigError(f"group {label!r} has no {split} results on {', '.join(missing)}")
        seeds = sorted(set.intersection(*(set(v) for v in by_env.values())))
        scores[label] = np.array([[by_env[env][s] for env in envs] for s in seeds], dtype=float).reshape(
            len(seeds), len(envs)
        )
    return scores


# --------------------------------------------------------------------------- markdown
def fmt_cell(cell: Mapping[str, Any] | None, signed: bool = False) -> str:
    """``IQM [low, high]`` (signed for gaps), or an en dash when absent."""
    if not cell:
        return "–"
    f = "{:+.3f}" if signed else "{:.3f}"
    low, high = cell["ci"]
    return f"{f.format(cell['iqm'])} [{f.format(low)}, {f.format(high)}]"


def _per_seed(cell: Mapping[str, Any] | None) -> str:
    if not cell:
        return "–"
    return ", ".join(f"{s}: {v:.3f}" for s, v in zip(cell["seeds"], cell["per_seed"]))


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """Per env: IQM [95% CI] per split and the gap, then mean and per-seed values, then held-out pairs."""
    method = summary["method"]
    trials = summary["trials"]
    conf = f"{method['confidence']:.0%}"
    lines = [
        "# Sweep summary\n",
        f"- trials: {trials['done']} done of {trials['total']}"
        + (f", {len(trials['failed'])} failed" if trials["failed"] else "")
        + (f", {len(trials['not_done'])} not finished" if trials["not_done"] else ""),
        f"- cells: {method['point_estimate']}; [{conf} CI]: {method['interval']}",
        f"- gap: {method['gap']}",
        "- success: an evaluation episode ended with reward > 0 (actions sampled from the policy, or its argmax in "
        "rows marked greedy; evaluation seeds disjoint from training)\n",
    ]
    for env_id, env in summary["envs"].items():
        groups = env["groups"]
        lines.append(f"## {env_id}\n")
        lines.append(f"IQM success across seeds [{conf} CI]\n")
        lines.append("| model/algo/text | seeds | " + " | ".join(SPLIT_ORDER) + " | gap Train − TargetPairOnly |")
        lines.append("|---|---|" + "---|" * (len(SPLIT_ORDER) + 1))
        for g in groups:
            cells = " | ".join(fmt_cell(g["splits"].get(s)) for s in SPLIT_ORDER)
            lines.append(f"| {g['label']} | {len(g['seeds'])} | {cells} | {fmt_cell(g['gap'], signed=True)} |")
        lines.append("")
        lines.append("Plain mean across seeds, and each seed's value (seed: success)\n")
        lines.append("| model/algo/text | split | mean | per seed |\n|---|---|---|---|")
        for g in groups:
            for s in SPLIT_ORDER:
                cell = g["splits"].get(s)
                if cell:
                    lines.append(f"| {g['label']} | {s} | {cell['mean']:.3f} | {_per_seed(cell)} |")
            if g["gap"]:
                lines.append(f"| {g['label']} | gap | {g['gap']['mean']:+.3f} | {_per_seed(g['gap'])} |")
        lines.append("")
        pair_rows = [
            f"| {g['label']} | {split} | {pair} | {fmt_cell(cell)} | {cell['pooled_success']:.3f} "
            f"| {cell['n_seeds']} | {cell['episodes']} |"
            for g in groups
            for split, pairs in g["held_out_pairs"].items()
            for pair, cell in pairs.items()
        ]
        if pair_rows:
            lines.append("Success on episodes containing each held-out (colour, property) pair\n")
            lines.append(
                f"| model/algo/text | split | pair | IQM [{conf} CI] | pooled | seeds | episodes |\n"
                "|---|---|---|---|---|---|---|"
            )
            lines.extend(pair_rows)
            lines.append("")
    if trials["failed"]:
        lines.append("## Failed trials\n")
        lines.extend(f"- `{key}`: {err}" for key, err in trials["failed"].items())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_summary(summary: Mapping[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``summary.json`` and ``summary.md`` in ``out_dir``, written atomically.

    ``sweep_dir`` is written relative to ``out_dir`` (``.`` for a summary inside its sweep), so the
    files name no absolute path and the pair can be moved together.
    """
    out_dir = Path(out_dir)
    if summary.get("sweep_dir"):
        relative = os.path.relpath(Path(summary["sweep_dir"]).resolve(), out_dir.resolve())
        summary = {**summary, "sweep_dir": relative}
    return (
        atomic_write_json(out_dir / SUMMARY_JSON, summary),
        atomic_write_text(out_dir / SUMMARY_MD, summary_markdown(summary)),
    )


__all__ = [
    "TrialRecord",
    "aggregate_sweep",
    "eval_actions",
    "group_label",
    "is_sweep_dir",
    "read_trials",
    "rliable_scores",
    "summarise_group",
    "summary_markdown",
    "write_summary",
]
