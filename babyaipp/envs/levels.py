"""The BabyAI++ task families: one class per task, a minigrid BabyAI level under the mixin.

``TASKS`` maps a task name to its class, the minigrid keyword defaults it is registered with, a
one-line description, and whether it is a pure navigation task (solved by the oracle's planner
alone). Every family also has a ``<Task>Dense`` alias: the same level on the dense floor
(``floor="dense"``, almost every free cell tiled), a subclass so that a captured ``Level`` names it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling
from minigrid.envs.babyai.core.verifier import GoToInstr, ObjDesc
from minigrid.envs.babyai.goto import GoTo, GoToLocal, GoToRedBall, GoToSeq
from minigrid.envs.babyai.pickup import PickupLoc
from minigrid.envs.babyai.putnext import PutNext, PutNextLocal
from minigrid.envs.babyai.unlock import Unlock

from babyaipp.envs.core import BabyAIPPMixin
from babyaipp.envs.level import TASK_NAME_ATTRIBUTE
from babyaipp.envs.tiles import reachable_targets


class GoToRedBallMazeLevel(GoTo):
    """ "go to the red ball" in a 3x3 maze of rooms with closed doors (BabyAI++'s
    GoTo_RedBallDynamics_Maze): the red ball is in a random room, distractors are never red balls."""

    def gen_mission(self) -> None:
        self.place_agent()
        self.connect_all()
        i, j = self._rand_int(0, self.num_cols), self._rand_int(0, self.num_rows)
        ball, _ = self.add_object(i, j, "ball", "red")
        dists = self.add_distractors(num_distractors=self.num_dists, all_unique=False)
        for obj in dists:  # keep the instruction unambiguous
            if obj.type == "ball" and obj.color == "red":
                obj.color = "purple"
        self.check_objs_reachable()
        self.instrs = GoToInstr(ObjDesc(ball.type, ball.color))


class UnlockLevel(Unlock):
    """minigrid's Unlock, minus its unsolvable levels.

    minigrid puts the key in any room but the locked one, and its reachability check walks through
    locked doors, so about 3.5% of its levels hide the key in a room entered only through the door
    that key opens. Those levels are rejected (and redrawn) here.
    """

    def gen_mission(self) -> None:
        super().gen_mission()
        locked = np.zeros((self.width, self.height), dtype=bool)
        colours = set()
        for x in range(self.width):
            for y in range(self.height):
                cell = self.grid.get(x, y)
                if cell is not None and cell.type == "door" and cell.is_locked:
                    locked[x, y] = True
                    colours.add(cell.color)
        start = (int(self.agent_pos[0]), int(self.agent_pos[1]))
        found = reachable_targets(self.grid, start, blocked=locked)
        if not any((c := self.grid.get(x, y)).type == "key" and c.color in colours for x, y in found):
            raise RejectSampling("the key is behind the door it unlocks")


class _RoomToPutNext:
    """minigrid's PutNext levels, minus those where no object the instruction names as the fixed
    one has an empty cell beside it: nothing can be put next to it without first moving other
    objects away, which neither the levels' own checks nor the oracle plan for (about 1 in 150
    PutNext-Hard levels, e.g. seed 87 of the Train split before this check). Redrawn here."""

    def gen_mission(self) -> None:
        super().gen_mission()
        fixed, _ = copy.copy(self.instrs.desc_fixed).find_matching_objs(self)
        for obj in fixed:
            x, y = (int(v) for v in obj.cur_pos)
            if any(self.grid.get(x + dx, y + dy) is None for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))):
                return
        raise RejectSampling("no empty cell next to the object to put things next to")


class PutNextLocalLevel(_RoomToPutNext, PutNextLocal):
    """minigrid's PutNextLocal with room next to the fixed object."""


class PutNextLevel(_RoomToPutNext, PutNext):
    """minigrid's PutNext with room next to the fixed object."""


class GoToRedBallPP(BabyAIPPMixin, GoToRedBall):
    """Go to the red ball in one room with distractors."""


class GoToRedBallMazePP(BabyAIPPMixin, GoToRedBallMazeLevel):
    """Go to the red ball in a 3x3 maze of rooms."""


class GoToLocalPP(BabyAIPPMixin, GoToLocal):
    """Go to an object in one room with distractors."""


class GoToObjMazePP(BabyAIPPMixin, GoTo):
    """Go to the only object in a 3x3 maze of rooms."""


class GoToPP(BabyAIPPMixin, GoTo):
    """Go to an object anywhere in a 3x3 maze with many distractors."""


class PutNextLocalPP(BabyAIPPMixin, PutNextLocalLevel):
    """Put an object next to another in one room."""


class PutNextPP(BabyAIPPMixin, PutNextLevel):
    """Put an object next to another one in the other of two rooms."""


class PickupLocPP(BabyAIPPMixin, PickupLoc):
    """Pick up an object described by colour, type and location."""


class UnlockPP(BabyAIPPMixin, UnlockLevel):
    """Open a locked door: fetch its key in another room first."""


class GoToSeqPP(BabyAIPPMixin, GoToSeq):
    """A sequence of go-to instructions in a 3x3 maze."""


@dataclass(frozen=True)
class Task:
    name: str
    cls: type
    defaults: dict[str, Any] = field(default_factory=dict)
    navigation: bool = True

    @property
    def summary(self) -> str:
        return (self.cls.__doc__ or "").strip().splitlines()[0]

    @property
    def floor(self) -> str:
        """The tile layout the task is registered with (``"sparse"`` or ``"dense"``)."""
        return self.defaults.get("floor", "sparse")


def _on_dense_floor(task: Task) -> Task:
    """The ``<Task>Dense`` alias of a family: a subclass (defined in this module) registered with ``floor="dense"``."""
    name = task.cls.__name__.removesuffix("PP") + "DensePP"
    doc = f"{task.summary.rstrip('.')}, on the dense floor (almost every free cell tiled)."
    cls = type(name, (task.cls,), {"__doc__": doc, "__module__": __name__, "__qualname__": name})
    globals()[name] = cls  # importable by name, so pickling (worker pools) finds it
    return Task(f"{task.name}Dense", cls, {**task.defaults, "floor": "dense"}, task.navigation)


_SPARSE_TASKS = (
    Task("GoToRedBall", GoToRedBallPP),
    Task("GoToRedBallMaze", GoToRedBallMazePP, {"num_dists": 8}),
    Task("GoToLocal", GoToLocalPP),
    Task("GoToObjMaze", GoToObjMazePP, {"num_dists": 1, "doors_open": False}),
    Task("GoTo", GoToPP),
    Task("PutNextLocal", PutNextLocalPP, navigation=False),
    Task("PutNext", PutNextPP, {"room_size": 7, "objs_per_room": 4}, navigation=False),
    Task("PickupLoc", PickupLocPP, navigation=False),
    Task("Unlock", UnlockPP, navigation=False),
    Task("GoToSeq", GoToSeqPP),
)
TASKS: dict[str, Task] = {t.name: t for t in (*_SPARSE_TASKS, *map(_on_dense_floor, _SPARSE_TASKS))}
for _task in TASKS.values():  # so a captured Level names its task (babyaipp.envs.level.task_name_of)
    setattr(_task.cls, TASK_NAME_ATTRIBUTE, _task.name)
del _task
