"""CPU steps/s of the batched engine at several batch sizes beside minigrid in a Python loop, in one run.

    OMP_NUM_THREADS=1 python benchmarks/batched_speed.py [--id BabyAIPP/GoToRedBall-Easy-Train-v0]
        [--sizes 1 16 64 256 1024] [--steps 200] [--threads 1]

The engine is stepped with seeded uniform random actions over all 7 actions, auto-resets included
(finished slots draw a level from the in-process pool); the time covers ``step`` and the
observation it returns, not the pool generation. minigrid's ``BabyAI-GoToRedBall-v0`` (plain
minigrid, no floor dynamics, no tokens) is stepped in a loop with the same action distribution,
reset time included, as the reference. steps/s counts env steps (N per batched step).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import time

import gymnasium as gym
import minigrid  # noqa: F401
import numpy as np
import torch

from babyaipp.envs.batched import BatchedBabyAIPP


def minigrid_loop(env_id: str, n_steps: int, seed: int = 0) -> float:
    env = gym.make(env_id, disable_env_checker=True).unwrapped
    actions = np.random.default_rng(seed).integers(0, 7, size=n_steps)
    with contextlib.redirect_stdout(io.StringIO()):  # "Sampling rejected" prints of minigrid's levels
        env.reset(seed=seed)
        start = time.perf_counter()
        for a in actions:
            _, _, term, trunc, _ = env.step(int(a))
            if term or trunc:
                env.reset()
        return n_steps / (time.perf_counter() - start)


def batched(env_id: str, num_envs: int, n_steps: int, seed: int = 0) -> tuple[float, float]:
    """(env steps/s, episodes finished per second) of the engine."""
    engine = BatchedBabyAIPP(env_id, num_envs, pool_size=max(num_envs, 256), seed=seed)
    engine.reset()
    gen = torch.Generator().manual_seed(seed)
    actions = torch.randint(7, (n_steps, num_envs), generator=gen)
    for t in range(min(10, n_steps)):  # warm-up
        engine.step(actions[t])
    done = 0
    start = time.perf_counter()
    for t in range(n_steps):
        _, _, term, trunc = engine.step(actions[t])
        done += int((term | trunc).sum())
    elapsed = time.perf_counter() - start
    return num_envs * n_steps / elapsed, done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", default="BabyAIPP/GoToRedBall-Easy-Train-v0")
    parser.add_argument("--reference", default="BabyAI-GoToRedBall-v0")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64, 256, 1024])
    parser.add_argument("--steps", type=int, default=200, help="batched steps per size")
    parser.add_argument("--reference-steps", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    ref = minigrid_loop(args.reference, args.reference_steps)
    print(f"{args.reference} (minigrid, Python loop): {ref:,.0f} steps/s")
    for n in args.sizes:
        sps, eps = batched(args.id, n, args.steps)
        print(f"batched N={n:5d}: {sps:>12,.0f} steps/s  {eps:>9,.0f} auto-resets/s  {sps / ref:6.1f}x minigrid")


if __name__ == "__main__":
    main()
