"""``babyaipp train --trainer device``: runs of :class:`~babyaipp.agents.device_ppo.DevicePPO` in the
usual run directory.

A device run is laid out, checkpointed, resumed and evaluated like an SB3 one
(:mod:`babyaipp.agents.runs`): ``config.json`` (with ``"trainer": "device"``), ``model.zip`` and
``checkpoints/step_N.zip`` in SB3's format (so ``babyaipp eval`` and ``--init-from`` read them
unchanged), ``progress.csv`` written by the same :class:`~babyaipp.agents.progress.ProgressCallback`,
and TensorBoard logs under ``tb/``. It plays the same levels as ``--trainer sb3`` with the same
seed and ``--engine`` (``batched``: the engine's pool from the run's seed block, refreshed by one
worker process; ``device-levels``: every level drawn on the engine's device over the layouts of the
run's seed block, no worker) and starts from the same initial weights; only the training loop differs.

Every checkpoint gets a sidecar ``step_N.state.pt`` with the engine, the loop's state (current
observation, running episodes, LSTM states), torch's random state and the progress window, so
``--resume`` continues exactly: a resumed run ends with the weights of the uninterrupted one.

Threads: on CPU the whole loop (engine and policy) runs under the engine's thread rule
(:func:`babyaipp.envs.threads.engine_thread_limit`): one thread unless the user chose a count
(``BABYAIPP_ENGINE_THREADS``, ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, ``torch.set_num_threads``),
because many small ops split over threads collapse when another process holds a core; torch's
own setting is restored afterwards.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import torch

from babyaipp.agents import resume_state
from babyaipp.agents.device_ppo import DevicePPO, PPOSettings
from babyaipp.agents.model_config import ModelConfig
from babyaipp.agents.models import model_spec
from babyaipp.agents.progress import PROGRESS_WINDOW, ProgressCallback, read_progress
from babyaipp.agents.rollout import LoopState
from babyaipp.agents.runs import (
    latest_checkpoint,
    load_algorithm,
    mark_killed_segments,
    record_segment,
    save_atomic,
    write_failure,
)
from babyaipp.agents.training_setup import (
    BATCHED_ENGINES,
    TrainResult,
    build_agent,
    make_vec_env,
    new_run_config,
    seed_vec_env,
    train_seed,
    trainer_thread_limit,
)
from babyaipp.agents.warm_start import warm_start_from
from babyaipp.envs.threads import limited_threads
from babyaipp.errors import CheckpointError, ConfigError
from babyaipp.utils import atomic_write_json, resolve_device

#: Training loops of ``babyaipp train --trainer``: SB3's PPO (the default) or :class:`DevicePPO`.
TRAINERS = ("sb3", "device")
#: The ``format`` of a device run's checkpoint sidecar.
SIDECAR_FORMAT = "device-ppo-1"


def make_engine_env(
    env_id: str,
    n_envs: int,
    seed: int,
    text: str,
    env_kwargs: dict[str, Any],
    seed_offset: int,
    device: str,
    engine: str = "batched",
) -> Any:
    """The engine of ``make_vec_env(engine=engine)`` (``"batched"`` or ``"device-levels"``) on
    ``device``, seeded and reset the same way.

    Returned inside SB3's ``VecMonitor`` (the PPO object that holds the policy wants a VecEnv);
    the loop steps ``vec.venv.engine`` directly.
    """
    if engine not in BATCHED_ENGINES:
        raise ConfigError(
            f"--trainer device steps the batched engine; --engine {engine!r} applies to --trainer sb3 "
            f"(valid: {', '.join(BATCHED_ENGINES)})"
        )
    return make_vec_env(env_id, n_envs, seed, text, env_kwargs, seed_offset, engine, device)


def _settings(run_config: dict[str, Any]) -> PPOSettings:
    config = model_spec(run_config["model"]).config.from_dict(dict(run_config["hyperparameters"]))
    return PPOSettings.from_config(config)


# ---------------------------------------------------------------------------------------------
# Train and resume (called by babyaipp.agents.training and training_resume with the run's lock held)
# ---------------------------------------------------------------------------------------------


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
    checkpoint_every: int,
    init_from: str | Path | None,
    engine: str = "batched",
    progress_bar: bool = False,
) -> Any:
    """A new device run in ``run_dir`` (checked and locked by the caller)."""
    resolved = resolve_device(device)
    vec = make_engine_env(env_id, n_envs, seed, text, env_kwargs, 0, resolved, engine)
    try:
        agent = build_agent(vec, model, config, recurrent, seed, resolved, run_dir / "tb")
        seed_vec_env(vec, seed, 0)  # the constructor re-seeded the envs with `seed + i`
        vec.reset()  # the pool: the levels of the run's first seeds, as the SB3 trainer's first reset
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
        algorithm=type(agent).__name__,
        trainer="device",
        text=text,
        seed=seed,
        steps=steps,
        n_envs=n_envs,
        engine=engine,
        device=resolved,
        checkpoint_every=checkpoint_every,
        hyperparameters=config.to_dict(),
        seed_rule=f"as --trainer sb3 --engine {engine}",
        train_seeds_used=[train_seed(seed, i) for i in range(n_envs)],
        init_from=warm_start,
    )
    atomic_write_json(run_dir / "config.json", run_config)
    try:
        return _run(agent, vec, run_dir, run_config, steps, checkpoint_every, None, None, progress_bar)
    except Exception:
        if latest_checkpoint(run_dir) is None:  # nothing to resume: leave no run behind
            for name in ("config.json", "progress.csv"):
                (run_dir / name).unlink(missing_ok=True)
        raise


def resume_locked(
    run_dir: Path,
    run_config: dict[str, Any],
    path: Path,
    steps: int,
    every: int,
    device: str,
    progress_bar: bool = False,
) -> Any:
    """Continue a device run from checkpoint ``path``: exactly with its sidecar, else on fresh levels
    (the next seeds of the run's block, as an SB3 run without a sidecar)."""
    n_envs, seed, recurrent = int(run_config["n_envs"]), int(run_config["seed"]), bool(run_config["recurrent"])
    step = int(path.stem.removeprefix("step_")) if path.name != "model.zip" else int(run_config["num_timesteps"])
    state = load_sidecar(resume_state.state_path(path))
    exact = state is not None and int(state["num_timesteps"]) == step
    used = list(run_config.get("train_seeds_used", []))
    offset = 0 if exact else max(len(used), n_envs)
    env = (run_config["env_id"], n_envs, seed, run_config["text"], dict(run_config.get("env_kwargs") or {}))
    vec = make_engine_env(*env, offset, device, run_config.get("engine", "batched"))
    try:
        agent = load_algorithm(path, recurrent, device, env=vec, config=run_config)
        agent.tensorboard_log = str(run_dir / "tb")
        if exact:
            vec.venv.restore(state["engine"])
        else:
            torch.manual_seed(seed + offset // n_envs)
            vec.reset()
            used = [*used, *(train_seed(seed, offset + i) for i in range(n_envs))]
    except BaseException:
        vec.close()
        raise
    mark_killed_segments(run_config)
    run_config.update(steps=steps, device=device, checkpoint_every=every, train_seeds_used=used)
    atomic_write_json(run_dir / "config.json", run_config)
    start = int(agent.num_timesteps)
    return _run(agent, vec, run_dir, run_config, steps, every, start, state if exact else None, progress_bar)


# ---------------------------------------------------------------------------------------------
# The loop around DevicePPO: progress, checkpoints, TensorBoard
# ---------------------------------------------------------------------------------------------


def _capture(agent: Any, vec: Any, state: LoopState, callback: ProgressCallback) -> dict[str, Any]:
    """Everything the next iteration depends on besides the weights and Adam's state (in the zip)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {
        "format": SIDECAR_FORMAT,
        "num_timesteps": int(agent.num_timesteps),
        "rng": {"torch": torch.get_rng_state(), "cuda": list(cuda)},
        "engine": vec.venv.snapshot(),
        "loop": state.tensors(),
        "progress": {
            "returns": torch.tensor(list(callback.returns), dtype=torch.float64),
            "episodes": int(callback.episodes),
        },
    }


def load_sidecar(path: Path) -> dict[str, Any] | None:
    """A device run's sidecar (None if absent); read with ``weights_only=True``, so no code runs."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f"{path} is corrupt; delete it to resume inexactly") from None
    if not isinstance(state, dict) or state.get("format") != SIDECAR_FORMAT:
        raise CheckpointError(f"{path} is not a device-trainer resume state; delete it to resume inexactly")
    return state


def _run(
    agent: Any,
    vec: Any,
    run_dir: Path,
    run_config: dict[str, Any],
    steps: int,
    every: int,
    resumed_from: int | None,
    restored: dict[str, Any] | None,
    progress_bar: bool = False,
) -> Any:
    from stable_baselines3.common.utils import configure_logger
    from tqdm.auto import tqdm

    engine = vec.venv.engine
    engine.auto_reset = False
    settings = _settings(run_config)
    loop = DevicePPO(engine, agent.policy, settings, bool(run_config["recurrent"]))
    start = int(agent.num_timesteps)
    rows = [r for r in read_progress(run_dir) if r["timesteps"] <= start] if resumed_from is not None else []
    began = time.perf_counter()

    def checkpointed(step: int) -> None:
        record_segment(run_config, run_dir, start, step, began, "running")

    callback = ProgressCallback(run_dir, every, rows, on_checkpoint=checkpointed)
    callback.init_callback(agent)
    if restored is not None:
        state = LoopState.from_tensors(restored["loop"], engine.device)
        callback.returns.extend(restored["progress"]["returns"].tolist())
        callback.episodes = int(restored["progress"]["episodes"])
        torch.set_rng_state(restored["rng"]["torch"])
        if restored["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(restored["rng"]["cuda"])
    else:
        state = loop.initial_state()
    logger = configure_logger(0, str(run_dir / "tb"), "run", reset_num_timesteps=resumed_from is None)
    agent.set_logger(logger)
    callback.on_training_start({}, {})
    lengths: deque[int] = deque(maxlen=PROGRESS_WINDOW)
    frames = settings.n_steps * engine.num_envs
    # The frames still to train, as SB3's progress bar counts them (on stderr, only when asked).
    bar = tqdm(total=steps - start, desc="train", unit="frame", unit_scale=True, disable=not progress_bar)
    try:
        with bar, limited_threads(trainer_thread_limit(engine.device)):
            callback.boundary = _capture(agent, vec, state, callback)
            updating = False
            try:
                while agent.num_timesteps < steps:
                    rollout, after, last_values = loop.collect(state)
                    advantages, returns = loop.advantages(rollout, last_values, after.episode_starts)
                    updating = True
                    losses = loop.update(rollout, advantages, returns)
                    updating = False
                    state = after
                    ended = ~torch.isnan(rollout.ended_returns)
                    finished = rollout.ended_returns[ended].tolist()
                    lengths.extend(rollout.ended_lengths[ended].tolist())
                    agent.num_timesteps += frames
                    agent._n_updates += settings.n_epochs
                    callback.num_timesteps = agent.num_timesteps
                    callback.returns.extend(finished)
                    callback.episodes += len(finished)
                    callback.boundary = _capture(agent, vec, state, callback)
                    callback.after_update()
                    _log(logger, callback, lengths, losses, agent)
                    bar.update(min(frames, bar.total - bar.n))
            except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM turned into one by the CLI
                if updating:  # the weights are part-way through an update: no exact state matches them
                    callback.boundary = None
                saved = callback.save_interrupted(agent)
                record_segment(run_config, run_dir, start, int(agent.num_timesteps), began, "interrupted")
                raise type(interrupt)(
                    f"saved {saved}; continue with `babyaipp train --resume --out {run_dir}`"
                ) from interrupt
        elapsed = time.perf_counter() - began
        done = int(agent.num_timesteps) - start
        fps = done / elapsed if elapsed > 0 and done else 0.0
        save_atomic(agent, run_dir / "model.zip")
        callback.save_boundary(run_dir / "model.zip", int(agent.num_timesteps))
        record_segment(run_config, run_dir, start, int(agent.num_timesteps), began, "completed")
    except OSError as err:  # disk full, directory removed or made read-only under the run
        raise write_failure(err, run_dir) from err
    finally:
        logger.close()
        vec.close()  # stops the engine's level worker
    return TrainResult(run_dir, int(agent.num_timesteps), done, elapsed, fps, resumed_from, agent)


def _log(logger: Any, callback: ProgressCallback, lengths: deque[int], losses: dict[str, float], agent: Any) -> None:
    """The scalars SB3's PPO writes to TensorBoard, under the same names."""
    returns = list(callback.returns)
    if returns:
        logger.record("rollout/ep_rew_mean", sum(returns) / len(returns))
        logger.record("rollout/ep_len_mean", sum(lengths) / max(len(lengths), 1))
        logger.record("rollout/success_rate", sum(r > 0 for r in returns) / len(returns))
    logger.record("time/fps", int(callback.fps))
    for name, value in losses.items():
        logger.record(f"train/{name}", value)
    logger.record("train/n_updates", agent._n_updates)
    logger.dump(step=int(agent.num_timesteps))
