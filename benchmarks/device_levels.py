"""Fresh levels per second: drawn on the engine's device vs generated on the CPU, and steps/s with each.

For each N (one process, the engine's thread setting):

* ``device draws/s``: levels :class:`~babyaipp.envs.device_levels.DeviceLevels` draws per second
  (mapping, sparse floor, solvability with redraws, description), in draws of ``max(2N, 1024)``
  levels, as the engine's stock does;
* ``CPU levels/s``: levels the single env generates and encodes per second on one core (what a
  pool refresh worker does for every fresh level);
* ``steps/s pool`` / ``steps/s device levels``: engine steps per second with auto-reset, random
  actions, on a fixed pool (levels replayed) and with ``device_levels=True`` (every episode fresh).

    python benchmarks/device_levels.py --num-envs 256 1024 4096
    python benchmarks/device_levels.py --env-id BabyAIPP/GoToLocal-Hard-Train-v0 --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from babyaipp.envs.batched import BatchedBabyAIPP
from babyaipp.envs.pool import encode_seeds

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _steps_per_s(engine: BatchedBabyAIPP, steps: int, seed: int) -> float:
    generator = torch.Generator(device=engine.device)
    generator.manual_seed(seed)
    actions = torch.randint(7, (16, engine.num_envs), generator=generator, device=engine.device)
    for k in range(3):
        engine.step(actions[k])
    _sync(engine.device)
    start = time.perf_counter()
    for k in range(steps):
        engine.step(actions[k % 16])
    _sync(engine.device)
    return steps * engine.num_envs / (time.perf_counter() - start)


def measure(env_id: str, num_envs: int, device: str, steps: int, cpu_levels: int, seed: int = 0) -> dict[str, Any]:
    """One row of the table (see the module docstring)."""
    dev = torch.device(device)
    fresh = BatchedBabyAIPP(env_id, num_envs, device=dev, seed=seed, device_levels=True)
    fresh.reset(seed=seed)
    levels = fresh.device_levels
    levels.draw(64)  # warm-up
    _sync(dev)
    start = time.perf_counter()
    levels.draw(levels.stock_size)
    _sync(dev)
    row: dict[str, Any] = {"num_envs": num_envs, "stock": levels.stock_size}
    row["device_draws_per_s"] = levels.stock_size / (time.perf_counter() - start)
    start = time.perf_counter()
    encode_seeds(fresh.single, fresh.geometry, range(seed, seed + cpu_levels))
    row["cpu_levels_per_s"] = cpu_levels / (time.perf_counter() - start)
    pool = BatchedBabyAIPP(env_id, num_envs, device=dev, seed=seed)
    pool.reset(seed=seed)
    row["pool_steps_per_s"] = _steps_per_s(pool, steps, seed)
    drawn = levels.levels_drawn
    row["device_levels_steps_per_s"] = _steps_per_s(fresh, steps, seed)
    row["levels_drawn_while_stepping"] = levels.levels_drawn - drawn
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--env-id", default=ENV_ID)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=200, help="timed engine steps per N and level source")
    parser.add_argument("--cpu-levels", type=int, default=300, help="levels the CPU generator makes for its rate")
    args = parser.parse_args(argv)
    print(f"{args.env_id} on {args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'N':>6} {'device draws/s':>15} {'CPU levels/s':>13} {'steps/s pool':>13} {'steps/s device levels':>22}")
    rows = []
    for n in args.num_envs:
        row = measure(args.env_id, n, args.device, args.steps, args.cpu_levels)
        rows.append(row)
        print(
            f"{n:>6} {row['device_draws_per_s']:>15,.0f} {row['cpu_levels_per_s']:>13,.0f} "
            f"{row['pool_steps_per_s']:>13,.0f} {row['device_levels_steps_per_s']:>22,.0f}"
        )
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
