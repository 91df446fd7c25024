"""Learning curves of ``--trainer device`` beside ``--trainer sb3`` at equal frames, over seeds.

    OMP_NUM_THREADS=1 python benchmarks/device_ppo_curves.py --out DIR [--seeds 0 1 2] [--steps 100000]
        [--model attention] [--n-envs 16] [--report-only]

Trains (one run at a time, skipping runs already finished in ``DIR/<trainer>_s<seed>``)::

    babyaipp train --trainer T --model attention --steps 100000 --n-envs 16 --set learning_rate=3e-4
        --seed S --device cpu --out DIR/T_sS

on BabyAIPP/GoToRedBall-Easy-Train-v0 (the README quick start's settings), then prints, every
``--every`` frames, each trainer's success rate (progress.csv: the last 100 training episodes;
linear interpolation between updates) as the mean over seeds with a 95% t-interval, and the
difference device - sb3 with Welch's 95% interval. The curves count as indistinguishable at a
mark when that interval holds 0; the threshold is fixed here, before any run.
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

TRAINERS = ("sb3", "device")
#: Confidence of the intervals (fixed before the runs).
CONFIDENCE = 0.95


def train(out: Path, trainer: str, seed: int, args: argparse.Namespace) -> None:
    run = out / f"{trainer}_s{seed}"
    if (run / "model.zip").is_file():
        return
    command = [
        sys.executable,
        "-m",
        "babyaipp.cli",
        "train",
        "--trainer",
        trainer,
        "--model",
        args.model,
        "--steps",
        str(args.steps),
        "--n-envs",
        str(args.n_envs),
        "--set",
        "learning_rate=3e-4",
        "--seed",
        str(seed),
        "--device",
        "cpu",
        "--out",
        str(run),
    ]
    if (run / "config.json").is_file():
        command.append("--resume")
    subprocess.run(command, check=True)


def success_at(run: Path, marks: np.ndarray) -> np.ndarray:
    """The run's progress.csv success rate interpolated at ``marks`` (frames)."""
    with (run / "progress.csv").open() as f:
        rows = [(float(r["timesteps"]), float(r["success_rate"])) for r in csv.DictReader(f)]
    steps, success = (np.array(v) for v in zip(*[r for r in rows if not math.isnan(r[1])], strict=True))
    return np.interp(marks, steps, success)


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """(mean, half-width) of the mean's t-interval."""
    n = len(values)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
    return float(values.mean()), float(half)


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean of a - mean of b, half-width of Welch's interval)."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return float(a.mean() - b.mean()), 0.0
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(a.mean() - b.mean()), float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * se)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--model", default="attention")
    parser.add_argument("--n-envs", type=int, default=16)
    parser.add_argument("--every", type=int, default=20_000, help="frames between the printed marks")
    parser.add_argument("--report-only", action="store_true", help="only report the runs already in --out")
    args = parser.parse_args()
    if not args.report_only:
        for seed in args.seeds:
            for trainer in ("device", "sb3"):
                train(args.out, trainer, seed, args)
    marks = np.arange(args.every, args.steps + 1, args.every, dtype=float)
    curves = {
        t: np.array(
            [
                success_at(args.out / f"{t}_s{s}", marks)
                for s in args.seeds
                if (args.out / f"{t}_s{s}" / "model.zip").is_file()
            ]
        )
        for t in TRAINERS
    }
    seeds = {t: len(c) for t, c in curves.items()}
    print(f"success rate (last 100 training episodes), mean over seeds ± {CONFIDENCE:.0%} t-interval; seeds {seeds}")
    print(f"{'frames':>8} {'sb3':>15} {'device':>15} {'device - sb3 (Welch)':>22}  indistinguishable")
    for i, mark in enumerate(marks):
        (ms, hs), (md, hd) = t_interval(curves["sb3"][:, i]), t_interval(curves["device"][:, i])
        diff, half = welch(curves["device"][:, i], curves["sb3"][:, i])
        same = "yes" if abs(diff) <= half else "no"
        print(f"{mark:8.0f} {ms:7.2f} ± {hs:5.2f} {md:7.2f} ± {hd:5.2f} {diff:+10.2f} ± {half:5.2f}  {same:>12}")


if __name__ == "__main__":
    main()
