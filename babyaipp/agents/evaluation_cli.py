"""``babyaipp eval`` and ``babyaipp compare``: generalisation tables and figures of trained runs.

Only argparse is imported at load time so ``babyaipp --help`` stays fast; torch, SB3 and
matplotlib are imported when a command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_COMPARE_OUT = "compare"

_EVAL_HELP = """\
Evaluate a run made by 'babyaipp train' on the Train, Test and TargetPairOnly ids of its task
and difficulty (greedy actions, N episodes per split, seeds 10**6 + k, disjoint from training
seeds), next to a random policy and the planning oracle on the same seeds. Writes
DIR/eval/results.json and DIR/eval/results.md and prints the table.

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
        "eval", help="evaluate a trained run on Train/Test/TargetPairOnly (success ± SE, gap)",
        description=_EVAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("run_dir", metavar="DIR", help="run directory written by 'babyaipp train'")
    ev.add_argument("--splits", default="Train,Test,TargetPairOnly",
                    help="comma-separated splits to evaluate (default: Train,Test,TargetPairOnly)")
    ev.add_argument("--episodes", type=int, default=1000, help="episodes per split (default: 1000)")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                    help="torch device for the policy (default: cpu)")
    ev.add_argument("--references", action=argparse.BooleanOptionalAction, default=True,
                    help="also evaluate the random policy and the oracle on the same seeds (default: on)")
    ev.add_argument("--env", metavar="ID", default=None,
                    help="evaluate on this id's splits instead of the run's own "
                         "(its observation space must match the checkpoint's)")
    ev.add_argument("--n-envs", type=int, default=32,
                    help="environments stepped in parallel, one batched forward pass per step; "
                         "results do not depend on it (default: 32)")
    ev.add_argument("--seed-base", type=int, default=10**6,
                    help="episode k uses seed SEED_BASE + k; must be >= 10**6 (default: 10**6)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.add_argument("--greedy", action="store_true",
                    help="take the policy's most likely action instead of sampling from it (the default, as BabyAI)")
    ev.set_defaults(func=cmd_eval)

    cmp = subparsers.add_parser(
        "compare", help="table + bar chart + learning curves of several evaluated runs",
        description=_COMPARE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmp.add_argument("run_dirs", metavar="DIR", nargs="+", help="evaluated run directories")
    cmp.add_argument("--out", metavar="OUT", default=DEFAULT_COMPARE_OUT,
                     help=f"output directory (default: ./{DEFAULT_COMPARE_OUT})")
    cmp.set_defaults(func=cmd_compare)


def parse_splits(text: str) -> list[str]:
    from babyaipp.envs import SPLITS
    from babyaipp.errors import check_choice

    splits = [s.strip() for s in text.split(",") if s.strip()]
    if not splits:
        from babyaipp.errors import InvalidChoiceError

        raise InvalidChoiceError("split list", text, SPLITS)
    return [check_choice("split", s, SPLITS) for s in splits]


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from babyaipp.agents.evaluation import EVAL_SUBDIR, evaluate_run
    from babyaipp.agents.reports import write_results
    from babyaipp.errors import CheckpointError
    from babyaipp.utils import resolve_device

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    splits = parse_splits(args.splits)
    device = resolve_device(args.device)
    result = evaluate_run(
        run_dir, splits=splits, episodes=args.episodes, device=device, references=args.references,
        env_id=args.env, seed_base=args.seed_base, n_envs=args.n_envs, progress=not args.quiet,
        greedy=args.greedy,
    )
    _, md_path = write_results(result, run_dir / EVAL_SUBDIR)
    print(md_path.read_text(), end="")
    print(f"\nwritten: {run_dir / EVAL_SUBDIR}/results.json, results.md")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from babyaipp.agents.plots import learning_curves, success_bar_chart
    from babyaipp.agents.reports import comparison_markdown, read_results, run_label, unique_references
    from babyaipp.utils import atomic_write_text

    if _sweep_dirs(args.run_dirs):
        from babyaipp.experiments.cli import compare_sweep

        return compare_sweep(args.run_dirs[0], args.out)
    results = [(d, read_results(d)) for d in args.run_dirs]  # fails before writing anything
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


def _sweep_dirs(run_dirs: list[str]) -> bool:
    """True for one sweep directory; a sweep mixed with other directories is refused."""
    from babyaipp.experiments.aggregate import is_sweep_dir

    sweeps = [d for d in run_dirs if is_sweep_dir(d)]
    if sweeps and len(run_dirs) > 1:
        from babyaipp.errors import ConfigError

        raise ConfigError(f"{sweeps[0]} is a sweep directory: compare it on its own (babyaipp compare {sweeps[0]})")
    return bool(sweeps)
