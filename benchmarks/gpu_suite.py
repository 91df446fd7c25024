"""The GPU suite: engine speed and memory at large N, CUDA-vs-CPU exactness, training frames/s, in one run.

Two steps. Where pip reaches the package index (the development machine), download the wheels
the GPU machine lacks (pinned to the versions installed here, for CPython 3.12 on manylinux x86-64):

    python benchmarks/gpu_suite.py --prepare-wheels .whl     # .whl must be git-ignored (.git/info/exclude)

On the GPU machine (carry ``.whl``), install them beside its own torch and run:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
        .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && \\
        PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py --device cuda --json $OUT/gpu_suite.json

A device call may run 10 minutes at most; if the whole suite does not fit, run it as two calls,
``--skip train profile`` (engine, memory, exactness) and then ``--skip engine exact`` (the trainers
and the profile), each with its own ``--json``.

The run prints, for ``--sizes`` (default 256 4096 65536):

* engine steps/s (``BatchedBabyAIPP``, auto-reset included, random actions drawn on the device),
  eager and ``compile=True``; the compile time of the first call; the same engine wrapped as a
  TorchRL env and stepped as a collector steps it (``step_and_maybe_reset``, nothing stored);
* memory: the engine's state + pool tensor bytes, and on CUDA the peak allocated while stepping;
* on-device levels: steps/s (eager, auto-reset) with ``device_levels=True``, every episode a fresh
  level drawn on the device, and levels drawn per second (``benchmarks/device_levels.py``);
* exactness: the device engine against the CPU engine over ``--exact-steps`` steps (same pool,
  same actions, the CPU engine's pool draws replayed through the device's ``torch.where`` reset):
  observations, rewards, terminated and truncated compared at every step;
* training frames/s of ``babyaipp train --model attention --device DEVICE`` (short), with
  ``--trainer sb3`` and ``--trainer device`` at the same settings (the device trainer also with
  ``--engine device-levels``), and the device trainer at 1000 envs (the most a run takes) with
  minibatches of 16000, with the pool refreshed by a CPU worker and with levels drawn on the device
  (``--quick``: no such rows), where a GPU has work to do; a row running past 240 s is stopped.

* where the time goes: one iteration of the device trainer at 1000 envs (64 steps, minibatches of
  16000, levels drawn on the device) split into collection, GAE and update, torch.profiler's GPU
  kernels with the most time and the operators with the most CPU time (launch and Python
  overhead), and how busy the GPU was over the profiled iteration.

``--device cpu --quick`` runs the same code with small N and few steps (the CPU smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"
#: What the GPU machine's image lacks (it has torch, numpy, cloudpickle, packaging, zipp, rich,
#: tensorboard, tqdm, matplotlib, pillow): babyaipp's own needs, the agents' and TorchRL's.
WHEELS = (
    "gymnasium",
    "farama-notifications",
    "minigrid",
    "pygame-ce",
    "stable-baselines3",
    "sb3-contrib",
    "torchrl",
    "tensordict",
    "pyvers",
    "hoptorch",
    "orjson",
    "importlib-metadata",
    "lazy-importer",
)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
#: The device machine brings back at most 64 MiB of working tree per call.
WHEEL_BUDGET_MB = 64
#: The most envs one training run takes (``babyaipp train --n-envs``: one per seed of the run's block).
MAX_ENVS = 1000
#: A training row that runs longer is stopped and reported, so one hang cannot spend the device time.
TRAIN_TIMEOUT_S = 240


# ----------------------------------------------------------------------------- wheels
def prepare_wheels(target: Path) -> list[Path]:
    """Download :data:`WHEELS` (the installed versions, else the newest) for CPython 3.12 into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    specs = []
    for name in WHEELS:
        try:
            specs.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            specs.append(name)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "-d",
        str(target),
    ]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run(command + specs, check=True)
    wheels = sorted(target.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels) / 2**20
    print(
        f"{len(wheels)} wheels, {total:.1f} MiB in {target}"
        + (f" (over the {WHEEL_BUDGET_MB} MiB a device call carries)" if total > WHEEL_BUDGET_MB else "")
    )
    return wheels


# ----------------------------------------------------------------------------- engine
def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compile_engine(engine: Any) -> None:
    """Give an already built engine the fused step of ``compile=True`` (so the pool is built once per N)."""
    import torch

    engine.compiled = True
    engine._advance_fn = torch.compile(engine._advance_tensors)
    engine._image_fn = torch.compile(engine.observer.image)


