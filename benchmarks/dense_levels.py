"""Levels/s of dense-floor generation beside the sparse floor, one process, one core.

    OMP_NUM_THREADS=1 python benchmarks/dense_levels.py [--levels 1000] [--tasks GoToRedBall GoToLocal]

Each id's single env is reset with seeds 0..levels-1 (generation: minigrid's level, the mapping,
the floor layout and its checks, the description, the first observation). Levels/s is counted on
the process's CPU time (``time.process_time``), so other processes sharing the cores do not
lower it; wall-clock levels/s is printed beside it.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import babyaipp.envs as envs


def levels_per_second(env_id: str, n_levels: int) -> tuple[float, float]:
    """(levels per CPU second, levels per wall-clock second) over seeds 0..n_levels-1."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*font.*")
        env = envs.make(env_id).unwrapped
    env.reset(seed=n_levels)  # warm caches outside the timing
    cpu, wall = time.process_time(), time.perf_counter()
    for seed in range(n_levels):
        env.reset(seed=seed)
    return n_levels / (time.process_time() - cpu), n_levels / (time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, default=1000, help="resets per id (default 1000)")
    parser.add_argument("--tasks", nargs="+", default=["GoToRedBall", "GoToLocal"], help="sparse task families")
    parser.add_argument("--split", default="TargetPairOnly", help="split of every id (default TargetPairOnly)")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {args.levels} levels per id")
    print(f"{'id':52s} {'levels/s (cpu)':>15s} {'levels/s (wall)':>16s}")
    for task in args.tasks:
        for difficulty in envs.DIFFICULTIES:
            for name in (task, f"{task}Dense"):
                env_id = envs.env_id(name, difficulty, args.split)
                cpu, wall = levels_per_second(env_id, args.levels)
                print(f"{env_id:52s} {cpu:15.0f} {wall:16.0f}")


if __name__ == "__main__":
    main()
