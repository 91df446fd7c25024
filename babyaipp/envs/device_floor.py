"""The sparse floor's placement rules and solvability checks as tensor code, for many levels at once.

These functions follow :func:`babyaipp.envs.tiles.place_tiles`, :func:`~babyaipp.envs.tiles.reachable_targets`
and the oracle's physics search (``faceable_cells``) on the batched engine's grid layout: every
level is one row of flattened, padded cells (cell ``(x, y)`` at ``(x + PAD) * hp + (y + PAD)``,
see :mod:`babyaipp.envs.batched_state`), so a neighbour is a fixed offset (``+-hp``, ``+-1``) and
the padding walls keep every offset in bounds. The draws come from a ``torch.Generator``; the
distribution of what they place is the single env's, not its random stream.
"""

from __future__ import annotations

import torch

from babyaipp.envs.batched_state import CODE_MASK, EMPTY_CODE, PAD, T_DOOR, T_WALL, TYPE_BITS
from babyaipp.envs.physics import FORWARD, LEFT, RIGHT, STICKY_STEPS, resolve_motion_tensors
from babyaipp.envs.properties import PROPERTY_BIT

#: Floor value of a plain cell in these tensors (the engine's ``NO_FLOOR``).
PLAIN = 7
#: How often (in loop iterations) the sequential loops ask the host whether every row is done.
_CHECK_EVERY = 8


def offsets4(hp: int) -> tuple[int, ...]:
    """Flat offsets of the 4-neighbours: east, south, west, north (``DIR_TO_VEC`` order)."""
    return (hp, 1, -hp, -1)


def offsets8(hp: int) -> tuple[int, ...]:
    """Flat offsets of the cell and its 8-neighbours (the 3x3 patch)."""
    return tuple(dx * hp + dy for dx in (-1, 0, 1) for dy in (-1, 0, 1))


def shifted_or(mask: torch.Tensor, offsets: tuple[int, ...]) -> torch.Tensor:
    """``out[i] = any(mask[i - o] for o in offsets)``: the cells at an offset from a marked cell."""
    out = torch.zeros_like(mask)
    for o in offsets:
        if o > 0:
            out[:, o:] |= mask[:, :-o]
        elif o < 0:
            out[:, :o] |= mask[:, -o:]
        else:
            out |= mask
    return out


def layout_masks(cells: torch.Tensor, agent_pos: torch.Tensor, hp: int) -> dict[str, torch.Tensor]:
    """What the placement rules need of a layout (floor bits ignored).

    ``free``: cells holding no object (the agent's start included, as ``free_cells`` counts it);
    ``candidate``: free cells a tile may cover, not on or 8-next to the start or a door;
    ``walkable``: free cells and doors (the solvability search walks through every door);
    ``target``: cells holding an object or a door (what the search may reach).
    """
    code = cells & CODE_MASK
    kind = code & TYPE_BITS
    free = code == EMPTY_CODE
    door = kind == T_DOOR
    start = torch.zeros_like(free)
    start[torch.arange(len(cells), device=cells.device), agent_pos] = True
    near = shifted_or(start | door, offsets8(hp))
    return {
        "free": free,
        "candidate": free & ~near,
        "walkable": free | door,
        "target": ~free & (kind != T_WALL),
    }


def flood_fill(walkable: torch.Tensor, start: torch.Tensor, hp: int) -> torch.Tensor:
    """Cells reachable from ``start`` through ``walkable`` cells (4-neighbourhood), per row."""
    reach = torch.zeros_like(walkable)
    reach[torch.arange(len(walkable), device=walkable.device), start] = True
    steps = 0
    while True:
        grown = (shifted_or(reach, offsets4(hp)) & walkable) | reach
        steps += 1
        if steps % _CHECK_EVERY == 0 and torch.equal(grown, reach):
            return grown
        reach = grown


def reachable_targets(
    masks: dict[str, torch.Tensor], start: torch.Tensor, hp: int, blocked: torch.Tensor | None = None
):
    """Objects and doors the agent can walk up to, never entering ``blocked`` cells (as ``tiles.reachable_targets``)."""
    walkable = masks["walkable"] if blocked is None else masks["walkable"] & ~blocked
    reach = flood_fill(walkable, start, hp)
    return shifted_or(reach, offsets4(hp)) & masks["target"]


