"""Run every memorization module and summarise the outcome as a markdown table and JSON.

Kept apart from the argparse code in :mod:`babyaipp.memorization.cli` so the logic can be tested
and reused from Python. A module that raises (or that does not exist yet) is recorded as a failed
result carrying its error message, so one broken module never hides the others' results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from babyaipp.memorization.base import MODULES, MemoResult, load_spec, run_module
from babyaipp.utils import atomic_write_json, atomic_write_text

#: Called after each module with (name, result); the CLI uses it to advance its progress bar.
ProgressHook = Callable[[str, MemoResult], None]


def failed_result(name: str, error: BaseException, seconds: float) -> MemoResult:
    """A result standing for a module that raised: not held, with the error in ``metrics``.

    The paper and claim are filled in when the module's spec can still be imported (it failed
    while running), and left as a note otherwise (it failed to import or does not exist).
    """
    message = f"{type(error).__name__}: {error}"
    try:
        spec = load_spec(name)
        paper, claim, headline = spec.paper, spec.claim, spec.paper_headline
    except Exception:  # noqa: BLE001 - the module itself is what is broken; report, don't raise
        paper, claim, headline = "", "(module could not be loaded)", ""
    return MemoResult(
        name=name, paper=paper, claim=claim, held=False, checks={}, key_figures={},
        metrics={"error": message}, config={}, seconds=round(seconds, 2), paper_headline=headline,
    )


def run_all(
    out: str | Path,
    *,
    names: Sequence[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    device: str = "cpu",
    on_done: ProgressHook | None = None,
) -> list[MemoResult]:
    """Run ``names`` (default: every registered module, in order) and write the summary files.

    Each module writes ``out/<name>/result.json`` and ``figure.png``; afterwards
    ``out/summary.md`` and ``out/summary.json`` are written atomically.
    """
    out = Path(out)
    results: list[MemoResult] = []
    for name in names if names is not None else list(MODULES):
        start = time.perf_counter()
        try:
            result = run_module(name, quick=quick, seed=seed, device=device, out=out / name)
        except Exception as err:  # noqa: BLE001 - keep going; the failure is part of the report
            result = failed_result(name, err, time.perf_counter() - start)
        results.append(result)
        if on_done is not None:
            on_done(name, result)
    write_summary(results, out, quick=quick, seed=seed)
    return results


def error_of(result: MemoResult) -> str | None:
    """The error message of a failed run, or None for a run that completed."""
    error = result.metrics.get("error") if isinstance(result.metrics, dict) else None
    return str(error) if error is not None and not result.checks else None


def format_figures(figures: dict[str, Any]) -> str:
    """``a=1.2, b=3`` with floats shown to 3 significant digits, for one table cell."""
    def show(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)

    return ", ".join(f"{key}={show(value)}" for key, value in figures.items())


def _cell(text: str) -> str:
    """Escape what would break a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def summary_table(results: Iterable[MemoResult]) -> str:
    """Markdown table: module, claim, key figures (or the error), held yes/no, seconds."""
    lines = [
        "| module | claim | key figures | held | seconds |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        error = error_of(result)
        figures = f"failed: {error}" if error else format_figures(result.key_figures)
        held = "yes" if result.held else "no"
        cells = [_cell(result.name), _cell(result.claim), _cell(figures), held, f"{result.seconds:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_dict(results: Sequence[MemoResult], *, quick: bool, seed: int) -> dict[str, Any]:
    """The JSON summary: per module the headline fields (full metrics stay in each result.json)."""
    return {
        "quick": quick,
        "seed": seed,
        "all_held": bool(results) and all(r.held for r in results),
        "modules": [
            {
                "name": r.name,
                "paper": r.paper,
                "claim": r.claim,
                "held": r.held,
                "checks": r.checks,
                "key_figures": r.key_figures,
                "seconds": r.seconds,
                "error": error_of(r),
                "figure": r.figure,
            }
            for r in results
        ],
    }


def write_summary(
    results: Sequence[MemoResult], out: str | Path, *, quick: bool, seed: int
) -> tuple[Path, Path]:
    """Write ``summary.md`` and ``summary.json`` under ``out`` atomically; return their paths."""
    out = Path(out)
    held = sum(r.held for r in results)
    header = (
        f"# Memorization benchmarks: summary\n\n"
        f"{held} of {len(results)} claims held ({'quick' if quick else 'full'} run, seed {seed}).\n\n"
    )
    md = atomic_write_text(out / "summary.md", header + summary_table(results))
    js = atomic_write_json(out / "summary.json", summary_dict(results, quick=quick, seed=seed))
    return md, js
