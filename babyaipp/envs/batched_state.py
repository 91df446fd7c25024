"""State layout of the batched engine: one int32 word per cell, lookup tables, and level encoding.

Every cell of every episode is one int32 word, so moving, picking up, dropping and looking are
gathers and scatters on a ``(N, L)`` tensor:

* bits 0-3 object type, 4-6 colour, 7-8 state (minigrid's encoding; ``EMPTY_CODE`` for no object),
* bits 9-11 floor tile colour (``NO_FLOOR`` = 7 for plain floor),
* bits 12-19 object identity (0 = none; walls have none), which the instruction verifier tracks.

Grids are padded by ``PAD`` wall cells on every side, so the 7x7 view never leaves the tensor, and
flattened x-major: cell ``(x, y)`` is ``(x + PAD) * Hp + (y + PAD)``. Levels are encoded once, when
they enter the pool, by :func:`encode_env` from a single env that holds them (generated or
replayed), so the verifier's object sets come from minigrid's own ``find_matching_objs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.core.world_object import Wall
from minigrid.envs.babyai.core.verifier import Instr

from babyaipp.envs.instructions import descriptions, node_kind, verification_groups
from babyaipp.envs.properties import property_mask
from babyaipp.envs.text import tokenize, tokenize_description
from babyaipp.envs.wrappers import MAX_SENTENCES, MISSION_LENGTH, SENTENCE_LENGTH
from babyaipp.errors import ConfigError

VIEW = 7
PAD = VIEW - 1
TYPE_BITS, COLOUR_SHIFT, STATE_SHIFT, FLOOR_SHIFT, ID_SHIFT = 15, 4, 7, 9, 12
CODE_MASK = (1 << FLOOR_SHIFT) - 1  # type, colour, state
FLOOR_FIELD = 7 << FLOOR_SHIFT
NO_FLOOR = 7
ID_MASK = 0xFF
MAX_OBJECTS = ID_MASK  # ids 1..255

T_EMPTY, T_WALL, T_FLOOR, T_DOOR = (OBJECT_TO_IDX[n] for n in ("empty", "wall", "floor", "door"))
T_KEY, T_BALL, T_BOX = (OBJECT_TO_IDX[n] for n in ("key", "ball", "box"))
EMPTY_CODE = T_EMPTY
WALL_WORD = T_WALL | (COLOR_TO_IDX["grey"] << COLOUR_SHIFT) | FLOOR_FIELD
DOOR_OPEN, DOOR_CLOSED, DOOR_LOCKED = 0, 1, 2

#: Instruction leaf kinds in the slot tensor (0 = no leaf in this slot).
K_NONE, K_GOTO, K_PICKUP, K_OPEN, K_PUTNEXT = range(5)
SLOT_KINDS: dict[str, int] = {"goto": K_GOTO, "pickup": K_PICKUP, "open": K_OPEN, "putnext": K_PUTNEXT}
SLOTS = 4  # two groups of up to two leaves: (first group) then (second group), see batched_instr


def code_of(type_idx: int, colour: int, state: int) -> int:
    return type_idx | (colour << COLOUR_SHIFT) | (state << STATE_SHIFT)


def _code_fields(code: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return code & TYPE_BITS, (code >> COLOUR_SHIFT) & 7, (code >> STATE_SHIFT) & 3


def build_tables() -> dict[str, np.ndarray]:
    """Per-code lookup tables (index = the word's low bits) used by step and observation."""
    code = np.arange(1 << FLOOR_SHIFT)
    kind, _, state = _code_fields(code)
    see_behind = ~((kind == T_WALL) | ((kind == T_DOOR) & (state != DOOR_OPEN)))
    can_enter = np.isin(kind, [T_EMPTY, T_FLOOR, OBJECT_TO_IDX["goal"], OBJECT_TO_IDX["lava"]])
    can_enter |= (kind == T_DOOR) & (state == DOOR_OPEN)
    pickable = np.isin(kind, [T_KEY, T_BALL, T_BOX])
    # Observation decode: index = code | floor << 9 | visible << 12 -> (type, colour, state).
    full = np.arange(1 << (ID_SHIFT + 1))
    c, floor, visible = full & CODE_MASK, (full >> FLOOR_SHIFT) & 7, full >> ID_SHIFT
    t, col, st = _code_fields(c)
    show_floor = (t == T_EMPTY) & (floor != NO_FLOOR)
    decode = np.stack(
        [np.where(show_floor, T_FLOOR, t), np.where(show_floor, floor, col), np.where(show_floor, 0, st)], -1
    )
    decode[visible == 0] = 0
    return {
        "see_behind": see_behind,
        "can_enter": can_enter,
        "pickable": pickable,
        "decode": decode.astype(np.uint8),
    }


# ----------------------------------------------------------------------------- level encoding
@dataclass
class Geometry:
    """Grid size of one env id (all levels of a batch share it)."""

    width: int
    height: int

    @property
    def padded_height(self) -> int:
        return self.height + 2 * PAD

    @property
    def cells(self) -> int:
        return (self.width + 2 * PAD) * self.padded_height

    def flat(self, x: int, y: int) -> int:
        return (x + PAD) * self.padded_height + (y + PAD)


def flatten_instr(instr: Instr) -> tuple[list[Instr | None], bool]:
    """The instruction's leaves in slot order and whether a second group exists.

    Slots 0-1 hold the group verified first (a leaf, or an ``And``'s two leaves), slots 2-3 the
    group verified once the first is done (see :func:`~babyaipp.envs.instructions.verification_groups`).
    """
    groups = verification_groups(instr)
    slots: list[Instr | None] = []
    for group in groups:
        slots += [*group, None][:2]
    return slots + [None] * (SLOTS - len(slots)), len(groups) == 2


def encode_env(env: Any, geometry: Geometry) -> dict[str, np.ndarray]:
    """One freshly reset single env's start state as the batched engine's per-episode arrays."""
    base = env.unwrapped
    if base.step_count != 0:
        raise ConfigError("encode_env needs a freshly reset env")
    if (base.width, base.height) != (geometry.width, geometry.height):
        raise ConfigError(
            f"level of size {(base.width, base.height)} in a batch of size {(geometry.width, geometry.height)}"
        )
    hp = geometry.padded_height
    cells = np.full((geometry.width + 2 * PAD, hp), WALL_WORD, dtype=np.int32)
    floor = np.where(base.floor < 0, NO_FLOOR, base.floor).astype(np.int32)
    ids: dict[int, int] = {}
    obj_pos = [-1]
    for x in range(base.width):
        for y in range(base.height):
            cell = base.grid.get(x, y)
            word = floor[x, y] << FLOOR_SHIFT
            if cell is None:
                word |= EMPTY_CODE
            else:
                word |= code_of(*cell.encode())
                if not isinstance(cell, Wall):
                    ids[id(cell)] = len(obj_pos)
                    word |= len(obj_pos) << ID_SHIFT
                    obj_pos.append(geometry.flat(x, y))
            cells[x + PAD, y + PAD] = word
    carried = EMPTY_CODE
    if base.carrying is not None:
        ids[id(base.carrying)] = len(obj_pos)
        carried = code_of(*base.carrying.encode()) | (len(obj_pos) << ID_SHIFT)
        obj_pos.append(-1)
    if len(obj_pos) > MAX_OBJECTS:
        raise ConfigError(f"{len(obj_pos) - 1} objects in a level; the batched engine holds at most {MAX_OBJECTS - 1}")

    props = np.zeros(8, dtype=np.int32)  # a colour's properties as a bitmask (bits of properties.PROPERTY_BIT)
    for colour, names in base.dynamics.items():
        props[COLOR_TO_IDX[colour]] = property_mask(names)

    leaves, has_second = flatten_instr(base.instrs)
    kind = np.zeros(SLOTS, dtype=np.int32)
    track_a = np.zeros((SLOTS, MAX_OBJECTS + 1), dtype=bool)
    track_b = np.zeros((SLOTS, MAX_OBJECTS + 1), dtype=bool)
    for slot, leaf in enumerate(leaves):
        if leaf is None:
            continue
        if getattr(leaf, "strict", False):
            raise ConfigError("strict instructions are not supported by the batched engine")
        kind[slot] = SLOT_KINDS[node_kind(leaf)]
        for table, desc in zip((track_a, track_b), descriptions(leaf)):  # put-next: (moved, fixed)
            for obj in desc.obj_set:
                table[slot, ids[id(obj)]] = True
    ax, ay = (int(v) for v in base.agent_pos)
    return {
        "cells": cells.reshape(-1),
        "agent_pos": np.int64(geometry.flat(ax, ay)),
        "agent_dir": np.int64(base.agent_dir),
        "carried": np.int32(carried),
        "props": props,
        "max_steps": np.int64(base.max_steps),
        "obj_pos": np.asarray(obj_pos, dtype=np.int64),
        "kind": kind,
        "track_a": track_a,
        "track_b": track_b,
        "has_second": np.bool_(has_second),
        "held_out": np.int64(len(base.held_out_pairs)),  # held-out (colour, property) pairs on the floor
        "level_seed": np.int64(-1),  # the pool's generator records the seed it reset with
        "mission": tokenize(base.mission, MISSION_LENGTH),
        "description": tokenize_description(base.description, MAX_SENTENCES, SENTENCE_LENGTH),
    }


def stack_encoded(levels: list[dict[str, np.ndarray]], num_objects: int) -> dict[str, np.ndarray]:
    """Stack per-level arrays, cutting the object axis to ``num_objects`` ids (id 0 included)."""
    out: dict[str, np.ndarray] = {}
    for key in levels[0]:
        if key == "obj_pos":
            arr = np.full((len(levels), num_objects), -1, dtype=np.int64)
            for i, lv in enumerate(levels):
                n = min(len(lv[key]), num_objects)
                if len(lv[key]) > num_objects:
                    raise ConfigError(f"level with {len(lv[key]) - 1} objects in a pool sized for {num_objects - 1}")
                arr[i, :n] = lv[key][:n]
            out[key] = arr
        elif key in ("track_a", "track_b"):
            out[key] = np.stack([lv[key][:, :num_objects] for lv in levels])
        else:
            out[key] = np.stack([np.asarray(lv[key]) for lv in levels])
    return out
