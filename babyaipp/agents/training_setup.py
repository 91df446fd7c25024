"""What every trainer builds a run from: seeded training envs (either engine), a fresh SB3 agent, the
checked hyperparameters and the result of a training call.

PPO on SB3 (:mod:`babyaipp.agents.training`), PPO on the device (:mod:`babyaipp.agents.device_training`)
and behaviour cloning (:mod:`babyaipp.agents.imitation`) all start here, so none of them imports another
for its parts.

Seeding: training env ``i`` of a run with seed ``s`` is first reset with ``s * 1000 + i`` (on the
``r``-th resume, ``s * 1000 + (r * n_envs + i) % 1000``, so a resumed run does not replay its
first episodes); later episodes continue that env's own random stream. Training seeds therefore
lie in ``[s * 1000, s * 1000 + 999]`` with ``s < 1000``, below the evaluator's seeds, which start at
:data:`~babyaipp.defaults.EVAL_SEED_START` (``10**6``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from babyaipp import __version__
from babyaipp.agents.model_config import ModelConfig
from babyaipp.agents.models import policy_kwargs
from babyaipp.agents.runs import algorithm_class
from babyaipp.defaults import DEFAULT_ENGINE, DEFAULT_TEXT
from babyaipp.envs.registration import make_tokenized, parse_env_id
from babyaipp.envs.sb3 import BatchedSB3VecEnv, SuccessInfo
from babyaipp.envs.text import TEXT_MODES
from babyaipp.envs.threads import engine_thread_limit
from babyaipp.errors import ConfigError, check_choice, check_range

#: Seeds in a run's block of training seeds (``[seed * SEEDS_PER_RUN, seed * SEEDS_PER_RUN + SEEDS_PER_RUN - 1]``).
SEEDS_PER_RUN = 1000
#: The largest run seed, so that every training seed lies below :data:`~babyaipp.defaults.EVAL_SEED_START`.
MAX_SEED = 999
#: How training envs are stepped: the batched engine with its pool of levels refreshed by a CPU
#: worker (default), the batched engine with every level drawn on its device from a pool of layouts
#: (``"device-levels"``), or single envs in a DummyVecEnv (``"gym"``).
ENGINES = ("batched", "device-levels", "gym")
#: The engines that step every env at once on one torch device (their runs resume exactly).
BATCHED_ENGINES = ("batched", "device-levels")
#: Levels that refresh the batched engine's pool come from seeds ``REFRESH_SEED_BASE * (seed + 1) +
#: 10**5 * seed_offset + k``: never a training seed block, never an evaluation seed.
REFRESH_SEED_BASE = 10**9
#: Levels in the batched engine's pool at the start of a run (the first of the run's seed block).
BATCHED_POOL_SIZE = 256
#: The most refresh workers a run on a GPU starts (:func:`refresh_workers`).
MAX_REFRESH_WORKERS = 8


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


def make_tokenized_env(env_id: str, text: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """One training env: token observations, with ``is_success`` in the final step's info."""
    return SuccessInfo(make_tokenized(env_id, text=text, **env_kwargs))


def trainer_thread_limit(device: torch.device) -> int | None:
    """Threads a trainer runs under on ``device`` (None: torch's setting): on CPU the engine's rule
    (:func:`babyaipp.envs.threads.engine_thread_limit`: one thread unless the user chose a count),
    because a gradient step's small ops split over threads collapse when another process holds a
    core; off the CPU, torch's setting."""
    return engine_thread_limit() if device.type == "cpu" else None


def refresh_workers(device: torch.device) -> int:
    """Processes making the levels that refresh the batched engine's pool.

    On CPU one: the trainer's own work holds the cores, and one worker keeps up with the episodes
    a CPU run ends. On a GPU the loop ends episodes faster than one worker makes levels (about
    1,400 a second) and the engine waits for a chunk that is due, so it gets the machine's cores
    but two (at most :data:`MAX_REFRESH_WORKERS`). The levels and the step each chunk lands on do
    not depend on the count (chunks enter in seed order, when enough episodes have ended), so a
    run's episodes are the same with any number of workers.
    """
    if device.type == "cpu":
        return 1
    return max(1, min(MAX_REFRESH_WORKERS, (os.cpu_count() or 2) - 2))


def train_seed(seed: int, index: int) -> int:
    """The first-reset seed of training env ``index`` (counted across resumes) of a run."""
    return seed * SEEDS_PER_RUN + index % SEEDS_PER_RUN