def place_sparse(
    generator: torch.Generator,
    candidate: torch.Tensor,
    n_free: torch.Tensor,
    colours: tuple[int, ...],
    want_fraction: torch.Tensor,
    sparse: torch.Tensor,
    hp: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint every colour in turn, as ``place_tiles`` does: ``(floor, ok)``.

    ``colours``: the colour indices in mapping order; ``want_fraction`` (rows, colours): the
    coverage of each colour in that row; ``sparse`` (rows, colours): whether the colour has a
    trap, slippery or magic property. Each colour takes ``max(1, round(coverage * free))`` cells
    in a uniformly random order of the candidate cells, skipping tiled cells and, for a sparse
    colour, cells that would get two same-coloured 4-neighbours or touch a tile that already has
    one. For a colour without the sparse rule that is a uniform choice among the untiled
    candidates, made in one step; a sparse colour is scanned cell by cell (all rows at once).
    ``ok`` is False where some colour got no tile (``PlacementError`` in the single env).
    """
    # The work runs on the grid's own cells (the padding never holds a tile): sorts of W*H keys.
    inner = inner_cells(candidate.shape[1], hp, candidate.device)
    inner_floor, ok = _place_on_grid(
        generator, candidate[:, inner], n_free, colours, want_fraction, sparse, hp - 2 * PAD
    )
    floor = torch.full(candidate.shape, PLAIN, dtype=torch.long, device=candidate.device)
    floor[:, inner] = inner_floor
    return floor, ok


def inner_cells(width: int, hp: int, device: torch.device) -> torch.Tensor:
    """Flat padded indices of the grid's own cells, x-major (``k = x * H + y``)."""
    inner_w, inner_h = width // hp - 2 * PAD, hp - 2 * PAD
    x, y = torch.meshgrid(torch.arange(inner_w, device=device), torch.arange(inner_h, device=device), indexing="ij")
    return ((x + PAD) * hp + (y + PAD)).reshape(-1)


def _place_on_grid(
    generator: torch.Generator,
    candidate: torch.Tensor,
    n_free: torch.Tensor,
    colours: tuple[int, ...],
    want_fraction: torch.Tensor,
    sparse: torch.Tensor,
    height: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`place_sparse` on unpadded cells ``x * height + y``.

    Candidates never lie on the grid's outer wall, so their 4-neighbours are in range; the
    neighbours of the other cells a row visits once it is done are clamped (never used).
    """
    rows, width = candidate.shape
    device = candidate.device
    floor = torch.full((rows, width), PLAIN, dtype=torch.long, device=device)
    ok = torch.ones(rows, dtype=torch.bool, device=device)
    n_cand = candidate.sum(1)
    arange = torch.arange(rows, device=device)
    nb_offsets = torch.tensor(offsets4(height), device=device)
    for c, colour in enumerate(colours):
        want = torch.clamp((want_fraction[:, c] * n_free.double()).round().long(), min=1)
        keys = torch.rand(rows, width, generator=generator, device=device, dtype=torch.float64)
        placed = torch.zeros(rows, dtype=torch.long, device=device)
        # Colours without the sparse rule: the `want` untiled candidates with the smallest keys.
        free_now = candidate & (floor == PLAIN)
        rank = torch.where(free_now, keys, 2.0).argsort(1).argsort(1)
        take = free_now & (rank < want.unsqueeze(1)) & ~sparse[:, c].unsqueeze(1)
        floor = torch.where(take, colour, floor)
        placed += take.sum(1)
        # Sparse colours: the candidate cells in key order, one position per iteration.
        scan = sparse[:, c]
        if bool(scan.any()):
            order = torch.where(candidate, keys, 2.0).argsort(1)
            same = torch.zeros(rows, width, dtype=torch.long, device=device)  # same-coloured 4-neighbours
            last = int(n_cand[scan].max())
            for k in range(last):
                active = scan & (k < n_cand) & (placed < want)
                if k % _CHECK_EVERY == 0 and not bool(active.any()):
                    break
                cell = order[:, k]
                nbs = (cell.unsqueeze(1) + nb_offsets).clamp(0, width - 1)
                nb_same = floor.gather(1, nbs) == colour
                crowded = (nb_same.sum(1) > 1) | (nb_same & (same.gather(1, nbs) >= 1)).any(1)
                put = active & (floor[arange, cell] == PLAIN) & ~crowded
                floor[arange, cell] = torch.where(put, colour, floor[arange, cell])
                same.scatter_add_(1, nbs, put.long().unsqueeze(1).expand(-1, 4))
                placed += put.long()
        ok &= placed > 0
    return floor, ok


# ----------------------------------------------------------------------------- physics search
_SIC = STICKY_STEPS + 1  # steps_in_cell values the search tells apart (0, 1, 2 = "enough")


def faceable(
    props_here: torch.Tensor,
    walkable: torch.Tensor,
    start: torch.Tensor,
    start_dir: torch.Tensor,
    hp: int,
) -> torch.Tensor:
    """Cells the agent can come to face from its start with the full tile physics (``faceable_cells``).

    A breadth-first closure over states (cell, direction, steps in cell, magic parity), with the
    counters normalised as the oracle's ``normalise_state`` does, under the actions forward, left
    and right and the engine's motion rules (:func:`babyaipp.envs.physics.resolve_motion_tensors`;
    doors passable, traps never entered). ``props_here`` (rows, cells): the property bits of the
    tile on each cell.
    """
    search = StateSearch(props_here, walkable, start, start_dir, hp)
    while not bool(search.grow().all()):
        pass
    return search.faced()


def faces_all(
    props_here: torch.Tensor,
    walkable: torch.Tensor,
    start: torch.Tensor,
    start_dir: torch.Tensor,
    wanted: torch.Tensor,
    hp: int,
) -> torch.Tensor:
    """Whether the agent can come to face every ``wanted`` cell (per row): :func:`faceable`, stopped
    for each row as soon as it faces them all (the search usually gets there long before it has
    explored every state), so the rows that remain are compacted and the loop ends early."""
    result = torch.zeros(len(walkable), dtype=torch.bool, device=walkable.device)
    search = StateSearch(props_here, walkable, start, start_dir, hp)
    active = torch.arange(len(walkable), device=walkable.device)
    while active.numel():
        converged = search.grow()
        ok = ~(wanted & ~search.faced()).any(1)
        result[active[ok]] = True
        keep = ~ok & ~converged
        active, wanted = active[keep], wanted[keep]
        search.keep(keep)
    return result


class StateSearch:
    """The state graph of :func:`faceable` for many levels, grown :data:`_CHECK_EVERY` steps at a time.

    State ``((cell slot * 4 + direction) * 3 + steps in cell) * 2 + magic parity``, the slot of a
    padded cell being ``slot_of[cell]``; ``successors`` holds each state's successor under left,
    right and forward (``n_states``: trapped).
    """

    def __init__(
        self, props_here: torch.Tensor, walkable: torch.Tensor, start: torch.Tensor, start_dir: torch.Tensor, hp: int
    ):
        rows, width = walkable.shape
        device = walkable.device
        self.hp, self.width = hp, width
        # States live on the grid's own cells (the padding is wall): `inner[k]` is the flat cell of state cell k.
        self.inner = inner = inner_cells(width, hp, device)
        self.n_cells = n_cells = len(inner)
        self.slot_of = slot_of = torch.zeros(width, dtype=torch.long, device=device)
        slot_of[inner] = torch.arange(n_cells, device=device)
        self.n_states = n_states = n_cells * 4 * _SIC * 2
        shape = (n_cells, 4, _SIC, 2)
        cell = inner.view(n_cells, 1, 1, 1)
        d = torch.arange(4, device=device).view(1, 4, 1, 1)
        sic = torch.arange(_SIC, device=device).view(1, 1, _SIC, 1)
        mc = torch.arange(2, device=device).view(1, 1, 1, 2)
        cell, d, sic, mc = (t.expand(shape).reshape(1, -1).expand(rows, -1) for t in (cell, d, sic, mc))
        delta = torch.tensor(offsets4(hp), device=device)

        def props_at(at: torch.Tensor) -> torch.Tensor:
            return props_here.gather(1, at)

        def can_enter(at: torch.Tensor) -> torch.Tensor:
            return walkable.gather(1, at)

        self.successors = []
        for action in (LEFT, RIGHT, FORWARD):
            m = resolve_motion_tensors(cell, d, torch.full_like(cell, action), sic, mc, props_at, can_enter, delta, 1)
            there = props_at(m.pos)
            sticky, magic = (there & PROPERTY_BIT["sticky"]) > 0, (there & PROPERTY_BIT["magic"]) > 0
            new_sic = torch.where(sticky, m.steps_in_cell.clamp(max=STICKY_STEPS), STICKY_STEPS)
            new_mc = torch.where(magic, m.magic_count % 2, 0)
            index = ((slot_of[m.pos] * 4 + m.dir) * _SIC + new_sic) * 2 + new_mc
            self.successors.append(torch.where(m.entered_trap, n_states, index))  # n_states: a sink never read

        start_props = props_here.gather(1, start.unsqueeze(1)).squeeze(1)
        start_sic = torch.where((start_props & PROPERTY_BIT["sticky"]) > 0, 0, STICKY_STEPS)
        self.reach = torch.zeros(rows, n_states + 1, dtype=torch.int8, device=device)
        self.reach[torch.arange(rows, device=device), ((slot_of[start] * 4 + start_dir) * _SIC + start_sic) * 2] = 1

    def grow(self) -> torch.Tensor:
        """:data:`_CHECK_EVERY` breadth-first steps; per row, whether nothing new was reached."""
        before = self.reach
        reach = before
        for _ in range(_CHECK_EVERY):
            grown = reach.clone()
            for successor in self.successors:  # at most 12 predecessors per state: no int8 overflow
                grown.scatter_add_(1, successor, reach[:, : self.n_states])
            grown = grown.clamp(max=1)
            grown[:, self.n_states] = 0
            reach = grown
        self.reach = reach
        return (reach == before).all(1)

    def keep(self, rows: torch.Tensor) -> None:
        """Drop the rows not in the boolean mask ``rows``."""
        self.reach = self.reach[rows]
        self.successors = [s[rows] for s in self.successors]

    def faced(self, states: torch.Tensor | None = None) -> torch.Tensor:
        """(rows, cells): the cells some reached state (or some state of ``states``) faces."""
        rows = len(self.reach)
        states = self.reach[:, : self.n_states] > 0 if states is None else states
        reached = states.view(rows, self.n_cells, 4, _SIC * 2).any(3)
        faced = torch.zeros(rows, self.width, dtype=torch.bool, device=self.reach.device)
        for direction, o in enumerate(offsets4(self.hp)):
            faced[:, self.inner + o] |= reached[:, :, direction]
        return faced
