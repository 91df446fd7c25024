"""Where the attention model reads: which description sentence each cell of the view attends to.

For a trained ``attention`` run, :func:`attention_map` plays the model on one level (a few steps,
or none) and returns the agent's rendered view with the weights of every view cell over the
description's sentences and the null slot; :func:`plot_attention_map` draws, beside the frame, one
panel per sentence with that sentence's weight on every cell, so a reader sees whether "green
floors are traps" lands on the green cells. Command line::

    python -m babyaipp.agents.attention_maps RUN --env BabyAIPP/GoToRedBallDense-Easy-TargetPairOnly-v0 \
        --seed 1000000 --out attention.png
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babyaipp.agents.runs import load_run
from babyaipp.defaults import DEFAULT_TEXT, EVAL_SEED_START
from babyaipp.envs import split_ids
from babyaipp.envs.registration import make_tokenized
from babyaipp.envs.text import split_sentences
from babyaipp.errors import BabyAIPPError, ConfigError, check_range
from babyaipp.utils import atomic_write

#: Pixels per cell of the rendered view.
TILE = 32


@dataclass
class AttentionMap:
    """One observation's attention: ``weights[y, x, k]`` for view cell (x, y) and slot ``k``."""

    frame: np.ndarray  # (7 * TILE, 7 * TILE, 3) uint8: the agent's view as rendered, agent at the bottom
    weights: np.ndarray  # (view, view, K + 1): sentence slots in description order, the null slot last
    sentences: list[str]  # the description's sentences, in the order of the token rows
    mission: str
    dynamics: dict[str, tuple[str, ...]]
    held_out_pairs: list[tuple[str, str]]
    tiles: np.ndarray  # (view, view) colour name of the floor tile seen in each cell, "" if none


def _extractor(model: Any) -> Any:
    extractor = getattr(model.policy, "features_extractor", None) or model.policy.pi_features_extractor
    if not hasattr(extractor, "last_attention"):
        raise ConfigError(
            f"the run's model uses {type(extractor).__name__}, which has no attention weights; "
            "attention maps need a run trained with --model attention"
        )
    return extractor


def attention_map(
    model: Any, env_id: str, seed: int, steps: int = 0, text: str = DEFAULT_TEXT, **env_kwargs: Any
) -> AttentionMap:
    """Reset ``env_id`` with ``seed``, let ``model`` act greedily for ``steps`` steps, and read its
    attention on the observation it then sees."""
    import torch
    from minigrid.core.constants import IDX_TO_COLOR, OBJECT_TO_IDX

    check_range("steps", steps, 0)
    extractor = _extractor(model)
    env = make_tokenized(env_id, text=text, render_mode="rgb_array", **env_kwargs)
    try:
        obs, info = env.reset(seed=seed)
        for _ in range(steps):
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, _ = env.step(int(action))
            if terminated or truncated:
                raise BabyAIPPError(f"the episode ended after fewer than {steps} steps; ask for fewer --steps")
        base = env.unwrapped
        with torch.no_grad():
            tensors, _ = model.policy.obs_to_tensor(obs)
            model.policy.extract_features(tensors, extractor)
        view = base.agent_view_size
        weights = extractor.last_attention[0].cpu().numpy()  # (view*view, K+1), cell index x * view + y
        weights = weights.reshape(view, view, -1).transpose(1, 0, 2)  # -> [y, x, k]
        image = np.asarray(obs["image"])  # [x, y, channel]
        floor = image[..., 0] == OBJECT_TO_IDX["floor"]
        tiles = np.where(floor, np.vectorize(lambda c: IDX_TO_COLOR[int(c)])(image[..., 1]), "").T
        frame = base.get_pov_render(tile_size=TILE)
        sentences = split_sentences(base.description)  # the token rows' order
        return AttentionMap(
            frame=frame,
            weights=weights,
            sentences=sentences,
            mission=base.mission,
            dynamics=dict(info["dynamics"]),
            held_out_pairs=list(info["held_out_pairs"]),
            tiles=tiles,
        )
    finally:
        env.close()


def plot_attention_map(amap: AttentionMap, out: str | os.PathLike, title: str = "") -> Path:
    """The rendered view, then one panel per sentence (and the null slot) with its weight per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slots = [*amap.sentences, "(null: no sentence)"]
    k = len(slots)
    fig, axes = plt.subplots(1, k + 1, figsize=(3.2 * (k + 1), 3.8))
    view = amap.weights.shape[0]
    axes[0].imshow(amap.frame)
    pairs = ", ".join(f"{c}-{p}" for c, p in amap.held_out_pairs) or "none"
    axes[0].set_title(f"{amap.mission}\nheld-out: {pairs}", fontsize=8)
    for i, label in enumerate(slots):
        ax = axes[i + 1]
        slot = i if i < len(amap.sentences) else amap.weights.shape[2] - 1
        ax.imshow(amap.frame, alpha=0.35)
        ax.imshow(
            amap.weights[:, :, slot],
            cmap="magma",
            vmin=0.0,
            vmax=1.0,
            alpha=0.75,
            extent=(0, view * TILE, view * TILE, 0),
            interpolation="nearest",
        )
        for y in range(view):
            for x in range(view):
                if amap.tiles[y, x]:
                    ax.text(
                        (x + 0.5) * TILE,
                        (y + 0.5) * TILE,
                        amap.tiles[y, x][0],
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white",
                    )
        ax.set_title(label, fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "attention weight of each view cell per sentence (letters: tile colour seen)", fontsize=9)
    fig.tight_layout()
    path = atomic_write(Path(out), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def trap_attention(amap: AttentionMap) -> dict[str, float] | None:
    """Mean weight on the trap sentence over cells showing the trap colour vs other tile cells.

    ``None`` when the level has no trap colour in view. A model that grounds the description puts
    more weight on the trap sentence where the trap colour is than elsewhere.
    """
    trap = [c for c, props in amap.dynamics.items() if "trap" in props]
    if not trap:
        return None
    index = next((i for i, s in enumerate(amap.sentences) if s.startswith(trap[0])), None)
    on = amap.tiles == trap[0]
    off = (amap.tiles != "") & ~on
    if index is None or not on.any() or not off.any():
        return None
    w = amap.weights[:, :, index]
    return {"trap_colour_cells": float(w[on].mean()), "other_tile_cells": float(w[off].mean())}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m babyaipp.agents.attention_maps",
        description="Draw which description sentence each cell of the agent's view attends to, for a run "
        "trained with --model attention, on one level.",
    )
    parser.add_argument("run", type=Path, help="run directory (model.zip + config.json)")
    parser.add_argument("--env", default=None, help="env id (default: the run's TargetPairOnly id)")
    parser.add_argument(
        "--seed", type=int, default=EVAL_SEED_START, help=f"level seed (default {EVAL_SEED_START}, an evaluation seed)"
    )
    parser.add_argument("--steps", type=int, default=0, help="greedy model steps before the snapshot (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model, config = load_run(args.run)
        env_id = args.env or split_ids(config["env_id"])["TargetPairOnly"]
        amap = attention_map(
            model, env_id, args.seed, args.steps, text=config["text"], **(config.get("env_kwargs") or {})
        )
        plot_attention_map(amap, args.out, title=f"{args.run.name}: {env_id} seed {args.seed}")
    except (BabyAIPPError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
