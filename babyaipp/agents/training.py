"""Train the baseline agents with PPO (or RecurrentPPO), or clone demonstrations; resume runs.

What a run leaves on disk (``config.json``, ``model.zip``, ``checkpoints/step_N.zip``,
``progress.csv``, ``tb/``) and the code that reads and writes it live in :mod:`babyaipp.agents.runs`;
the training envs, their seeds and the agent every trainer starts from live in
:mod:`babyaipp.agents.training_setup`. Ctrl-C saves a checkpoint first, so ``--resume`` loses nothing.

Resuming: a checkpoint of a run on the batched engine (either level source) carries the whole training state
(:mod:`babyaipp.agents.resume_state`), so ``--resume`` continues exactly as if the run had not
stopped; without it (``engine="gym"``) the envs start fresh episodes, as the seeding rule below says.

Seeding: see :mod:`babyaipp.agents.training_setup`; the rule is written into ``config.json`` as
``train_seed_range``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import set_random_seed

from babyaipp.agents import device_training, resume_state
from babyaipp.agents.imitation import train_bc, warm_start_from
from babyaipp.agents.model_config import ModelConfig
from babyaipp.agents.models import model_spec
from babyaipp.agents.runs import (
    ProgressCallback,
    latest_checkpoint,
    load_algorithm,
    mark_killed_segments,
    read_config,
    read_progress,
    record_segment,
    run_lock,
    save_atomic,
    write_failure,
)
from babyaipp.agents.training_setup import (
    BATCHED_ENGINES,
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

# ---------------------------------------------------------------------------------------------
# Train and resume
# ---------------------------------------------------------------------------------------------


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
    """Train a new run in ``run_dir`` (which must not already hold one; see :func:`resume`).

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
        _clear_unstarted_run(run_dir)
        return _train_locked(
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


def _clear_unstarted_run(run_dir: Path) -> None:
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


def _train_locked(
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
        return _learn(agent, run_dir, run_config, steps, checkpoint_every, progress_bar, resumed_from=None)
    except Exception:
        if latest_checkpoint(run_dir) is None:  # nothing to resume: leave no run behind
            for name in ("config.json", "progress.csv"):
                (run_dir / name).unlink(missing_ok=True)
        raise


#: config.json keys a run needs to be started again from step 0 by ``resume`` (no checkpoint).
_RESTART_KEYS = ("env_id", "model", "recurrent", "steps", "n_envs", "seed", "text", "hyperparameters")


def resume(
    run_dir: str | Path,
    *,
    steps: int | None = None,
    device: str = DEFAULT_DEVICE,
    checkpoint_every: int | None = None,
    progress_bar: bool = False,
) -> TrainResult:
    """Continue a run from its latest checkpoint up to ``steps`` total (default: the run's own).

    The run's config (env, model, text, seed, n_envs, hyperparameters) is reused as it is;
    ``num_timesteps`` continues from the checkpoint's. A run stopped before its first checkpoint
    starts again from step 0 with its recorded config. ``steps`` below what the run has already
    trained is refused; a finished run asked for no more steps is left untouched. Raises
    :class:`CheckpointError` if the directory holds no config, or neither a checkpoint nor a
    config complete enough to start over. What a resumed run does differently from an
    uninterrupted one is listed in docs/agents.md ("Interrupting and resuming").
    """
    run_dir = Path(run_dir)
    read_config(run_dir)  # a missing run fails before the lock creates its directory
    with run_lock(run_dir):
        return _resume_locked(run_dir, steps, device, checkpoint_every, progress_bar)


def _resume_locked(
    run_dir: Path, steps: int | None, device: str, checkpoint_every: int | None, progress_bar: bool
) -> TrainResult:
    run_config = read_config(run_dir)
    if run_config.get("algo") == "bc":
        raise ConfigError(f"{run_dir} is a behaviour-cloning run, which cannot be resumed; train a new one")
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return _restart(run_dir, run_config, steps, device, checkpoint_every, progress_bar)
    step, path = latest
    steps = int(run_config["steps"] if steps is None else steps)
    check_range("steps", steps, 1, None)
    if steps < step:
        raise ConfigError(
            f"--steps {steps} is below the {step} steps {run_dir} has already trained; "
            f"give --steps of at least {step}, or leave it out"
        )
    every = int(run_config.get("checkpoint_every", 0) if checkpoint_every is None else checkpoint_every)
    check_range("checkpoint_every", every, 0, None)
    resolved = resolve_device(device)
    recurrent = bool(run_config["recurrent"])
    if steps == step and path.name == "model.zip":  # finished, and no more steps asked: touch nothing
        agent = load_algorithm(path, recurrent, resolved, config=run_config)
        return TrainResult(run_dir, step, 0, 0.0, 0.0, step, agent)

    if run_config.get("trainer") == "device":
        return device_training.resume_locked(run_dir, run_config, path, steps, every, resolved, progress_bar)
    n_envs, seed = int(run_config["n_envs"]), int(run_config["seed"])
    used = list(run_config.get("train_seeds_used", []))
    engine = run_config.get("engine", "gym")
    state = resume_state.load(resume_state.state_path(path)) if engine in BATCHED_ENGINES else None
    if state is not None and int(state["num_timesteps"]) == step:
        return _resume_exactly(run_dir, run_config, path, state, steps, every, resolved, progress_bar)
    offset = max(len(used), n_envs)  # seeds already handed out, counted across resumes
    segment = offset // n_envs
    vec = make_vec_env(
        run_config["env_id"],
        n_envs,
        seed,
        run_config["text"],
        run_config.get("env_kwargs"),
        offset,
        engine=run_config.get("engine", "gym"),
    )
    try:
        agent = load_algorithm(path, recurrent, resolved, env=vec, config=run_config)
        set_random_seed(seed + segment)  # after the load, which reseeds everything with the run's seed
    except BaseException:
        vec.close()
        raise
    agent.tensorboard_log = str(run_dir / "tb")
    seed_vec_env(agent.get_env(), seed, offset)
    agent._last_obs = None  # the pickled last observation belongs to the old envs: reset instead
    states = getattr(agent, "_last_lstm_states", None)
    if states is not None:
        for pair in states:
            for tensor in pair:
                tensor.zero_()
    mark_killed_segments(run_config)
    run_config.update(
        steps=steps,
        device=resolved,
        checkpoint_every=every,
        train_seeds_used=[*used, *(train_seed(seed, offset + i) for i in range(n_envs))],
    )
    atomic_write_json(run_dir / "config.json", run_config)
    return _learn(agent, run_dir, run_config, steps, every, progress_bar, resumed_from=int(agent.num_timesteps))


def _resume_exactly(
    run_dir: Path,
    run_config: dict[str, Any],
    path: Path,
    state: dict[str, Any],
    steps: int,
    every: int,
    device: str,
    progress_bar: bool,
) -> TrainResult:
    """Continue from ``path`` with its sidecar's state (:mod:`babyaipp.agents.resume_state`): the
    same levels, random draws and updates as if the run had never stopped."""
    n_envs, seed = int(run_config["n_envs"]), int(run_config["seed"])
    vec = make_vec_env(
        run_config["env_id"],
        n_envs,
        seed,
        run_config["text"],
        run_config.get("env_kwargs"),
        engine=run_config["engine"],
    )
    try:
        agent = load_algorithm(path, bool(run_config["recurrent"]), device, env=vec, config=run_config)
        agent.tensorboard_log = str(run_dir / "tb")
        resume_state.restore(agent, state)
    except BaseException:
        vec.close()
        raise
    mark_killed_segments(run_config)
    run_config.update(steps=steps, device=device, checkpoint_every=every)
    atomic_write_json(run_dir / "config.json", run_config)
    start = int(agent.num_timesteps)
    return _learn(agent, run_dir, run_config, steps, every, progress_bar, resumed_from=start, restored=state)


def _restart(
    run_dir: Path,
    run_config: dict[str, Any],
    steps: int | None,
    device: str,
    checkpoint_every: int | None,
    progress_bar: bool,
) -> TrainResult:
    """``resume`` of a run stopped before its first checkpoint: train it again from step 0."""
    missing = [key for key in _RESTART_KEYS if key not in run_config]
    if missing or run_config.get("init_from"):
        why = f"config.json lacks {', '.join(missing)}" if missing else "it was warm-started (--init-from)"
        raise CheckpointError(
            f"no checkpoint to resume from in {run_dir / 'checkpoints'} (and no model.zip), and the run cannot "
            f"be started over from its config ({why}); train it again without --resume"
        )
    _clear_unstarted_run(run_dir)
    config = model_spec(run_config["model"]).config.from_dict(dict(run_config["hyperparameters"]))
    every = int(run_config.get("checkpoint_every", 0) if checkpoint_every is None else checkpoint_every)
    return _train_locked(
        run_dir,
        env_id=run_config["env_id"],
        model=run_config["model"],
        config=config,
        recurrent=bool(run_config["recurrent"]),
        steps=int(run_config["steps"] if steps is None else steps),
        n_envs=int(run_config["n_envs"]),
        seed=int(run_config["seed"]),
        device=device,
        text=run_config["text"],
        env_kwargs=dict(run_config.get("env_kwargs") or {}),
        engine=run_config.get("engine", "gym"),
        checkpoint_every=every,
        progress_bar=progress_bar,
        init_from=None,
        trainer=run_config.get("trainer", "sb3"),
    )


def _learn(
    agent: BaseAlgorithm,
    run_dir: Path,
    run_config: dict[str, Any],
    steps: int,
    checkpoint_every: int,
    progress_bar: bool,
    resumed_from: int | None,
    restored: dict[str, Any] | None = None,
) -> TrainResult:
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


__all__ = ["ALGOS", "resume", "train"]
