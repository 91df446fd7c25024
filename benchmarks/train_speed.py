"""End-to-end PPO training frames/s: ``babyaipp train`` with both engines beside SB3 PPO on minigrid.

    OMP_NUM_THREADS=1 python benchmarks/train_speed.py [--model attention] [--n-envs 16 64]
        [--updates 3] [--threads 1] [--reference-model image]

For each number of envs, trains (``babyaipp.agents.training.train``, the ``babyaipp train`` code
path) with ``--engine gym`` (single envs in a DummyVecEnv) and ``--engine batched`` (the batched
engine through the SB3 adapter) for ``updates`` PPO updates of ``n_steps * n_envs`` frames, and
stable-baselines3 PPO on minigrid's ``BabyAI-GoToRedBall-v0`` (image and direction only, the
``image`` model's CNN, same PPO settings) as the reference. frames/s is steady state: the frames
of updates 2.. divided by their time (collection + gradient update), so one-time costs (building
the batched pool, the first reset) are left out; the first update's frames/s is printed beside it.
Last, the cost of the models' gradient steps alone (:func:`update_bound`), which caps any
training loop's frames/s whatever the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import minigrid  # noqa: F401  (registers BabyAI-*)
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from babyaipp.agents import training
from babyaipp.agents.models import model_spec, policy_kwargs
from babyaipp.agents.progress import read_progress
from babyaipp.agents.training_setup import build_agent, make_vec_env
from babyaipp.defaults import DEFAULT_ENV


def steady_fps(rows: list[dict[str, float]]) -> tuple[float, float]:
    """(frames/s after the first update, frames/s of the first update) from progress.csv rows.

    Each row's ``fps`` is cumulative since training started, so its elapsed time is
    ``timesteps / fps``.
    """
    elapsed = [r["timesteps"] / r["fps"] for r in rows]
    first = rows[0]["timesteps"] / elapsed[0]
    if len(rows) < 2:
        return first, first
    return (rows[-1]["timesteps"] - rows[0]["timesteps"]) / (elapsed[-1] - elapsed[0]), first


def ours(engine: str, model: str, n_envs: int, updates: int, n_steps: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        training.train(
            run,
            model=model,
            n_envs=n_envs,
            steps=updates * n_steps * n_envs,
            engine=engine,
            device="cpu",
            hyperparameters={"n_steps": n_steps, "batch_size": min(256, n_steps * n_envs)},
            checkpoint_every=0,
        )
        return steady_fps(read_progress(run))


class _ImageAndDirection(gym.ObservationWrapper):
    """minigrid's observation without the mission string (SB3 cannot take strings)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = spaces.Dict(
            {"image": env.observation_space["image"], "direction": env.observation_space["direction"]}
        )

    def observation(self, observation):
        return {"image": observation["image"], "direction": observation["direction"]}


class _UpdateClock(BaseCallback):
    def __init__(self):
        super().__init__()
        self.marks: list[tuple[int, float]] = []

    def _on_rollout_start(self) -> None:
        self.marks.append((self.num_timesteps, time.perf_counter()))

    def _on_step(self) -> bool:
        return True


def reference(env_id: str, model: str, n_envs: int, updates: int, n_steps: int, seed: int = 0) -> tuple[float, float]:
    config = model_spec(model).config(n_steps=n_steps, batch_size=min(256, n_steps * n_envs))

    def factory():
        return _ImageAndDirection(gym.make(env_id, disable_env_checker=True))

    vec = VecMonitor(DummyVecEnv([factory] * n_envs))
    agent = PPO(
        "MultiInputPolicy",
        vec,
        learning_rate=config.learning_rate,
        n_steps=n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs=policy_kwargs(model, config),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    clock = _UpdateClock()
    total = updates * n_steps * n_envs
    with contextlib.redirect_stdout(io.StringIO()):  # minigrid's "Sampling rejected" prints
        start = time.perf_counter()
        agent.learn(total_timesteps=total, callback=clock)
        end = time.perf_counter()
    marks = [*clock.marks, (total, end)]
    first = marks[1][0] / (marks[1][1] - start)
    steady = (marks[-1][0] - marks[1][0]) / (marks[-1][1] - marks[1][1]) if len(marks) > 2 else first
    return steady, first


def update_bound(model: str, n_epochs: int, batch_size: int = 256, reps: int = 10) -> tuple[float, float]:
    """The model's PPO gradient steps alone: (ms per minibatch step, the frames/s they cap training at).

    One step is SB3's ``evaluate_actions`` on a minibatch of engine observations, a PPO-shaped loss,
    ``backward``, gradient clipping and Adam, as in ``PPO.train``; a frame costs ``n_epochs`` of
    them divided by the minibatch size, so no training loop around this model can go faster.
    """
    from stable_baselines3.common.utils import obs_as_tensor

    from babyaipp.envs.batched import BatchedBabyAIPP

    vec = make_vec_env(DEFAULT_ENV, 2, seed=0, engine="gym")  # 2 x n_steps 128 = one minibatch
    config = model_spec(model).config()
    # The policy exactly as `babyaipp train` builds it (extractor, heads, Adam settings).
    agent = build_agent(vec, model, config, False, 0, "cpu", Path(tempfile.gettempdir()) / "unused-tb")
    engine = BatchedBabyAIPP(DEFAULT_ENV, batch_size, seed=0)
    obs = {k: v.numpy() for k, v in engine.reset().items()}
    # No transpose: the image box spans the index range, not 0..255, so SB3 keeps it channels-last.
    obs = obs_as_tensor(obs, "cpu")
    actions = torch.randint(7, (batch_size,), generator=torch.Generator().manual_seed(0))
    policy = agent.policy

    def step() -> None:
        values, log_prob, entropy = policy.evaluate_actions(obs, actions)
        loss = -(log_prob.exp() * torch.randn_like(log_prob)).mean() + 0.5 * values.pow(2).mean() - entropy.mean()
        policy.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
        policy.optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(reps):
        step()
    seconds = (time.perf_counter() - start) / reps
    vec.close()
    return 1000 * seconds, batch_size / (n_epochs * seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="attention")
    parser.add_argument("--reference-model", default="image", help="CNN of the minigrid reference (no text)")
    parser.add_argument("--reference", default="BabyAI-GoToRedBall-v0")
    parser.add_argument("--n-envs", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--n-steps", type=int, default=128, help="PPO rollout length per env (the models' default)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    np.seterr(all="ignore")
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    print(f"steady-state frames/s (first update in brackets), {args.updates} updates of n_steps={args.n_steps}")
    for n in args.n_envs:
        ref, ref_first = reference(args.reference, args.reference_model, n, args.updates, args.n_steps)
        print(f"n_envs={n:4d} SB3 PPO {args.reference} ({args.reference_model} CNN): {ref:8.0f} ({ref_first:.0f})")
        for engine in ("gym", "batched"):
            fps, first = ours(engine, args.model, n, args.updates, args.n_steps)
            print(
                f"n_envs={n:4d} babyaipp train --model {args.model} --engine {engine:7s}: {fps:8.0f} ({first:.0f})"
                f"  {fps / ref:5.2f}x reference"
            )
        print(flush=True)
    epochs = model_spec(args.model).config().n_epochs
    for model in dict.fromkeys((args.reference_model, args.model)):
        ms, cap = update_bound(model, epochs)
        print(
            f"{model}: one PPO minibatch step (256 frames) {ms:.1f} ms; {epochs} epochs cap training at "
            f"{cap:,.0f} frames/s"
        )


if __name__ == "__main__":
    main()
