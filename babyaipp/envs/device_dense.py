"""The dense floor's placement (:func:`babyaipp.envs.tiles.place_dense_tiles`) as tensor code, for many levels at once.

The steps are the single env's, each written for all levels together on the grid's own cells
(``x * H + y``; the grid's outer wall keeps every neighbour of a walkable cell in range), on the
candidate cells and targets :func:`dense_layout_masks` reads from each layout (on Hard, cells next
to an object to pick up stay plain):

1. routes: for every colour X (in a random order), the shortest-path tree from the start under
   random cell weights (Bellman-Ford relaxation: the same tree as Dijkstra's, ties having
   probability zero), plus a penalty where the route would make a cell plain (with three colours,
   a smaller one where another route already crosses the cell); the path to the nearest walkable
   neighbour of each needed target is painted with the route's carrier colour (the next colour in
   the order) and forbids X;

with two colours (Easy):

2. claims: a route cell takes its carrier colour if no route there forbids it, else the first
   allowed colour in the order; a cell every colour is forbidden on stays plain;
3. every colour appears (a random open candidate cell for a missing one);
4. region growth: the single env pops a uniformly random entry of a frontier holding one
   (cell, colour) entry per claimed neighbour, so the next cell and colour are drawn with
   probability proportional to the number of that colour's claimed neighbours (a random cell and
   colour where nothing borders an unclaimed cell);

with three colours (Hard):

2. proper colouring: the candidate cells in order of (allowed colours, then a uniform random
   key), each taking a uniformly random allowed colour that no claimed 4-neighbour has (any
   allowed colour if none is left; plain if none is allowed): sequential within a level, one
   position per step for every level at once; a level missing a colour is not placed;
3. layout redraws: while plain cells and the cells of one colour reach an object of every
   object description of the instruction (``groups``), routes and fill are drawn again, at most
   :data:`~babyaipp.envs.tiles.PAIR_REDRAWS` times (levels no layout can fix, one tile away:
   :func:`dense_layout_masks`'s ``one_tile``, are the caller's to redraw or to pass without groups).
"""

from __future__ import annotations

import torch

from babyaipp.envs.batched_state import (
    CODE_MASK,
    COLOUR_SHIFT,
    DOOR_LOCKED,
    K_NONE,
    K_PICKUP,
    K_PUTNEXT,
    PAD,
    STATE_SHIFT,
    T_DOOR,
    T_KEY,
    TYPE_BITS,
)
from babyaipp.envs.device_floor import (
    PLAIN,
    StateSearch,
    flood_fill,
    inner_cells,
    offsets4,
    reachable_targets,
    shifted_or,
)
from babyaipp.envs.tiles import PAIR_REDRAWS, PAIR_SHARED_PENALTY, SHARED_CELL_PENALTY

_UNCLAIMED, _CONTESTED = -1, -2
_CHECK_EVERY = 8


