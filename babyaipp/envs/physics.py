"""The tile physics: how one action moves the agent given the property of the tile it stands on.

Every property's rule of motion lives here, written once per engine: :func:`resolve_motion` for
one episode (the single env, and the oracle, so the planner predicts exactly what the environment
does) and :func:`resolve_motion_tensors` for N episodes as tensors (the batched engine). The two
apply the rules in the same order, the order of :data:`babyaipp.envs.properties.TILE_PROPERTIES`,
where the properties are declared. Rules (see docs/environments.md):

* Properties act through the tile the agent stands on when it acts, applied in the order
  trap, slippery, sticky, fliplr, flipud, magic; ``trap`` acts on entry instead.
* ``slippery``: the step costs half a step of the episode's step counter.
* ``sticky``: while the agent has spent fewer than 2 steps in the cell, ``forward`` is a no-op and
  nothing (not even ``magic``) moves it out.
* ``fliplr``: ``left`` and ``right`` are swapped.
* ``flipud``: ``forward`` turns the agent around, then moves it one cell if it can enter.
* ``magic``: on every second consecutive step the agent acts on the same magic cell (and is still
  there after its own action), it is pushed one cell down (+y) if it can enter that cell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from babyaipp.envs.properties import PROPERTY_BIT

if TYPE_CHECKING:
    import torch

LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)
ACTION_NAMES: tuple[str, ...] = ("left", "right", "forward", "pickup", "drop", "toggle", "done")
DIR_TO_VEC: tuple[tuple[int, int], ...] = ((1, 0), (0, 1), (-1, 0), (0, -1))
STICKY_STEPS = 2


class Motion(NamedTuple):
    pos: tuple[int, int]
    dir: int
    steps_in_cell: int
    magic_count: int
    action: int  # the action after fliplr swapped it (what the agent actually did)
    half_step: bool  # the step was taken from a slippery tile
    entered_trap: bool


def resolve_motion(
    pos: tuple[int, int],
    direction: int,
    action: int,
    steps_in_cell: int,
    magic_count: int,
    props_at: Callable[[int, int], frozenset[str] | tuple[str, ...]],
    can_enter: Callable[[int, int], bool],
) -> Motion:
    """Apply one action's movement part (turns, forward, and the tile effects)."""
    here = props_at(*pos)
    if "fliplr" in here and action in (LEFT, RIGHT):
        action = RIGHT if action == LEFT else LEFT
    stuck = "sticky" in here and steps_in_cell < STICKY_STEPS
    new_pos, new_dir = pos, direction
    if action == LEFT:
        new_dir = (direction - 1) % 4
    elif action == RIGHT:
        new_dir = (direction + 1) % 4
    elif action == FORWARD and not stuck:
        if "flipud" in here:
            new_dir = (direction + 2) % 4
        dx, dy = DIR_TO_VEC[new_dir]
        target = (pos[0] + dx, pos[1] + dy)
        if can_enter(*target):
            new_pos = target
    on_magic = "magic" in here
    magic_count = magic_count + 1 if on_magic else 0
    if on_magic and not stuck and new_pos == pos and magic_count % 2 == 0:
        below = (pos[0], pos[1] + 1)
        if can_enter(*below):
            new_pos = below
    moved = new_pos != pos
    if moved:
        steps_in_cell, magic_count = 0, 0
    else:
        steps_in_cell += 1
    entered_trap = moved and "trap" in props_at(*new_pos)
    return Motion(new_pos, new_dir, steps_in_cell, magic_count, action, "slippery" in here, entered_trap)


class TensorMotion(NamedTuple):
    """:class:`Motion` for N episodes: one tensor of shape ``(N,)`` per field (positions are flat cells)."""

    pos: Any
    dir: Any
    steps_in_cell: Any
    magic_count: Any
    action: Any
    half_step: Any
    entered_trap: Any


def resolve_motion_tensors(
    pos: torch.Tensor,
    direction: torch.Tensor,
    action: torch.Tensor,
    steps_in_cell: torch.Tensor,
    magic_count: torch.Tensor,
    props_at: Callable[[torch.Tensor], torch.Tensor],
    can_enter: Callable[[torch.Tensor], torch.Tensor],
    dir_delta: torch.Tensor,
    down: int,
) -> TensorMotion:
    """:func:`resolve_motion` for N episodes with tensor operations only (no per-episode Python).

    ``pos`` are flat cell indices, ``props_at`` gives the property bitmask (bits of
    :data:`~babyaipp.envs.properties.PROPERTY_BIT`) of flat cells, ``can_enter`` whether they can
    be entered, ``dir_delta[d]`` the flat offset of one step in direction ``d`` and ``down`` the
    flat offset of one cell +y.
    """
    import torch  # imported here so that the single env and the oracle never load torch

    here = props_at(pos)

    def has(mask: torch.Tensor, name: str) -> torch.Tensor:
        return (mask & PROPERTY_BIT[name]) > 0

    fliplr = has(here, "fliplr")
    turn = torch.where(fliplr & (action == LEFT), RIGHT, torch.where(fliplr & (action == RIGHT), LEFT, action))
    stuck = has(here, "sticky") & (steps_in_cell < STICKY_STEPS)
    forward = (turn == FORWARD) & ~stuck
    flipud = forward & has(here, "flipud")
    new_dir = (direction + (turn == RIGHT).long() - (turn == LEFT).long() + 2 * flipud.long()) % 4
    target = pos + dir_delta[new_dir]
    new_pos = torch.where(forward & can_enter(target), target, pos)
    on_magic = has(here, "magic")
    magic_count = torch.where(on_magic, magic_count + 1, 0)
    below = pos + down
    push = on_magic & ~stuck & (new_pos == pos) & (magic_count % 2 == 0) & can_enter(below)
    new_pos = torch.where(push, below, new_pos)
    moved = new_pos != pos
    steps_in_cell = torch.where(moved, 0, steps_in_cell + 1)
    magic_count = torch.where(moved, 0, magic_count)
    entered_trap = moved & has(props_at(new_pos), "trap")
    return TensorMotion(new_pos, new_dir, steps_in_cell, magic_count, turn, has(here, "slippery"), entered_trap)


def search_counters(props: frozenset[str] | tuple[str, ...], steps_in_cell: int, magic_count: int) -> tuple[int, int]:
    """The counters as far as the rules of a tile with ``props`` can tell them apart.

    ``sticky`` reads the steps spent in the cell up to :data:`STICKY_STEPS`, ``magic`` the parity
    of the steps spent on it; elsewhere neither matters. Planners search over these values.
    """
    sic = min(steps_in_cell, STICKY_STEPS) if "sticky" in props else STICKY_STEPS
    mc = magic_count % 2 if "magic" in props else 0
    return sic, mc


def search_counters_tensors(
    mask: torch.Tensor, steps_in_cell: torch.Tensor, magic_count: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`search_counters` for tensors: ``mask`` the property bits of the tile under each state."""
    import torch  # imported here so that the single env and the oracle never load torch

    sticky, magic = (mask & PROPERTY_BIT["sticky"]) > 0, (mask & PROPERTY_BIT["magic"]) > 0
    sic = torch.where(sticky, steps_in_cell.clamp(max=STICKY_STEPS), STICKY_STEPS)
    return sic, torch.where(magic, magic_count % 2, 0)
