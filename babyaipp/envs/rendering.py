"""Render an oracle episode to a PNG (first and last frames side by side) or an animated GIF."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babyaipp.envs.oracle import Oracle
from babyaipp.envs.registration import make
from babyaipp.errors import check_choice
from babyaipp.utils import atomic_write

IMAGE_FORMATS = (".png", ".gif")


@dataclass
class Episode:
    frames: list[np.ndarray]
    mission: str
    description: str
    dynamics: dict[str, tuple[str, ...]]
    actions: list[int]
    total_reward: float
    success: bool


def record_oracle_episode(env_id: str, seed: int, tile_size: int = 24, max_frames: int = 400, **kwargs: Any) -> Episode:
    """Run the oracle for one episode of ``env_id`` and keep every rendered frame."""
    env = make(env_id, render_mode="rgb_array", tile_size=tile_size, **kwargs)
    obs, info = env.reset(seed=seed)
    oracle = Oracle(env)
    oracle.reset()
    frames, actions, total = [env.render()], [], 0.0
    done = False
    while not done and len(frames) < max_frames:
        action = oracle.act()
        obs, reward, terminated, truncated, _ = env.step(action)
        actions.append(action)
        total += float(reward)
        frames.append(env.render())
        done = terminated or truncated
    env.close()
    return Episode(frames, obs["mission"], obs["description"], info["dynamics"], actions, total, total > 0)


def save_episode(episode: Episode, path: str | Path, fps: int = 6) -> Path:
    """Write ``.gif`` (every frame) or ``.png`` (first | last frame), atomically."""
    from PIL import Image

    path = Path(path)
    check_choice("image format", path.suffix.lower(), IMAGE_FORMATS)
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(f) for f in episode.frames]
        return atomic_write(
            path,
            lambda tmp: images[0].save(
                tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
            ),
        )
    first, last = episode.frames[0], episode.frames[-1]
    gap = np.full((first.shape[0], 8, 3), 255, dtype=np.uint8)
    image = Image.fromarray(np.concatenate([first, gap, last], axis=1))
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