def dense_layout_masks(
    layouts: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], hp: int, pickups_plain: bool = False
) -> dict[str, torch.Tensor]:
    """What the dense floor needs of each layout (padded cells), beside :func:`device_floor.layout_masks`.

    ``candidate4``: free cells not on or 4-next to the start or a door, nor (``pickups_plain``:
    where a colour can be magic) 4-next to an object the agent must pick up (a pickup's objects,
    a put-next's moved ones, the keys of locked doors: the single env's ``_pickup_cells``,
    ``place_dense_tiles``'s ``kept_plain``); ``route_walkable``: free
    cells and unlocked doors (routes need no key); ``groups`` (layouts, G, cells) with
    ``group_valid``: the cells of each object description of the instruction (the verifier's
    object sets) and the keys of each locked door colour; ``needed``: what the routes must reach,
    the groups' cells the agent reaches before it holds a key; ``pair_groups``: each group's
    needed cells (what the three-colour layout redraws read, as the single env's
    ``[group & needed for group in groups if group & needed]``); ``one_tile``: whether at most one
    candidate cell lies on the best way to the only such group, or none on the ways to them all
    (``tiles._one_tile_away``: every three-colour layout lets plain cells and one colour through);
    ``several_groups``: more than one group (then any magic colour calls for the round-trip search).
    """
    cells, start = layouts["cells"], layouts["agent_pos"]
    rows, width = cells.shape
    device = cells.device
    code = cells & CODE_MASK
    kind, colour = code & TYPE_BITS, (code >> COLOUR_SHIFT) & 7
    door = kind == T_DOOR
    locked = door & (((code >> STATE_SHIFT) & 3) == DOOR_LOCKED)
    start_mask = torch.zeros_like(door)
    start_mask[torch.arange(rows, device=device), start] = True
    near4 = shifted_or(start_mask | door, (0, *offsets4(hp)))
    groups, valid = [], []
    picked = torch.zeros(rows, width, dtype=torch.bool, device=device)  # objects the agent must pick up
    obj_pos = layouts["obj_pos"]
    for table in ("track_a", "track_b"):  # a leaf's description; put-next's second one
        for slot in range(layouts["kind"].shape[1]):
            ids = layouts[table][:, slot] & (obj_pos >= 0)  # (rows, objects) the description's objects
            group = torch.zeros(rows, width, dtype=torch.bool, device=device)
            group.scatter_(1, torch.where(ids, obj_pos, 0), ids)
            group[:, 0] = False
            groups.append(group)
            leaf_kind = layouts["kind"][:, slot]
            valid.append(leaf_kind == K_PUTNEXT if table == "track_b" else leaf_kind != K_NONE)
            if table == "track_a":
                picked |= group & ((leaf_kind == K_PICKUP) | (leaf_kind == K_PUTNEXT)).unsqueeze(1)
    for c in range(6):  # keys of each locked door colour
        has_locked = (locked & (colour == c)).any(1)
        groups.append((kind == T_KEY) & (colour == c) & has_locked.unsqueeze(1))
        valid.append(has_locked)
        picked |= groups[-1]
    groups_t, valid_t = torch.stack(groups, 1), torch.stack(valid, 1)
    used = valid_t.any(0)  # only the groups some layout has (most levels have one or two)
    groups_t, valid_t = groups_t[:, used], valid_t[:, used]
    wanted = (groups_t & valid_t.unsqueeze(2)).any(1)
    before_keys = reachable_targets(masks, start, hp, blocked=locked)
    candidate, route_walkable, needed = masks["free"] & ~near4, masks["free"] | (door & ~locked), wanted & before_keys
    if pickups_plain:  # a pickup on a magic tile entered with a turn would push the agent off
        candidate &= ~shifted_or(picked, offsets4(hp))
    pair_groups = groups_t & valid_t.unsqueeze(2) & needed.unsqueeze(1)
    return {
        "candidate4": candidate,
        "route_walkable": route_walkable,
        "groups": groups_t,
        "group_valid": valid_t,
        "needed": needed,
        "pair_groups": pair_groups,
        "one_tile": _one_tile_away(candidate, route_walkable, start, pair_groups, hp),
        "several_groups": valid_t.sum(1) > 1,
    }


def _one_tile_away(candidate, walkable, start, groups, hp: int) -> torch.Tensor:
    """``tiles._one_tile_away`` per row: the fewest candidate cells entered on a way to a walkable
    neighbour of each group (a shortest path where entering a candidate costs 1); False without a group."""
    dist, _ = _relax_shortest_paths(candidate.double(), walkable, start, hp)
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    nearest = _neighbour_min(dist, offsets4(hp))  # unwalkable cells are at inf
    present = groups.any(2)
    cost = torch.where(groups, nearest.unsqueeze(1), inf).min(2).values
    worst = torch.where(present, cost, 0.0).max(1).values
    return present.any(1) & ((worst == 0) | ((present.sum(1) == 1) & (worst <= 1)))


