"""Train the baseline agents with PPO (or RecurrentPPO), resume runs, and load finished runs.

What a run leaves on disk (``config.json``, ``model.zip``, ``checkpoints/step_N.zip``,
``progress.csv``, ``tb/``) and the code that reads and writes it live in :mod:`babyaipp.agents.runs`;
its names are re-exported here. Ctrl-C saves a checkpoint first, so ``--resume`` loses nothing.

Seeding: training env ``i`` of a run with seed ``s`` is first reset with ``s * 1000 + i`` (on the
``r``-th resume, ``s * 1000 + (r * n_envs + i) % 1000``, so a resumed run does not replay its
first episodes); later episodes continue that env's own random stream. Training seeds therefore
lie in ``[s * 1000, s * 1000 + 999]`` with ``s < 1000``, below the evaluator's seeds, which start at
``10**6``. The rule is written into ``config.json`` as ``train_seed_range``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from babyaipp.agents.models import MODELS, ModelConfig, model_spec, policy_kwargs
from babyaipp.agents.runs import (  # noqa: F401  (the run-directory names, re-exported for callers)
    _CHECKPOINT_RE,
    PROGRESS_COLUMNS,
    PROGRESS_WINDOW,
    ProgressCallback,
    _algorithm_class,
    _load_algorithm,
    _save_atomic,
    checkpoints,
    latest_checkpoint,
    load_run,
    read_config,
    read_progress,
)
from babyaipp.envs.registration import parse_env_id
from babyaipp.envs.text import TEXT_MODES
from babyaipp.errors import CheckpointError, ConfigError, check_choice, check_range
from babyaipp.utils import atomic_write_json, resolve_device

DEFAULT_ENV = "BabyAIPP/GoToRedBall-Easy-Train-v0"
SEEDS_PER_RUN = 1000
MAX_SEED = 999
EVAL_SEED_START = 10**6
#: How training envs are stepped: the batched engine (default), or single envs in a DummyVecEnv.
ENGINES = ("batched", "gym")
DEFAULT_ENGINE = "batched"
#: Levels that refresh the batched engine's pool come from seeds ``REFRESH_SEED_BASE * (seed + 1) +
#: 10**5 * seed_offset + k``: never a training seed block, never an evaluation seed.
REFRESH_SEED_BASE = 10**9
#: Levels in the batched engine's pool at the start of a run (the first of the run's seed block).
BATCHED_POOL_SIZE = 256


@dataclass
class TrainResult:
    """What a training call did; the CLI prints it, tests inspect it."""

    run_dir: Path
    num_timesteps: int
    steps_this_call: int
    elapsed_s: float
    fps: float
    resumed_from: int | None
    model: BaseAlgorithm


# ---------------------------------------------------------------------------------------------
# Environments
# ---------------------------------------------------------------------------------------------


def _make_tokenized_env(env_id: str, text: str, env_kwargs: dict[str, Any]) -> gym.Env:
    from babyaipp.envs.wrappers import make_tokenized

    return make_tokenized(env_id, text=text, **env_kwargs)


def train_seed(seed: int, index: int) -> int:
    """The first-reset seed of training env ``index`` (counted across resumes) of a run."""
    return seed * SEEDS_PER_RUN + index % SEEDS_PER_RUN


def make_vec_env(
    env_id: str,
    n_envs: int,
    seed: int,
    text: str = "full",
    env_kwargs: dict[str, Any] | None = None,
    seed_offset: int = 0,
    engine: str = DEFAULT_ENGINE,
) -> VecMonitor:
    """``n_envs`` TokenObsWrapper training envs wrapped in VecMonitor (episode returns).

    Env ``i`` is reset first with :func:`train_seed` ``(seed, seed_offset + i)``. Checks the id,
    text mode and keywords up front (by building the first env) so a typo fails before training.

    ``engine="batched"`` (the default) steps all envs with the batched engine through its SB3
    adapter (``babyaipp.envs.sb3``): its pool starts with the levels of the first
    :data:`BATCHED_POOL_SIZE` seeds of the run's block, and one worker process keeps refreshing
    it, one new level per finished episode on average (seeds from :data:`REFRESH_SEED_BASE`), so,
    as with single envs, almost every episode plays a level not seen before. ``engine="gym"`` uses
    single envs in a ``DummyVecEnv``, whose later episodes continue each env's RNG.
    """
    parse_env_id(env_id)
    check_choice("text mode", text, TEXT_MODES)
    check_choice("engine", engine, ENGINES)
    check_range("n_envs", n_envs, 1, SEEDS_PER_RUN)
    check_range("seed", seed, 0, MAX_SEED)
    if engine == "batched":
        from babyaipp.envs.sb3 import BatchedSB3VecEnv

        block = (seed * SEEDS_PER_RUN, seed * SEEDS_PER_RUN + SEEDS_PER_RUN - 1)
        inner = BatchedSB3VecEnv(
            env_id, n_envs, pool_size=max(n_envs, BATCHED_POOL_SIZE), seed_range=block, text=text, workers=1,
            refresh=True,
            refresh_seed=REFRESH_SEED_BASE * (seed + 1) + 10**5 * seed_offset, **dict(env_kwargs or {}),
        )  # fmt: skip
        vec = VecMonitor(inner)
        _seed_vec_env(vec, seed, seed_offset)
        return vec
    factory = partial(_make_tokenized_env, env_id, text, dict(env_kwargs or {}))
    vec = VecMonitor(DummyVecEnv([factory] * n_envs))
    _seed_vec_env(vec, seed, seed_offset)
    return vec


def _seed_vec_env(vec: Any, seed: int, seed_offset: int) -> list[int]:
    """Give every env its own first-reset seed (VecEnv.seed would use ``base + i``, which may wrap)."""
    seeds = [train_seed(seed, seed_offset + i) for i in range(vec.num_envs)]
    inner = vec
    while hasattr(inner, "venv"):
        inner = inner.venv
    inner._seeds = list(seeds)  # DummyVecEnv passes these to the next reset(), then forgets them
    return seeds


# ---------------------------------------------------------------------------------------------
# Train and resume
# ---------------------------------------------------------------------------------------------


def _package_version() -> str:
    from babyaipp import __version__

    return __version__


def _check_batch(config: ModelConfig, n_envs: int) -> None:
    rollout = config.n_steps * n_envs
    if config.batch_size > rollout:
        raise ConfigError(
            f"batch_size={config.batch_size} is larger than a rollout (n_steps * n_envs = {rollout}); "
            f"valid range: [2, {rollout}]"
        )


def build_agent(
    vec: Any, model: str, config: ModelConfig, recurrent: bool, seed: int, device: str, tensorboard_log: Path
) -> BaseAlgorithm:
    """A fresh PPO (RecurrentPPO) with the model's extractor and heads; behaviour cloning builds
    its policy here too, so a cloned model.zip is the same kind of file as a PPO one."""
    set_random_seed(seed)
    return _algorithm_class(recurrent)(
        "MultiInputLstmPolicy" if recurrent else "MultiInputPolicy",
        vec,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs=policy_kwargs(model, config, recurrent),
        tensorboard_log=str(tensorboard_log),
        seed=seed,
        device=device,
        verbose=0,
    )


#: Training algorithms of :func:`train` (and ``babyaipp train --algo``).
ALGOS: tuple[str, ...] = ("ppo", "bc")


def train(
    run_dir: str | Path,
    *,
    env_id: str = DEFAULT_ENV,
    model: str = "image",
    recurrent: bool = False,
    steps: int = 100_000,
    n_envs: int = 8,
    seed: int = 0,
    device: str = "auto",
    text: str = "full",
    env_kwargs: dict[str, Any] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    engine: str = DEFAULT_ENGINE,
    checkpoint_every: int = 50_000,
    progress_bar: bool = False,
    init_from: str | Path | None = None,
    algo: str = "ppo",
    demos: str | Path | None = None,
) -> TrainResult:
    """Train a new run in ``run_dir`` (which must not already hold one; see :func:`resume`).

    ``init_from``: a finished run (e.g. behaviour cloning) whose policy weights start this one.
    ``algo="bc"`` clones the oracle demonstrations in ``demos`` instead
    (:func:`babyaipp.agents.imitation.train_bc`, its default number of epochs; ``steps``,
    ``n_envs`` and ``engine`` do not apply), so sweeps can treat both algorithms alike.
    """
    check_choice("algo", algo, ALGOS)
    if algo == "bc":
        from babyaipp.agents import imitation

        if demos is None:
            raise ConfigError("algo='bc' needs demos (a dataset recorded with `babyaipp demos`)")
        return imitation.train_bc(
            run_dir, demos=demos, env_id=env_id, model=model, recurrent=recurrent, seed=seed, device=device,
            text=text, env_kwargs=env_kwargs, hyperparameters=hyperparameters, progress_bar=progress_bar,
        )  # fmt: skip
    run_dir = Path(run_dir)
    spec = model_spec(model)
    config = spec.config.from_dict(dict(hyperparameters or {}))
    check_range("steps", steps, 1, None)
    check_range("checkpoint_every", checkpoint_every, 0, None)
    _check_batch(config, n_envs)
    if (run_dir / "config.json").exists():
        raise ConfigError(
            f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out"
        )
    resolved = resolve_device(device)
    env_kwargs = dict(env_kwargs or {})
    vec = make_vec_env(env_id, n_envs, seed, text, env_kwargs, engine=engine)
    seeds = [train_seed(seed, i) for i in range(n_envs)]

    agent = build_agent(vec, model, config, recurrent, seed, resolved, run_dir / "tb")
    _seed_vec_env(agent.get_env(), seed, 0)  # the constructor re-seeded the envs with `seed + i`
    algorithm = type(agent)
    warm_start = None
    if init_from is not None:
        from babyaipp.agents.imitation import warm_start_from

        warm_start = warm_start_from(agent, init_from, model, recurrent, config, resolved)
    run_config = {
        "package": "babyaipp",
        "version": _package_version(),
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "model": model,
        "recurrent": bool(recurrent),
        "algorithm": algorithm.__name__,
        "text": text,
        "seed": seed,
        "steps": steps,
        "n_envs": n_envs,
        "engine": engine,
        "device": resolved,
        "checkpoint_every": checkpoint_every,
        "hyperparameters": config.to_dict(),
        "train_seed_range": {
            "first": seed * SEEDS_PER_RUN,
            "last": seed * SEEDS_PER_RUN + SEEDS_PER_RUN - 1,
            "rule": "env i of the r-th training segment is first reset with "
            "seed*1000 + (r*n_envs + i) % 1000; later episodes continue its RNG (engine gym) or draw "
            f"pool levels refreshed from seeds {REFRESH_SEED_BASE}*(seed+1) + 10**5*r*n_envs + k (engine batched); "
            f"evaluation seeds start at {EVAL_SEED_START}",
        },
        "train_seeds_used": seeds,
        "init_from": warm_start,
        "segments": [],
        "num_timesteps": 0,
        "completed": False,
    }
    atomic_write_json(run_dir / "config.json", run_config)
    try:
        return _learn(agent, run_dir, run_config, steps, checkpoint_every, progress_bar, resumed_from=None)
    except Exception:
        if latest_checkpoint(run_dir) is None:  # nothing to resume: leave no run behind
            for name in ("config.json", "progress.csv"):
                (run_dir / name).unlink(missing_ok=True)
        raise


def resume(
    run_dir: str | Path,
    *,
    steps: int | None = None,
    device: str = "auto",
    checkpoint_every: int | None = None,
    progress_bar: bool = False,
) -> TrainResult:
    """Continue a run from its latest checkpoint up to ``steps`` total (default: the run's own).

    The run's config (env, model, text, seed, n_envs, hyperparameters) is reused as it is;
    ``num_timesteps`` continues from the checkpoint's. Raises :class:`CheckpointError` if the
    directory holds no config or no checkpoint.
    """
    run_dir = Path(run_dir)
    run_config = read_config(run_dir)
    if run_config.get("algo") == "bc":
        raise ConfigError(f"{run_dir} is a behaviour-cloning run, which cannot be resumed; train a new one")
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise CheckpointError(f"no checkpoint to resume from in {run_dir / 'checkpoints'} (and no model.zip)")
    _, path = latest
    steps = int(run_config["steps"] if steps is None else steps)
    check_range("steps", steps, 1, None)
    every = int(run_config.get("checkpoint_every", 0) if checkpoint_every is None else checkpoint_every)
    check_range("checkpoint_every", every, 0, None)
    resolved = resolve_device(device)

    n_envs, seed = int(run_config["n_envs"]), int(run_config["seed"])
    used = list(run_config.get("train_seeds_used", []))
    offset = max(len(used), n_envs)  # seeds already handed out, counted across resumes
    segment = offset // n_envs
    vec = make_vec_env(
        run_config["env_id"], n_envs, seed, run_config["text"], run_config.get("env_kwargs"), offset,
        engine=run_config.get("engine", "gym"),
    )
    set_random_seed(seed + segment)
    agent = _load_algorithm(path, bool(run_config["recurrent"]), resolved, env=vec)
    agent.tensorboard_log = str(run_dir / "tb")
    _seed_vec_env(agent.get_env(), seed, offset)
    agent._last_obs = None  # the pickled last observation belongs to the old envs: reset instead
    states = getattr(agent, "_last_lstm_states", None)
    if states is not None:
        for pair in states:
            for tensor in pair:
                tensor.zero_()
    run_config.update(
        steps=steps,
        device=resolved,
        checkpoint_every=every,
        train_seeds_used=[*used, *(train_seed(seed, offset + i) for i in range(n_envs))],
    )
    atomic_write_json(run_dir / "config.json", run_config)
    return _learn(
        agent, run_dir, run_config, steps, every, progress_bar, resumed_from=int(agent.num_timesteps)
    )


def _learn(
    agent: BaseAlgorithm,
    run_dir: Path,
    run_config: dict[str, Any],
    steps: int,
    checkpoint_every: int,
    progress_bar: bool,
    resumed_from: int | None,
) -> TrainResult:
    start = int(agent.num_timesteps)
    rows = [r for r in read_progress(run_dir) if r["timesteps"] <= start] if resumed_from is not None else []
    callback = ProgressCallback(run_dir, checkpoint_every, rows)
    remaining = max(steps - start, 0)
    began = time.perf_counter()
    if remaining > 0:
        try:
            agent.learn(
                total_timesteps=remaining,
                callback=callback,
                reset_num_timesteps=resumed_from is None,
                tb_log_name="run",
                progress_bar=progress_bar,
            )
        except KeyboardInterrupt as interrupt:
            saved = callback.save_interrupted()
            agent.get_env().close()  # stops the engine's level workers, if any
            raise KeyboardInterrupt(f"saved {saved}; continue with `babyaipp train --resume --out {run_dir}`") from (
                interrupt
            )
        callback.after_update()
    elapsed = time.perf_counter() - began
    done = int(agent.num_timesteps) - start
    fps = done / elapsed if elapsed > 0 and done else 0.0
    _save_atomic(agent, run_dir / "model.zip")
    run_config["segments"] = [
        *run_config.get("segments", []),
        {"from": start, "to": int(agent.num_timesteps), "seconds": round(elapsed, 3), "fps": round(fps, 1)},
    ]
    run_config.update(num_timesteps=int(agent.num_timesteps), completed=int(agent.num_timesteps) >= steps)
    atomic_write_json(run_dir / "config.json", run_config)
    agent.get_env().close()
    return TrainResult(run_dir, int(agent.num_timesteps), done, elapsed, fps, resumed_from, agent)


__all__ = [
    "DEFAULT_ENV",
    "EVAL_SEED_START",
    "MODELS",
    "ProgressCallback",
    "TrainResult",
    "build_agent",
    "checkpoints",
    "latest_checkpoint",
    "load_run",
    "make_vec_env",
    "read_config",
    "read_progress",
    "resume",
    "train",
    "train_seed",
]