def _tensor_bytes(engine: Any) -> int:
    tensors = list(engine.state.values()) + list(engine.pool.tensors.values())
    return sum(t.numel() * t.element_size() for t in tensors)


def engine_rows(sizes: list[int], device: str, steps: int, workers: int, seed: int = 0) -> list[dict]:
    """Steps/s eager and compiled, and memory, at each N."""
    import torch

    from babyaipp.envs.batched import BatchedBabyAIPP

    rows = []
    for n in sizes:
        dev = torch.device(device)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        began = time.perf_counter()
        engine = BatchedBabyAIPP(ENV_ID, n, device=device, seed=seed, workers=workers if n >= 4096 else 0)
        engine.reset(seed=seed)
        row: dict[str, Any] = {
            "num_envs": n,
            "pool_build_s": time.perf_counter() - began,
            "tensor_mib": _tensor_bytes(engine) / 2**20,
        }
        generator = torch.Generator(device=dev)
        generator.manual_seed(seed)
        actions = torch.randint(7, (16, n), generator=generator, device=dev)
        for mode in ("eager", "compiled"):
            try:
                if mode == "compiled":
                    _compile_engine(engine)
                first = time.perf_counter()
                for k in range(3):  # warm-up (compiles on the first call)
                    engine.step(actions[k])
                _sync(dev)
                row[f"{mode}_warmup_s"] = time.perf_counter() - first
                start = time.perf_counter()
                for k in range(steps):
                    engine.step(actions[k % 16])
                _sync(dev)
                row[f"{mode}_steps_per_s"] = steps * n / (time.perf_counter() - start)
            except Exception as error:  # a compiler failure keeps the eager figures and the rest
                if mode == "eager":
                    raise
                row[f"{mode}_error"] = f"{type(error).__name__}: {error}"[:300]
                continue
            row[f"torchrl_{mode}_steps_per_s"] = torchrl_rate(engine, steps)
        if dev.type == "cuda":
            row["cuda_peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        engine.close()
        del engine
        row.update(_guarded(device_levels_rates, n, device, steps, seed, workers if n >= 4096 else 0))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def device_levels_rates(n: int, device: str, steps: int, seed: int, workers: int = 0) -> dict[str, float]:
    """Steps/s with ``device_levels=True`` (auto-reset draws fresh levels on the device) and draws/s.
    ``workers``: processes making the N layouts the engine starts from (one process makes about
    1,400 a second, so 65536 would take most of a minute alone)."""
    import torch

    from babyaipp.envs.batched import BatchedBabyAIPP

    dev = torch.device(device)
    engine = BatchedBabyAIPP(ENV_ID, n, device=device, seed=seed, device_levels=True, workers=workers)
    engine.reset(seed=seed)
    levels = engine.device_levels
    start = time.perf_counter()
    levels.draw(levels.stock_size)
    _sync(dev)
    draws = levels.stock_size / (time.perf_counter() - start)
    generator = torch.Generator(device=dev)
    generator.manual_seed(seed)
    actions = torch.randint(7, (16, n), generator=generator, device=dev)
    for k in range(3):
        engine.step(actions[k])
    _sync(dev)
    start = time.perf_counter()
    for k in range(steps):
        engine.step(actions[k % 16])
    _sync(dev)
    rate = steps * n / (time.perf_counter() - start)
    return {"device_levels_steps_per_s": rate, "device_levels_draws_per_s": draws}


def torchrl_rate(engine: Any, steps: int) -> float | str:
    """Steps/s of the engine wrapped as a TorchRL env, stepped as a collector steps it (random actions).

    ``step_and_maybe_reset`` per step, with nothing stored: TorchRL's own overhead on top of the
    engine. The engine's auto-reset is restored afterwards. Returns the error, as text, if TorchRL
    fails (absent, or built against another torch), so the other figures still come back.
    """
    try:
        from babyaipp.envs.torchrl_env import BabyAIPPTorchRLEnv

        env = BabyAIPPTorchRLEnv(engine=engine)
        td = env.reset()
        for k in range(steps + 3):
            if k == 3:
                _sync(engine.device)
                start = time.perf_counter()
            td = env.rand_action(td)
            _, td = env.step_and_maybe_reset(td)
        _sync(engine.device)
        return steps * engine.num_envs / (time.perf_counter() - start)
    except Exception as error:
        return f"failed: {type(error).__name__}: {error}"
    finally:
        engine.auto_reset = True


# ----------------------------------------------------------------------------- exactness
def _restart_where(engine: Any, mask: Any, pick: Any) -> None:
    """The device reset path (``torch.where`` over all rows) with given pool rows ``pick``."""
    import torch

    from babyaipp.envs.batched import LEVEL_FIELDS

    for key in LEVEL_FIELDS:
        src = engine.pool.tensors[key][pick]
        m = mask.view(-1, *([1] * (src.dim() - 1)))
        engine.state[key] = torch.where(m, src, engine.state[key])
    engine._zero_counters(mask)


def exactness(device: str, num_envs: int, steps: int, seed: int = 0) -> dict:
    """The ``device`` engine against the CPU engine, step by step; the first mismatch if any."""
    import torch

    from babyaipp.envs.batched import BatchedBabyAIPP

    cpu = BatchedBabyAIPP(ENV_ID, num_envs, device="cpu", seed=seed, auto_reset=False)
    other = BatchedBabyAIPP(ENV_ID, num_envs, device=device, seed=seed, auto_reset=False)
    dev = other.device
    obs_a, obs_b = cpu.reset(seed=seed), other.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    ended_total = 0
    for t in range(steps):
        action = torch.randint(7, (num_envs,), generator=generator)
        out_a, out_b = cpu.advance(action), other.advance(action.to(dev))
        for name, a, b in zip(("reward", "terminated", "truncated"), out_a, out_b):
            if not torch.equal(a, b.cpu()):
                return {"exact": False, "step": t, "field": name, "steps": steps, "num_envs": num_envs}
        done = out_a[1] | out_a[2]
        ended_total += int(done.sum())
        cpu.restart(done)
        _restart_where(other, done.to(dev), cpu.last_pick.clamp(min=0).to(dev))
        obs_a, obs_b = cpu.observation(), other.observation()
        for key in obs_a:
            if not torch.equal(obs_a[key], obs_b[key].cpu()):
                return {"exact": False, "step": t, "field": key, "steps": steps, "num_envs": num_envs}
    return {"exact": True, "steps": steps, "num_envs": num_envs, "episodes_ended": ended_total, "device": str(dev)}


# ----------------------------------------------------------------------------- training
def training(device: str, n_envs: int, steps: int, timeout_s: int, trainer: str = "sb3", *extra: str) -> dict:
    """Frames/s of a short ``babyaipp train --model attention --trainer TRAINER`` (its own report line)."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "babyaipp.cli",
            "train",
            "--model",
            "attention",
            "--device",
            device,
            "--n-envs",
            str(n_envs),
            "--steps",
            str(steps),
            "--checkpoint-every",
            "0",
            "--trainer",
            trainer,
            *extra,
            "--out",
            str(Path(out) / "run"),
        ]
        began = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - began
    found = re.search(r"([\d.]+) frames/s", result.stdout)
    row = {
        "device": device,
        "trainer": trainer,
        "n_envs": n_envs,
        "steps": steps,
        "extra": list(extra),
        "wall_s": wall,
        "returncode": result.returncode,
        "frames_per_s": float(found.group(1)) if found else None,
    }
    if result.returncode != 0:
        row["error"] = (result.stderr or result.stdout).strip().splitlines()[-1:]
    return row


def profile_iteration(device: str, n_envs: int, n_steps: int, batch_size: int, top: int = 15) -> dict:
    """Where the device trainer's time goes on ``device`` (attention model, levels drawn on the
    device, so no CPU worker is in the loop): after one warm-up iteration, the seconds of
    collection, GAE and the update of the next (synchronised), then torch.profiler over a third.

    ``top_ops``: the operators with the most self CPU time (on CUDA that is Python-side launch and
    bookkeeping work). On CUDA also ``top_kernels``, the GPU kernels (and copies) with the most
    time, and ``gpu_busy``, their total over the profiled iteration's wall time: far below 1 means
    the loop waits on the CPU, not on the GPU. Kernels are counted on their own rows only, as
    torch's own table does, since the operator that launched one is charged its time too."""
    from device_ppo_speed import build_loop, timed
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from babyaipp.agents.training_setup import trainer_thread_limit
    from babyaipp.envs.threads import limited_threads

    vec, _, loop = build_loop("attention", n_envs, n_steps, device, batch_size, engine="device-levels")
    dev = loop.device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    try:
        with limited_threads(trainer_thread_limit(dev)):
            state, _ = loop.iterate(loop.initial_state())  # warm-up: buffers, allocator, kernels
            (rollout, state, last_values), collect_s = timed(lambda: loop.collect(state), dev)
            starts = state.episode_starts
            (advantages, returns), gae_s = timed(lambda: loop.advantages(rollout, last_values, starts), dev)
            _, update_s = timed(lambda: loop.update(rollout, advantages, returns), dev)
            with profile(activities=activities) as prof:
                _, profiled = timed(lambda: loop.iterate(state), dev)
    finally:
        vec.close()
    events = prof.key_averages()

    def ranked(rows: list[Any], key: str) -> tuple[list[dict], float]:
        rows = sorted(rows, key=lambda e: getattr(e, key), reverse=True)
        total_us = sum(getattr(e, key) for e in rows) or 1.0
        listed = [
            {"op": e.key, "share": getattr(e, key) / total_us, "self_ms": getattr(e, key) / 1e3, "calls": e.count}
            for e in rows[:top]
        ]
        return listed, total_us

    cpu_ops = [e for e in events if e.device_type == DeviceType.CPU and not getattr(e, "is_user_annotation", False)]
    row: dict[str, Any] = {
        "device": str(dev),
        "n_envs": n_envs,
        "n_steps": n_steps,
        "batch_size": loop.settings.batch_size,
        "engine": "device-levels",
        "collect_s": collect_s,
        "gae_s": gae_s,
        "update_s": update_s,
        "frames_per_s": n_envs * n_steps / (collect_s + gae_s + update_s),
        "top_ops": ranked(cpu_ops, "self_cpu_time_total")[0],
    }
    if dev.type == "cuda":
        kernels = [e for e in events if e.device_type == DeviceType.CUDA]
        row["top_kernels"], kernel_us = ranked(kernels, "self_device_time_total")
        row["gpu_busy"] = kernel_us / 1e6 / profiled  # profiler overhead included in the wall time
    return row


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare-wheels", metavar="DIR", type=Path, help="download the wheels and stop")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="small N and few steps (the CPU smoke test)")
    parser.add_argument("--sizes", type=int, nargs="+", help="batch sizes N (default 256 4096 65536; quick: 16 64)")
    parser.add_argument("--steps", type=int, help="timed engine steps per N and mode (default 200; quick: 10)")
    parser.add_argument("--exact-steps", type=int, help="exactness steps (default 300; quick: 40)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["engine", "exact", "train", "profile"])
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if args.prepare_wheels is not None:
        prepare_wheels(args.prepare_wheels)
        return None

    import torch

    import babyaipp  # noqa: F401  (registers the ids)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here; run with --device cpu --quick")
    quick = args.quick
    sizes = args.sizes or ([16, 64] if quick else [256, 4096, 65536])
    steps = args.steps or (10 if quick else 200)
    exact_steps = args.exact_steps or (40 if quick else 300)
    workers = 0 if quick else max(1, min(14, (os.cpu_count() or 2) - 2))
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "env_id": ENV_ID,
    }
    if "engine" not in args.skip:
        report["engine"] = [row for n in sizes for row in _guarded(engine_rows, [n], args.device, steps, workers)]
    if "exact" not in args.skip:
        report["exactness"] = _guarded(exactness, args.device, 64 if quick else 1024, exact_steps)
        print(json.dumps(report["exactness"]), flush=True)
    if "train" not in args.skip:
        n_envs, train_steps = (8, 2048) if quick else (64, 3 * 64 * 128)
        runs = [(n_envs, train_steps, trainer) for trainer in ("sb3", "device")]
        runs.append((n_envs, train_steps, "device", "--engine", "device-levels"))
        if not quick:  # the device trainer where a GPU has work: the most envs a run takes, big minibatches
            big = (MAX_ENVS, 3 * MAX_ENVS * 64, "device", "--set", "n_steps=64", "--set", "batch_size=16000")
            runs += [big, (*big, "--engine", "device-levels")]  # pool refreshed by a CPU worker, or none
        report["training"] = []
        for run in runs:
            report["training"].append(_guarded(training, args.device, run[0], run[1], TRAIN_TIMEOUT_S, *run[2:]))
            print(json.dumps(report["training"][-1]), flush=True)
    if "profile" not in args.skip:  # where the device trainer's time goes, at the big run's settings
        n_envs, n_steps, batch = (16, 16, 64) if quick else (MAX_ENVS, 64, 16000)
        report["profile"] = _guarded(profile_iteration, args.device, n_envs, n_steps, batch)
        print(json.dumps(report["profile"]), flush=True)
    _print_summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def _guarded(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(...)``, or its error as a record (a list of one for the engine rows), so one failure
    (out of memory at the largest N, say) does not lose the suite's other figures."""
    try:
        return fn(*args, **kwargs)
    except Exception as error:
        record = {"error": f"{type(error).__name__}: {error}"[:500], "args": [str(a) for a in args]}
        print(json.dumps(record), flush=True)
        if fn is device_levels_rates:
            return {"device_levels_error": record["error"]}
        return [record] if fn is engine_rows else record


def _print_summary(report: dict) -> None:
    print(f"\n{report['device']} (torch {report['torch']}), {report['env_id']}")
    rows = report.get("engine", [])
    if rows:
        print(
            f"{'N':>7} {'eager steps/s':>15} {'compiled steps/s':>17} {'TorchRL eager':>14} "
            f"{'TorchRL compiled':>17} {'compile s':>10} {'tensors MiB':>12} {'CUDA peak MiB':>14}"
        )
        for r in rows:
            if "error" in r:
                print(f"{r['args'][0]:>7} {r['error']}")
                continue
            peak = f"{r['cuda_peak_mib']:.0f}" if "cuda_peak_mib" in r else "-"
            trl = [r.get(f"torchrl_{m}_steps_per_s") for m in ("eager", "compiled")]
            trl = [f"{v:,.0f}" if isinstance(v, float) else "n/a" for v in trl]
            compiled = f"{r['compiled_steps_per_s']:,.0f}" if "compiled_steps_per_s" in r else "failed"
            warmup = f"{r['compiled_warmup_s']:.1f}" if "compiled_warmup_s" in r else "-"
            print(
                f"{r['num_envs']:>7} {r['eager_steps_per_s']:>15,.0f} {compiled:>17} "
                f"{trl[0]:>14} {trl[1]:>17} {warmup:>10} {r['tensor_mib']:>12.1f} {peak:>14}"
            )
            if "compiled_error" in r:
                print(f"{'':>7} compiled: {r['compiled_error']}")
        print("on-device levels (eager, auto-reset, every episode a fresh level drawn on the device):")
        for r in rows:
            if "device_levels_steps_per_s" in r:
                print(
                    f"{r['num_envs']:>7} {r['device_levels_steps_per_s']:>15,.0f} steps/s "
                    f"{r['device_levels_draws_per_s']:>12,.0f} levels drawn/s"
                )
            elif "device_levels_error" in r:
                print(f"{r['num_envs']:>7} {r['device_levels_error']}")
    if "exactness" in report:
        print(f"exactness vs CPU engine: {report['exactness']}")
    if "training" in report:
        for row in report["training"]:
            print(f"training (attention): {row}")
    prof = report.get("profile")
    if prof and "error" not in prof:
        busy = f", GPU busy {prof['gpu_busy']:.0%} of the profiled iteration" if "gpu_busy" in prof else ""
        print(
            f"device trainer, one iteration at N = {prof['n_envs']} x {prof['n_steps']} steps, minibatch "
            f"{prof['batch_size']}: collect {prof['collect_s']:.3f} s, GAE {prof['gae_s']:.3f} s, update "
            f"{prof['update_s']:.3f} s ({prof['frames_per_s']:,.0f} frames/s){busy}"
        )
        parts = [("GPU kernels by time", prof.get("top_kernels")), ("operators by self CPU time", prof["top_ops"])]
        for title, ops in parts:
            if ops is None:
                continue
            print(f"  {title}:")
            for op in ops:
                print(f"  {op['share']:6.1%} {op['self_ms']:10.1f} ms {op['calls']:7d}x  {op['op']}")
    elif prof:
        print(f"profile: {prof}")


if __name__ == "__main__":
    main()
