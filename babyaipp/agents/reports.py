"""Evaluation results on disk and as markdown: ``results.json`` / ``results.md`` and comparison tables.

Kept apart from :mod:`babyaipp.agents.evaluation` (which runs the episodes) so that reading and
formatting results needs neither torch nor the environments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from babyaipp.agents.evaluation import EVAL_SUBDIR, GAP_KEY, RESULTS_JSON, RESULTS_MD, reading_margin
from babyaipp.errors import CheckpointError
from babyaipp.utils import atomic_write_json, atomic_write_text


def write_results(result: Mapping[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    json_path = atomic_write_json(out_dir / RESULTS_JSON, result)
    md_path = atomic_write_text(out_dir / RESULTS_MD, results_markdown(result))
    return json_path, md_path


def read_results(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``DIR/eval/results.json``, with an error saying how to create it when absent."""
    import json

    path = Path(run_dir) / EVAL_SUBDIR / RESULTS_JSON
    if not path.is_file():
        raise CheckpointError(f"no evaluation results at {path}; run `babyaipp eval {run_dir}` first")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is unreadable ({err}); re-run `babyaipp eval {run_dir}`") from None


# --------------------------------------------------------------------------- tables
def fmt_rate(group: Mapping[str, Any] | None) -> str:
    if not group or group.get("success_rate") is None:
        return "–"
    return f"{group['success_rate']:.3f} ± {group['success_se']:.3f}"


def fmt_group(group: Mapping[str, Any] | None) -> str:
    if not group or not group.get("episodes"):
        return "– (0)"
    return f"{group['success_rate']:.3f} ({group['episodes']})"


def fmt_gap(gap: Mapping[str, Any] | None) -> str:
    return "–" if not gap else f"{gap['gap']:+.3f} ± {gap['se']:.3f}"


def fmt_reading(result: Mapping[str, Any]) -> str:
    """TargetPairOnly success minus the memoriser's, marked **reads** when above it beyond 1.96 SE."""
    margin = reading_margin(dict(result))
    if margin is None:
        return "–"
    mark = " **reads**" if margin["reads"] else ""
    return f"{margin['difference']:+.3f} ± {margin['se']:.3f}{mark}"


def _fmt_num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


_SPLIT_HEADER = (
    "| policy | split | success ± SE | mean return | mean length | episodes "
    "| success with held-out pair (n) | success without held-out pair (n) |\n"
    "|---|---|---|---|---|---|---|---|\n"
)


def _split_rows(policy: str, result: Mapping[str, Any]) -> str:
    rows = []
    for split, s in result.get("splits", {}).items():
        rows.append(
            f"| {policy} | {split} | {fmt_rate(s)} | {_fmt_num(s['mean_return'], 3)} "
            f"| {_fmt_num(s['mean_length'], 1)} | {s['episodes']} | {fmt_group(s['with_held_out_pair'])} "
            f"| {fmt_group(s['without_held_out_pair'])} |"
        )
    return "\n".join(rows) + ("\n" if rows else "")


