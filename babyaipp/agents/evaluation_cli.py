"""``babyaipp eval``: the generalisation table of a trained run (``babyaipp compare`` puts several
side by side; it lives in :mod:`babyaipp.experiments.cli`, as it also aggregates sweeps).

Nothing that loads torch or stable-baselines3 is imported at load time, so ``babyaipp --help``
stays fast; they are imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from babyaipp.defaults import (
    DEFAULT_EVAL_DEVICE,
    DEFAULT_EVAL_EPISODES,
    DEFAULT_EVAL_N_ENVS,
    DEFAULT_GREEDY,
    EVAL_SEED_START,
)
from babyaipp.envs import SPLITS
from babyaipp.envs.registration import parse_env_id
from babyaipp.errors import BabyAIPPError, CheckpointError, InvalidChoiceError, check_choice, check_range
from babyaipp.utils import DEVICE_CHOICES, resolve_device

_ACTIONS = (
    "argmax actions (--no-greedy: sampled)" if DEFAULT_GREEDY else "actions sampled from the policy (--greedy: argmax)"
)
_EVAL_HELP = f"""\
Evaluate a run made by 'babyaipp train' on the Train, Test and TargetPairOnly ids of its task
and difficulty, N episodes per split on seeds {EVAL_SEED_START} + k (disjoint from training seeds),
with {_ACTIONS}, next to a random policy and the planning oracle on the same seeds. Writes
DIR/eval/results.json and DIR/eval/results.md and prints the table; with --env of another task or
difficulty, DIR/eval/<Task>-<Difficulty>/results.{{json,md}} instead (the run's own results stay).

examples:
  babyaipp eval runs/attention
  babyaipp eval runs/attention --episodes 200 --splits Train,TargetPairOnly --no-references
"""


def add_parsers(subparsers: Any) -> None:
    """Add ``eval`` under the top-level ``babyaipp`` parser."""
    ev = subparsers.add_parser(
        "eval",
        help="evaluate a trained run on Train/Test/TargetPairOnly (success ± SE, gap)",
        description=_EVAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("run_dir", metavar="DIR", help="run directory written by 'babyaipp train'")
    ev.add_argument(
        "--splits",
        default=",".join(SPLITS),
        help=f"comma-separated splits to evaluate (default: {','.join(SPLITS)})",
    )
    ev.add_argument(
        "--episodes",
        type=int,
        default=DEFAULT_EVAL_EPISODES,
        help=f"episodes per split (default: {DEFAULT_EVAL_EPISODES})",
    )
    ev.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default=DEFAULT_EVAL_DEVICE,
        help=f"torch device for the policy (default: {DEFAULT_EVAL_DEVICE})",
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
        default=DEFAULT_EVAL_N_ENVS,
        help="environments stepped in parallel, one batched forward pass per step; greedy results do not "
        f"depend on it, sampled ones are reproducible for a given value (default: {DEFAULT_EVAL_N_ENVS})",
    )
    ev.add_argument(
        "--seed-base",
        type=int,
        default=EVAL_SEED_START,
        help=f"episode k uses seed SEED_BASE + k; must be >= {EVAL_SEED_START} (default: {EVAL_SEED_START})",
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.add_argument(
        "--greedy",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_GREEDY,
        help="take the policy's most likely action instead of sampling from it as BabyAI evaluates "
        f"(default: {'on' if DEFAULT_GREEDY else 'off'})",
    )
    ev.set_defaults(func=cmd_eval)


def parse_splits(text: str) -> list[str]:
    splits = [s.strip() for s in text.split(",") if s.strip()]
    if not splits:
        raise InvalidChoiceError("split list", text, SPLITS)
    return [check_choice("split", s, SPLITS) for s in splits]


def eval_out_dir(run_dir: Any, run_env_id: str, env_id: str | None) -> Any:
    """Where ``babyaipp eval`` writes: ``DIR/eval`` for the run's own task and difficulty,
    ``DIR/eval/<Task>-<Difficulty>`` for another one (``--env``), so that evaluating a run elsewhere
    never replaces its own results (which ``compare`` and sweeps read)."""
    from babyaipp.agents.evaluation import EVAL_SUBDIR  # torch and SB3 load only when the command runs

    base = Path(run_dir) / EVAL_SUBDIR
    if env_id is None:
        return base
    task, difficulty, _ = parse_env_id(env_id)
    if (task, difficulty) == parse_env_id(run_env_id)[:2]:
        return base
    return base / f"{task}-{difficulty}"


def cmd_eval(args: argparse.Namespace) -> int:
    # torch and SB3 load only when the command runs
    from babyaipp.agents.evaluation import evaluate_run
    from babyaipp.agents.reports import results_markdown, write_results
    from babyaipp.agents.runs import read_config

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
