"""CPU speed of the batched engine beside minigrid (loop, SyncVectorEnv, AsyncVectorEnv) and EnvPool, in one run.

    OMP_NUM_THREADS=1 python benchmarks/batched_speed.py [--id BabyAIPP/GoToRedBall-Easy-Train-v0]
        [--sizes 1 16 64 256 1024] [--seconds 1.5] [--threads 1] [--async-max 64]
        [--envpool-python /tmp/envpool-venv/bin/python] [--json out.json] [--plot docs/images/scaling.png]
        [--profile]

Every engine is stepped with seeded uniform random actions over all 7 actions, auto-resets
included (a finished episode restarts at once: minigrid's loop calls ``reset``, the vector envs
and EnvPool reset themselves, the batched engine draws a level from its pool). steps/s counts env
steps (N per batched step); ``resets/s`` is episodes finished per second during that stepping.
Rows:

* ``batched``: :class:`BatchedBabyAIPP` (tensors out), pool of ``max(N, 256)`` levels;
* ``batched compiled``: the same with ``compile=True`` (the step's tensor code fused by
  ``torch.compile``; compilation happens in the warm-up steps, whose time is printed);
* ``make_vec``: ``gym.make_vec(id, num_envs=N)`` (numpy out, next-step autoreset, infos);
* ``minigrid loop``: minigrid's ``BabyAI-GoToRedBall-v0`` (plain minigrid: no floor dynamics,
  no tokens) in a Python loop; ``minigrid sync``/``async``: the same in Gymnasium's vector envs;
* ``envpool``: EnvPool's C++ ``BabyAI-GoToRedBall-v0``, run by ``--envpool-python`` (a separate
  venv, since envpool pins its own dependencies), all cores, ``batch_size = num_envs``.

Also printed: pool generation (levels/s in-process and with 2 worker processes), memory (bytes
per episode in the batch and per pool level, peak RSS of a fresh process at N=1024) and, with
``--profile``, the top torch operators of one batched step at N=256.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import minigrid  # noqa: F401  (registers BabyAI-*)
import numpy as np
import torch

from babyaipp.envs.batched import BatchedBabyAIPP

ENVPOOL_SCRIPT = """
import json, sys, time
import numpy as np
import envpool
sizes, seconds, env_id = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
out = {"version": envpool.__version__}
for n in sizes:
    env = envpool.make(env_id, env_type="gymnasium", num_envs=n, batch_size=n, seed=0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter(); env.reset(); reset_s = time.perf_counter() - t0
    actions = rng.integers(0, 7, size=(64, n)).astype(np.int32)
    for t in range(3):
        env.step(actions[t])
    steps = done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, term, trunc, _ = env.step(actions[steps % 64])
        done += int((term | trunc).sum()); steps += 1
    elapsed = time.perf_counter() - start
    out[str(n)] = {"steps_per_s": n * steps / elapsed, "resets_per_s": done / elapsed, "reset_all_s": reset_s}
    env.close()
print(json.dumps(out))
"""


def timed(step: Callable[[int], int], seconds: float, warmup: int = 3) -> tuple[float, float, int]:
    """Call ``step(t)`` (returns episodes finished) for about ``seconds``: (calls/s, finished/s, calls)."""
    for t in range(warmup):
        step(t)
    calls = done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 2:
        done += step(calls)
        calls += 1
    return calls / elapsed, done / elapsed, calls


def minigrid_loop(env_id: str, seconds: float, seed: int = 0) -> dict[str, float]:
    env = gym.make(env_id, disable_env_checker=True).unwrapped
    actions = np.random.default_rng(seed).integers(0, 7, size=4096)
    with contextlib.redirect_stdout(io.StringIO()):  # "Sampling rejected" prints of minigrid's levels
        env.reset(seed=seed)

        def step(t: int) -> int:
            _, _, term, trunc, _ = env.step(int(actions[t % 4096]))
            if term or trunc:
                env.reset()
                return 1
            return 0

        sps, rps, _ = timed(step, seconds)
        resets, _, _ = timed(lambda t: env.reset() and 0, seconds / 3)
    return {"steps_per_s": sps, "resets_per_s": rps, "reset_calls_per_s": resets}


def minigrid_vector(env_id: str, n: int, mode: str, seconds: float, seed: int = 0) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):
        # The mission string space has no shared-memory buffer: async envs pipe observations.
        vector_kwargs = {"shared_memory": False} if mode == "async" else {}
        envs = gym.make_vec(
            env_id, num_envs=n, vectorization_mode=mode, vector_kwargs=vector_kwargs, disable_env_checker=True
        )
        envs.reset(seed=seed)
        actions = np.random.default_rng(seed).integers(0, 7, size=(64, n))

        def step(t: int) -> int:
            _, _, term, trunc, _ = envs.step(actions[t % 64])
            return int((term | trunc).sum())

        calls, rps, _ = timed(step, seconds, warmup=2)
        envs.close()
    return {"steps_per_s": calls * n, "resets_per_s": rps}


def batched(env_id: str, n: int, seconds: float, seed: int = 0, compile: bool = False, device: str = "cpu"):
    """The engine's steps/s; episodes finished are counted on the device (no per-step host sync)."""
    engine = BatchedBabyAIPP(env_id, n, pool_size=max(n, 256), seed=seed, compile=compile, device=device)
    engine.reset()
    actions = torch.randint(7, (64, n), generator=torch.Generator().manual_seed(seed)).to(device)
    finished = torch.zeros((), dtype=torch.long, device=device)
    start = time.perf_counter()
    for t in range(3):  # warm-up, including torch.compile's compilation
        engine.step(actions[t])
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    sync()
    warmup_s = time.perf_counter() - start
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 2:
        for _ in range(16):
            _, _, term, trunc = engine.step(actions[calls % 64])
            finished += (term | trunc).sum()
            calls += 1
        sync()
    elapsed = time.perf_counter() - start
    return {"steps_per_s": calls * n / elapsed, "resets_per_s": int(finished) / elapsed, "warmup_s": warmup_s}


def make_vec(env_id: str, n: int, seconds: float, seed: int = 0) -> dict[str, float]:
    envs = gym.make_vec(env_id, num_envs=n, pool_size=max(n, 256))
    envs.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, 7, size=(64, n))

    def step(t: int) -> int:
        _, _, term, trunc, _ = envs.step(actions[t % 64])
        return int((term | trunc).sum())

    calls, rps, _ = timed(step, seconds)
    return {"steps_per_s": calls * n, "resets_per_s": rps}