def _relax_shortest_paths(weights: torch.Tensor, walkable: torch.Tensor, start: torch.Tensor, height: int):
    """Distances from ``start`` (entering a cell costs its weight) and each reached cell's parent."""
    rows, width = weights.shape
    inf = torch.tensor(float("inf"), dtype=weights.dtype, device=weights.device)
    dist = torch.full_like(weights, float("inf"))
    at_start = torch.zeros_like(walkable)
    at_start[torch.arange(rows, device=weights.device), start] = True
    dist = torch.where(at_start, 0.0, dist)
    offsets = offsets4(height)
    relaxed = walkable & ~at_start
    steps = 0
    while True:
        best = _neighbour_min(dist, offsets) + weights
        new = torch.where(relaxed, torch.minimum(dist, best), dist)
        steps += 1
        if steps % _CHECK_EVERY == 0 and torch.equal(new, dist):
            break
        dist = new
    near = _neighbour_values(dist, offsets, inf)
    offset_t = torch.tensor(offsets, device=weights.device)
    parent = torch.arange(width, device=weights.device) + offset_t[near.argmin(2)]
    parent = torch.where(at_start | ~torch.isfinite(dist), torch.arange(width, device=weights.device), parent)
    return dist, parent


def _neighbour_min(values: torch.Tensor, offsets: tuple[int, ...]) -> torch.Tensor:
    """``min(values[:, i + o] for o in offsets)`` (``inf`` outside the row), without the stacked copy."""
    out = torch.full_like(values, float("inf"))
    for o in offsets:
        if o > 0:
            out[:, :-o] = torch.minimum(out[:, :-o], values[:, o:])
        else:
            out[:, -o:] = torch.minimum(out[:, -o:], values[:, :o])
    return out


def _neighbour_values(values: torch.Tensor, offsets: tuple[int, ...], fill: torch.Tensor) -> torch.Tensor:
    """``out[:, i, j] = values[:, i + offsets[j]]`` (``fill`` outside the row)."""
    out = fill.expand(*values.shape, len(offsets)).clone()
    for j, o in enumerate(offsets):
        if o > 0:
            out[:, :-o, j] = values[:, o:]
        else:
            out[:, -o:, j] = values[:, :o]
    return out


