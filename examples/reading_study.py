"""Tables and figures of the reading study on the dense floor (docs/results.md): BC or PPO sweeps.

Reads the trials of one or more ``babyaipp sweep`` directories (BC of the oracle on
``GoToRedBallDense-Easy-Train`` or ``-Hard-Train``), groups them by model, attention options and text mode, and
writes a markdown table (success per split: mean over seeds, seed range, 95% interval of the
pooled episodes), TargetPairOnly success per held-out pair, and a bar chart with the non-reading
references (a JSON from :func:`babyaipp.agents.evaluation.evaluate_references`) as lines.

    python examples/reading_study.py runs/sweeps/bc-dense-easy runs/sweeps/bc-dense-easy-colour-keys \
        --references runs/refs-dense-easy-1000.json --out docs/images/bc_dense_easy_tpo.png

With ``--curves PNG`` (PPO sweeps) it also draws the learning curves: success rate over the last 100
training episodes (``progress.csv``) against frames, mean over seeds with the seeds' range shaded.
With ``--trap-attention K`` it prints, for every attention run, the mean weight of the trap sentence
on the trap-coloured cells and on the other tiles of the first view of TargetPairOnly levels
(seeds 10^6 .. 10^6 + K - 1) whose trap is the held-out green one
(:func:`babyaipp.agents.attention_maps.trap_attention`).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

SPLITS = ("Train", "Test", "TargetPairOnly")


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a binomial proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def label(config: dict) -> str:
    hp = config.get("hyperparameters") or {}
    name = config["model"]
    options = [f"{k}={hp[k]}" for k in ("keys", "values") if hp.get(k, "sentence") != "sentence"]  # non-defaults
    text = config.get("text", "full")
    return f"{name}" + (f" ({', '.join(options)})" if options else "") + ("" if text == "full" else f", text {text}")


def collect(sweeps: list[Path]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for sweep in sweeps:
        for trial in sorted((sweep / "trials").iterdir()):
            results = trial / "eval" / "results.json"
            if not results.is_file():
                continue
            config = json.loads((trial / "config.json").read_text())
            groups[label(config)].append({"seed": config["seed"], **json.loads(results.read_text())})
    return groups


def split_cell(runs: list[dict], split: str) -> tuple[str, float, tuple[float, float]]:
    rates = [r["splits"][split]["success_rate"] for r in runs]
    k = sum(r["splits"][split]["successes"] for r in runs)
    n = sum(r["splits"][split]["episodes"] for r in runs)
    low, high = wilson(k, n)
    mean = sum(rates) / len(rates)
    return f"{mean:.3f} [{min(rates):.3f}–{max(rates):.3f}] ({low:.3f}–{high:.3f})", mean, (low, high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--references", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="PNG of TargetPairOnly success")
    parser.add_argument("--curves", type=Path, help="PNG of the training curves (PPO sweeps)")
    parser.add_argument("--title", default="BC of the oracle", help="what trained the policies, for the figures")
    parser.add_argument("--trap-attention", type=int, metavar="K", help="levels for the trap-attention check")
    args = parser.parse_args()
    groups = collect(args.sweeps)
    refs = json.loads(args.references.read_text())
    print("| policy | seeds | " + " | ".join(SPLITS) + " |")
    print("|---|---|" + "---|" * len(SPLITS))
    bars = []
    for name, runs in groups.items():
        cells = [split_cell(runs, s) for s in SPLITS]
        print(f"| {name} | {len(runs)} | " + " | ".join(c[0] for c in cells) + " |")
        bars.append((name, cells[2][1], cells[2][2]))
    for ref in ("memoriser", "cautious", "random", "oracle"):
        cells = []
        for s in SPLITS:
            g = refs[ref]["splits"][s]
            low, high = wilson(g["successes"], g["episodes"])
            cells.append(f"{g['success_rate']:.3f} ({low:.3f}–{high:.3f})")
        print(f"| *{ref}* | – | " + " | ".join(cells) + " |")
    print("\nTargetPairOnly success per held-out pair present (pooled over seeds):\n")
    # the held-out pairs of the difficulty, as the memoriser's results name them
    per_pair = refs["memoriser"]["splits"]["TargetPairOnly"]["per_held_out_pair"]
    held_out = sorted(per_pair, key=lambda p: ("trap" not in p, p))
    print("| policy | " + " | ".join(f"{p} (n)" for p in held_out) + " |\n|---|" + "---|" * len(held_out))
    for name, runs in [*groups.items()]:
        row = []
        for pair in held_out:
            k = sum(r["splits"]["TargetPairOnly"]["per_held_out_pair"][pair]["successes"] for r in runs)
            n = sum(r["splits"]["TargetPairOnly"]["per_held_out_pair"][pair]["episodes"] for r in runs)
            row.append(f"{k / n:.3f} ({n})")
        print(f"| {name} | " + " | ".join(row) + " |")
    for ref in ("memoriser", "cautious"):
        pairs = refs[ref]["splits"]["TargetPairOnly"]["per_held_out_pair"]
        print(
            f"| *{ref}* | "
            + " | ".join(f"{pairs[p]['success_rate']:.3f} ({pairs[p]['episodes']})" for p in held_out)
            + " |"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    names = [b[0] for b in bars]
    means = [b[1] for b in bars]
    errs = [[m - b[2][0] for m, b in zip(means, bars)], [b[2][1] - m for m, b in zip(means, bars)]]
    ax.bar(range(len(bars)), means, yerr=errs, capsize=4, color="tab:blue")
    for ref, style in (("memoriser", "--"), ("cautious", ":"), ("random", "-.")):
        rate = refs[ref]["splits"]["TargetPairOnly"]["success_rate"]
        ax.axhline(rate, linestyle=style, color="k", linewidth=1)
        ax.text(len(bars) - 0.5, rate + 0.01, ref, ha="right", fontsize=8)
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("TargetPairOnly success")
    ax.set_ylim(0, 1)
    env_name = refs["memoriser"]["env_id"].split("/")[-1].rsplit("-", 2)[0]  # e.g. GoToRedBallDense-Hard
    title = f"{args.title}, {env_name}: mean over seeds, 95% interval of the pooled episodes"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    if args.curves:
        plot_curves(args.sweeps, args.curves, f"{args.title}, {env_name}-Train")
    if args.trap_attention:
        print_trap_attention(args.sweeps, args.trap_attention)


def print_trap_attention(sweeps: list[Path], levels: int) -> None:
    """Per attention run: where the held-out trap's sentence lands in the first view of each level."""
    from babyaipp.agents.attention_maps import attention_map, trap_attention
    from babyaipp.agents.runs import load_run
    from babyaipp.defaults import EVAL_SEED_START
    from babyaipp.envs import split_ids

    seeds = f"seeds 10^6 + 0..{levels - 1}"
    print(f"\nTrap sentence weight, first view of TargetPairOnly levels with green traps ({seeds}):\n")
    print("| run | seed | levels with both in view | on green cells | on other tiles |\n|---|---|---|---|---|")
    for sweep in sweeps:
        for trial in sorted((sweep / "trials").iterdir()):
            if not (trial / "eval" / "results.json").is_file():
                continue
            config = json.loads((trial / "config.json").read_text())
            if config["model"] != "attention":
                continue
            model, _ = load_run(trial)
            env_id = split_ids(config["env_id"])["TargetPairOnly"]
            on, off = [], []
            for k in range(levels):
                amap = attention_map(model, env_id, EVAL_SEED_START + k, text=config["text"])
                found = trap_attention(amap)
                if found is not None and "trap" in amap.dynamics.get("green", ()):
                    on.append(found["trap_colour_cells"])
                    off.append(found["other_tile_cells"])
            if on:
                means = f"{sum(on) / len(on):.3f} | {sum(off) / len(off):.3f}"
                print(f"| {label(config)} | {config['seed']} | {len(on)} | {means} |")


