"""Floor properties, difficulties, held-out pairs and splits: which colour gets which dynamics.

The colour -> property mapping is drawn anew at every reset from the env's own ``np_random``.
Colours never share a property within an episode (Easy: one property per colour; Hard: two
distinct properties per colour by default, or one with ``properties_per_colour=1`` as in the
2020 reference code).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import cache

import numpy as np

from babyaipp.envs.properties import TILE_PROPERTIES
from babyaipp.errors import check_choice

#: The property names, in the order their effects are applied when a colour has several
#: (a view of :data:`babyaipp.envs.properties.TILE_PROPERTIES`, where properties are declared).
PROPERTIES: tuple[str, ...] = tuple(p.name for p in TILE_PROPERTIES)

DIFFICULTIES: tuple[str, ...] = ("Easy", "Hard")
SPLITS: tuple[str, ...] = ("Train", "Test", "TargetPairOnly")

#: Properties and colours in play per difficulty. Written out, not derived from the declarations:
#: the order draws the mappings, so a new property joins a difficulty only where it is added here
#: (which changes that difficulty's levels) and never reshuffles the existing ones.
DIFFICULTY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "Easy": ("trap", "fliplr", "slippery"),
    "Hard": ("trap", "slippery", "sticky", "fliplr", "flipud", "magic"),
}
DIFFICULTY_COLOURS: dict[str, tuple[str, ...]] = {
    "Easy": ("blue", "green"),
    "Hard": ("blue", "green", "grey"),
}
#: (colour, property) pairs never seen in the Train split.
HELD_OUT_PAIRS: dict[str, frozenset[tuple[str, str]]] = {
    "Easy": frozenset({("green", "trap"), ("blue", "slippery")}),
    "Hard": frozenset(
        {
            ("green", "trap"),
            ("green", "flipud"),
            ("grey", "fliplr"),
            ("grey", "slippery"),
            ("blue", "sticky"),
            ("blue", "magic"),
        }
    ),
}
DEFAULT_PROPERTIES_PER_COLOUR: dict[str, int] = {"Easy": 1, "Hard": 2}

#: Fraction of the free floor a colour covers, set by its most restrictive property (declared per property).
COVERAGE: dict[str, float] = {p.name: p.coverage for p in TILE_PROPERTIES}
#: Properties whose tiles may have at most one same-coloured neighbour (no large blobs).
SPARSE_PROPERTIES = frozenset(p.name for p in TILE_PROPERTIES if p.sparse)

Mapping_ = dict[str, tuple[str, ...]]


def coverage(properties: tuple[str, ...]) -> float:
    """Fraction of free cells covered by a colour with these properties (most restrictive wins)."""
    return min(COVERAGE[p] for p in properties)


def held_out_pairs_in(mapping: Mapping[str, tuple[str, ...]], difficulty: str) -> list[tuple[str, str]]:
    """The held-out (colour, property) pairs present in a mapping, sorted."""
    held = HELD_OUT_PAIRS[difficulty]
    return sorted((c, p) for c, props in mapping.items() for p in props if (c, p) in held)


@cache
def all_mappings(difficulty: str, properties_per_colour: int) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], ...]:
    """Every admissible mapping (colours never share a property), in a fixed deterministic order."""
    colours = DIFFICULTY_COLOURS[difficulty]
    props = DIFFICULTY_PROPERTIES[difficulty]
    k = properties_per_colour
    result = []
    for perm in itertools.permutations(props, k * len(colours)):
        groups = [tuple(perm[i * k : (i + 1) * k]) for i in range(len(colours))]
        # Within a colour the order of properties is irrelevant: keep the canonical (table) order.
        if any(tuple(sorted(g, key=PROPERTIES.index)) != g for g in groups):
            continue
        result.append(tuple(zip(colours, groups)))
    return tuple(result)


@cache
def split_mappings(difficulty: str, split: str, properties_per_colour: int) -> tuple:
    """The mappings a split may draw from: Train has no held-out pair, TargetPairOnly has one or more."""
    validate(difficulty, split, properties_per_colour)
    out = []
    for m in all_mappings(difficulty, properties_per_colour):
        n_held = len(held_out_pairs_in(dict(m), difficulty))
        if split == "Train" and n_held:
            continue
        if split == "TargetPairOnly" and not n_held:
            continue
        out.append(m)
    return tuple(out)


def validate(difficulty: str, split: str, properties_per_colour: int) -> None:
    check_choice("difficulty", difficulty, DIFFICULTIES)
    check_choice("split", split, SPLITS)
    n_props = len(DIFFICULTY_PROPERTIES[difficulty])
    n_colours = len(DIFFICULTY_COLOURS[difficulty])
    valid = [k for k in (1, 2, 3) if k * n_colours <= n_props]
    check_choice(f"properties_per_colour for {difficulty}", properties_per_colour, valid)


def sample_mapping(rng: np.random.Generator, difficulty: str, split: str, properties_per_colour: int) -> Mapping_:
    """Draw a colour -> properties mapping for one episode, uniformly among the split's mappings.

    ``Test`` draws uniformly over all admissible mappings, so held-out pairs appear with their
    natural frequency.
    """
    choices = split_mappings(difficulty, split, properties_per_colour)
    return dict(choices[int(rng.integers(len(choices)))])
