"""The floor properties: one declaration each, from which every other table is derived.

A property's name, its word in descriptions, its coverage on the sparse floor, its placement rule
and its bit in the batched engine's property masks are declared once, here, in the order the
properties take effect when a colour has several. The dynamics (:mod:`babyaipp.envs.dynamics`),
the text vocabulary (:mod:`babyaipp.envs.text`), tile placement (:mod:`babyaipp.envs.tiles`) and
the batched engine read these declarations; what a property *does* is written once per engine in
:mod:`babyaipp.envs.physics` (see docs/extending.md).

This module imports only the package's error helpers, so any layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from babyaipp.errors import check_choice


@dataclass(frozen=True)
class TileProperty:
    """One floor property: everything about it except its rule of motion (that is in ``physics``)."""

    name: str  # the name in mappings, levels, ``info["dynamics"]`` and the rule code
    words: str  # how a description says it: "<colour> floors are <words>."
    coverage: float  # fraction of the free floor a colour with it covers on the sparse floor
    sparse: bool  # its tiles keep at most one same-coloured 4-neighbour (no large blobs)


#: Every property, in the order their effects apply on a tile that has several (and in which a
#: description names them). A property's position is also its bit in the batched engine's masks,
#: which live only in memory, so a new property may go wherever its effect belongs.
TILE_PROPERTIES: tuple[TileProperty, ...] = (
    TileProperty("trap", "traps", 0.05, True),  # entering the tile ends the episode with reward 0
    TileProperty("slippery", "slippery", 0.15, True),  # a step taken from the tile costs half a step
    TileProperty("sticky", "sticky", 0.30, False),  # forward does nothing until 2 steps were spent in the cell
    TileProperty("fliplr", "mirrored", 0.30, False),  # left and right are swapped
    TileProperty("flipud", "reversed", 0.30, False),  # forward turns the agent around, then moves it
    TileProperty("magic", "magic", 0.15, True),  # every second step spent on the cell pushes the agent down
)

#: The properties by name.
BY_NAME: dict[str, TileProperty] = {p.name: p for p in TILE_PROPERTIES}

#: Bit of each property in a colour's property mask (the batched engine's ``props`` words).
PROPERTY_BIT: dict[str, int] = {p.name: 1 << i for i, p in enumerate(TILE_PROPERTIES)}


def property_mask(names: tuple[str, ...] | frozenset[str]) -> int:
    """The bitmask of a colour with these properties (a one-line error names an unknown one)."""
    return sum(PROPERTY_BIT[check_choice("floor property", name, PROPERTY_BIT)] for name in set(names))


def names_of_mask(mask: int) -> tuple[str, ...]:
    """The properties of a bitmask, in the order of effect."""
    return tuple(p.name for i, p in enumerate(TILE_PROPERTIES) if mask >> i & 1)
