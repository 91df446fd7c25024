"""Behaviour cloning of the oracle's demonstrations into the same SB3 policies PPO trains.

``train_bc`` builds the policy exactly as ``babyaipp train`` does (:func:`~babyaipp.agents.training_setup.build_agent`:
the model's feature extractor, the actor and critic MLPs, the LSTM with ``--recurrent``), then
fits it on a dataset recorded by ``babyaipp demos``:

* the actor by cross-entropy on the oracle's actions;
* the critic by mean-squared error on the demonstrations' discounted returns (weighted by
  ``vf_coef``), so a clone that warm-starts PPO (``babyaipp train --init-from``) starts with a
  value function that knows successful episodes pay, rather than a random one.

Feed-forward models see shuffled single steps (minibatches of ``batch_size`` frames); recurrent
models see whole episodes: each minibatch is a set of episodes (about ``batch_size`` frames in
all), padded to the longest, run through the LSTM from a zero state with ``episode_starts`` set
at ``t = 0``; padded steps are masked out of the loss. Only successful demonstrations are used.
The dataset's steps and minibatches live in :mod:`babyaipp.agents.imitation_data`, the policy's
logits and values in :mod:`babyaipp.agents.policy_forward`, and the warm start that loads a clone
into a PPO run in :mod:`babyaipp.agents.warm_start`.

The run directory is the one PPO writes (``config.json`` with ``"algo": "bc"``, ``model.zip``,
``checkpoints/``, ``progress.csv``, ``tb/``), so ``load_run``, ``babyaipp eval`` and
``babyaipp compare`` take it unchanged. ``progress.csv``'s ``timesteps`` counts demonstration
frames trained on; its success and return columns are the greedy policy's on the first
``progress_episodes`` demonstration seeds after each epoch (a fit check, not an evaluation:
those are training levels); ``loss`` and ``accuracy`` are the epoch's training averages.

Behaviour cloning defaults (:data:`BC_DEFAULTS`) to a learning rate of 3e-4, three times PPO's,
and minibatches of 64 frames: the targets are stationary, and a dataset of a few thousand frames
needs many small steps. 1e-3 was tried first and is too high for the text-conditioned models: on
1000 GoToRedBall-Easy demonstrations FiLM (3 seeds of 3) and attention (2 of 3) stayed on the
majority-class plateau (training accuracy 0.636 = the share of ``forward``) for all 20 epochs,
while with 3e-4 every model we tried left it (FiLM seed 0: 0.94; attention seeds 1, 2: 0.91, 0.92;
image seed 2: 0.92).
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from babyaipp.agents.demos_loading import Demonstrations, load_demos
from babyaipp.agents.evaluation import sb3_act_fn
from babyaipp.agents.evaluation_episodes import rollout_vectorised
from babyaipp.agents.imitation_data import Batch, StepData, check_demos_match, episode_batches, load_steps, step_batches
from babyaipp.agents.models import model_spec
from babyaipp.agents.policy_forward import forward_sequences, forward_steps
from babyaipp.agents.progress import PROGRESS_COLUMNS as PPO_PROGRESS_COLUMNS
from babyaipp.agents.runs import run_lock, save_atomic
from babyaipp.agents.training_setup import (
    MAX_SEED,
    TrainResult,
    build_agent,
    check_hyperparameters,
    make_tokenized_env,
    make_vec_env,
    package_version,
)
from babyaipp.defaults import DEFAULT_BC_EPOCHS, DEFAULT_DEVICE, EVAL_SEED_START
from babyaipp.errors import ConfigError, check_range
from babyaipp.utils import atomic_write_json, atomic_write_text, check_out_dir, resolve_device

#: BC's own defaults for shared hyperparameters (``--set`` still overrides them).
BC_DEFAULTS: dict[str, Any] = {"learning_rate": 3e-4, "batch_size": 64}
DEFAULT_PROGRESS_EPISODES = 20
PROGRESS_COLUMNS = (*PPO_PROGRESS_COLUMNS, "loss", "accuracy")


def train_bc(
    run_dir: str | Path,
    *,
    demos: str | Path,
    env_id: str | None = None,
    model: str = "image",
    recurrent: bool = False,
    epochs: int = DEFAULT_BC_EPOCHS,
    seed: int = 0,
    device: str = DEFAULT_DEVICE,
    text: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    checkpoint_every: int = 0,
    progress_episodes: int = DEFAULT_PROGRESS_EPISODES,
    progress_bar: bool = False,
) -> TrainResult:
    """Clone the demonstrations in ``demos`` into a new run in ``run_dir``.

    ``env_id``, ``text`` and ``env_kwargs`` default to the dataset's; given, they must equal
    them (else :class:`BabyAIPPError` naming the difference). ``checkpoint_every`` counts frames
    (0: no checkpoints); a checkpoint is written after the epoch that passes each multiple.
    """
    run_dir = check_out_dir(run_dir)
    spec = model_spec(model)
    config = spec.config.from_dict(check_hyperparameters(spec.config, {**BC_DEFAULTS, **dict(hyperparameters or {})}))
    check_range("epochs", epochs, 1, None)
    check_range("seed", seed, 0, MAX_SEED)
    check_range("checkpoint_every", checkpoint_every, 0, None)
    check_range("progress_episodes", progress_episodes, 0, None)
    with run_lock(run_dir):
        if (run_dir / "config.json").exists():
            if (run_dir / "model.zip").exists():
                raise ConfigError(f"{run_dir} already holds a run; choose another --out")
            _clear_unfinished(run_dir)  # a cloning killed before its end cannot be resumed: start over
        return _train_bc_locked(
            run_dir,
            demos,
            env_id,
            model,
            spec,
            config,
            recurrent,
            epochs,
            seed,
            device,
            text,
            env_kwargs,
            checkpoint_every,
            progress_episodes,
            progress_bar,
        )


def _clear_unfinished(run_dir: Path) -> None:
    for name in ("config.json", "progress.csv"):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("tb", "checkpoints"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def _train_bc_locked(
    run_dir: Path,
    demos: str | Path,
    env_id: str | None,
    model: str,
    spec: Any,
    config: Any,
    recurrent: bool,
    epochs: int,
    seed: int,
    device: str,
    text: str | None,
    env_kwargs: dict[str, Any] | None,
    checkpoint_every: int,
    progress_episodes: int,
    progress_bar: bool,
) -> TrainResult:
    resolved = resolve_device(device)
    dataset = load_demos(demos)
    env_id = dataset.env_id if env_id is None else env_id
    text = dataset.text if text is None else text
    env_kwargs = dict(dataset.env_kwargs if env_kwargs is None else env_kwargs)
    # Enough envs for one PPO rollout to fill a minibatch, so the model is a valid PPO as saved.
    n_envs = max(1, math.ceil(config.batch_size / config.n_steps))
    vec = make_vec_env(env_id, n_envs, seed, text, env_kwargs)
    check_demos_match(dataset, env_id, text, env_kwargs, vec.observation_space)
    data = load_steps(dataset, config.gamma)

    agent = build_agent(vec, model, config, recurrent, seed, resolved, run_dir / "tb")
    run_config = _run_config(
        env_id,
        env_kwargs,
        model,
        recurrent,
        type(agent).__name__,
        text,
        seed,
        epochs,
        data,
        dataset,
        resolved,
        checkpoint_every,
        config,
        n_envs,
    )
    atomic_write_json(run_dir / "config.json", run_config)
    try:
        return _fit(
            agent,
            data,
            dataset,
            run_dir,
            run_config,
            config,
            epochs,
            seed,
            recurrent,
            checkpoint_every,
            progress_episodes,
            progress_bar,
        )
    except BaseException:
        if not (run_dir / "model.zip").exists():  # leave no half run behind
            (run_dir / "config.json").unlink(missing_ok=True)
        raise
    finally:
        vec.close()


def _run_config(
    env_id: str,
    env_kwargs: dict[str, Any],
    model: str,
    recurrent: bool,
    algorithm: str,
    text: str,
    seed: int,
    epochs: int,
    data: StepData,
    dataset: Demonstrations,
    device: str,
    checkpoint_every: int,
    config: Any,
    n_envs: int,
) -> dict[str, Any]:
    episodes = int(dataset.dataset.total_episodes)
    return {
        "package": "babyaipp",
        "version": package_version(),
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "model": model,
        "recurrent": bool(recurrent),
        "algo": "bc",
        "algorithm": algorithm,
        "text": text,
        "seed": seed,
        "epochs": epochs,
        "steps": epochs * data.frames,
        "n_envs": n_envs,
        "device": device,
        "checkpoint_every": checkpoint_every,
        "hyperparameters": config.to_dict(),
        "demos": {
            "path": str(dataset.path),
            "dataset_id": dataset.dataset_id,
            "episodes": episodes,
            "episodes_used": int(data.episode_lengths.size),
            "skipped_failures": data.skipped_failures,
            "frames": data.frames,
        },
        # The demonstrations' seeds are this run's training levels; evaluation must stay above.
        "train_seed_range": {
            "first": dataset.seed,
            "last": dataset.seed + episodes - 1,
            "rule": f"demonstration episode k was reset with seed {dataset.seed} + k; "
            f"evaluation seeds start at {EVAL_SEED_START}",
        },
        "segments": [],
        "num_timesteps": 0,
        "completed": False,
    }


def _fit(
    agent: Any,
    data: StepData,
    dataset: Demonstrations,
    run_dir: Path,
    run_config: dict[str, Any],
    config: Any,
    epochs: int,
    seed: int,
    recurrent: bool,
    checkpoint_every: int,
    progress_episodes: int,
    progress_bar: bool,
) -> TrainResult:
    from stable_baselines3.common.logger import configure
    from tqdm.auto import tqdm

    policy = agent.policy
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate, eps=config.adam_eps)
    logger = configure(str(run_dir / "tb" / "run_1"), ["tensorboard"])
    rng = np.random.default_rng(seed)
    make_batches = episode_batches if recurrent else step_batches
    rows: list[dict[str, float]] = []
    frames_done = 0
    began = time.perf_counter()
    try:
        with tqdm(total=epochs * data.frames, desc="bc", unit="frame", disable=not progress_bar) as bar:
            for epoch in range(1, epochs + 1):
                policy.set_training_mode(True)
                loss_sum = correct = seen = 0.0
                for batch in make_batches(data, config.batch_size, rng):
                    loss, hits, n = _step(policy, optimizer, batch, config)
                    loss_sum, correct, seen = loss_sum + loss * n, correct + hits, seen + n
                    bar.update(n)
                frames_done += int(seen)
                agent.num_timesteps = frames_done
                row = {
                    "timesteps": frames_done,
                    "episodes": epoch * int(data.episode_lengths.size),
                    **_fit_check(agent, dataset, run_config, progress_episodes),
                    "fps": frames_done / max(time.perf_counter() - began, 1e-9),
                    "loss": loss_sum / seen,
                    "accuracy": correct / seen,
                }
                rows.append(row)
                _write_progress(run_dir, rows)
                for key in ("loss", "accuracy", "success_rate", "mean_return"):
                    logger.record(f"bc/{key}", row[key])
                logger.dump(frames_done)
                every = checkpoint_every
                if every and frames_done // every > (frames_done - int(seen)) // every:
                    save_atomic(agent, run_dir / "checkpoints" / f"step_{frames_done}.zip")
    finally:
        logger.close()
    elapsed = time.perf_counter() - began
    fps = frames_done / elapsed if elapsed > 0 else 0.0
    save_atomic(agent, run_dir / "model.zip")
    run_config["segments"] = [{"from": 0, "to": frames_done, "seconds": round(elapsed, 3), "fps": round(fps, 1)}]
    run_config.update(num_timesteps=frames_done, completed=True)
    atomic_write_json(run_dir / "config.json", run_config)
    return TrainResult(run_dir, frames_done, frames_done, elapsed, fps, None, agent)


def _step(policy: Any, optimizer: torch.optim.Optimizer, batch: Batch, config: Any) -> tuple[float, float, int]:
    """One gradient step; returns (mean loss, correct argmax actions, real frames)."""
    obs, _ = policy.obs_to_tensor(batch.observations)
    actions = torch.as_tensor(batch.actions, device=policy.device)
    returns = torch.as_tensor(batch.returns, device=policy.device)
    mask = torch.as_tensor(batch.mask, device=policy.device)
    if batch.n_sequences:
        starts = torch.as_tensor(batch.episode_starts, device=policy.device)
        logits, values = forward_sequences(policy, obs, batch.n_sequences, starts)
    else:
        logits, values = forward_steps(policy, obs)
    logits, values, actions, returns = logits[mask], values[mask], actions[mask], returns[mask]
    loss = F.cross_entropy(logits, actions) + config.vf_coef * F.mse_loss(values, returns)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
    optimizer.step()
    hits = float((logits.argmax(dim=1) == actions).sum().item())
    return float(loss.item()), hits, int(mask.sum().item())


def _fit_check(agent: Any, dataset: Demonstrations, run_config: dict[str, Any], episodes: int) -> dict[str, float]:
    """Greedy success and return on the first ``episodes`` demonstration seeds (training levels)."""
    if episodes == 0:
        return {"mean_return": float("nan"), "success_rate": float("nan")}
    episodes = min(episodes, int(dataset.dataset.total_episodes))
    records = rollout_vectorised(
        lambda: make_tokenized_env(run_config["env_id"], run_config["text"], run_config["env_kwargs"]),
        sb3_act_fn(agent, greedy=True),
        episodes,
        seed_base=dataset.seed,
        n_envs=episodes,
    )
    return {
        "mean_return": float(np.mean([r.episode_return for r in records])),
        "success_rate": float(np.mean([r.success for r in records])),
    }


def _write_progress(run_dir: Path, rows: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PROGRESS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(row[k]) if k in ("timesteps", "episodes") else f"{row[k]:.6g}") for k in row})
    atomic_write_text(run_dir / "progress.csv", buffer.getvalue())


__all__ = [
    "BC_DEFAULTS",
    "PROGRESS_COLUMNS",
    "train_bc",
]
