"""Run memorization modules over one or several seeds and summarise the outcome (markdown, JSON).

Over several seeds each check is reported as held k/n with its margin (measured − threshold)
over the seeds; a module's claim holds when it held on at least :func:`required_seeds` of the
seeds (4 of 5) and no sanity check failed on any seed.

Kept apart from the argparse code in :mod:`babyaipp.memorization.cli` so the logic can be tested
and reused from Python. A module that raises (or that does not exist yet) is recorded as a failed
result carrying its error message, so one broken module never hides the others' results.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from babyaipp.errors import ConfigError
from babyaipp.memorization.base import MODULES, SEED_MAX, MemoResult, check_seed, load_spec, run_module
from babyaipp.utils import atomic_write_json, atomic_write_text

#: Fraction of seeds on which a claim must hold (4 of 5).
HELD_FRACTION = 0.8

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
        name=name,
        paper=paper,
        claim=claim,
        held=False,
        checks={},
        key_figures={},
        metrics={"error": message},
        config={},
        seconds=round(seconds, 2),
        paper_headline=headline,
    )


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` -> [0, 3, 7]; one-line error for anything else."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        low, dash, high = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            span = [int(low)] if not dash else list(range(int(low), int(high) + 1))
        except ValueError:
            raise ConfigError(f"--seeds {text!r} is not a list like 0-4 or 0,2,5 of seeds in [0, {SEED_MAX}]") from None
        if dash and not span:
            raise ConfigError(f"--seeds {text!r}: range {part} is empty; write LOW-HIGH with LOW <= HIGH")
        seeds.extend(check_seed(s) for s in span)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} repeats a seed; valid: distinct seeds in [0, {SEED_MAX}]")
    return seeds


def check_writable_dir(path: str | Path) -> Path:
    """Create ``path`` and prove a file can be written there, or raise a one-line ConfigError.

    Called before any module runs, so a bad ``--out`` fails at once rather than after the run.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {str(path)!r} is an existing file; give a directory (new or existing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"--out {str(path)!r} is not writable ({reason}); give a directory you can write") from None
    return path


def required_seeds(n_seeds: int) -> int:
    """Seeds on which a claim must hold: ``ceil(0.8 n)`` (4 of 5, 1 of 1)."""
    return max(1, math.ceil(HELD_FRACTION * n_seeds - 1e-9))


def run_task(
    name: str, seed: int, quick: bool, device: str, target: str, overrides: dict[str, Any] | None
) -> MemoResult:
    """One module on one seed; a raised error becomes a failed result (also in a worker process)."""
    start = time.perf_counter()
    try:
        return run_module(name, quick=quick, seed=seed, device=device, out=target, overrides=overrides)
    except Exception as err:  # noqa: BLE001 - keep going; the failure is part of the report
        result = failed_result(name, err, time.perf_counter() - start)
        result.config = {"seed": seed}
        return result


