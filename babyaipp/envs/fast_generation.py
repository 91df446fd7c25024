"""``FastGeneration``: two of minigrid's level-generation methods, the same behaviour, less time.

minigrid builds a BabyAI level by rejection sampling; on the dense floor, where a reset generates
2.6-2.7 levels on average (see docs/environments.md), its ``check_objs_reachable`` (``Grid.get``
per cell) and ``place_obj`` (``np.array_equal`` per random draw) were about a sixth of a reset.
These overrides walk the flat cell list instead (the reachability check with the floor
layer's own search). Levels must not change: each returns what
minigrid's returns, raises what it raises and makes the same random draws in the same order
(``tests/envs/test_minigrid_overrides.py`` checks them against minigrid's on the same states).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from minigrid.core.world_object import WorldObj
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling

from babyaipp.envs.tiles import reachable_targets


class FastGeneration:
    """Mixed in before minigrid's ``RoomGridLevel`` (``BabyAIPPMixin`` derives from it)."""

    def check_objs_reachable(self, raise_exc: bool = True) -> bool:
        """minigrid's check (every object can be walked up to without moving another; doors are
        walked through) and its first failure, with the floor layer's own search
        (:func:`~babyaipp.envs.tiles.reachable_targets`, the same walk over the flat cell list; a
        BabyAI grid's outer wall keeps it in bounds as minigrid's bounds test does): it runs once
        per generated level, and minigrid's ``Grid.get`` per cell made it a tenth of a dense reset."""
        width = self.grid.width
        found = reachable_targets(self.grid, (int(self.agent_pos[0]), int(self.agent_pos[1])))
        unreachable = [
            (i % width, i // width)
            for i, cell in enumerate(self.grid.grid)
            if cell and cell.type != "wall" and (i % width, i // width) not in found
        ]
        if not unreachable:
            return True
        if not raise_exc:
            return False
        raise RejectSampling(f"unreachable object at {min(unreachable)}")  # minigrid scans x, then y

    def place_obj(
        self,
        obj: WorldObj | None,
        top: tuple[int, int] | None = None,
        size: tuple[int, int] | None = None,
        reject_fn: Callable[[Any, tuple[int, int]], bool] | None = None,
        max_tries: float = math.inf,
    ) -> tuple[int, int]:
        """minigrid's rejection sampling of a free cell, the same draws in the same order, with the
        agent's cell compared as two integers (minigrid's ``np.array_equal`` per draw was a
        twentieth of a dense reset)."""
        top = (0, 0) if top is None else (max(top[0], 0), max(top[1], 0))
        if size is None:
            size = (self.grid.width, self.grid.height)
        x_high, y_high = min(top[0] + size[0], self.grid.width), min(top[1] + size[1], self.grid.height)
        agent = None if self.agent_pos is None else tuple(self.agent_pos)
        num_tries = 0
        while True:
            if num_tries > max_tries:
                raise RecursionError("rejection sampling failed in place_obj")
            num_tries += 1
            pos = (self._rand_int(top[0], x_high), self._rand_int(top[1], y_high))
            if self.grid.get(*pos) is not None or pos == agent:
                continue
            if reject_fn and reject_fn(self, pos):
                continue
            break
        self.grid.set(pos[0], pos[1], obj)
        if obj is not None:
            obj.init_pos = pos
            obj.cur_pos = pos
        return pos