def pool_generation(env_id: str, levels: int) -> dict[str, float]:
    """Levels/s of pool generation, in-process and with 2 forkserver workers (start-up excluded)."""
    out = {}
    for workers in (0, 2):
        engine = BatchedBabyAIPP(env_id, 1, pool_size=levels, workers=workers)
        if workers:
            engine.generator_procs.generate(list(range(10**6, 10**6 + 2 * 64)))  # start the workers
        start = time.perf_counter()
        engine.reset(seed=0)
        out[f"workers={workers}"] = levels / (time.perf_counter() - start)
        engine.close()
    return out


def memory(env_id: str, n: int) -> dict[str, float]:
    """Bytes per episode (state) and per pool level; peak RSS of a fresh process stepping N episodes."""
    engine = BatchedBabyAIPP(env_id, n, pool_size=n)
    engine.reset()
    state = sum(t.nbytes for t in engine.state.values()) / n
    pool = sum(t.nbytes for t in engine.pool.tensors.values()) / engine.pool.size
    # VmHWM (this process's peak RSS) rather than ru_maxrss, which Linux carries over from the
    # parent across fork + exec, so it would report this benchmark's own peak.
    code = (
        "import re, torch; from babyaipp.envs.batched import BatchedBabyAIPP as B;"
        "hwm = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]);"
        f"r0 = hwm(); e = B({env_id!r}, {n}); e.reset();"
        f"[e.step(torch.randint(7, ({n},))) for _ in range(50)];"
        "print(r0, hwm())"
    )
    before, after = (int(v) for v in subprocess.check_output([sys.executable, "-c", code], text=True).split())
    return {
        "state_bytes_per_episode": state,
        "pool_bytes_per_level": pool,
        "peak_rss_mib": after / 1024,
        "rss_after_imports_mib": before / 1024,
    }


