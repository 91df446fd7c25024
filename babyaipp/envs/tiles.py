"""The floor layer: dynamic tiles beside minigrid's one-object-per-cell grid.

minigrid's ``Grid`` holds one object per cell, so the floor lives in its own ``(width, height)``
array of minigrid colour indices (``NO_TILE`` where the floor is plain). Objects can stand on (be
dropped onto) a tile; the tile is then hidden in the agent's view, as a floor under a box would be.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence

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
#: Floor layouts: ``sparse`` paints each colour at its property's coverage (the paper's densities);
#: ``dense`` tiles almost every free cell, with a route of every colour to every target.
FLOORS: tuple[str, ...] = ("sparse", "dense")


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
    free, candidates = free_and_candidate_cells(grid, agent_pos)
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


_NEIGHBOURHOODS: dict[int, tuple[tuple[int, int], ...]] = {
    8: tuple((dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)),
    4: ((0, 0), *_NEIGHBOURS4),
}


def free_and_candidate_cells(
    grid: Grid, agent_pos: tuple[int, int], neighbourhood: int = 8
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The free cells, and those a tile may cover: not on or next to the start or a door.

    "Next to" is the 8-neighbourhood on the sparse floor (a 3x3 plain patch around the start) and
    the 4-neighbourhood on the dense floor, where a 3x3 patch touches most cells of a small room
    and so leaves a tile-free way to most targets.
    """
    free = free_cells(grid)
    blocked = {agent_pos, *_door_cells(grid)}
    near = {(x + dx, y + dy) for x, y in blocked for dx, dy in _NEIGHBOURHOODS[neighbourhood]}
    return free, [c for c in free if c not in near]


#: Cells kept plain around the start and the doors on the dense floor: their 4-neighbourhood.
DENSE_NEIGHBOURHOOD = 4
_UNCLAIMED = -1
#: Extra cost, for a route, of a cell where it would make the cell plain (every colour avoided there):
#: large enough that routes detour rather than leave plain corridors.
SHARED_CELL_PENALTY = 10.0
_CONTESTED = -2