def results_markdown(result: Mapping[str, Any]) -> str:
    """The evaluation as markdown: model rows, the gap, reference rows, per-pair success."""
    run = result.get("run", {})
    title = result.get("run_name") or result.get("run_dir") or result.get("env_id", "policy")
    lines = [
        f"# Evaluation of {title}\n",
        f"- env: `{result.get('env_id')}`, text: `{result.get('text')}`"
        + (
            f", model: `{run.get('model')}`, recurrent: {run.get('recurrent')}, train seed: {run.get('seed')}"
            if run
            else ""
        ),
        f"- {result.get('episodes_per_split')} episodes per split; {result.get('seed_rule')}",
        f"- actions: {result.get('actions', 'greedy (argmax)')}",
        "- success = episode ended with reward > 0; SE = sqrt(p(1-p)/n); gap SE = sqrt(SE_a² + SE_b²)\n",
        _SPLIT_HEADER + _split_rows("model", result),
        f"**Gap Train − TargetPairOnly (model): {fmt_gap(result.get(GAP_KEY))}**\n",
    ]
    if reading_margin(dict(result)) is not None:
        lines.append(
            f"**TargetPairOnly − memoriser (model): {fmt_reading(result)}** (the memoriser plans with the "
            "Train split's statistics and never reads; a model above it by more than 1.96 SE, marked "
            "**reads**, is using the description)\n"
        )
    refs = result.get("references") or {}
    if refs:
        lines.append("## Reference policies\n")
        body = "".join(_split_rows(name, ref) for name, ref in refs.items() if "splits" in ref)
        lines.append(_SPLIT_HEADER + body)
        for name, ref in refs.items():
            if "unavailable" in ref:
                lines.append(f"- {name}: not run ({ref['unavailable']})")
            else:
                lines.append(f"- gap Train − TargetPairOnly ({name}): {fmt_gap(ref.get(GAP_KEY))}")
        lines.append("")
    pair_rows = [
        f"| {policy} | {split} | {pair} | {fmt_group(g)} |"
        for policy, res in [("model", result), *refs.items()]
        for split, s in res.get("splits", {}).items()
        for pair, g in s.get("per_held_out_pair", {}).items()
    ]
    if pair_rows:
        lines.append("## Success per held-out pair present\n")
        lines.append("| policy | split | pair (colour-property) | success (n) |\n|---|---|---|---|")
        lines.extend(pair_rows)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def run_label(name: str, result: Mapping[str, Any]) -> str:
    """``name (model, text)`` for tables and legends."""
    run = result.get("run") or {}
    extra = ", ".join(str(run[k]) for k in ("model", "text") if run.get(k) is not None)
    return f"{name} ({extra})" if extra else name


def unique_references(labelled: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, Mapping[str, Any]]]:
    """The reference results of the runs, once per (policy, env, text, episodes, seed base),
    labelled ``*policy*`` plus whichever of env / text / episodes tells two of a kind apart."""
    found: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for _, res in labelled:
        for name, ref in (res.get("references") or {}).items():
            key = (name, *(ref.get(k) for k in ("env_id", "text", "episodes_per_split", "seed_base")))
            if "splits" in ref:
                found.setdefault(key, ref)
    varies = [len({key[i] for key in found}) > 1 for i in range(5)]
    out = []
    for key, ref in found.items():
        tags = [str(key[1]).split("/")[-1]] if varies[1] else []
        tags += [f"text {key[2]}"] if varies[2] else []
        tags += [f"n={key[3]}"] if varies[3] else []
        tags += [f"seeds {key[4]}+k"] if varies[4] else []
        out.append((f"*{key[0]}*" + (f" ({', '.join(tags)})" if tags else ""), ref))
    return out


def comparison_markdown(labelled: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """Runs × splits success ± SE and gap, then the reference rows of each distinct env/splits."""
    splits: list[str] = []
    for _, res in labelled:
        splits += [s for s in res.get("splits", {}) if s not in splits]
    split_cells = " | ".join(f"{s} success ± SE" for s in splits)
    header = (
        f"| run | env | episodes per split | {split_cells} | gap Train − TargetPairOnly | TargetPairOnly − memoriser |"
    )
    sep = "|---|---|---|" + "---|" * len(splits) + "---|---|"

    def row(label: str, res: Mapping[str, Any], reading: str) -> str:
        cells = [fmt_rate(res.get("splits", {}).get(s)) for s in splits]
        gap = fmt_gap(res.get(GAP_KEY))
        return (
            f"| {label} | `{res.get('env_id')}` | {res.get('episodes_per_split')} | "
            + " | ".join(cells)
            + f" | {gap} | {reading} |"
        )

    rows = [row(label, res, fmt_reading(res)) for label, res in labelled]
    rows += [row(label, ref, "") for label, ref in unique_references(labelled)]
    note = (
        "\n\nsuccess: episode ended with reward > 0; SE = sqrt(p(1-p)/n); references in *italics*; "
        "**reads**: TargetPairOnly success above the memoriser's (which never reads) by more than 1.96 SE."
    )
    return "\n".join([header, sep, *rows]) + note + "\n"


__all__ = [
    "comparison_markdown",
    "fmt_gap",
    "fmt_group",
    "fmt_rate",
    "fmt_reading",
    "read_results",
    "results_markdown",
    "run_label",
    "unique_references",
    "write_results",
]
