"""The floor layer: dynamic tiles beside minigrid's one-object-per-cell grid.

minigrid's ``Grid`` holds one object per cell, so the floor lives in its own ``(width, height)``
array of minigrid colour indices (``NO_TILE`` where the floor is plain). Objects can stand on (be
dropped onto) a tile; the tile is then hidden in the agent's view, as a floor under a box would be.
"""

from __future__ import annotations

import heapq
import math
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
    """Cells holding no object, row by row (``grid.grid`` is flat, index ``x + y * width``)."""
    width = grid.width
    return [(i % width, i // width) for i, c in enumerate(grid.grid) if c is None]


def _door_cells(grid: Grid) -> list[tuple[int, int]]:
    width = grid.width
    return [(i % width, i // width) for i, c in enumerate(grid.grid) if c is not None and c.type == "door"]


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
#: With three colours (Hard), layouts redrawn (routes and fill) while plain cells plus the cells of
#: one colour reach every object description of the instruction; after this many the last layout
#: is kept and the caller redraws the level. Most leaks that survive one redraw come from the level's
#: geometry (a one-cell-wide corridor every route must share), which no layout fixes.
PAIR_REDRAWS = 2
#: Extra cost, with three colours, of a cell another route already crosses: crossing would leave
#: it a single allowed colour, and a chain of such cells is a one-colour way to the target.
PAIR_SHARED_PENALTY = 3.0
#: Raised (when the caller allows) where every layout would let plain cells and one colour reach what
#: the instruction needs: it lies at most one tile beyond the plain patches.
ONE_TILE_LEVEL = "one tile or none lies between the start and what the instruction needs"


def place_dense_tiles(
    rng: np.random.Generator,
    grid: Grid,
    agent_pos: tuple[int, int],
    colours: Sequence[str],
    targets: set[tuple[int, int]],
    groups: Sequence[set[tuple[int, int]]] | None = None,
    redraw_one_tile_level: bool = False,
    kept_plain: frozenset[tuple[int, int]] | set[tuple[int, int]] = frozenset(),
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

    With three colours (Hard) the fill is a proper colouring instead (:func:`_proper_claim`:
    touching cells rarely share a colour), routes pay :data:`PAIR_SHARED_PENALTY` to stay apart,
    and the layout is redrawn (:data:`PAIR_REDRAWS`) while plain cells and one colour alone reach
    a cell next to an object of each of ``groups`` (the instruction's object descriptions). So
    every way to the target needs two colours, and a planner that does not know which colour is
    the trap must guess a pair: with two of three colours possible traps even in Train, knowing
    one safe colour is no longer enough. Where at most one tile lies between the plain patches and
    the only group no layout can do that; with ``redraw_one_tile_level`` that raises
    :data:`ONE_TILE_LEVEL` for the caller to draw another level.

    ``kept_plain``: free cells that stay plain besides the start's and the doors' (the caller keeps
    the cells next to objects the agent must pick up plain where a colour can be magic).
    """
    width, height = grid.width, grid.height
    n = width * height
    free, candidates = free_and_candidate_cells(grid, agent_pos, neighbourhood=DENSE_NEIGHBOURHOOD)
    if kept_plain:
        candidates = [c for c in candidates if c not in kept_plain]
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
    pairs = k >= 3  # every way to the target needs two colours (see the docstring)
    group_ends = [
        [[t + o for o in offsets if walkable[t + o]] for t in (x + y * width for x, y in group)]
        for group in groups or ()
    ]
    # Where one candidate cell (or none) lies on a way to the only group, every layout leaks.
    one_tile = pairs and bool(group_ends) and _one_tile_away(is_candidate, walkable, start, offsets, group_ends)
    if one_tile and redraw_one_tile_level:
        raise PlacementError(ONE_TILE_LEVEL)
    redraws = PAIR_REDRAWS if pairs and group_ends and not one_tile else 0
    for _ in range(redraws + 1):
        claim = _draw_dense_claim(rng, k, n, walkable, is_candidate, start, offsets, ends, pairs)
        if not redraws or not _single_colour_reaches(claim, k, walkable, start, offsets, group_ends):
            break

    floor = np.full((width, height), NO_TILE, dtype=np.int8)
    colour_idx = [COLOR_TO_IDX[colour] for colour in colours]
    for i in range(n):
        if claim[i] >= 0:
            floor[i % width, i // width] = colour_idx[claim[i]]
    return floor


def _draw_dense_claim(
    rng: np.random.Generator,
    k: int,
    n: int,
    walkable: list[bool],
    is_candidate: list[bool],
    start: int,
    offsets: tuple[int, ...],
    ends: list[list[int]],
    pairs: bool,
) -> list[int]:
    """One dense layout as a colour index (or plain) per cell: routes avoiding each colour, then regions."""
    everyone = (1 << k) - 1
    # Route r is made of its carrier colour where it can be; it must avoid the colours in avoid[r].
    order = rng.permutation(k).tolist()
    carriers = [order[(i + 1) % k] for i in range(k)]  # the route avoiding colour order[i] rides order[i + 1]
    avoid = [1 << c for c in order]
    forbidden = [0] * n  # colours some route through the cell must avoid
    carrier_of = [_UNCLAIMED] * n
    crossed: list[int] = []  # cells some route crosses (forbidden[i] != 0)
    for r in range(k):
        weights = rng.random(n).tolist()
        for i in crossed:
            if (forbidden[i] | avoid[r]) == everyone:  # crossing would turn it plain
                weights[i] += SHARED_CELL_PENALTY
            elif pairs:  # crossing would leave it a single allowed colour
                weights[i] += PAIR_SHARED_PENALTY
        parent, dist = _random_shortest_path_tree(weights, walkable, start, offsets)
        for cells in ends:
            reached = [e for e in cells if dist[e] < math.inf]
            if not reached:
                continue
            cell = min(reached, key=dist.__getitem__)
            while cell >= 0:
                if is_candidate[cell]:
                    if not forbidden[cell]:
                        crossed.append(cell)
                    forbidden[cell] |= avoid[r]
                    if carrier_of[cell] == _UNCLAIMED:
                        carrier_of[cell] = carriers[r]
                cell = parent[cell]
    if pairs:
        return _proper_claim(rng, forbidden, is_candidate, offsets, k)
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
    return claim


def _proper_claim(
    rng: np.random.Generator, forbidden: list[int], is_candidate: list[bool], offsets: tuple[int, ...], k: int
) -> list[int]:
    """Colour every candidate with a colour its routes allow and, where one is left, none of its neighbours has.

    Most constrained cells first (one allowed colour, then two, then any), in random order within
    each; a cell no colour is allowed on stays plain. Touching cells rarely share a colour, so a
    route avoiding X takes both other colours, and no single colour links start and target.
    """
    n = len(forbidden)
    claim = [_UNCLAIMED] * n
    cells = [i for i in range(n) if is_candidate[i]]
    keys = rng.random(len(cells)).tolist()
    # the colours each forbidden bit mask allows, computed once per mask
    allowed_by_mask = [[c for c in range(k) if not mask >> c & 1] for mask in range(1 << k)]
    allowed = [allowed_by_mask[forbidden[i]] for i in cells]
    draw = rng.integers
    for _, _, i, ok in sorted(zip([len(a) for a in allowed], keys, cells, allowed)):
        if not ok:
            claim[i] = _CONTESTED
            continue
        near = (claim[i + offsets[0]], claim[i + offsets[1]], claim[i + offsets[2]], claim[i + offsets[3]])
        free = [c for c in ok if c not in near] or ok
        claim[i] = free[int(draw(len(free)))]
    if len({c for c in claim if c >= 0}) < k:
        raise PlacementError("no room for a tile of every colour")
    return claim


def _one_tile_away(
    is_candidate: list[bool], walkable: list[bool], start: int, offsets: tuple[int, ...], group_ends: list
) -> bool:
    """Whether every group is reachable over non-candidate cells, or the only group over at most one candidate cell."""
    inf = 1 << 30
    dist = [inf] * len(walkable)
    dist[start] = 0
    queue = deque([start])
    while queue:  # 0-1 BFS: entering a candidate costs 1
        cell = queue.popleft()
        for o in offsets:
            nxt = cell + o
            if walkable[nxt]:
                d = dist[cell] + is_candidate[nxt]
                if d < dist[nxt]:
                    dist[nxt] = d
                    (queue.append if is_candidate[nxt] else queue.appendleft)(nxt)
    costs = [min((dist[e] for ends in group for e in ends), default=inf) for group in group_ends]
    return max(costs) == 0 or (len(costs) == 1 and costs[0] <= 1)


def _single_colour_reaches(
    claim: list[int], k: int, walkable: list[bool], start: int, offsets: tuple[int, ...], group_ends: list
) -> bool:
    """Whether plain cells plus the cells of one colour alone reach a cell next to an object of every group."""
    for colour in range(k):
        seen = [False] * len(claim)
        seen[start] = True
        stack = [start]
        while stack:
            cell = stack.pop()
            for o in offsets:
                nxt = cell + o
                if not seen[nxt] and walkable[nxt] and claim[nxt] in (colour, _UNCLAIMED, _CONTESTED):
                    seen[nxt] = True
                    stack.append(nxt)
        if all(any(seen[e] for ends in group for e in ends) for group in group_ends):
            return True
    return False


def _random_shortest_path_tree(
    weights: list[float], walkable: list[bool], start: int, offsets: tuple[int, ...]
) -> tuple[list[int], list[float]]:
    """Dijkstra from ``start`` over walkable cells, entering a cell costing its weight.

    Returns ``(parent, dist)`` per cell: ``parent`` is -1 at the start and where unreached, ``dist``
    infinite where unreached. (Lists, not dicts: this runs three times per dense layout.)
    """
    n = len(walkable)
    parent = [-1] * n
    dist = [math.inf] * n
    dist[start] = 0.0
    done = bytearray(n)
    heap = [(0.0, start)]
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        d_cell, cell = pop(heap)
        if done[cell]:
            continue
        done[cell] = 1
        for o in offsets:
            nxt = cell + o
            if not walkable[nxt] or done[nxt]:
                continue
            d = d_cell + weights[nxt]
            if d < dist[nxt]:
                parent[nxt], dist[nxt] = cell, d
                push(heap, (d, nxt))
    return parent, dist


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
    # Flat indices x + y * width over minigrid's flat cell list (the outer wall keeps the
    # neighbour offsets in bounds); a plain loop, since generation calls this several times a level.
    width, cells = grid.width, grid.grid
    stop = None if blocked is None else blocked.T.ravel().tolist()
    offsets = (1, -1, width, -width)
    first = start[0] + start[1] * width
    seen = bytearray(len(cells))
    seen[first] = 1
    found: set[int] = set()
    queue = [first]
    for cell in queue:  # the list grows while it is walked: a breadth-first queue
        for o in offsets:
            n = cell + o
            if seen[n]:
                continue
            obj = cells[n]
            if obj is not None:
                kind = obj.type
                if kind != "door":
                    if kind != "wall":
                        found.add(n)
                    continue
                found.add(n)
            if stop is not None and stop[n]:
                continue
            seen[n] = 1
            queue.append(n)
    return {(i % width, i // width) for i in found}


def tiles_of(floor: np.ndarray, colours: Sequence[int]) -> np.ndarray:
    """Cells of ``floor`` whose tile has one of ``colours`` (``np.isin`` without its set-up cost:
    the level checks call this for two or three colours per generated layout)."""
    mask = np.zeros(floor.shape, dtype=bool)
    for colour in colours:
        mask |= floor == colour
    return mask


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
    return targets != reachable_targets(grid, start, tiles_of(floor, trap_colours))


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