def read_curve(trial: Path) -> tuple[list[float], list[float]]:
    import csv

    with open(trial / "progress.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [float(r["timesteps"]) for r in rows], [float(r["success_rate"]) for r in rows]


def plot_curves(sweeps: list[Path], out: Path, title: str) -> None:
    """Training success against frames per group: mean over seeds, range shaded (finished trials only)."""
    import matplotlib.pyplot as plt
    import numpy as np

    curves: dict[str, list[tuple[list[float], list[float]]]] = defaultdict(list)
    for sweep in sweeps:
        for trial in sorted((sweep / "trials").iterdir()):
            if (trial / "eval" / "results.json").is_file() and (trial / "progress.csv").is_file():
                curves[label(json.loads((trial / "config.json").read_text()))].append(read_curve(trial))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, runs in curves.items():
        grid = np.linspace(0, min(max(x) for x, _ in runs), 200)
        ys = np.array([np.interp(grid, x, y) for x, y in runs])
        ax.plot(grid, ys.mean(0), label=f"{name} ({len(runs)} seeds)")
        if len(runs) > 1:
            ax.fill_between(grid, ys.min(0), ys.max(0), alpha=0.2)
    ax.set_xlabel("frames")
    ax.set_ylabel("training success (last 100 episodes)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(f"{title}: mean over seeds, range shaded", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
