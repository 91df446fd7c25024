"""The egocentric view's geometry, shared by the single env's floor overlay and the batched engine's
observations (so both engines show the same cells)."""

from __future__ import annotations

from functools import cache

import numpy as np

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
