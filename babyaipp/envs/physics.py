"""The tile physics: how one action moves the agent given the property of the tile it stands on.

One pure function, :func:`resolve_motion`, is shared by the environment and the oracle so the
planner predicts exactly what the environment does. Rules (see docs/environments.md):

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
from typing import NamedTuple

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