def place_dense_tiles(
    rng: np.random.Generator,
    grid: Grid,
    agent_pos: tuple[int, int],
    colours: Sequence[str],
    targets: set[tuple[int, int]],
) -> np.ndarray:
    """Tile almost every candidate cell so that, whichever colour is removed, the others reach every target.

    The layout reads only the colours in play, never which property each has, so it carries no
    information about the mapping. For every colour X a route avoiding X runs from the start to a
    free cell next to each of ``targets``: the shortest path under random per-cell weights (so it
    winds), painted (on candidate cells, as in :func:`place_tiles`) with a carrier colour other
    than X, or with any colour no route through the cell avoids; a cell every colour's route
    crosses stays plain, and routes pay :data:`SHARED_CELL_PENALTY` to avoid making one. So with
    the trap colour removed its route still reaches every target. The remaining candidate cells
    are filled by growing regions from the route cells in random order: routes lie inside blobs,
    and every colour appears. (A flipud+magic colour can still block a route; the caller checks
    the physics and redraws.)
    """
    width, height = grid.width, grid.height
    n = width * height
    free, candidates = free_and_candidate_cells(grid, agent_pos, neighbourhood=DENSE_NEIGHBOURHOOD)
    if not candidates:
        raise PlacementError("no free cell away from the start and the doors for a tile")
    # Cells are flat indices x + y * width; the outer wall keeps neighbour offsets in bounds.
    walkable = [False] * n
    for x, y in free:
        walkable[x + y * width] = True
    for x, y in _door_cells(grid):
        walkable[x + y * width] = not grid.get(x, y).is_locked  # routes need no key
    is_candidate = [False] * n
    for x, y in candidates:
        is_candidate[x + y * width] = True
    offsets = (1, -1, width, -width)
    start = agent_pos[0] + agent_pos[1] * width
    ends = [[t + o for o in offsets if walkable[t + o]] for t in (x + y * width for x, y in targets)]

    k = len(colours)
    everyone = (1 << k) - 1
    # Route r is made of its carrier colour where it can be; it must avoid the colours in avoid[r].
    order = rng.permutation(k).tolist()
    carriers = [order[(i + 1) % k] for i in range(k)]  # the route avoiding colour order[i] rides order[i + 1]
    avoid = [1 << c for c in order]
    forbidden = [0] * n  # colours some route through the cell must avoid
    carrier_of = [_UNCLAIMED] * n
    for r in range(k):
        weights = rng.random(n).tolist()
        for i in range(n):
            if forbidden[i] and (forbidden[i] | avoid[r]) == everyone:  # crossing would turn it plain
                weights[i] += SHARED_CELL_PENALTY
        parent = _random_shortest_path_tree(weights, walkable, start, offsets)
        for cells in ends:
            reached = [e for e in cells if e in parent]
            if not reached:
                continue
            cell: int | None = min(reached, key=lambda e: parent[e][1])
            while cell is not None:
                if is_candidate[cell]:
                    forbidden[cell] |= avoid[r]
                    if carrier_of[cell] == _UNCLAIMED:
                        carrier_of[cell] = carriers[r]
                cell = parent[cell][0]
    claim = [_UNCLAIMED] * n
    for i in range(n):
        if forbidden[i]:
            allowed = [c for c in order if not forbidden[i] >> c & 1]
            if not allowed:
                claim[i] = _CONTESTED
            else:
                claim[i] = carrier_of[i] if carrier_of[i] in allowed else allowed[0]

    seeds = [i for i in range(n) if claim[i] >= 0]
    open_cells = [i for i in range(n) if is_candidate[i] and claim[i] == _UNCLAIMED]
    for c in range(k):  # a colour whose routes lie in the plain patches still appears
        if not any(claim[i] == c for i in seeds) and open_cells:
            i = open_cells.pop(int(rng.integers(len(open_cells))))
            claim[i] = c
            seeds.append(i)
    if len({claim[i] for i in seeds}) < k:
        raise PlacementError("no room for a tile of every colour")  # one colour's absence would tell it apart
    _grow_regions(rng, claim, is_candidate, seeds, offsets, k)

    floor = np.full((width, height), NO_TILE, dtype=np.int8)
    colour_idx = [COLOR_TO_IDX[colour] for colour in colours]
    for i in range(n):
        if claim[i] >= 0:
            floor[i % width, i // width] = colour_idx[claim[i]]
    return floor


def _random_shortest_path_tree(
    weights: list[float], walkable: list[bool], start: int, offsets: tuple[int, ...]
) -> dict[int, tuple[int | None, float]]:
    """Dijkstra from ``start`` over walkable cells, entering a cell costing its weight: cell -> (parent, distance)."""
    best: dict[int, tuple[int | None, float]] = {start: (None, 0.0)}
    done = set()
    heap = [(0.0, start)]
    while heap:
        dist, cell = heapq.heappop(heap)
        if cell in done:
            continue
        done.add(cell)
        for o in offsets:
            nxt = cell + o
            if not walkable[nxt] or nxt in done:
                continue
            d = dist + weights[nxt]
            old = best.get(nxt)
            if old is None or d < old[1]:
                best[nxt] = (cell, d)
                heapq.heappush(heap, (d, nxt))
    return best


def _grow_regions(
    rng: np.random.Generator,
    claim: list[int],
    is_candidate: list[bool],
    seeds: list[int],
    offsets: tuple[int, ...],
    n_colours: int,
) -> None:
    """Colour every unclaimed candidate cell by multi-source growth from ``seeds`` in random frontier order.

    A candidate region no seed reaches (cut off by plain patches or objects) is seeded with a
    random colour and grown the same way.
    """
    frontier: list[tuple[int, int]] = []

    def push_neighbours(cell: int) -> None:
        for o in offsets:
            nxt = cell + o
            if is_candidate[nxt] and claim[nxt] == _UNCLAIMED:
                frontier.append((nxt, claim[cell]))

    for cell in seeds:
        push_neighbours(cell)
    unclaimed = sum(1 for i, cand in enumerate(is_candidate) if cand and claim[i] == _UNCLAIMED)
    draws = rng.random(4 * (unclaimed + len(seeds)) + 1).tolist()  # one draw per frontier pop
    k = 0
    while unclaimed:
        if not frontier:
            rest = [i for i, cand in enumerate(is_candidate) if cand and claim[i] == _UNCLAIMED]
            cell = rest[int(rng.integers(len(rest)))]
            claim[cell] = int(rng.integers(n_colours))
            unclaimed -= 1
            push_neighbours(cell)
            continue
        j = int(draws[k % len(draws)] * len(frontier))
        k += 1
        frontier[j], frontier[-1] = frontier[-1], frontier[j]
        cell, colour = frontier.pop()
        if claim[cell] != _UNCLAIMED:
            continue
        claim[cell] = colour
        unclaimed -= 1
        push_neighbours(cell)


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
