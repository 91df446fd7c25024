"""``Level``: one episode's start state, the description both engines (single and batched) accept.

A level is everything a freshly reset BabyAI++ env holds that the step function reads: the grid
as minigrid's ``(W, H, 3)`` encoding (door states included), the floor layer, the colour ->
property mapping, the instruction tree, the mission and description strings, the agent's pose,
what it carries and the step budget. ``Level.from_env(env)`` captures one; the single env replays
it with ``env.reset(options={"level": level})``, and the batched engine loads it as tensors, so an
episode of either engine can be replayed exactly in the other. Levels round-trip through JSON
(:meth:`Level.to_json` / :meth:`Level.from_json`) so they can be stored and shared.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from minigrid.core.world_object import Box
from minigrid.envs.babyai.core.verifier import GoToInstr, Instr, ObjDesc, OpenInstr, PickupInstr, PutNextInstr

from babyaipp.envs.instructions import LEAF_KINDS, SEQ_CLASSES, SEQ_KINDS, descriptions, node_kind
from babyaipp.envs.properties import BY_NAME
from babyaipp.errors import ConfigError, check_choice

#: The keys of a leaf's object descriptions in the serialised tree, per leaf kind.
_DESC_KEYS: dict[str, tuple[str, ...]] = {
    "goto": ("desc",),
    "pickup": ("desc",),
    "open": ("desc",),
    "putnext": ("move", "fixed"),
}

InstrTree = dict[str, Any]


def desc_to_dict(desc: ObjDesc) -> dict[str, str | None]:
    return {"type": desc.type, "color": desc.color, "loc": desc.loc}


def desc_from_dict(data: dict[str, str | None]) -> ObjDesc:
    return ObjDesc(data["type"], data.get("color"), data.get("loc"))


def instr_to_dict(instr: Instr) -> InstrTree:
    """Serialise a BabyAI instruction tree (object descriptions only, no env references)."""
    kind = node_kind(instr)
    if kind in SEQ_KINDS:
        first, second = instr.instr_a, instr.instr_b  # type: ignore[attr-defined]
        return {"kind": kind, "a": instr_to_dict(first), "b": instr_to_dict(second)}
    data: InstrTree = {"kind": kind}
    data.update(zip(_DESC_KEYS[kind], (desc_to_dict(d) for d in descriptions(instr))))
    if kind != "goto":
        data["strict"] = bool(instr.strict)  # type: ignore[attr-defined]
    return data


def instr_from_dict(data: InstrTree) -> Instr:
    """Rebuild fresh BabyAI instruction objects from :func:`instr_to_dict`'s output."""
    kind = data["kind"]
    strict = bool(data.get("strict", False))
    if kind == "goto":
        return GoToInstr(desc_from_dict(data["desc"]))
    if kind == "pickup":
        return PickupInstr(desc_from_dict(data["desc"]), strict=strict)
    if kind == "open":
        return OpenInstr(desc_from_dict(data["desc"]), strict=strict)
    if kind == "putnext":
        return PutNextInstr(desc_from_dict(data["move"]), desc_from_dict(data["fixed"]), strict=strict)
    if kind in SEQ_CLASSES:
        return SEQ_CLASSES[kind](instr_from_dict(data["a"]), instr_from_dict(data["b"]))
    raise ConfigError(f"unknown instruction kind {kind!r}; valid kinds: {', '.join(LEAF_KINDS + SEQ_KINDS)}")


#: Class attribute naming a registered task, set on each task class where the tasks are declared
#: (:mod:`babyaipp.envs.levels`); read from the class itself, as a subclass is another task.
TASK_NAME_ATTRIBUTE = "task_name"


def task_name_of(env: Any) -> str:
    """The registered task whose class ``env`` is exactly (``""`` for an unregistered class)."""
    return vars(type(env)).get(TASK_NAME_ATTRIBUTE, "")


@dataclass
class Level:
    """One episode's start state; see the module docstring. Arrays are indexed ``[x, y]``."""

    task: str
    difficulty: str
    split: str
    text_mode: str
    grid: np.ndarray  # (W, H, 3) uint8, minigrid's encoding (type, colour, state)
    floor: np.ndarray  # (W, H) int8, colour index of the tile or -1 (NO_TILE)
    dynamics: dict[str, tuple[str, ...]]
    instrs: InstrTree
    mission: str
    description: str
    agent_pos: tuple[int, int]
    agent_dir: int
    carrying: tuple[int, int, int] | None = None
    max_steps: int = 0
    step_count: int = 0
    room_size: int = 0
    num_rows: int = 1
    num_cols: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.grid.shape[0])

    @property
    def height(self) -> int:
        return int(self.grid.shape[1])

    @classmethod
    def from_env(cls, env: Any) -> Level:
        """Capture a freshly reset BabyAI++ env (wrapped or not).

        Only a start state is captured: the verifier's progress (done sub-instructions, object
        positions refreshed by ``drop``) is not, so the env must not have stepped yet.
        """
        base = env.unwrapped
        if base.step_count != 0:
            raise ConfigError(f"Level.from_env needs a freshly reset env; this one has stepped {base.step_count} times")
        for cell in base.grid.grid:
            if isinstance(cell, Box) and cell.contains is not None:
                raise ConfigError("boxes with contents cannot be captured (the grid encoding drops them)")
        carrying = None if base.carrying is None else tuple(int(v) for v in base.carrying.encode())
        return cls(
            task=task_name_of(base),
            difficulty=base.difficulty,
            split=base.split,
            text_mode=base.text_mode,
            grid=base.grid.encode(),
            floor=np.asarray(base.floor, dtype=np.int8).copy(),
            dynamics={c: tuple(p) for c, p in base.dynamics.items()},
            instrs=instr_to_dict(base.instrs),
            mission=str(base.mission),
            description=str(base.description),
            agent_pos=(int(base.agent_pos[0]), int(base.agent_pos[1])),
            agent_dir=int(base.agent_dir),
            carrying=carrying,  # type: ignore[arg-type]
            max_steps=int(base.max_steps),
            step_count=0,
            room_size=int(base.room_size),
            num_rows=int(base.num_rows),
            num_cols=int(base.num_cols),
        )

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grid"] = self.grid.astype(int).tolist()
        data["floor"] = self.floor.astype(int).tolist()
        data["dynamics"] = {c: list(p) for c, p in self.dynamics.items()}
        data["agent_pos"] = list(self.agent_pos)
        data["carrying"] = None if self.carrying is None else list(self.carrying)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Level:
        data = dict(data)
        data["grid"] = np.asarray(data["grid"], dtype=np.uint8)
        data["floor"] = np.asarray(data["floor"], dtype=np.int8)
        data["dynamics"] = {c: tuple(p) for c, p in data["dynamics"].items()}
        for names in data["dynamics"].values():  # a level may come from a file: name a bad property here
            for name in names:
                check_choice("floor property", name, BY_NAME)
        data["agent_pos"] = tuple(int(v) for v in data["agent_pos"])
        data["carrying"] = None if data.get("carrying") is None else tuple(int(v) for v in data["carrying"])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Level:
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Level):
            return NotImplemented
        return self.to_dict() == other.to_dict()