def profile(env_id: str, n: int, steps: int = 100, compile: bool = False) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    engine = BatchedBabyAIPP(env_id, n, pool_size=max(n, 256), compile=compile)
    engine.reset()
    actions = torch.randint(7, (steps, n), generator=torch.Generator().manual_seed(0))
    for t in range(5):
        engine.step(actions[t])
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for t in range(steps):
            engine.step(actions[t])
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def envpool_rows(python: str, sizes: list[int], seconds: float, env_id: str) -> dict:
    out = subprocess.run(
        [python, "-c", ENVPOOL_SCRIPT, json.dumps(sizes), str(seconds), env_id],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from babyaipp.utils import atomic_savefig

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {
        "batched": "o-",
        "batched compiled": "D-",
        "make_vec": "o--",
        "minigrid sync": "s-",
        "minigrid async": "s--",
        "envpool": "^-",
    }
    for name, style in styles.items():
        rows = results["rows"].get(name, {})
        if rows:
            sizes = sorted(int(k) for k in rows)
            ax.plot(sizes, [rows[str(n)]["steps_per_s"] for n in sizes], style, label=name)
    loop = results["minigrid_loop"]["steps_per_s"]
    ax.axhline(loop, color="grey", linestyle=":", label="minigrid loop")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="N (envs)",
        ylabel="env steps/s (auto-reset included)",
        title=f"CPU, {results['machine']}",
    )
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", default="BabyAIPP/GoToRedBall-Easy-Train-v0")
    parser.add_argument("--reference", default="BabyAI-GoToRedBall-v0")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64, 256, 1024])
    parser.add_argument("--seconds", type=float, default=1.5, help="stepping time per row")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the batched engine")
    parser.add_argument("--async-max", type=int, default=64, help="largest N for AsyncVectorEnv (one process each)")
    parser.add_argument("--sync-max", type=int, default=1024)
    parser.add_argument("--envpool-python", default=None, help="python of a venv with envpool installed")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--device", default="cpu", help="device of the batched engine (the references run on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import os

    machine = f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {args.threads} torch thread(s)"
    print(f"machine: {platform.machine()}, {machine}; load average {os.getloadavg()[0]:.1f}")
    results: dict = {"machine": machine, "rows": {}, "args": vars(args) | {"json": None, "plot": None}}
    loop = results["minigrid_loop"] = minigrid_loop(args.reference, args.seconds)
    print(
        f"minigrid loop {args.reference}: {loop['steps_per_s']:,.0f} steps/s, "
        f"{loop['reset_calls_per_s']:,.0f} reset() calls/s"
    )
    if args.envpool_python:
        results["envpool_raw"] = envpool_rows(args.envpool_python, args.sizes, args.seconds, args.reference)
        results["rows"]["envpool"] = {k: v for k, v in results["envpool_raw"].items() if k != "version"}
    runners = {
        "batched": lambda n: batched(args.id, n, args.seconds, device=args.device),
        "batched compiled": lambda n: batched(args.id, n, args.seconds, compile=True, device=args.device),
        "make_vec": lambda n: make_vec(args.id, n, args.seconds),
        "minigrid sync": lambda n: (
            minigrid_vector(args.reference, n, "sync", args.seconds) if n <= args.sync_max else None
        ),
        "minigrid async": lambda n: (
            minigrid_vector(args.reference, n, "async", args.seconds) if n <= args.async_max else None
        ),
    }
    for name in runners:
        results["rows"][name] = {}
    for n in args.sizes:  # all engines at one N back to back, so a change of machine load hits them alike
        for name, run in runners.items():
            row = run(n)
            if row is not None:
                results["rows"][name][str(n)] = row
    print(f"\n| N | {' | '.join(results['rows'])} |")
    print("|---" * (len(results["rows"]) + 1) + "|")
    for n in args.sizes:
        cells = []
        for rows in results["rows"].values():
            row = rows.get(str(n))
            cells.append("-" if row is None else f"{row['steps_per_s']:,.0f} ({row['resets_per_s']:,.0f})")
        print(f"| {n} | {' | '.join(cells)} |")
    print("steps/s (resets/s during stepping)")
    for n in args.sizes:
        for name in ("batched", "batched compiled"):
            b = results["rows"][name][str(n)]["steps_per_s"]
            line = f"N={n}: {name} = {b / loop['steps_per_s']:.1f}x minigrid loop"
            if "envpool" in results["rows"]:
                line += f", {b / results['rows']['envpool'][str(n)]['steps_per_s']:.2f}x envpool"
            print(line)
    warmups = {n: round(results["rows"]["batched compiled"][str(n)]["warmup_s"], 1) for n in args.sizes}
    print("compiled engine: first 3 steps (compilation) took, in s:", warmups)
    results["pool_levels_per_s"] = pool_generation(args.id, 256)
    print("pool generation levels/s:", {k: round(v) for k, v in results["pool_levels_per_s"].items()})
    results["memory"] = memory(args.id, max(args.sizes))
    print(f"memory at N={max(args.sizes)}:", {k: round(v, 1) for k, v in results["memory"].items()})
    if args.profile:
        for compiled in (False, True):
            key = "profile compiled" if compiled else "profile"
            results[key] = profile(args.id, 256, compile=compiled)
            print(f"{key} (N=256, 100 steps):\n{results[key]}")
    if args.json:
        from babyaipp.utils import atomic_write_json

        atomic_write_json(args.json, results)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