def run_all(
    out: str | Path,
    *,
    names: Sequence[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    device: str = "cpu",
    on_done: ProgressHook | None = None,
    overrides: dict[str, Any] | None = None,
    jobs: int = 1,
) -> list[MemoResult]:
    """Run ``names`` (default: every registered module, in order) and write the summary files.

    With one seed each module writes ``out/<name>/result.json`` and ``figure.png``; with several
    (``seeds``) it writes ``out/<name>/seed<S>/`` per seed. Afterwards ``out/summary.md`` and
    ``out/summary.json`` are written atomically. ``jobs > 1`` runs that many (module, seed) runs
    at once in worker processes (each seeds itself, so the numbers do not depend on ``jobs``).
    Returns every per-seed result, module by module, in run order.
    """
    out = Path(out)
    seeds = list(seeds) if seeds is not None else [seed]
    multi = len(seeds) > 1
    tasks = [
        (name, s, str(out / name / f"seed{s}" if multi else out / name))
        for name in (names if names is not None else list(MODULES))
        for s in seeds
    ]
    start_all = time.perf_counter()
    results: list[MemoResult | None] = [None] * len(tasks)
    if jobs <= 1:
        for i, (name, s, target) in enumerate(tasks):
            results[i] = run_task(name, s, quick, device, target, overrides)
            if on_done is not None:
                on_done(name, results[i])
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {
                pool.submit(run_task, name, s, quick, device, target, overrides): i
                for i, (name, s, target) in enumerate(tasks)
            }
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if on_done is not None:
                    on_done(tasks[i][0], results[i])
    done = [r for r in results if r is not None]
    write_summary(done, out, quick=quick, seed=seeds[0], seeds=seeds, wall_seconds=time.perf_counter() - start_all)
    return done


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return None
    return {"mean": sum(finite) / len(finite), "min": min(finite), "max": max(finite)}


def aggregate(results: Sequence[MemoResult]) -> dict[str, Any]:
    """One module's results over seeds -> held k/n per check, margins and key figures' spread."""
    first = results[0]
    n = len(results)
    errors = [e for e in (error_of(r) for r in results) if e]
    names: list[str] = []
    for r in results:
        names.extend(k for k in r.check_details if k not in names)
    checks: dict[str, Any] = {}
    for key in names:
        rows = [r.check_details.get(key) for r in results]
        present = [row for row in rows if row is not None]
        info = present[0]
        checks[key] = {
            "kind": info["kind"],
            "op": info["op"],
            "threshold": info["threshold"],
            "reason": info["reason"],
            "held": sum(bool(row["held"]) for row in present),
            "of": n,
            "margin": _spread([row["margin"] for row in present]),
            "measured": _spread([row["measured"] for row in present]),
        }
    seed_claims = [bool(r.checks) and all(r.checks.values()) for r in results]
    sanity_ok = all(c["held"] == n for c in checks.values() if c["kind"] == "sanity")
    held_seeds = sum(seed_claims)
    figures: dict[str, Any] = {}
    for key in first.key_figures:
        values = [r.key_figures.get(key) for r in results]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        figures[key] = _spread(values) if numeric else values
    return {
        "name": first.name,
        "paper": first.paper,
        "claim": first.claim,
        "paper_headline": first.paper_headline,
        "seeds": [r.config.get("seed") for r in results],
        "held_seeds": held_seeds,
        "required": required_seeds(n),
        "held": not errors and sanity_ok and held_seeds >= required_seeds(n),
        "sanity_all_held": sanity_ok,
        "checks": checks,
        "key_figures": figures,
        "seconds": round(sum(r.seconds for r in results), 1),
        "errors": errors,
        "figure": next((r.figure for r in results if r.figure), None),
    }


def group_by_module(results: Sequence[MemoResult]) -> list[list[MemoResult]]:
    """Consecutive results of the same module, in run order."""
    groups: dict[str, list[MemoResult]] = {}
    for r in results:
        groups.setdefault(r.name, []).append(r)
    return list(groups.values())


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def format_spread(spread: dict[str, float] | None) -> str:
    """``mean [min, max]`` to 3 significant digits (one value when all seeds agree)."""
    if spread is None:
        return "n/a"
    if spread["min"] == spread["max"]:
        return _num(spread["mean"])
    return f"{_num(spread['mean'])} [{_num(spread['min'])}, {_num(spread['max'])}]"


def seeds_summary_table(modules: Sequence[dict[str, Any]]) -> str:
    """Per module: claim held k/n seeds and verdict, key figures as mean [min, max], seconds."""
    lines = [
        "| module | claim held on seeds | verdict | key figures: mean [min, max] over seeds | seconds |",
        "|---|---|---|---|---|",
    ]
    for m in modules:
        figures = "; ".join(
            f"{k} {format_spread(v) if isinstance(v, dict) or v is None else '/'.join(map(str, v))}"
            for k, v in m["key_figures"].items()
        )
        if m["errors"]:
            figures = f"failed: {m['errors'][0]}"
        verdict = "holds" if m["held"] else "does not hold"
        if not m["sanity_all_held"]:
            verdict += " (a sanity check failed)"
        lines.append(
            "| "
            + " | ".join(
                [
                    _cell(m["name"]),
                    f"{m['held_seeds']}/{len(m['seeds'])}",
                    verdict,
                    _cell(figures),
                    f"{m['seconds']:.0f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def checks_table(modules: Sequence[dict[str, Any]], kind: str) -> str:
    """One row per check of ``kind``: held k/n, measured and margin as mean [min, max], reason."""
    lines = [
        "| module | check | test | held | measured | margin | why this threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in modules:
        for key, c in m["checks"].items():
            if c["kind"] != kind:
                continue
            test = f"{c['op']} {_num(c['threshold'])}"
            lines.append(
                "| "
                + " | ".join(
                    [
                        _cell(m["name"]),
                        _cell(key),
                        test,
                        f"{c['held']}/{c['of']}",
                        format_spread(c["measured"]),
                        format_spread(c["margin"]),
                        _cell(c["reason"]),
                    ]
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


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


def summary_dict(
    results: Sequence[MemoResult],
    *,
    quick: bool,
    seed: int,
    seeds: Sequence[int] | None = None,
    wall_seconds: float | None = None,
) -> dict[str, Any]:
    """The JSON summary: per module the headline fields (full metrics stay in each result.json).

    With several seeds, ``modules`` holds one :func:`aggregate` per module.
    """
    if seeds is not None and len(seeds) > 1:
        modules = [aggregate(group) for group in group_by_module(results)]
        return {
            "quick": quick,
            "seeds": list(seeds),
            "wall_seconds": wall_seconds,
            "all_held": bool(modules) and all(m["held"] for m in modules),
            "modules": modules,
        }
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
    results: Sequence[MemoResult],
    out: str | Path,
    *,
    quick: bool,
    seed: int,
    seeds: Sequence[int] | None = None,
    wall_seconds: float | None = None,
) -> tuple[Path, Path]:
    """Write ``summary.md`` and ``summary.json`` under ``out`` atomically; return their paths."""
    out = Path(out)
    if seeds is not None and len(seeds) > 1:
        summary = summary_dict(results, quick=quick, seed=seed, seeds=seeds, wall_seconds=wall_seconds)
        modules = summary["modules"]
        held = sum(m["held"] for m in modules)
        wall = "" if wall_seconds is None else f", {wall_seconds:.0f} s wall time"
        text = (
            f"# Memorization benchmarks: summary\n\n"
            f"{held} of {len(modules)} claims held on at least {required_seeds(len(seeds))} of {len(seeds)} "
            f"seeds ({'quick' if quick else 'full'} run, seeds {','.join(map(str, seeds))}{wall}).\n\n"
            + seeds_summary_table(modules)
            + "\n## Claim checks (the paper's point)\n\n"
            + checks_table(modules, "claim")
            + "\n## Sanity checks (hold by construction)\n\n"
            + checks_table(modules, "sanity")
        )
        md = atomic_write_text(out / "summary.md", text)
        js = atomic_write_json(out / "summary.json", summary)
        return md, js
    held = sum(r.held for r in results)
    header = (
        f"# Memorization benchmarks: summary\n\n"
        f"{held} of {len(results)} claims held ({'quick' if quick else 'full'} run, seed {seed}).\n\n"
    )
    md = atomic_write_text(out / "summary.md", header + summary_table(results))
    js = atomic_write_json(out / "summary.json", summary_dict(results, quick=quick, seed=seed))
    return md, js
