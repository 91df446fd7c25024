"""``babyaipp train``: train a baseline agent with PPO (or RecurrentPPO) on a BabyAI++ level, or
clone the oracle (``--algo bc``); ``babyaipp demos``: record oracle demonstrations for cloning.

Nothing that loads torch or stable-baselines3 is imported at load time, so ``babyaipp --help``
stays fast; they are imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from babyaipp.defaults import (
    DEFAULT_ALGO,
    DEFAULT_BC_EPOCHS,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_DEVICE,
    DEFAULT_ENGINE,
    DEFAULT_ENV,
    DEFAULT_MODEL,
    DEFAULT_N_ENVS,
    DEFAULT_STEPS,
    DEFAULT_TEXT,
    DEFAULT_TRAINER,
    EVAL_SEED_START,
)
from babyaipp.envs.text import TEXT_MODES
from babyaipp.errors import ConfigError, check_range

#: The names of :data:`babyaipp.agents.models.MODELS`, known here without loading torch.
MODEL_CHOICES = ("image", "concat", "film", "attention")
#: Defaults of the options that define a run; None in argparse so --resume can tell what was given.
RUN_DEFAULTS: dict[str, Any] = {
    "env": DEFAULT_ENV,
    "model": DEFAULT_MODEL,
    "recurrent": False,
    "n_envs": DEFAULT_N_ENVS,
    "seed": 0,
    "text": DEFAULT_TEXT,
    "engine": DEFAULT_ENGINE,
    "trainer": DEFAULT_TRAINER,
}

_TRAIN_HELP = f"""\
Train a baseline agent (PPO; RecurrentPPO with --recurrent) and write, under DIR:
  config.json             the run's configuration (env, model, text mode, seeds, hyperparameters)
  model.zip               the final model (what `babyaipp eval` loads)
  checkpoints/step_N.zip  periodic checkpoints (--checkpoint-every), for --resume
  progress.csv            learning curve: timesteps, episodes, mean return, success rate, fps
  tb/                     TensorBoard logs (tensorboard --logdir DIR/tb)

