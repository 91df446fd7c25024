"""The BabyAI++ generalisation study on one machine: four models, three splits, one table.

    python examples/generalization.py [--steps 200000] [--episodes 1000] [--out runs/generalization]

Trains the image, concat, film and attention models with PPO on
``BabyAIPP/GoToRedBall-Easy-Train-v0`` (through ``babyaipp train``, the same code a user runs),
evaluates each on the Train, Test and TargetPairOnly splits (``babyaipp eval``; the random policy
and the oracle are the reference rows), compares them (``babyaipp compare``: table, bar chart,
learning curves), prints each model's training throughput, and writes the results section of
``docs/results.md`` between its markers. A finished run is not retrained when the script is run
again, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

from babyaipp.cli import main as babyaipp
from babyaipp.utils import atomic_write_text

MODELS = ("image", "concat", "film", "attention")
ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"
START, END = "<!-- generalization:start -->", "<!-- generalization:end -->"


def run(argv: list[str]) -> None:
    code = babyaipp(argv)
    if code:
        raise SystemExit(f"babyaipp {' '.join(argv)} exited with {code}")


def finished(run_dir: Path) -> bool:
    config = run_dir / "config.json"
    return config.exists() and json.loads(config.read_text()).get("completed", False)


def throughput(run_dir: Path) -> float:
    rows = (run_dir / "progress.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    return float(rows[-1].split(",")[header.index("fps")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200_000, help="PPO steps per model (default 200000)")
    parser.add_argument("--episodes", type=int, default=1000, help="evaluation episodes per split (default 1000)")
    parser.add_argument("--n-envs", type=int, default=16, help="parallel training envs (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=3e-4,
        help="PPO learning rate (default 3e-4; BabyAI++ used 1e-4 over millions of frames)",
    )
    parser.add_argument("--engine", default="batched", help="how training envs are stepped: batched or gym")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default="runs/generalization")
    parser.add_argument("--docs", default="docs/results.md", help="markdown file whose study section is rewritten")
    args = parser.parse_args()

    out = Path(args.out)
    models = args.models.split(",")
    timings: dict[str, dict[str, float]] = {}
    for i, model in enumerate(models):
        run_dir = out / model
        if not finished(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted first segment; start it again
            start = time.perf_counter()
            run(
                [
                    "train",
                    "--env",
                    ENV_ID,
                    "--model",
                    model,
                    "--steps",
                    str(args.steps),
                    "--n-envs",
                    str(args.n_envs),
                    "--seed",
                    str(args.seed),
                    "--device",
                    "cpu",
                    "--engine",
                    args.engine,
                    "--out",
                    str(run_dir),
                    "--set",
                    f"learning_rate={args.learning_rate}",
                ]
            )
            timings.setdefault(model, {})["train_s"] = time.perf_counter() - start
        if not (run_dir / "eval" / "results.json").exists():
            start = time.perf_counter()
            references = ["--references"] if i == 0 else ["--no-references"]
            run(["eval", str(run_dir), "--episodes", str(args.episodes), "--quiet", *references])
            timings.setdefault(model, {})["eval_s"] = time.perf_counter() - start
        print(f"{model}: training throughput {throughput(run_dir):.0f} frames/s (CPU)")
    compare_dir = out / "compare"
    run(["compare", *[str(out / m) for m in models], "--out", str(compare_dir)])
    write_docs(Path(args.docs), out, compare_dir, models, args, timings)


def write_docs(
    docs: Path,
    out: Path,
    compare_dir: Path,
    models: list[str],
    args: argparse.Namespace,
    timings: dict[str, dict[str, float]],
) -> None:
    images = docs.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name in ("success_by_split.png", "learning_curves.png"):
        shutil.copyfile(compare_dir / name, images / f"generalization_{name}")
    table = (compare_dir / "comparison.md").read_text().strip().removeprefix("# Comparison").strip()
    rows = ["| model | frames/s (CPU, training) | train wall time (s) | eval wall time (s) |", "|---|---|---|---|"]
    for m in models:
        t = timings.get(m, {})
        train_s = f"{t['train_s']:.0f}" if "train_s" in t else "–"
        eval_s = f"{t['eval_s']:.0f}" if "eval_s" in t else "–"
        rows.append(f"| {m} | {throughput(out / m):.0f} | {train_s} | {eval_s} |")
    section = "\n".join(
        [
            START,
            "## Generalisation study: GoToRedBall Easy (one seed)",
            "",
            f"Command: `python examples/generalization.py --steps {args.steps} --episodes {args.episodes} "
            f"--n-envs {args.n_envs} --seed {args.seed} --learning-rate {args.learning_rate} "
            f"--engine {args.engine}` on "
            f"{platform.machine()} with 2 CPU cores (shared with other work while it ran), "
            f"{time.strftime('%Y-%m-%d')}. Trained on `{ENV_ID}`; {args.episodes} evaluation episodes per split, "
            "seeds from 10^6 on (disjoint from training seeds).",
            "",
            table,
            "",
            "![success by split](images/generalization_success_by_split.png)",
            "",
            "![learning curves](images/generalization_learning_curves.png)",
            "",
            "\n".join(rows),
            "",
            "(A dash: the run was reused from an earlier invocation of the script.)",
            END,
        ]
    )
    text = docs.read_text() if docs.exists() else "# Results\n\n"
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    atomic_write_text(docs, text)
    print(f"wrote {docs}")


if __name__ == "__main__":
    main()
