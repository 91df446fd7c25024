"""``babyaipp compare``: evaluated runs side by side, or a sweep re-aggregated; ``babyaipp sweep``:
seeds × models × tasks × text modes on Ray, then IQM tables and figures.

Nothing that loads Ray, torch or matplotlib is imported at load time, so ``babyaipp --help`` stays
fast; they are imported when a command runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from babyaipp.agents.cli import MODEL_CHOICES, add_env_kwarg_option, add_set_option
from babyaipp.defaults import (
    DEFAULT_ALGO,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_ENGINE,
    DEFAULT_ENV,
    DEFAULT_EVAL_EPISODES,
    DEFAULT_GREEDY,
    DEFAULT_N_ENVS,
    DEFAULT_STEPS,
    DEFAULT_TEXT,
    DEFAULT_TRAINER,
)
from babyaipp.errors import CheckpointError, ConfigError, check_range
from babyaipp.experiments.bootstrap import DEFAULT_BOOTSTRAP_SEED, DEFAULT_REPS
from babyaipp.utils import atomic_write_text, check_out_dir

DEFAULT_MODELS = ",".join(MODEL_CHOICES)
DEFAULT_SEEDS = "0,1,2"
DEFAULT_COMPARE_OUT = "compare"

_COMPARE_HELP = """\
Put several evaluated runs side by side: a markdown table (runs x splits success ± SE, the gap
Train − TargetPairOnly, reference rows), a grouped bar chart and the runs' learning curves.
Each DIR needs DIR/eval/results.json (run 'babyaipp eval DIR' first). A single sweep directory
(made by 'babyaipp sweep') is aggregated instead: IQM across seeds with 95% bootstrap intervals.

examples:
  babyaipp compare runs/image_only runs/concat runs/film runs/attention --out compare/
  babyaipp compare sweeps/gtrb --out sweeps/gtrb-report
"""


_SWEEP_HELP = f"""\
Train and evaluate every combination of --envs x --models x --algos x --text x --seeds, one Ray
task per trial (the same code as `babyaipp train` then `babyaipp eval`), and aggregate:
  DIR/trials/<key>/   a normal run directory per trial (babyaipp eval / compare work on it),
                      with trial.json (status, timings) and error.txt if it failed
  DIR/summary.md      per env: IQM success across seeds [95% stratified-bootstrap CI] per split,
  DIR/summary.json    the Train − TargetPairOnly gap, per-held-out-pair success, plain means
  DIR/success.png     bars with interval error bars; DIR/curves.png learning curves with bands
  DIR/sweep.json      the grid and a log of every invocation