models: image (CNN, text ignored), concat (CNN + GRU text, concatenated), film (FiLM-ed CNN),
attention (every cell attends over the description's sentences; the showcase).

examples:
  babyaipp train --model attention --steps 200000 --out runs/attn
  babyaipp train --model film --recurrent --text partial --out runs/film-lstm
  babyaipp train --model concat --env-kwarg room_size=6 --set learning_rate=3e-4 --out runs/c
  babyaipp train --resume --steps 400000 --out runs/attn     # continue to 400k steps
  babyaipp train --model attention --n-envs 64 --out runs/attn-64   # 64 envs on the batched engine
  babyaipp train --model attention --engine gym --out runs/attn-gym  # single envs in a DummyVecEnv
  babyaipp train --model attention --trainer device --out runs/attn-dev  # engine, buffer, policy on one device
  babyaipp train --model attention --trainer device --engine device-levels --out runs/attn-dl  # no level worker
  babyaipp train --algo bc --demos demos/gtrb --model film --epochs 20 --out runs/film-bc
  babyaipp train --init-from runs/film-bc --model film --out runs/film-bc-ppo   # warm-start PPO

--algo bc (behaviour cloning, docs/imitation.md): cross-entropy on the oracle's actions in a
dataset recorded by `babyaipp demos`, for the same policy PPO trains; env, text mode and env
keywords default to the dataset's. --steps does not apply (use --epochs).

default env: {DEFAULT_ENV}
"""


def _key_value(text: str) -> tuple[str, Any]:
    """Parse KEY=VALUE; VALUE is read as JSON when it can be (numbers, true/false), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_env_kwarg_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--env-kwarg KEY=VALUE`` (repeatable), shared by ``train``, ``demos`` and ``sweep``."""
    parser.add_argument("--env-kwarg", type=_key_value, action="append", default=None, metavar="KEY=VALUE", help=help)


def add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set HPARAM=VALUE`` (repeatable) into ``args.hparams``, shared by ``train`` and ``sweep``."""
    parser.add_argument(
        "--set", type=_key_value, action="append", default=None, metavar="KEY=VALUE", dest="hparams", help=help
    )


def add_parsers(subparsers: Any) -> None:
    """Add ``train`` under the top-level ``babyaipp`` parser."""
    p = subparsers.add_parser(
        "train",
        help="train a baseline agent (PPO) on a BabyAI++ level",
        description=_TRAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--env", metavar="ID", default=None, help=f"training env id (default: {DEFAULT_ENV})")
    p.add_argument("--model", default=None, help=f"one of {', '.join(MODEL_CHOICES)} (default: {DEFAULT_MODEL})")
    p.add_argument(
        "--recurrent",
        action="store_true",
        default=None,
        help="add an LSTM memory (sb3-contrib RecurrentPPO) after the extractor",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"total environment steps, counted across resumes (default: {DEFAULT_STEPS})",
    )
    p.add_argument(
        "--n-envs",
        type=int,
        default=None,
        help=f"parallel environments, 1-1000: one per seed of the run's block (default: {DEFAULT_N_ENVS})",
    )
    p.add_argument("--seed", type=int, default=None, help="run seed in [0, 999] (default: 0)")
    p.add_argument(
        "--device",
        default=DEFAULT_DEVICE,
        help=f"auto, cpu or cuda (default: {DEFAULT_DEVICE}; auto = cuda if present)",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="run directory")
    p.add_argument("--text", default=None, help=f"description mode: {', '.join(TEXT_MODES)} (default: {DEFAULT_TEXT})")
    p.add_argument(
        "--engine",
        choices=("batched", "device-levels", "gym"),
        default=None,
        help="batched (default): all envs stepped by the batched tensor engine (docs/batched.md), its pool "
        "starting from 256 levels of the run's training seeds and refreshed by one worker process with a new "
        "level per finished episode; device-levels: the batched engine with every episode's floor, mapping and "
        "description drawn on its device over the layouts of the run's 1000 training seeds (no worker); "
        "gym: single envs in a DummyVecEnv",
    )
    p.add_argument(
        "--trainer",
        default=None,
        help="sb3 (default): stable-baselines3's PPO loop; device: the PPO loop with engine, rollout buffer and "
        "policy on one torch device (--device), same run directory and eval (docs/agents.md)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in DIR from its latest checkpoint (its config.json is reused)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help=f"write a checkpoint every N steps, 0 = never (default: {DEFAULT_CHECKPOINT_EVERY})",
    )
    add_env_kwarg_option(p, "keyword for the env constructor, e.g. room_size=6 (repeatable)")
    add_set_option(p, "override a hyperparameter, e.g. learning_rate=3e-4 (repeatable)")
    p.add_argument(
        "--algo",
        choices=("ppo", "bc"),
        default=DEFAULT_ALGO,
        help=f"ppo or bc (behaviour cloning of the demonstrations in --demos); default: {DEFAULT_ALGO}",
    )
    p.add_argument("--demos", metavar="DIR", default=None, help="--algo bc: dataset made by `babyaipp demos`")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"--algo bc: passes over the demonstrations (default: {DEFAULT_BC_EPOCHS})",
    )
    p.add_argument(
        "--init-from",
        metavar="DIR",
        default=None,
        help="start PPO from the policy weights of a finished run (e.g. a --algo bc run)",
    )
    p.set_defaults(func=cmd_train)
    _add_demos_parser(subparsers)


_DEMOS_HELP = """\
Record oracle demonstrations on a level as a local Minari dataset under DIR (the Minari datasets
root: MINARI_DATASETS_PATH=DIR python -c "import minari; minari.load_dataset('<id>')"; the id is
printed). Episode k is reset with seed S + k; the result is identical for any --workers.
Observations are the token arrays the agents train on; each episode's seed, mission, description,
dynamics and held-out pairs are in its metadata. Written to a temporary directory and renamed at the
end, so an interrupted run (Ctrl-C, SIGTERM, an error) leaves nothing; one killed with SIGKILL leaves
its temporary directory, which the next run into DIR removes.

examples:
  babyaipp demos --env BabyAIPP/GoToRedBall-Easy-Train-v0 --episodes 1000 --out demos/gtrb
  babyaipp demos --env BabyAIPP/GoToLocal-Hard-Train-v0 --episodes 5000 --workers 2 --out demos/gtl
"""


def _add_demos_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demos",
        help="record oracle demonstrations as a Minari dataset (for --algo bc)",
        description=_DEMOS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--env", metavar="ID", default=DEFAULT_ENV, help=f"env id (default: {DEFAULT_ENV})")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes")
    p.add_argument(
        "--seed", type=int, default=0, help=f"episode k uses seed SEED + k, below {EVAL_SEED_START} (default: 0)"
    )
    p.add_argument("--out", metavar="DIR", required=True, help="output directory (must not exist or be empty)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument(
        "--text", default=DEFAULT_TEXT, help=f"description mode: {', '.join(TEXT_MODES)} (default: {DEFAULT_TEXT})"
    )
    add_env_kwarg_option(p, "keyword for the env constructor, e.g. room_size=6 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demos)


def cmd_demos(args: argparse.Namespace) -> int:
    from babyaipp.agents.demos import record_demos  # loads the oracle and Minari only when demos are recorded

    check_range("--episodes", args.episodes, 1, None)
    check_range("--workers", args.workers, 1, 64)

    result = record_demos(
        args.out,
        args.env,
        args.episodes,
        seed=args.seed,
        workers=args.workers,
        text=args.text,
        env_kwargs=dict(args.env_kwarg or []),
        progress=not args.quiet and sys.stderr.isatty(),
    )
    print(
        f"recorded {result.episodes} demonstrations ({result.steps} steps, {result.successes} successful) "
        f"in {result.elapsed_s:.1f} s: {result.demos_per_second:.1f} demos/s with {args.workers} worker(s)"
    )
    print(f"dataset {result.dataset_id} in {result.out} (MINARI_DATASETS_PATH={result.out})")
    return 0


def _check_resume_args(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """On --resume, options that define the run must match its config.json (or be left out)."""
    saved = {
        "env": config["env_id"],
        "model": config["model"],
        "recurrent": config["recurrent"],
        "n_envs": config.get("n_envs"),
        "seed": config.get("seed"),
        "text": config["text"],
        "engine": config.get("engine", "gym"),
        "trainer": config.get("trainer", "sb3"),
    }
    for name, value in saved.items():
        given = getattr(args, name)
        if given is not None and given != value:
            raise ConfigError(
                f"--{name.replace('_', '-')} {given!r} differs from the run being resumed ({value!r} in "
                f"{args.out}/config.json); leave it out or train a new run in another --out"
            )
    if args.env_kwarg or args.hparams:
        raise ConfigError("--env-kwarg and --set cannot change a run being resumed; train a new run instead")


def _check_algo_args(args: argparse.Namespace) -> None:
    """Options that belong to one algorithm only: say which, instead of ignoring them."""
    if args.algo == "bc":
        for flag, given in (("--demos", args.demos is not None),):
            if not given:
                raise ConfigError(f"--algo bc needs {flag} DIR (record one with `babyaipp demos`)")
        for flag, given in (
            ("--resume", args.resume),
            ("--init-from", args.init_from),
            ("--steps", args.steps),
            ("--n-envs", args.n_envs),
            ("--trainer", args.trainer),
        ):
            if given:
                raise ConfigError(f"{flag} does not apply to --algo bc" + (" (use --epochs)" * (flag == "--steps")))
    else:
        for flag, given in (("--demos", args.demos), ("--epochs", args.epochs)):
            if given is not None:
                raise ConfigError(f"{flag} applies only to --algo bc")
        if args.resume and args.init_from:
            raise ConfigError("--init-from starts a new run; it cannot be combined with --resume")


def _cmd_bc(args: argparse.Namespace) -> int:
    from babyaipp.agents.imitation import train_bc  # torch and SB3 load only when the command runs
    from babyaipp.agents.progress import read_progress

    result = train_bc(
        args.out,
        demos=args.demos,
        env_id=args.env,
        model=args.model or RUN_DEFAULTS["model"],
        recurrent=bool(args.recurrent),
        epochs=DEFAULT_BC_EPOCHS if args.epochs is None else args.epochs,
        seed=RUN_DEFAULTS["seed"] if args.seed is None else args.seed,
        device=args.device,
        text=args.text,
        env_kwargs=None if args.env_kwarg is None else dict(args.env_kwarg),
        hyperparameters=dict(args.hparams or []),
        checkpoint_every=args.checkpoint_every or 0,
        progress_bar=sys.stderr.isatty(),
    )
    last = read_progress(result.run_dir)[-1]
    print(
        f"cloned {result.num_timesteps} demonstration frames in {result.elapsed_s:.1f} s ({result.fps:.0f} frames/s): "
        f"training accuracy {last['accuracy']:.3f}, success on demonstration seeds {last['success_rate']:.2f}"
    )
    print(f"model: {result.run_dir / 'model.zip'}  curve: {result.run_dir / 'progress.csv'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from babyaipp.agents import training, training_resume  # torch and SB3 load only when the command runs
    from babyaipp.agents.runs import read_config

    _check_algo_args(args)
    limits = {
        "--n-envs": (args.n_envs, 1, 1000),
        "--steps": (args.steps, 1, None),
        "--checkpoint-every": (args.checkpoint_every, 0, None),
        "--epochs": (args.epochs, 1, None),
    }
    for flag, (value, low, high) in limits.items():  # the flag's own name in the error, before any work
        if value is not None:
            check_range(flag, value, low, high)
    if args.algo == "bc":
        return _cmd_bc(args)
    progress_bar = sys.stderr.isatty()
    if args.resume:
        _check_resume_args(args, read_config(args.out))
        result = training_resume.resume(
            args.out,
            steps=args.steps,
            device=args.device,
            checkpoint_every=args.checkpoint_every,
            progress_bar=progress_bar,
        )
    else:
        run = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in RUN_DEFAULTS.items()}
        result = training.train(
            args.out,
            env_id=run["env"],
            model=run["model"],
            recurrent=run["recurrent"],
            steps=DEFAULT_STEPS if args.steps is None else args.steps,
            n_envs=run["n_envs"],
            seed=run["seed"],
            device=args.device,
            text=run["text"],
            engine=run["engine"],
            trainer=run["trainer"],
            env_kwargs=dict(args.env_kwarg or []),
            hyperparameters=dict(args.hparams or []),
            checkpoint_every=DEFAULT_CHECKPOINT_EVERY if args.checkpoint_every is None else args.checkpoint_every,
            progress_bar=progress_bar,
            init_from=args.init_from,
        )
    where = f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
    print(
        f"trained {result.steps_this_call} steps in {result.elapsed_s:.1f} s{where}: "
        f"{result.fps:.0f} frames/s; total {result.num_timesteps} steps"
    )
    print(
        f"model: {result.run_dir / 'model.zip'}  curve: {result.run_dir / 'progress.csv'}  "
        f"tensorboard: {result.run_dir / 'tb'}"
    )
    return 0
