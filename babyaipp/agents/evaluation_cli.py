"""``babyaipp eval`` and ``babyaipp compare``: generalisation tables and figures of trained runs.

Only argparse is imported at load time so ``babyaipp --help`` stays fast; torch, SB3 and
matplotlib are imported when a command runs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

DEFAULT_COMPARE_OUT = "compare"

_EVAL_HELP = """\
Evaluate a run made by 'babyaipp train' on the Train, Test and TargetPairOnly ids of its task
and difficulty (greedy actions, N episodes per split, seeds 10**6 + k, disjoint from training
seeds), next to a random policy and the planning oracle on the same seeds. Writes
DIR/eval/results.json and DIR/eval/results.md and prints the table; with --env of another task or
difficulty, DIR/eval/<Task>-<Difficulty>/results.{json,md} instead (the run's own results stay).

examples:
  babyaipp eval runs/attention
  babyaipp eval runs/attention --episodes 200 --splits Train,TargetPairOnly --no-references
"""

_COMPARE_HELP = """\
Put several evaluated runs side by side: a markdown table (runs x splits success ± SE, the gap
Train − TargetPairOnly, reference rows), a grouped bar chart and the runs' learning curves.
Each DIR needs DIR/eval/results.json (run 'babyaipp eval DIR' first). A single sweep directory
(made by 'babyaipp sweep') is aggregated instead: IQM across seeds with 95% bootstrap intervals.

examples:
  babyaipp compare runs/image_only runs/concat runs/film runs/attention --out compare/
  babyaipp compare sweeps/gtrb --out sweeps/gtrb-report
"""


def add_parsers(subparsers: Any) -> None:
    """Add ``eval`` and ``compare`` under the top-level ``babyaipp`` parser."""
    ev = subparsers.add_parser(
        "eval",
        help="evaluate a trained run on Train/Test/TargetPairOnly (success ± SE, gap)",
        description=_EVAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("run_dir", metavar="DIR", help="run directory written by 'babyaipp train'")
    ev.add_argument(
        "--splits",
        default="Train,Test,TargetPairOnly",
        help="comma-separated splits to evaluate (default: Train,Test,TargetPairOnly)",
    )
    ev.add_argument("--episodes", type=int, default=1000, help="episodes per split (default: 1000)")
    ev.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="cpu", help="torch device for the policy (default: cpu)"
    )
    ev.add_argument(
        "--references",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also evaluate the random policy and the oracle on the same seeds (default: on)",
    )
    ev.add_argument(
        "--env",
        metavar="ID",
        default=None,
        help="evaluate on this id's splits instead of the run's own "
        "(its observation space must match the checkpoint's)",
    )
    ev.add_argument(
        "--n-envs",
        type=int,
        default=32,
        help="environments stepped in parallel, one batched forward pass per step; "
        "results do not depend on it (default: 32)",
    )
    ev.add_argument(
        "--seed-base",
        type=int,
        default=10**6,
        help="episode k uses seed SEED_BASE + k; must be >= 10**6 (default: 10**6)",
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.add_argument(
        "--greedy",
        action="store_true",
        help="take the policy's most likely action instead of sampling from it (the default, as BabyAI)",
    )
    ev.set_defaults(func=cmd_eval)

    cmp = subparsers.add_parser(
        "compare",
        help="table + bar chart + learning curves of several evaluated runs",
        description=_COMPARE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmp.add_argument("run_dirs", metavar="DIR", nargs="+", help="evaluated run directories")
    cmp.add_argument(
        "--out", metavar="OUT", default=DEFAULT_COMPARE_OUT, help=f"output directory (default: ./{DEFAULT_COMPARE_OUT})"
    )
    cmp.set_defaults(func=cmd_compare)


def parse_splits(text: str) -> list[str]:
    from babyaipp.envs import SPLITS
    from babyaipp.errors import check_choice

    splits = [s.strip() for s in text.split(",") if s.strip()]
    if not splits:
        from babyaipp.errors import InvalidChoiceError

        raise InvalidChoiceError("split list", text, SPLITS)
    return [check_choice("split", s, SPLITS) for s in splits]


def eval_out_dir(run_dir: Any, run_env_id: str, env_id: str | None) -> Any:
    """Where ``babyaipp eval`` writes: ``DIR/eval`` for the run's own task and difficulty,
    ``DIR/eval/<Task>-<Difficulty>`` for another one (``--env``), so that evaluating a run elsewhere
    never replaces its own results (which ``compare`` and sweeps read)."""
    from pathlib import Path

    from babyaipp.agents.evaluation import EVAL_SUBDIR
    from babyaipp.envs.registration import parse_env_id

    base = Path(run_dir) / EVAL_SUBDIR
    if env_id is None:
        return base
    task, difficulty, _ = parse_env_id(env_id)
    if (task, difficulty) == parse_env_id(run_env_id)[:2]:
        return base
    return base / f"{task}-{difficulty}"


def cmd_eval(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from babyaipp.agents.evaluation import evaluate_run
    from babyaipp.agents.reports import results_markdown, write_results
    from babyaipp.agents.runs import read_config
    from babyaipp.errors import BabyAIPPError, CheckpointError, check_range
    from babyaipp.utils import resolve_device

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    splits = parse_splits(args.splits)
    check_range("--n-envs", args.n_envs, 1, 1000)
    check_range("--episodes", args.episodes, 1, None)
    device = resolve_device(args.device)
    out_dir = eval_out_dir(run_dir, read_config(run_dir)["env_id"], args.env)
    result = evaluate_run(
        run_dir,
        splits=splits,
        episodes=args.episodes,
        device=device,
        references=args.references,
        env_id=args.env,
        seed_base=args.seed_base,
        n_envs=args.n_envs,
        progress=not args.quiet,
        greedy=args.greedy,
    )
    result["run_dir"] = str(Path(*[".."] * len(out_dir.relative_to(run_dir).parts)))
    result["run_name"] = Path(run_dir).resolve().name  # for titles: the relative path is only ".."
    try:
        json_path, md_path = write_results(result, out_dir)
    except OSError as err:  # disk full, read-only: the finished evaluation still reaches the user
        print(results_markdown(result), end="")
        print(json.dumps(result, default=str), file=sys.stderr)
        raise BabyAIPPError(
            f"cannot write {err.filename or out_dir}: {err.strerror or err}; the results are printed above "
            "(table on stdout, JSON on stderr)"
        ) from err
    print(md_path.read_text(), end="")
    print(f"\nwritten: {json_path}, {md_path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from babyaipp.agents.plots import learning_curves, success_bar_chart
    from babyaipp.agents.reports import comparison_markdown, read_results, run_label, unique_references
    from babyaipp.agents.runs import check_out_dir
    from babyaipp.utils import atomic_write_text

    check_out_dir(args.out)
    if _sweep_dirs(args.run_dirs):
        from babyaipp.experiments.cli import compare_sweep

        return compare_sweep(args.run_dirs[0], args.out)
    results = [(d, _checked_results(d, read_results(d))) for d in args.run_dirs]  # fails before writing anything
    names = [Path(d).resolve().name for d in args.run_dirs]
    if len(set(names)) < len(names):  # two runs named alike: use the paths as given
        names = list(args.run_dirs)
    labels = [run_label(name, r) for name, (_, r) in zip(names, results)]
    labelled = list(zip(labels, (r for _, r in results)))
    table = comparison_markdown(labelled)

    out = Path(args.out)
    bars = success_bar_chart(labelled + unique_references(labelled), out / "success_by_split.png")
    curves, missing = learning_curves(list(zip(labels, args.run_dirs)), out / "learning_curves.png")
    if missing:
        table += f"\nNo learning curve (no progress.csv, or no finished training episode) for: {', '.join(missing)}\n"
    md = atomic_write_text(out / "comparison.md", "# Comparison\n\n" + table)
    print(table, end="")
    print(f"\nwritten: {md}, {bars}, {curves}")
    return 0


def _checked_results(run_dir: str, result: Any) -> Any:
    """A results.json ``compare`` can tabulate: an object with per-split success rates."""
    from babyaipp.agents.evaluation import EVAL_SUBDIR, RESULTS_JSON
    from babyaipp.errors import CheckpointError

    splits = result.get("splits") if isinstance(result, dict) else None
    if (
        not isinstance(splits, dict)
        or not splits
        or not all(isinstance(v, dict) and "success_rate" in v for v in splits.values())
    ):
        raise CheckpointError(
            f"{run_dir}/{EVAL_SUBDIR}/{RESULTS_JSON} holds no per-split results; re-run `babyaipp eval {run_dir}`"
        )
    return result


def _sweep_dirs(run_dirs: list[str]) -> bool:
    """True for one sweep directory; a sweep mixed with other directories is refused."""
    from babyaipp.experiments.aggregate import is_sweep_dir

    sweeps = [d for d in run_dirs if is_sweep_dir(d)]
    if sweeps and len(run_dirs) > 1:
        from babyaipp.errors import ConfigError

        raise ConfigError(f"{sweeps[0]} is a sweep directory: compare it on its own (babyaipp compare {sweeps[0]})")
    return bool(sweeps)
