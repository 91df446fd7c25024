"""The floor layer: dynamic tiles beside minigrid's one-object-per-cell grid.

minigrid's ``Grid`` holds one object per cell, so the floor lives in its own ``(width, height)``
array of minigrid colour indices (``NO_TILE`` where the floor is plain). Objects can stand on (be
dropped onto) a tile; the tile is then hidden in the agent's view, as a floor under a box would be.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, COLORS, IDX_TO_COLOR, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import WorldObj
from minigrid.utils.rendering import fill_coords, point_in_rect

from babyaipp.envs.dynamics import SPARSE_PROPERTIES, coverage

NO_TILE = -1
FLOOR_IDX = OBJECT_TO_IDX["floor"]
EMPTY_IDX = OBJECT_TO_IDX["empty"]
_NEIGHBOURS4 = ((1, 0), (-1, 0), (0, 1), (0, -1))


class PlacementError(RuntimeError):
    """No tile layout satisfying the rules was found (the level is resampled)."""


def free_cells(grid: Grid) -> list[tuple[int, int]]:
    return [(x, y) for y in range(grid.height) for x in range(grid.width) if grid.get(x, y) is None]


def _door_cells(grid: Grid) -> list[tuple[int, int]]:
    return [
        (x, y)
        for y in range(grid.height)
        for x in range(grid.width)
        if (c := grid.get(x, y)) is not None and c.type == "door"
    ]


def place_tiles(
    rng: np.random.Generator,
    grid: Grid,
    agent_pos: tuple[int, int],
    mapping: Mapping[str, tuple[str, ...]],
) -> np.ndarray:
    """Paint each colour of ``mapping`` on the free floor following the placement rules.

    Tiles go only on empty cells, never on or next to (8-neighbourhood) the agent's start cell or a
    door. A colour covers ``coverage(props)`` of the free cells (at least one tile). Tiles of a
    colour with a trap, slippery or magic property have at most one 4-neighbour of their colour.
    """
    floor = np.full((grid.width, grid.height), NO_TILE, dtype=np.int8)
    free = free_cells(grid)
    blocked = {agent_pos, *_door_cells(grid)}
    near = {(x + dx, y + dy) for x, y in blocked for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    candidates = [c for c in free if c not in near]
    for colour, props in mapping.items():
        idx = COLOR_TO_IDX[colour]
        want = max(1, round(coverage(props) * len(free)))
        sparse = bool(SPARSE_PROPERTIES.intersection(props))
        placed = 0
        for k in rng.permutation(len(candidates)):
            x, y = candidates[int(k)]
            if floor[x, y] != NO_TILE:
                continue
            if sparse:
                same = [(x + dx, y + dy) for dx, dy in _NEIGHBOURS4 if floor[x + dx, y + dy] == idx]
                if len(same) > 1 or any(_count_same(floor, n, idx) >= 1 for n in same):
                    continue
            floor[x, y] = idx
            placed += 1
            if placed == want:
                break
        if placed == 0:
            raise PlacementError(f"no room for a {colour} tile")
    return floor


def _count_same(floor: np.ndarray, cell: tuple[int, int], idx: int) -> int:
    x, y = cell
    return sum(floor[x + dx, y + dy] == idx for dx, dy in _NEIGHBOURS4)


def reachable_targets(grid: Grid, start: tuple[int, int], blocked: np.ndarray | None = None) -> set[tuple[int, int]]:
    """Cells holding an object or door that the agent can walk up to from ``start``.

    Doors (even locked ones: their key is reachable by construction of the levels) are walked
    through; other objects are obstacles that count as reached when adjacent; ``blocked`` cells
    (traps) are never entered.
    """
    seen = {start}
    found: set[tuple[int, int]] = set()
    queue = deque([start])
    while queue:
        x, y = queue.popleft()
        for dx, dy in _NEIGHBOURS4:
            n = (x + dx, y + dy)
            if n in seen:
                continue
            cell = grid.get(*n)
            if cell is not None and cell.type != "door":
                if cell.type != "wall":
                    found.add(n)
                continue
            if cell is not None:
                found.add(n)
            if blocked is not None and blocked[n]:
                continue
            seen.add(n)
            queue.append(n)
    return found


def traps_cut_off_targets(
    grid: Grid, start: tuple[int, int], floor: np.ndarray, trap_colours: list[int], targets: set[tuple[int, int]]
) -> bool:
    """True if some of ``targets`` (what is reachable on the plain floor) is walled off by traps.

    A search over cells that never enters a trap decides solvability whenever no colour is both
    flipud and magic: turning is always possible, a flipud tile lets the agent move after turning
    around, sticky only delays, and a magic push is avoided by leaving the tile after one step
    (the caller adds the full physics search for flipud+magic; see ``BabyAIPPMixin``).
    ``targets`` is computed once per level by the caller, since it does not depend on the floor.
    """
    if not trap_colours:
        return False
    traps = np.isin(floor, trap_colours)
    return targets != reachable_targets(grid, start, traps)


class FloorStack(WorldObj):
    """Render-only object: a coloured floor tile with (optionally) an object standing on it."""

    def __init__(self, colour: str, inner: WorldObj | None):
        super().__init__("floor", colour)
        self.inner = inner

    def can_overlap(self) -> bool:
        return self.inner is None or self.inner.can_overlap()

    def see_behind(self) -> bool:
        return self.inner is None or self.inner.see_behind()

    def encode(self) -> tuple[int, ...]:
        base = self.inner.encode() if self.inner is not None else (FLOOR_IDX, 0, 0)
        return (*base, COLOR_TO_IDX[self.color])

    def render(self, img: np.ndarray) -> None:
        fill_coords(img, point_in_rect(0.031, 1, 0.031, 1), COLORS[self.color] / 2)
        if self.inner is not None:
            self.inner.render(img)


def stacked_grid(grid: Grid, floor: np.ndarray) -> Grid:
    """A copy of ``grid`` where every tile cell holds a :class:`FloorStack`, for rendering."""
    out = Grid(grid.width, grid.height)
    out.grid = list(grid.grid)
    for x, y in zip(*np.nonzero(floor != NO_TILE)):
        out.set(int(x), int(y), FloorStack(IDX_TO_COLOR[int(floor[x, y])], grid.get(int(x), int(y))))
    return out
