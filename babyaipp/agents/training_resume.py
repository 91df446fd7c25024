"""Continue a training run: ``babyaipp train --resume`` and :func:`resume`.

A run stops at its ``steps``, at Ctrl-C or SIGTERM (which save a checkpoint first), or without
warning (SIGKILL, a crash). Resuming picks its latest checkpoint and trains on into the same run
directory with the run's recorded config, by one of three paths:

* exactly: a checkpoint of a run on the batched engine (either level source) carries the whole
  training state (:mod:`babyaipp.agents.resume_state`), so the run continues as if it had never
  stopped;
* from the weights only: without that state (``engine="gym"``, or a missing sidecar) the envs start
  fresh episodes from the next block of training seeds (:mod:`babyaipp.agents.training_setup`);
* from step 0: a run killed before its first checkpoint is trained again from its ``config.json``.

Starting a run, and the training loop every path ends in, live in :mod:`babyaipp.agents.training`;
runs of the device trainer resume through :mod:`babyaipp.agents.device_training`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stable_baselines3.common.utils import set_random_seed

from babyaipp.agents import device_training, resume_state
from babyaipp.agents.models import model_spec
from babyaipp.agents.runs import latest_checkpoint, load_algorithm, mark_killed_segments, read_config, run_lock
from babyaipp.agents.training import clear_unstarted_run, learn, train_locked
from babyaipp.agents.training_setup import (
    BATCHED_ENGINES,
    TrainResult,
    make_vec_env,
    seed_vec_env,
    train_seed,
)
from babyaipp.defaults import DEFAULT_DEVICE
from babyaipp.errors import CheckpointError, ConfigError, check_range
from babyaipp.utils import atomic_write_json, resolve_device

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
    vec = _run_vec_env(run_config, offset)
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
    return learn(agent, run_dir, run_config, steps, every, progress_bar, resumed_from=int(agent.num_timesteps))


def _run_vec_env(run_config: dict[str, Any], seed_offset: int = 0) -> Any:
    """The run's training envs as its ``config.json`` records them, the first reset from training
    seed ``seed_offset`` of its block (0: the run's own first envs, as on an exact resume)."""
    return make_vec_env(
        run_config["env_id"],
        int(run_config["n_envs"]),
        int(run_config["seed"]),
        run_config["text"],
        run_config.get("env_kwargs"),
        seed_offset,
        engine=run_config.get("engine", "gym"),
    )


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
    vec = _run_vec_env(run_config)
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
    return learn(agent, run_dir, run_config, steps, every, progress_bar, resumed_from=start, restored=state)


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
    clear_unstarted_run(run_dir)
    config = model_spec(run_config["model"]).config.from_dict(dict(run_config["hyperparameters"]))
    every = int(run_config.get("checkpoint_every", 0) if checkpoint_every is None else checkpoint_every)
    return train_locked(
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


__all__ = ["resume"]