def make_vec_env(
    env_id: str,
    n_envs: int,
    seed: int,
    text: str = DEFAULT_TEXT,
    env_kwargs: dict[str, Any] | None = None,
    seed_offset: int = 0,
    engine: str = DEFAULT_ENGINE,
    device: str = "cpu",
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
    ``engine="device-levels"`` is the batched engine with no worker: the minigrid layouts of the
    run's whole seed block (:data:`SEEDS_PER_RUN`) are made once, and every episode gets a floor,
    mapping and description drawn on the engine's device (:mod:`babyaipp.envs.device_levels`).
    ``device``: the torch device the batched engines step on (single envs are NumPy).
    """
    parse_env_id(env_id)
    check_choice("text mode", text, TEXT_MODES)
    check_choice("engine", engine, ENGINES)
    check_range("n_envs", n_envs, 1, SEEDS_PER_RUN)
    check_range("seed", seed, 0, MAX_SEED)
    if engine in BATCHED_ENGINES:
        return make_batched_vec_env(
            env_id, n_envs, seed, text, env_kwargs, seed_offset, device, device_levels=engine == "device-levels"
        )
    factory = partial(make_tokenized_env, env_id, text, dict(env_kwargs or {}))
    vec = VecMonitor(DummyVecEnv([factory] * n_envs))
    seed_vec_env(vec, seed, seed_offset)
    return vec


def make_batched_vec_env(
    env_id: str,
    n_envs: int,
    seed: int,
    text: str,
    env_kwargs: dict[str, Any] | None,
    seed_offset: int,
    device: str = "cpu",
    device_levels: bool = False,
) -> VecMonitor:
    """The batched engine of ``make_vec_env(engine="batched" | "device-levels")`` on ``device``,
    seeded and reset.

    One home for how a run's engine is built (its pool, seed block and refresh seeds); both
    trainers reach it through :func:`make_vec_env`, which checks the arguments.
    """
    block = (seed * SEEDS_PER_RUN, seed * SEEDS_PER_RUN + SEEDS_PER_RUN - 1)
    levels: dict[str, Any] = (
        {"pool_size": SEEDS_PER_RUN, "device_levels": True}  # layouts of the whole block; no worker
        if device_levels
        else {
            "pool_size": max(n_envs, BATCHED_POOL_SIZE),
            "workers": refresh_workers(torch.device(device)),
            "refresh": True,
            "refresh_seed": REFRESH_SEED_BASE * (seed + 1) + 10**5 * seed_offset,
        }
    )
    inner = BatchedSB3VecEnv(
        env_id, n_envs, device=device, seed_range=block, text=text, **levels, **dict(env_kwargs or {})
    )
    vec = VecMonitor(inner)
    seed_vec_env(vec, seed, seed_offset)
    return vec


def new_run_config(
    *,
    env_id: str,
    env_kwargs: dict[str, Any],
    model: str,
    recurrent: bool,
    algorithm: str,
    trainer: str | None,
    text: str,
    seed: int,
    steps: int,
    n_envs: int,
    engine: str,
    device: str,
    checkpoint_every: int,
    hyperparameters: dict[str, Any],
    seed_rule: str,
    train_seeds_used: list[int],
    init_from: Any,
) -> dict[str, Any]:
    """The ``config.json`` a new run starts with, one layout for both trainers (``trainer=None``
    leaves the key out, as SB3 runs always have)."""
    config: dict[str, Any] = {
        "package": "babyaipp",
        "version": package_version(),
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "model": model,
        "recurrent": bool(recurrent),
        "algorithm": algorithm,
    }
    if trainer is not None:
        config["trainer"] = trainer
    config.update(
        {
            "text": text,
            "seed": seed,
            "steps": steps,
            "n_envs": n_envs,
            "engine": engine,
            "device": device,
            "checkpoint_every": checkpoint_every,
            "hyperparameters": hyperparameters,
            "train_seed_range": {
                "first": seed * SEEDS_PER_RUN,
                "last": seed * SEEDS_PER_RUN + SEEDS_PER_RUN - 1,
                "rule": seed_rule,
            },
            "train_seeds_used": train_seeds_used,
            "init_from": init_from,
            "segments": [],
            "num_timesteps": 0,
            "completed": False,
        }
    )
    return config


def seed_vec_env(vec: Any, seed: int, seed_offset: int) -> list[int]:
    """Give every env its own first-reset seed (VecEnv.seed would use ``base + i``, which may wrap)."""
    seeds = [train_seed(seed, seed_offset + i) for i in range(vec.num_envs)]
    inner = vec
    while hasattr(inner, "venv"):
        inner = inner.venv
    inner._seeds = list(seeds)  # DummyVecEnv passes these to the next reset(), then forgets them
    return seeds


def package_version() -> str:
    """The version written into a run's config.json."""
    return __version__


def check_batch(config: ModelConfig, n_envs: int) -> None:
    """A minibatch must fit in one rollout (``n_steps * n_envs`` steps)."""
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
    return algorithm_class(recurrent)(
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


def check_hyperparameters(config_class: type[ModelConfig], values: dict[str, Any] | None) -> dict[str, Any]:
    """``values`` checked against ``config_class``'s fields: each a finite number, the integer ones
    whole (``--set n_epochs=2.5``, ``learning_rate=abc`` or ``nan`` would otherwise fail deep inside
    the config or SB3, or train on NaN). Unknown names are left to ``from_dict``, which lists the
    valid ones."""
    kinds = {f.name: str(getattr(f.type, "__name__", f.type)) for f in fields(config_class)}
    for name, value in dict(values or {}).items():
        kind = kinds.get(name)
        if kind not in ("int", "float"):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"hyperparameter {name}={value!r} is not a number")
        if not math.isfinite(value):
            raise ConfigError(f"hyperparameter {name}={value!r} must be a finite number")
        if kind == "int" and not float(value).is_integer():
            raise ConfigError(f"hyperparameter {name}={value!r} must be a whole number")
    return {name: (int(v) if kinds.get(name) == "int" else v) for name, v in dict(values or {}).items()}


__all__ = [
    "BATCHED_POOL_SIZE",
    "BATCHED_ENGINES",
    "ENGINES",
    "MAX_REFRESH_WORKERS",
    "MAX_SEED",
    "REFRESH_SEED_BASE",
    "SEEDS_PER_RUN",
    "TrainResult",
    "build_agent",
    "check_batch",
    "check_hyperparameters",
    "make_tokenized_env",
    "make_vec_env",
    "refresh_workers",
    "package_version",
    "seed_vec_env",
    "train_seed",
    "trainer_thread_limit",
]
