"""Train the baseline agents with PPO (or RecurrentPPO), or clone demonstrations.

What a run leaves on disk (``config.json``, ``model.zip``, ``checkpoints/step_N.zip``,
``progress.csv``, ``tb/``) and the code that reads and writes it live in :mod:`babyaipp.agents.runs`
and :mod:`babyaipp.agents.progress`; the training envs, their seeds and the agent every trainer
starts from live in :mod:`babyaipp.agents.training_setup`. Ctrl-C saves a checkpoint first, so
``--resume`` loses nothing. Continuing a stopped run (:func:`babyaipp.agents.training_resume.resume`)
ends in the same training loop as a new one (:func:`learn`), and a run stopped before its first
checkpoint is started again through :func:`train_locked`.

Seeding: see :mod:`babyaipp.agents.training_setup`; the rule is written into ``config.json`` as
``train_seed_range``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from babyaipp.agents import device_training
from babyaipp.agents.imitation import train_bc
from babyaipp.agents.model_config import ModelConfig
from babyaipp.agents.models import model_spec
from babyaipp.agents.progress import ProgressCallback, read_progress
from babyaipp.agents.runs import latest_checkpoint, read_config, record_segment, run_lock, save_atomic, write_failure
from babyaipp.agents.training_setup import (
    REFRESH_SEED_BASE,
    SEEDS_PER_RUN,
    TrainResult,
    build_agent,
    check_batch,
    check_hyperparameters,
    make_vec_env,
    new_run_config,
    seed_vec_env,
    train_seed,
    trainer_thread_limit,
)
from babyaipp.agents.warm_start import warm_start_from
from babyaipp.defaults import (
    DEFAULT_ALGO,
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
from babyaipp.envs.threads import limited_threads
from babyaipp.errors import CheckpointError, ConfigError, check_choice, check_range
from babyaipp.utils import atomic_write_json, check_out_dir, resolve_device

#: Training algorithms of :func:`train` (and ``babyaipp train --algo``).
ALGOS: tuple[str, ...] = ("ppo", "bc")


def train(
    run_dir: str | Path,
    *,
    env_id: str = DEFAULT_ENV,
    model: str = DEFAULT_MODEL,
    recurrent: bool = False,
    steps: int = DEFAULT_STEPS,
    n_envs: int = DEFAULT_N_ENVS,
    seed: int = 0,
    device: str = DEFAULT_DEVICE,
    text: str = DEFAULT_TEXT,
    env_kwargs: dict[str, Any] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    engine: str = DEFAULT_ENGINE,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    progress_bar: bool = False,
    init_from: str | Path | None = None,
    algo: str = DEFAULT_ALGO,
    demos: str | Path | None = None,
    trainer: str = DEFAULT_TRAINER,
) -> TrainResult:
    """Train a new run in ``run_dir`` (which must not already hold one; to continue one, see
    :func:`babyaipp.agents.training_resume.resume`).

    ``init_from``: a finished run (e.g. behaviour cloning) whose policy weights start this one.
    ``algo="bc"`` clones the oracle demonstrations in ``demos`` instead
    (:func:`babyaipp.agents.imitation.train_bc`, its default number of epochs; ``steps``,
    ``n_envs`` and ``engine`` do not apply), so sweeps can treat both algorithms alike.
    ``trainer="device"`` trains with the device-resident PPO loop
    (:mod:`babyaipp.agents.device_training`) instead of SB3's, into the same run layout.
    """
    check_choice("algo", algo, ALGOS)
    check_choice("trainer", trainer, device_training.TRAINERS)
    if algo == "bc":
        if demos is None:
            raise ConfigError("algo='bc' needs demos (a dataset recorded with `babyaipp demos`)")
        return train_bc(
            run_dir,
            demos=demos,
            env_id=env_id,
            model=model,
            recurrent=recurrent,
            seed=seed,
            device=device,
            text=text,
            env_kwargs=env_kwargs,
            hyperparameters=hyperparameters,
            progress_bar=progress_bar,
        )
    run_dir = check_out_dir(run_dir)
    spec = model_spec(model)
    config = spec.config.from_dict(check_hyperparameters(spec.config, hyperparameters))
    check_range("steps", steps, 1, None)
    check_range("checkpoint_every", checkpoint_every, 0, None)
    check_range("n_envs", n_envs, 1, SEEDS_PER_RUN)
    check_batch(config, n_envs)
    with run_lock(run_dir):
        clear_unstarted_run(run_dir)
        return train_locked(
            run_dir,
            env_id=env_id,
            model=model,
            config=config,
            recurrent=recurrent,
            steps=steps,
            n_envs=n_envs,
            seed=seed,
            device=device,
            text=text,
            env_kwargs=dict(env_kwargs or {}),
            engine=engine,
            checkpoint_every=checkpoint_every,
            progress_bar=progress_bar,
            init_from=init_from,
            trainer=trainer,
        )


def clear_unstarted_run(run_dir: Path) -> None:
    """Refuse a directory that holds a run to resume; clear one whose run left nothing to resume.

    A run killed (SIGKILL, a crash, a lost machine) before its first checkpoint leaves
    ``config.json`` but no checkpoint: nothing can continue it, so training there starts over.
    The caller holds the lock, so no live process is writing that run.
    """
    if not (run_dir / "config.json").exists():
        return
    try:
        read_config(run_dir)
    except CheckpointError:
        resumable = True  # not a config this package can read: leave the directory alone
    else:
        resumable = latest_checkpoint(run_dir) is not None
    if resumable:
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")
    for name in ("config.json", "progress.csv", "model.state.pt"):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("tb", "checkpoints"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def train_locked(
    run_dir: Path,
    *,
    env_id: str,
    model: str,
    config: ModelConfig,
    recurrent: bool,
    steps: int,
    n_envs: int,
    seed: int,
    device: str,
    text: str,
    env_kwargs: dict[str, Any],
    engine: str,
    checkpoint_every: int,
    progress_bar: bool,
    init_from: str | Path | None,
    trainer: str = DEFAULT_TRAINER,
) -> TrainResult:
    """Train a new run into ``run_dir``, whose lock the caller holds and which holds no run to resume
    (:func:`train` for a new run; a restart of one killed before its first checkpoint)."""
    if trainer == "device":
        return device_training.train_locked(
            run_dir,
            env_id=env_id,
            model=model,
            config=config,
            recurrent=recurrent,
            steps=steps,
            n_envs=n_envs,
            seed=seed,
            device=device,
            text=text,
            env_kwargs=env_kwargs,
            checkpoint_every=checkpoint_every,
            init_from=init_from,
            engine=engine,
            progress_bar=progress_bar,
        )
    resolved = resolve_device(device)
    vec = make_vec_env(env_id, n_envs, seed, text, env_kwargs, engine=engine)
    try:
        seeds = [train_seed(seed, i) for i in range(n_envs)]
        agent = build_agent(vec, model, config, recurrent, seed, resolved, run_dir / "tb")
        seed_vec_env(agent.get_env(), seed, 0)  # the constructor re-seeded the envs with `seed + i`
        algorithm = type(agent)
        warm_start = None
        if init_from is not None:
            warm_start = warm_start_from(agent, init_from, model, recurrent, config, resolved)
    except BaseException:
        vec.close()
        raise
    run_config = new_run_config(
        env_id=env_id,
        env_kwargs=env_kwargs,
        model=model,
        recurrent=recurrent,
        algorithm=algorithm.__name__,
        trainer=None,
        text=text,
        seed=seed,
        steps=steps,
        n_envs=n_envs,
        engine=engine,
        device=resolved,
        checkpoint_every=checkpoint_every,
        hyperparameters=config.to_dict(),
        seed_rule="env i of the r-th training segment is first reset with "
        "seed*1000 + (r*n_envs + i) % 1000; later episodes continue its RNG (engine gym) or draw "
        f"pool levels refreshed from seeds {REFRESH_SEED_BASE}*(seed+1) + 10**5*r*n_envs + k (engine batched) "
        "or levels drawn on the device over the layouts of seeds seed*1000 .. seed*1000 + 999 (engine device-levels); "
        f"evaluation seeds start at {EVAL_SEED_START}",
        train_seeds_used=seeds,
        init_from=warm_start,
    )
    atomic_write_json(run_dir / "config.json", run_config)
    try:
        return learn(agent, run_dir, run_config, steps, checkpoint_every, progress_bar, resumed_from=None)
    except Exception:
        if latest_checkpoint(run_dir) is None:  # nothing to resume: leave no run behind
            for name in ("config.json", "progress.csv"):
                (run_dir / name).unlink(missing_ok=True)
        raise


def learn(
    agent: BaseAlgorithm,
    run_dir: Path,
    run_config: dict[str, Any],
    steps: int,
    checkpoint_every: int,
    progress_bar: bool,
    resumed_from: int | None,
    restored: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``agent`` (SB3) up to ``steps`` in total, writing progress, checkpoints and ``model.zip``.

    The loop every SB3 run ends in, new or resumed: ``resumed_from`` is None for a new run, else
    the step it continues from (its progress rows up to there are kept); ``restored`` is the exact
    state it was restored from, whose progress window the curve continues.
    """
    start = int(agent.num_timesteps)
    rows = [r for r in read_progress(run_dir) if r["timesteps"] <= start] if resumed_from is not None else []
    began = time.perf_counter()

    def checkpointed(step: int) -> None:
        record_segment(run_config, run_dir, start, step, began, "running")

    callback = ProgressCallback(run_dir, checkpoint_every, rows, on_checkpoint=checkpointed)
    if restored is not None:  # the progress window as it was at the checkpoint
        callback.returns.extend(restored["progress"]["returns"].tolist())
        callback.episodes = int(restored["progress"]["episodes"])
    remaining = max(steps - start, 0)
    threads = trainer_thread_limit(agent.device)  # the engine's rule, as the device trainer
    try:
        if remaining > 0:
            try:
                with limited_threads(threads):
                    agent.learn(
                        total_timesteps=remaining,
                        callback=callback,
                        reset_num_timesteps=resumed_from is None,
                        tb_log_name="run",
                        progress_bar=progress_bar,
                    )
            except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM turned into one by the CLI
                saved = callback.save_interrupted(agent)
                record_segment(run_config, run_dir, start, int(agent.num_timesteps), began, "interrupted")
                raise type(interrupt)(
                    f"saved {saved}; continue with `babyaipp train --resume --out {run_dir}`"
                ) from interrupt
            callback.capture_boundary()  # the state the next rollout would start from (--resume --steps more)
            callback.after_update()
        elif restored is not None:
            callback.boundary = restored  # nothing to train: model.zip keeps the checkpoint's state
        elapsed = time.perf_counter() - began
        done = int(agent.num_timesteps) - start
        fps = done / elapsed if elapsed > 0 and done else 0.0
        save_atomic(agent, run_dir / "model.zip")
        callback.save_boundary(run_dir / "model.zip", int(agent.num_timesteps))
        record_segment(run_config, run_dir, start, int(agent.num_timesteps), began, "completed")
    except OSError as err:  # disk full, directory removed or made read-only under the run
        raise write_failure(err, run_dir) from err
    finally:
        agent.get_env().close()  # stops the engine's level workers, if any
    return TrainResult(run_dir, int(agent.num_timesteps), done, elapsed, fps, resumed_from, agent)


__all__ = ["ALGOS", "clear_unstarted_run", "learn", "train", "train_locked"]