Rerunning the same command runs only the trials without results (<key> ends in a hash of the
trial's config; an interrupted training resumes from its checkpoint). A failed trial is reported
and the others go on; the command then exits with status 1.

Ray: a local Ray starts in this process (--num-cpus CPUs, default all); --address HOST:PORT (or
'auto') runs on an existing cluster, which needs babyaipp installed on every node and DIR on a
shared filesystem.

examples:
  babyaipp sweep --models image,concat,film,attention --seeds 0,1,2 --steps 100000 --out sweeps/gtrb
  babyaipp sweep --models attention --text full,lorem,none --seeds 0,1,2 --out sweeps/text
  babyaipp sweep --envs {DEFAULT_ENV} --models film --recurrent --address auto --cpus-per-trial 4 --out /shared/s
  babyaipp compare sweeps/gtrb --out sweeps/gtrb-report     # re-aggregate a sweep directory

default env: {DEFAULT_ENV}
"""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_parsers(subparsers: Any) -> None:
    """Add ``compare`` and ``sweep`` under the top-level ``babyaipp`` parser."""
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

    p = subparsers.add_parser(
        "sweep",
        help="seeded train+eval grid on Ray, with IQM and 95%% bootstrap intervals",
        description=_SWEEP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--envs", type=_csv, default=[DEFAULT_ENV], metavar="ID[,ID...]", help="training env ids")
    p.add_argument(
        "--models",
        type=_csv,
        default=_csv(DEFAULT_MODELS),
        metavar="M[,M...]",
        help=f"feature extractors (default: {DEFAULT_MODELS})",
    )
    p.add_argument(
        "--algos",
        type=_csv,
        default=[DEFAULT_ALGO],
        metavar="A[,A...]",
        help=f"training algorithms, among those `babyaipp train` supports (default: {DEFAULT_ALGO})",
    )
    p.add_argument("--recurrent", action="store_true", help="every trial gets an LSTM memory (RecurrentPPO)")
    p.add_argument(
        "--text",
        type=_csv,
        default=[DEFAULT_TEXT],
        metavar="MODE[,MODE...]",
        help=f"description modes, an ablation axis: full, partial, lorem, none (default: {DEFAULT_TEXT})",
    )
    p.add_argument(
        "--seeds",
        type=_seeds,
        default=_seeds(DEFAULT_SEEDS),
        metavar="S[,S...]",
        help=f"training seeds in [0, 999] (default: {DEFAULT_SEEDS})",
    )
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"training steps per trial (default: {DEFAULT_STEPS})"
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=DEFAULT_EVAL_EPISODES,
        help=f"evaluation episodes per split (default: {DEFAULT_EVAL_EPISODES})",
    )
    p.add_argument(
        "--n-envs",
        type=int,
        default=DEFAULT_N_ENVS,
        help=f"parallel training envs per trial (default: {DEFAULT_N_ENVS})",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="sweep directory")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--cpus-per-trial", type=float, default=1, metavar="C", help="Ray CPUs per trial (default: 1)")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0,
        metavar="G",
        help="Ray GPUs per trial; > 0 trains and evaluates on cuda (default: 0)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=DEFAULT_CHECKPOINT_EVERY,
        metavar="N",
        help="checkpoint every N steps, so an interrupted trial resumes "
        f"(default: {DEFAULT_CHECKPOINT_EVERY}; 0 = never)",
    )
    add_env_kwarg_option(p, "keyword for every trial's env constructor (repeatable)")
    add_set_option(p, "hyperparameter override for every trial (repeatable)")
    p.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        help=f"training env stepping: batched, device-levels or gym (default: {DEFAULT_ENGINE})",
    )
    p.add_argument(
        "--trainer",
        default=DEFAULT_TRAINER,
        help=f"training loop of every trial: sb3 or device (default: {DEFAULT_TRAINER}; docs/agents.md)",
    )
    p.add_argument(
        "--greedy",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_GREEDY,
        help="evaluate with argmax actions instead of sampled ones, as babyaipp eval --greedy "
        f"(default: {'on' if DEFAULT_GREEDY else 'off'})",
    )
    p.add_argument("--demos", metavar="DIR", default=None, help="demonstrations for --algos bc (passed to train)")
    p.add_argument("--reps", type=int, default=DEFAULT_REPS, help=f"bootstrap replicates (default: {DEFAULT_REPS})")
    p.add_argument(
        "--bootstrap-seed",
        type=int,
        default=DEFAULT_BOOTSTRAP_SEED,
        help=f"seed of the bootstrap generator (default: {DEFAULT_BOOTSTRAP_SEED})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress view")
    p.set_defaults(func=cmd_sweep)


class _ProgressView:
    """A rich progress bar on stderr: trials finished of total, and done / running / failed counts."""

    def __init__(self, enabled: bool):
        self.progress: Any = None
        self.task: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self.progress.start()

    def __call__(self, status: Any) -> None:
        if self.progress is None:
            return
        text = f"done {status.done} · running {status.running} · failed {len(status.failed)}"
        if status.skipped:
            text += f" · already done {status.skipped}"
        if self.task is None:
            self.task = self.progress.add_task(text, total=status.total)
        self.progress.update(self.task, completed=status.finished, description=text)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def aggregate_to(
    sweep_dir: str | Path, out_dir: str | Path, reps: int = DEFAULT_REPS, seed: int = DEFAULT_BOOTSTRAP_SEED
) -> tuple[str, list]:
    """Aggregate a sweep directory into ``out_dir`` (summary.json/.md, success.png, curves.png)."""
    # torch and matplotlib load only when the command runs
    from babyaipp.experiments.aggregate import aggregate_sweep, write_summary
    from babyaipp.experiments.plots import write_figures

    summary = aggregate_sweep(sweep_dir, reps=reps, seed=seed)
    json_path, md_path = write_summary(summary, out_dir)
    figures = write_figures(summary, out_dir)
    return md_path.read_text(), [json_path, md_path, *figures]


def cmd_sweep(args: argparse.Namespace) -> int:
    from babyaipp.experiments.sweep import run_sweep  # Ray and torch load only when the command runs
    from babyaipp.experiments.trials import expand_grid

    check_out_dir(args.out)
    for flag, value in (
        ("--reps", args.reps),
        ("--n-envs", args.n_envs),
        ("--steps", args.steps),
        ("--episodes", args.episodes),
    ):
        check_range(flag, value, 1, 1000 if flag == "--n-envs" else None)
    if "bc" in args.algos and not args.demos:
        raise ConfigError("--algos bc needs --demos DIR (record one with `babyaipp demos`)")
    if args.demos and not Path(args.demos).exists():
        raise ConfigError(f"--demos {args.demos!r} does not exist")
    # Relative to the sweep directory, so its files name no absolute path (trials resolve it back).
    demos = os.path.relpath(Path(args.demos).resolve(), Path(args.out).resolve()) if args.demos else None
    trials = expand_grid(
        envs=args.envs,
        models=args.models,
        seeds=args.seeds,
        steps=args.steps,
        episodes=args.episodes,
        algos=args.algos,
        texts=args.text,
        recurrent=args.recurrent,
        n_envs=args.n_envs,
        env_kwargs=dict(args.env_kwarg or []),
        hyperparameters=dict(args.hparams or []),
        demos=demos,
        greedy=args.greedy,
        engine=args.engine,
        trainer=args.trainer,
    )
    grid = {
        "envs": args.envs,
        "models": args.models,
        "algos": args.algos,
        "recurrent": args.recurrent,
        "text": args.text,
        "seeds": args.seeds,
        "steps": args.steps,
        "episodes": args.episodes,
        "n_envs": args.n_envs,
        "greedy": args.greedy,
        "engine": args.engine,
        "env_kwargs": dict(args.env_kwarg or []),
        "hyperparameters": dict(args.hparams or []),
        "trainer": args.trainer,
    }
    view = _ProgressView(enabled=not args.quiet)
    try:
        report = run_sweep(
            trials,
            args.out,
            address=args.address,
            num_cpus=args.num_cpus,
            cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial,
            checkpoint_every=args.checkpoint_every,
            grid=grid,
            on_update=view,
        )
    finally:
        view.stop()
    table, written = aggregate_to(args.out, args.out, reps=args.reps, seed=args.bootstrap_seed)
    print(table, end="")
    print(
        f"\n{report.total} trials: {len(report.skipped)} already done, {len(report.ran) - len(report.failed)} ran, "
        f"{len(report.failed)} failed; {report.seconds:.1f} s"
    )
    for key, error in report.failed.items():
        print(f"FAILED {key}: {error} (traceback: {Path(args.out) / 'trials' / key / 'error.txt'})")
    print("written: " + ", ".join(str(p) for p in written))
    return 1 if report.failed else 0


def compare_sweep(sweep_dir: str, out_dir: str, reps: int = DEFAULT_REPS, seed: int = DEFAULT_BOOTSTRAP_SEED) -> int:
    """``babyaipp compare SWEEPDIR``: re-aggregate a sweep into ``out_dir`` and print the table."""
    table, written = aggregate_to(sweep_dir, out_dir, reps=reps, seed=seed)
    print(table, end="")
    print("written: " + ", ".join(str(p) for p in written))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    # torch and matplotlib load only when the command runs
    from babyaipp.agents.plots import learning_curves, success_bar_chart
    from babyaipp.agents.reports import comparison_markdown, read_results, run_label, unique_references

    check_out_dir(args.out)
    if _sweep_dirs(args.run_dirs):
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
    from babyaipp.agents.evaluation import EVAL_SUBDIR, RESULTS_JSON  # torch loads only when the command runs

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
    from babyaipp.experiments.aggregate import is_sweep_dir  # torch loads only when the command runs

    sweeps = [d for d in run_dirs if is_sweep_dir(d)]
    if sweeps and len(run_dirs) > 1:
        raise ConfigError(f"{sweeps[0]} is a sweep directory: compare it on its own (babyaipp compare {sweeps[0]})")
    return bool(sweeps)


__all__ = ["add_parsers", "aggregate_to", "cmd_compare", "cmd_sweep", "compare_sweep"]
