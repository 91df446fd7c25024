"""Steps/s and resets/s of a BabyAI++ task beside minigrid's matching BabyAI level, in one run.

    python benchmarks/env_speed.py [--steps 20000] [--resets 300]

Both envs are stepped with the same seeded random actions (left/right/forward) in a plain Python
loop (one process, no vector env), resetting when an episode ends. Steps/s counts the time spent
in ``step`` only: BabyAI++ episodes end earlier (traps), so counting their extra resets would
measure episode length, not the step; resets/s is reported separately. The ratio line is the
environments' acceptance figure: the dynamics layer may cost at most 1.5x minigrid's step time.
minigrid's own levels print "Sampling rejected" while generating; that is muted here.
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

import babyaipp  # noqa: F401  (registers the ids)

PAIRS = [
    ("BabyAI-GoToRedBall-v0", "BabyAIPP/GoToRedBall-Easy-Train-v0"),
    ("BabyAI-GoToRedBall-v0", "BabyAIPP/GoToRedBall-Hard-Train-v0"),
    ("BabyAI-GoToLocal-v0", "BabyAIPP/GoToLocal-Easy-Train-v0"),
    ("BabyAI-GoToObjMaze-v0", "BabyAIPP/GoToObjMaze-Easy-Train-v0"),
]


def steps_per_second(env_id: str, n_steps: int, seed: int = 0) -> float:
    env = gym.make(env_id, disable_env_checker=True).unwrapped
    actions = np.random.default_rng(seed).integers(0, 3, size=n_steps)  # left/right/forward
    env.reset(seed=seed)
    episode, spent = 0, 0.0
    clock = time.perf_counter
    for a in actions:
        start = clock()
        _, _, terminated, truncated, _ = env.step(int(a))
        spent += clock() - start
        if terminated or truncated:
            episode += 1
            env.reset(seed=seed + episode)
    return n_steps / spent


def resets_per_second(env_id: str, n_resets: int) -> float:
    env = gym.make(env_id, disable_env_checker=True).unwrapped
    start = time.perf_counter()
    for seed in range(n_resets):
        env.reset(seed=seed)
    return n_resets / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--resets", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'env':42s} {'steps/s':>9s} {'resets/s':>9s}")
    for base_id, pp_id in PAIRS:
        # Measured back to back so both see the same machine load.
        with contextlib.redirect_stdout(io.StringIO()):
            base_sps = steps_per_second(base_id, args.steps)
            base_rps = resets_per_second(base_id, args.resets)
        pp_sps = steps_per_second(pp_id, args.steps)
        pp_rps = resets_per_second(pp_id, args.resets)
        print(f"{base_id:42s} {base_sps:9.0f} {base_rps:9.1f}")
        print(f"{pp_id:42s} {pp_sps:9.0f} {pp_rps:9.1f}")
        print(
            f"  step-time ratio BabyAI++/minigrid: {base_sps / pp_sps:.2f}x (goal <= 1.5x); "
            f"reset-time ratio: {base_rps / pp_rps:.2f}x"
        )


if __name__ == "__main__":
    main()