def place_dense(
    generator: torch.Generator,
    candidate: torch.Tensor,
    walkable: torch.Tensor,
    needed: torch.Tensor,
    start: torch.Tensor,
    n_colours: int,
    hp: int,
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour slots (0..k-1, or :data:`PLAIN`) of every padded cell, and whether every colour appears.

    ``groups`` (rows, G, cells), with three colours: the cells of each object description the
    layout redraws are about (:func:`dense_layout_masks`'s ``pair_groups``; an empty group is
    ignored, a row without any is drawn once), as ``place_dense_tiles``'s ``groups``.
    """
    rows, width = candidate.shape
    device = candidate.device
    inner = inner_cells(width, hp, device)
    height = hp - 2 * PAD
    slot_of = torch.zeros(width, dtype=torch.long, device=device)
    slot_of[inner] = torch.arange(len(inner), device=device)
    inner_groups = None
    if groups is not None and n_colours >= 3:
        inner_groups = groups[:, :, inner]
        inner_groups = inner_groups[:, inner_groups.any(2).any(0)]  # only groups some row has
    claim, ok = _place_inner(
        generator,
        candidate[:, inner],
        walkable[:, inner],
        needed[:, inner],
        slot_of[start],
        n_colours,
        height,
        inner_groups,
    )
    out = torch.full((rows, width), PLAIN, dtype=torch.long, device=device)
    out[:, inner] = torch.where(claim >= 0, claim, PLAIN)
    return out, ok


def _place_inner(generator, candidate, walkable, needed, start, k: int, height: int, groups=None):
    """:func:`place_dense` on the grid's own cells: ``(claim, ok)``, claim a colour slot, or
    ``_UNCLAIMED`` / ``_CONTESTED`` (plain)."""
    if k < 3:
        forbidden, carrier_of, order = _routes(generator, candidate, walkable, needed, start, k, height)
        return _grow_regions(generator, candidate, forbidden, carrier_of, order, k, height)
    claim, ok = _pair_layout(generator, candidate, walkable, needed, start, k, height)
    if groups is None or groups.shape[1] == 0:
        return claim, ok
    has_group = groups.any(2).any(1)
    redo = ok & has_group & _single_colour_reaches(claim, walkable, start, groups, k, height)
    for _ in range(PAIR_REDRAWS):
        rows = redo.nonzero().squeeze(1)
        if not rows.numel():
            break
        again, again_ok = _pair_layout(generator, candidate[rows], walkable[rows], needed[rows], start[rows], k, height)
        claim[rows], ok[rows] = again, again_ok
        redo = torch.zeros_like(redo)
        redo[rows] = again_ok & _single_colour_reaches(again, walkable[rows], start[rows], groups[rows], k, height)
    return claim, ok


def _routes(generator, candidate, walkable, needed, start, k: int, height: int):
    """Step 1: per route the colour it avoids, painted into ``forbidden`` (bits of the colours some
    route through the cell avoids) and ``carrier_of`` (the first route's carrier); and the order."""
    rows, width = candidate.shape
    device = candidate.device
    everyone = (1 << k) - 1
    order = torch.rand(rows, k, generator=generator, device=device).argsort(1)  # a uniform permutation
    offsets = offsets4(height)
    offset_t = torch.tensor(offsets, device=device)
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=device)
    forbidden = torch.zeros(rows, width, dtype=torch.long, device=device)
    carrier_of = torch.full((rows, width), _UNCLAIMED, dtype=torch.long, device=device)
    cells = torch.arange(width, device=device)
    for r in range(k):
        avoid = (1 << order[:, r]).unsqueeze(1)
        carrier = order[:, (r + 1) % k].unsqueeze(1)
        weights = torch.rand(rows, width, generator=generator, device=device, dtype=torch.float64)
        crossing = (forbidden != 0) & ((forbidden | avoid) == everyone)
        weights = torch.where(crossing, weights + SHARED_CELL_PENALTY, weights)
        if k >= 3:  # crossing would leave the cell a single allowed colour
            weights = torch.where((forbidden != 0) & ~crossing, weights + PAIR_SHARED_PENALTY, weights)
        dist, parent = _relax_shortest_paths(weights, walkable, start, height)
        # Each needed target's end: its walkable neighbour nearest the start.
        near = torch.where(
            _neighbour_values(walkable, offsets, torch.tensor(False, device=device)),
            _neighbour_values(dist, offsets, inf),
            inf,
        )
        best = near.min(2)
        has_end = needed & torch.isfinite(best.values)
        ends = torch.where(has_end, cells + offset_t[best.indices], 0)
        on_path = torch.zeros_like(needed)
        on_path.scatter_(1, ends, has_end)
        while True:  # mark every ancestor of an end (the start is its own parent)
            grown = on_path.clone()
            grown.scatter_(1, torch.where(on_path, parent, 0), on_path)
            if torch.equal(grown, on_path):
                break
            on_path = grown
        painted = on_path & candidate
        forbidden = torch.where(painted, forbidden | avoid, forbidden)
        carrier_of = torch.where(painted & (carrier_of == _UNCLAIMED), carrier, carrier_of)
    return forbidden, carrier_of, order


def _grow_regions(generator, candidate, forbidden, carrier_of, order, k: int, height: int):
    """Steps 2-4 with two colours: claims, every colour appears, region growth."""
    rows, width = candidate.shape
    device = candidate.device
    arange = torch.arange(rows, device=device)
    offsets = offsets4(height)
    offset_t = torch.tensor(offsets, device=device)
    everyone = (1 << k) - 1
    allowed = everyone & ~forbidden
    first = torch.full_like(forbidden, _UNCLAIMED)
    for j in range(k):
        c = order[:, j : j + 1]
        first = torch.where((first == _UNCLAIMED) & (((allowed >> c) & 1) == 1), c, first)
    carrier_ok = (carrier_of >= 0) & (((allowed >> carrier_of.clamp(min=0)) & 1) == 1)
    claim = torch.where(carrier_ok, carrier_of, first)
    claim = torch.where(allowed == 0, _CONTESTED, claim)
    claim = torch.where(forbidden != 0, claim, _UNCLAIMED)
    # Every colour appears: a uniformly random open candidate cell for a missing one.
    for c in range(k):
        open_cells = candidate & (claim == _UNCLAIMED)
        missing = ~(claim == c).any(1) & open_cells.any(1)
        keys = torch.where(open_cells, torch.rand(rows, width, generator=generator, device=device), -1.0)
        pick = keys.argmax(1)
        claim[arange, pick] = torch.where(missing, c, claim[arange, pick])
    ok = torch.stack([(claim == c).any(1) for c in range(k)], 1).all(1)
    # Region growth (see the module docstring): one cell per step, drawn by inverting the cumulative
    # weights with one uniform number per level; each colour's count of claimed neighbours is kept
    # up to date around the cell just claimed.
    unclaimed = candidate & (claim == _UNCLAIMED)
    nb = _neighbour_values(claim, offsets, torch.tensor(_UNCLAIMED, device=device))  # (rows, cells, 4)
    counts = torch.stack([(nb == c).sum(2) for c in range(k)], 2)  # (rows, cells, k)
    for _ in range(int(unclaimed.sum(1).max())):
        weights = (counts * unclaimed.unsqueeze(2)).view(rows, -1)
        grown = _draw_index(generator, weights)
        # Nothing borders an unclaimed cell: a random unclaimed cell takes a random colour.
        lone_cell = _draw_index(generator, unclaimed.long())
        lone_colour = torch.randint(k, (rows,), generator=generator, device=device)
        frontier = weights.sum(1) > 0
        cell = torch.where(frontier, grown // k, lone_cell)
        colour = torch.where(frontier, grown % k, lone_colour)
        todo = unclaimed[arange, cell]
        claim[arange, cell] = torch.where(todo, colour, claim[arange, cell])
        unclaimed[arange, cell] = False
        around = (cell.unsqueeze(1) + offset_t).clamp(0, width - 1)
        counts.view(rows, -1).scatter_add_(1, around * k + colour.unsqueeze(1), todo.long().unsqueeze(1).expand(-1, 4))
    return claim, ok


def _pair_layout(generator, candidate, walkable, needed, start, k: int, height: int):
    """One layout with three colours: routes, then the proper colouring (step 2)."""
    forbidden, _, _ = _routes(generator, candidate, walkable, needed, start, k, height)
    return _proper_claim(generator, forbidden, candidate, k, height)


def _proper_claim(generator, forbidden, candidate, k: int, height: int):
    """Step 2 with three colours (``tiles._proper_claim``): one candidate position per step, every
    level at once; ``(claim, ok)``, ok where every colour appears."""
    rows, width = candidate.shape
    device = candidate.device
    arange = torch.arange(rows, device=device)
    allowed = torch.where(candidate, ((1 << k) - 1) & ~forbidden, 0)
    n_allowed = sum((allowed >> c) & 1 for c in range(k))
    claim = torch.full_like(forbidden, _UNCLAIMED)
    claim = torch.where(candidate & (allowed == 0), _CONTESTED, claim)
    todo = allowed != 0
    keys = torch.rand(rows, width, generator=generator, device=device, dtype=torch.float64)
    order = torch.where(todo, n_allowed + keys, float("inf")).argsort(1)  # fewest allowed colours first
    count = todo.sum(1)
    last = int(count.max()) if rows else 0
    allowed_in_order = allowed.gather(1, order[:, :last])
    draws = torch.rand(rows, last, generator=generator, device=device, dtype=torch.float64)
    nb_offsets = torch.tensor(offsets4(height), device=device)
    for p in range(last):
        cell = order[:, p]
        nb = claim.gather(1, (cell.unsqueeze(1) + nb_offsets).clamp(0, width - 1))
        bits = torch.where(nb >= 0, 1 << nb.clamp(min=0), 0)
        near = bits[:, 0] | bits[:, 1] | bits[:, 2] | bits[:, 3]
        allow = allowed_in_order[:, p]
        free = allow & ~near
        free = torch.where(free == 0, allow, free)
        # A uniformly random set bit of `free`: the j-th, j uniform below the number of bits.
        j = (draws[:, p] * sum((free >> c) & 1 for c in range(k))).long()
        colour = torch.zeros_like(cell)
        seen = torch.zeros_like(cell)
        for c in range(k):
            bit = (free >> c) & 1
            colour = torch.where((bit == 1) & (seen == j), c, colour)
            seen += bit
        active = p < count
        claim[arange, cell] = torch.where(active, colour, claim[arange, cell])
    ok = torch.stack([(claim == c).any(1) for c in range(k)], 1).all(1)
    return claim, ok


def _single_colour_reaches(claim, walkable, start, groups, k: int, height: int) -> torch.Tensor:
    """Per row, whether plain cells and the cells of one colour reach a cell next to an object of
    every group (``tiles._single_colour_reaches``); False where the row has no group."""
    rows, width = claim.shape
    plain = claim < 0
    passable = torch.stack([walkable & (plain | (claim == c)) for c in range(k)], 1).view(rows * k, width)
    seen = flood_fill(passable, start.repeat_interleave(k), height)
    near = shifted_or(seen, offsets4(height)).view(rows, k, width)
    present = groups.any(2)
    leaks = torch.zeros(rows, dtype=torch.bool, device=claim.device)
    for c in range(k):
        reached = (groups & near[:, c].unsqueeze(1)).any(2)
        leaks |= (reached | ~present).all(1)
    return leaks & present.any(1)


def _draw_index(generator: torch.Generator, weights: torch.Tensor) -> torch.Tensor:
    """Per row, an index drawn with probability proportional to its non-negative integer weight
    (an arbitrary valid index where a row's weights are all zero)."""
    cumulative = weights.cumsum(1)
    total = cumulative[:, -1:]
    target = (
        torch.rand(len(weights), 1, generator=generator, device=weights.device, dtype=torch.float64) * total
    ).floor()
    index = torch.searchsorted(cumulative, target.long(), right=True)
    return index.squeeze(1).clamp(max=weights.shape[1] - 1)


def faces_all_round_trip(
    props_here: torch.Tensor,
    walkable: torch.Tensor,
    start: torch.Tensor,
    start_dir: torch.Tensor,
    wanted: torch.Tensor,
    hp: int,
) -> torch.Tensor:
    """Whether every ``wanted`` cell can be faced from a state that can come back to the start cell
    (the oracle's ``round_trip_cells``): the forward closure, then the backward one within it."""
    search = StateSearch(props_here, walkable, start, start_dir, hp)
    while not bool(search.grow().all()):
        pass
    n = search.n_states
    reached = search.reach[:, :n] > 0
    state_cell = torch.arange(n, device=walkable.device) // (n // search.n_cells)
    back = reached & (state_cell.unsqueeze(0) == search.slot_of[start].unsqueeze(1))
    sink = torch.zeros(len(back), 1, dtype=torch.bool, device=back.device)
    while True:
        extended = torch.cat([back, sink], 1)
        comes_back = torch.zeros_like(back)
        for successor in search.successors:
            comes_back |= extended.gather(1, successor)
        grown = back | (reached & comes_back)
        if torch.equal(grown, back):
            break
        back = grown
    return ~(wanted & ~search.faced(back)).any(1)
