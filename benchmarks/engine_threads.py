"""Engine steps/s under torch's thread settings, side by side, while other processes hold cores.

Each setting runs in its own child process (threads are fixed at torch's start) stepping
``gym.make_vec(ENV_ID, num_envs=N)`` with random actions for ``--seconds``; ``--busy`` extra
processes spin on the CPU meanwhile (killed at the end). Settings:

* ``OMP_NUM_THREADS=1``: the classic advice;
* ``default, no engine limit``: torch's default threads everywhere (``BABYAIPP_ENGINE_THREADS=0``);
* ``default (engine limit)``: what a user who sets nothing gets (babyaipp/envs/threads.py).

    OMP_NUM_THREADS= python benchmarks/engine_threads.py --num-envs 256 1024 --busy 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"
SETTINGS = {
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
    "default, no engine limit": {"BABYAIPP_ENGINE_THREADS": "0"},
    "default (engine limit)": {},
}
CHILD = """
import json, sys, time
import numpy as np, torch, gymnasium as gym
import babyaipp  # noqa: F401
n, seconds = int(sys.argv[1]), float(sys.argv[2])
envs = gym.make_vec(sys.argv[3], num_envs=n)
envs.reset(seed=0)
actions = np.random.default_rng(0).integers(7, size=(64, n))
for a in actions[:8]:
    envs.step(a)
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    envs.step(actions[steps % 64])
    steps += 1
rate = steps * n / (time.perf_counter() - start)
print(json.dumps({"steps_per_s": rate, "torch_threads": torch.get_num_threads()}))
"""


def measure(num_envs: int, seconds: float, extra_env: dict[str, str], env_id: str = ENV_ID) -> dict:
    """Steps/s of one setting in a fresh process (the user's thread variables cleared first)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "BABYAIPP_ENGINE_THREADS")
    }
    env.update(extra_env)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(num_envs), str(seconds), env_id],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--busy", type=int, default=1, help="spinning processes started beside the runs")
    parser.add_argument("--env-id", default=ENV_ID)
    args = parser.parse_args(argv)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(0.5)
        print(f"{args.env_id}, {args.busy} busy process(es), {os.cpu_count()} CPUs, {args.seconds:g} s per run")
        print(f"{'N':>6} " + " ".join(f"{name:>26}" for name in SETTINGS))
        for n in args.num_envs:
            rates = [measure(n, args.seconds, extra, args.env_id) for extra in SETTINGS.values()]
            print(f"{n:>6} " + " ".join(f"{r['steps_per_s']:>16,.0f} ({r['torch_threads']} thr)" for r in rates))
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
