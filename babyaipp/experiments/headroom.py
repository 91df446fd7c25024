"""The headroom table: how much reading can pay on each level family, measured with planners.

For every task family × difficulty × floor it runs the reference planners on the Train and
TargetPairOnly ids, on the evaluation seeds (``10**6 + k``, as ``babyaipp eval`` does):

* ``oracle``: reads the mapping (the ceiling);
* ``memoriser``: plans with the Train split's statistics, never the mapping (the best a perfect
  memoriser of Train can do);
* ``cautious``: knows nothing of the mapping, avoids tiles, else crosses as few colours as it can;
* ``walker``: ignores colours, walks the shortest path;
* ``random``: uniformly random actions.

Headroom = oracle − memoriser on TargetPairOnly: the room in which a reader can show itself. A
level family where it is near zero cannot separate readers from memorisers.

Run ``python -m babyaipp.experiments.headroom --help``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from babyaipp.agents.evaluation import evaluate_reference_on_splits
from babyaipp.agents.evaluation_episodes import difference_se
from babyaipp.defaults import EVAL_SEED_START
from babyaipp.envs import DIFFICULTIES, TASKS, env_id
from babyaipp.errors import BabyAIPPError, check_choice, check_range
from babyaipp.utils import atomic_write_json, atomic_write_text

POLICIES: tuple[str, ...] = ("oracle", "memoriser", "cautious", "walker", "random")
SPLITS: tuple[str, ...] = ("Train", "TargetPairOnly")
#: Suffix of the registered ids on the dense floor (``GoToRedBallDense``).
DENSE_SUFFIX = "Dense"
FLOORS: tuple[str, ...] = ("sparse", "dense")


def base_families() -> list[str]:
    """The task families, without their dense aliases."""
    return [t for t in TASKS if not t.endswith(DENSE_SUFFIX)]


def _task_name(family: str, floor: str) -> str:
    return family + DENSE_SUFFIX if floor == "dense" else family


def _run_cell(job: tuple[str, str, str, str, str, int, int]) -> dict[str, Any]:
    family, difficulty, floor, split, policy, episodes, seed_base = job
    start = time.perf_counter()
    result = evaluate_reference_on_splits(
        policy,
        env_id(_task_name(family, floor), difficulty, split),
        splits=(split,),
        episodes=episodes,
        seed_base=seed_base,
    )
    stats = result["splits"][split]
    return {
        "family": family,
        "difficulty": difficulty,
        "floor": floor,
        "split": split,
        "policy": policy,
        "episodes": episodes,
        "success_rate": stats["success_rate"],
        "success_se": stats["success_se"],
        "seconds": time.perf_counter() - start,
    }


def measure(
    families: Sequence[str],
    difficulties: Sequence[str] = DIFFICULTIES,
    floors: Sequence[str] = FLOORS,
    policies: Sequence[str] = POLICIES,
    episodes: int = 500,
    seed_base: int = EVAL_SEED_START,
    workers: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Success of every policy on every cell; one row per (family, difficulty, floor, split, policy)."""
    for f in families:
        check_choice("task family", f, base_families())
    for d in difficulties:
        check_choice("difficulty", d, DIFFICULTIES)
    for f in floors:
        check_choice("floor", f, FLOORS)
    for p in policies:
        check_choice("policy", p, POLICIES)
    check_range("episodes", episodes, 1)
    check_range("workers", workers, 1)
    jobs = [
        (fam, d, fl, s, p, episodes, seed_base)
        for fam in families
        for d in difficulties
        for fl in floors
        for s in SPLITS
        for p in policies
    ]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="headroom", unit="cell")
    rows = []
    if workers == 1:
        for job in jobs:
            rows.append(_run_cell(job))
            if bar:
                bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for row in pool.map(_run_cell, jobs):
                rows.append(row)
                if bar:
                    bar.update()
    if bar:
        bar.close()
    return rows


def headroom_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One line per family × difficulty × floor: every policy on Train / TargetPairOnly, and the headroom."""
    cells: dict[tuple[str, str, str], dict[tuple[str, str], dict[str, Any]]] = {}
    policies: list[str] = []
    for r in rows:
        cells.setdefault((r["family"], r["difficulty"], r["floor"]), {})[(r["policy"], r["split"])] = r
        if r["policy"] not in policies:
            policies.append(r["policy"])
    head = " | ".join(f"{p} Train / TPO" for p in policies)
    lines = [
        f"| family | difficulty | floor | {head} | headroom (oracle − memoriser, TPO) |",
        "|---|---|---|" + "---|" * len(policies) + "---|",
    ]

    def rate(r: dict[str, Any] | None) -> str:
        return "–" if r is None else f"{r['success_rate']:.2f}"

    for (family, difficulty, floor), by in cells.items():
        parts = [f"{rate(by.get((p, 'Train')))} / {rate(by.get((p, 'TargetPairOnly')))}" for p in policies]
        oracle, mem = by.get(("oracle", "TargetPairOnly")), by.get(("memoriser", "TargetPairOnly"))
        if oracle and mem:
            gap = oracle["success_rate"] - mem["success_rate"]
            head_cell = f"{gap:+.2f} ± {difference_se(oracle['success_se'], mem['success_se']):.2f}"
        else:
            head_cell = "–"
        lines.append(f"| {family} | {difficulty} | {floor} | " + " | ".join(parts) + f" | {head_cell} |")
    n = sorted({r["episodes"] for r in rows})
    lines.append(
        f"\nSuccess rates over {', '.join(map(str, n))} levels per cell (seeds {EVAL_SEED_START} + k); "
        "TPO = TargetPairOnly; headroom ± its standard error."
    )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m babyaipp.experiments.headroom",
        description="Success of the oracle, the non-reading planners (memoriser, cautious, colour-blind "
        "walker) and a random policy on Train and TargetPairOnly, per task family, difficulty and floor. "
        "Headroom = oracle - memoriser on TargetPairOnly: the room in which a reader can show itself.",
    )
    parser.add_argument(
        "--families", nargs="+", default=base_families(), metavar="TASK", help="task families (default: all ten)"
    )
    parser.add_argument("--difficulties", nargs="+", default=list(DIFFICULTIES), metavar="D")
    parser.add_argument("--floors", nargs="+", default=list(FLOORS), metavar="FLOOR", help="sparse and/or dense")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), metavar="P")
    parser.add_argument("--episodes", type=int, default=500, help="levels per cell (default 500)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.md and OUT.json (else print the table)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        start = time.perf_counter()
        rows = measure(
            args.families,
            args.difficulties,
            args.floors,
            args.policies,
            args.episodes,
            workers=args.workers,
            progress=not args.quiet,
        )
        table = headroom_markdown(rows)
        elapsed = time.perf_counter() - start
    except BabyAIPPError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out is None:
        print(table, end="")
    else:
        atomic_write_json(args.out.with_suffix(".json"), {"rows": rows, "seconds": elapsed})
        atomic_write_text(args.out.with_suffix(".md"), table)
    if not args.quiet:
        print(f"{len(rows)} cells in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
