"""The egocentric view's geometry, shared by the single env's floor overlay and the batched engine's
observations (so both engines show the same cells)."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from minigrid.core.constants import OBJECT_TO_IDX
from minigrid.core.world_object import Wall

from babyaipp.envs.physics import DIR_TO_VEC


@cache
def egocentric_offsets(view: int) -> tuple[np.ndarray, np.ndarray]:
    """World offsets (per agent direction) of every cell of the egocentric view.

    View cell (i, j) lies at ``agent + f * (view - 1 - j) + r * (i - view // 2)`` with ``f`` the
    facing and ``r`` the right vector, as in minigrid's ``get_full_render``; one gather then gives
    the floor under the whole view.
    """
    i, j = np.meshgrid(np.arange(view), np.arange(view), indexing="ij")
    dx = np.empty((4, view, view), dtype=np.intp)
    dy = np.empty((4, view, view), dtype=np.intp)
    for d, (fx, fy) in enumerate(DIR_TO_VEC):
        rx, ry = -fy, fx
        dx[d] = fx * (view - 1 - j) + rx * (i - view // 2)
        dy[d] = fy * (view - 1 - j) + ry * (i - view // 2)
    return dx, dy


_EMPTY_CODE = (OBJECT_TO_IDX["empty"], 0, 0)
_OUTSIDE = Wall()  # what minigrid's Grid.slice puts beyond the grid's edge


def egocentric_image(env: Any) -> np.ndarray:
    """minigrid's ``gen_obs`` image, cell for cell, without building the rotated sub-grid.

    minigrid slices the grid around the agent, rotates the slice ``agent_dir + 1`` times, computes
    visibility on it (``Grid.process_vis``), puts the carried object on the agent's cell and
    encodes the visible cells: several thousand ``Grid.get``/``set`` calls per observation, a
    tenth of a dense reset and most of a step. Here the view's cells are gathered with
    :func:`egocentric_offsets` (cells beyond the edge are walls, as in ``Grid.slice``) and the same
    visibility sweep runs on a list of opaque flags; ``tests/envs/test_minigrid_overrides.py``
    compares the result with minigrid's on random walks.
    """
    view = env.agent_view_size
    dx, dy = egocentric_offsets(view)
    d = int(env.agent_dir)
    ax, ay = int(env.agent_pos[0]), int(env.agent_pos[1])
    width, height, cells = env.grid.width, env.grid.height, env.grid.grid
    xs, ys = (ax + dx[d]).tolist(), (ay + dy[d]).tolist()
    objs: list[list[Any]] = []
    opaque: list[list[bool]] = []
    for i in range(view):
        row, shut = [], []
        for x, y in zip(xs[i], ys[i]):
            obj = cells[x + y * width] if 0 <= x < width and 0 <= y < height else _OUTSIDE
            row.append(obj)
            shut.append(obj is not None and not obj.see_behind())
        objs.append(row)
        opaque.append(shut)
    agent = (view // 2, view - 1)
    if env.see_through_walls:
        visible = [[True] * view for _ in range(view)]
    else:
        visible = _visible(opaque, view, agent)
    objs[agent[0]][agent[1]] = env.carrying  # the agent sees what it carries (None: empty)
    image = np.zeros((view, view, 3), dtype=np.uint8)
    for i in range(view):
        for j in range(view):
            if visible[i][j]:
                obj = objs[i][j]
                image[i, j] = _EMPTY_CODE if obj is None else obj.encode()
    return image


def _visible(opaque: list[list[bool]], view: int, agent: tuple[int, int]) -> list[list[bool]]:
    """minigrid's ``Grid.process_vis`` sweep (rows from the agent's outwards, spreading sideways
    and forwards past cells that do not block the sight) on opaque flags indexed ``[i][j]``."""
    mask = [[False] * view for _ in range(view)]
    mask[agent[0]][agent[1]] = True
    for j in reversed(range(view)):
        for i in range(view - 1):
            if not mask[i][j] or opaque[i][j]:
                continue
            mask[i + 1][j] = True
            if j > 0:
                mask[i + 1][j - 1] = True
                mask[i][j - 1] = True
        for i in reversed(range(1, view)):
            if not mask[i][j] or opaque[i][j]:
                continue
            mask[i - 1][j] = True
            if j > 0:
                mask[i - 1][j - 1] = True
                mask[i][j - 1] = True
    return mask
