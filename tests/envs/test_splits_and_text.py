"""Splits and held-out pairs, tile placement, the description's text modes, and the floor in the view.

The spec's tables (held-out pairs, colours, properties, coverage, description words) are written
out here again rather than imported, so a wrong constant in the package fails these tests.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest
from minigrid.core.constants import COLOR_NAMES, COLOR_TO_IDX, IDX_TO_COLOR, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import Floor, Key
from minigrid.minigrid_env import MiniGridEnv

import babyaipp.envs as envs
from babyaipp.envs.dynamics import sample_mapping
from babyaipp.errors import InvalidChoiceError

from .conftest import EAST, hand_built_env, quiet_make

SPEC_COLOURS = {"Easy": {"blue", "green"}, "Hard": {"blue", "green", "grey"}}
SPEC_PROPERTIES = {
    "Easy": {"trap", "fliplr", "slippery"},
    "Hard": {"trap", "slippery", "sticky", "fliplr", "flipud", "magic"},
}
SPEC_HELD_OUT = {
    "Easy": {("green", "trap"), ("blue", "slippery")},
    "Hard": {
        ("green", "trap"),
        ("green", "flipud"),
        ("grey", "fliplr"),
        ("grey", "slippery"),
        ("blue", "sticky"),
        ("blue", "magic"),
    },
}
SPEC_COVERAGE = {"trap": 0.05, "slippery": 0.15, "magic": 0.15, "sticky": 0.30, "fliplr": 0.30, "flipud": 0.30}
SPARSE = {"trap", "slippery", "magic"}
#: The word each property has in the description (docs/environments.md).
WORD_TO_PROPERTY = {
    "traps": "trap",
    "slippery": "slippery",
    "sticky": "sticky",
    "mirrored": "fliplr",
    "reversed": "flipud",
    "magic": "magic",
}
SENTENCE_RE = re.compile(r"^(\w+) floors are (\w+(?: and \w+)*)$")


def held_out_in(dynamics: dict, difficulty: str) -> list[tuple[str, str]]:
    return sorted((c, p) for c, props in dynamics.items() for p in props if (c, p) in SPEC_HELD_OUT[difficulty])


def admissible_mappings(difficulty: str, per_colour: int) -> set[frozenset]:
    """Every mapping the spec allows, as frozensets of (colour, frozenset(properties))."""
    colours = sorted(SPEC_COLOURS[difficulty])
    out = set()
    for owner in itertools.product([*colours, None], repeat=len(SPEC_PROPERTIES[difficulty])):
        counts = Counter(o for o in owner if o is not None)
        if any(counts[c] != per_colour for c in colours):
            continue
        props = sorted(SPEC_PROPERTIES[difficulty])
        out.add(frozenset((c, frozenset(p for p, o in zip(props, owner) if o == c)) for c in colours))
    return out


def as_key(mapping: dict) -> frozenset:
    return frozenset((c, frozenset(p)) for c, p in mapping.items())


def check_mapping_shape(dynamics: dict, difficulty: str, per_colour: int) -> None:
    assert set(dynamics) == SPEC_COLOURS[difficulty]
    used = [p for props in dynamics.values() for p in props]
    assert len(used) == len(set(used)), f"colours share a property: {dynamics}"
    assert set(used) <= SPEC_PROPERTIES[difficulty]
    assert all(len(props) == per_colour for props in dynamics.values()), dynamics


# ---------------------------------------------------------------------------- splits over resets
@pytest.mark.parametrize("difficulty, per_colour", [("Easy", 1), ("Hard", 2), ("Hard", 1)])
def test_split_invariants_over_resets(difficulty: str, per_colour: int):
    kwargs = {"properties_per_colour": per_colour} if difficulty == "Hard" else {}
    n_resets = 200
    for split in ("Train", "Test", "TargetPairOnly"):
        env = quiet_make(envs.env_id("GoToRedBall", difficulty, split), **kwargs)
        with_held, without_held = 0, 0
        for seed in range(n_resets):
            _, info = env.reset(seed=seed)
            dynamics = info["dynamics"]
            check_mapping_shape(dynamics, difficulty, per_colour)
            assert dict(env.unwrapped.dynamics) == dynamics
            held = held_out_in(dynamics, difficulty)
            assert sorted(map(tuple, info["held_out_pairs"])) == held
            with_held += bool(held)
            without_held += not held
        if split == "Train":
            assert with_held == 0
        elif split == "TargetPairOnly":
            assert without_held == 0
        else:
            assert with_held > 0 and without_held > 0


def test_dynamics_is_read_only():
    env = quiet_make("BabyAIPP/GoToRedBall-Hard-Test-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(TypeError):
        env.dynamics["blue"] = ("trap",)


@pytest.mark.parametrize("difficulty, per_colour, n_train", [("Easy", 1, 3), ("Hard", 2, 10), ("Hard", 1, 40)])
def test_sample_mapping_is_uniform_over_each_splits_admissible_mappings(difficulty: str, per_colour: int, n_train: int):
    admissible = admissible_mappings(difficulty, per_colour)
    train = {m for m in admissible if not held_out_in(dict((c, tuple(p)) for c, p in m), difficulty)}
    assert len(train) == n_train  # the counts docs/environments.md states
    expected = {"Train": train, "Test": admissible, "TargetPairOnly": admissible - train}
    for split, allowed in expected.items():
        rng = np.random.default_rng(2024)
        draws_per_mapping = 40
        n = draws_per_mapping * len(allowed)
        counts = Counter(as_key(sample_mapping(rng, difficulty, split, per_colour)) for _ in range(n))
        assert set(counts) == allowed, split
        # Uniform: every count within 5 binomial standard deviations of its mean.
        p = 1 / len(allowed)
        sd = np.sqrt(n * p * (1 - p))
        assert max(abs(c - n * p) for c in counts.values()) < 5 * sd, (split, counts.most_common(3))


def test_test_split_draws_held_out_pairs_at_their_natural_rate():
    for difficulty, per_colour in [("Easy", 1), ("Hard", 2), ("Hard", 1)]:
        admissible = admissible_mappings(difficulty, per_colour)
        natural = np.mean([bool(held_out_in(dict((c, tuple(p)) for c, p in m), difficulty)) for m in admissible])
        rng = np.random.default_rng(7)
        n = 4000
        draws = [sample_mapping(rng, difficulty, "Test", per_colour) for _ in range(n)]
        rate = np.mean([bool(held_out_in(m, difficulty)) for m in draws])
        assert abs(rate - natural) < 5 * np.sqrt(natural * (1 - natural) / n), (difficulty, per_colour, rate, natural)


def test_sample_mapping_is_reproducible():
    a = [sample_mapping(np.random.default_rng(3), "Hard", "Test", 2) for _ in range(3)]
    rng1, rng2 = np.random.default_rng(9), np.random.default_rng(9)
    assert a[0] == a[1] == a[2]
    assert [sample_mapping(rng1, "Hard", "Test", 2) for _ in range(50)] == [
        sample_mapping(rng2, "Hard", "Test", 2) for _ in range(50)
    ]


# ---------------------------------------------------------------------------- tile placement
PLACEMENT_CASES = [
    ("GoToLocal", "Hard"),
    ("GoToLocal", "Easy"),
    ("GoTo", "Hard"),
    ("GoToRedBallMaze", "Easy"),
    ("Unlock", "Hard"),
    ("PutNext", "Hard"),
    ("PickupLoc", "Easy"),
]


def _neighbours8(x: int, y: int) -> set[tuple[int, int]]:
    return {(x + dx, y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}


@pytest.mark.parametrize("task, difficulty", PLACEMENT_CASES)
def test_tile_placement_rules(task: str, difficulty: str):
    env = quiet_make(envs.env_id(task, difficulty, "Test")).unwrapped
    for seed in range(40):
        env.reset(seed=seed)
        floor, grid = env.floor, env.grid
        assert floor.shape == (env.width, env.height) and floor.dtype == np.int8
        start = (int(env.agent_pos[0]), int(env.agent_pos[1]))
        cells = [(x, y) for x in range(env.width) for y in range(env.height)]
        doors = [c for c in cells if grid.get(*c) is not None and grid.get(*c).type == "door"]
        forbidden = _neighbours8(*start).union(*(_neighbours8(*d) for d in doors))
        free = [c for c in cells if grid.get(*c) is None]
        tiles = {c: IDX_TO_COLOR[int(floor[c])] for c in cells if floor[c] != -1}
        for (x, y), colour in tiles.items():
            assert grid.get(x, y) is None, f"seed {seed}: tile under {grid.get(x, y).type} at {(x, y)}"
            assert (x, y) not in forbidden, f"seed {seed}: tile at {(x, y)} next to the start {start} or a door"
            if SPARSE & set(env.dynamics[colour]):
                same = [(x + dx, y + dy) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))]
                assert sum(tiles.get(n) == colour for n in same) <= 1, f"seed {seed}: blob of {colour} at {(x, y)}"
        assert set(tiles.values()) == set(env.dynamics), f"seed {seed}"
        counts = Counter(tiles.values())
        for colour, props in env.dynamics.items():
            fraction = min(SPEC_COVERAGE[p] for p in props)
            assert counts[colour] == max(1, round(fraction * len(free))), (seed, colour, props)
        for x, y in cells:
            expected = None if floor[x, y] == -1 else IDX_TO_COLOR[int(floor[x, y])]
            assert env.tile_at(x, y) == expected
            assert env.properties_at(x, y) == (frozenset(env.dynamics[expected]) if expected else frozenset())


# ---------------------------------------------------------------------------- description
def parse_description(text: str) -> list[tuple[str, list[str]]]:
    """[(first word, content words)] per sentence; fails on anything not of the template's shape."""
    assert text == "" or text.endswith("."), text
    out = []
    for sentence in [s.strip() for s in text.split(".") if s.strip()]:
        m = SENTENCE_RE.match(sentence)
        assert m, f"not a template sentence: {sentence!r}"
        out.append((m[1], m[2].split(" and ")))
    return out


def _described(text: str) -> dict[str, set[str]]:
    return {colour: {WORD_TO_PROPERTY[w] for w in words} for colour, words in parse_description(text)}


@pytest.mark.parametrize("difficulty", ["Easy", "Hard"])
def test_full_description_names_every_floor_colour_with_its_properties(difficulty: str):
    env = quiet_make(envs.env_id("GoToLocal", difficulty, "Test")).unwrapped
    orders = set()
    for seed in range(60):
        obs, info = env.reset(seed=seed)
        sentences = parse_description(obs["description"])
        on_floor = {IDX_TO_COLOR[int(i)] for i in np.unique(env.floor) if i != -1}
        assert len(sentences) == len(on_floor)
        assert _described(obs["description"]) == {c: set(p) for c, p in info["dynamics"].items()}
        assert set(_described(obs["description"])) == on_floor
        orders.add(tuple(c for c, _ in sentences))
        assert env.step(0)[0]["description"] == obs["description"]  # constant within the episode
    assert len(orders) > 1, "sentence order is never shuffled"


def test_partial_description_is_a_correct_nonempty_subset():
    env = quiet_make("BabyAIPP/GoToLocal-Hard-Test-v0", text="partial").unwrapped
    sizes = Counter()
    for seed in range(100):
        obs, info = env.reset(seed=seed)
        described = _described(obs["description"])
        assert described, f"seed {seed}: empty partial description"
        for colour, props in described.items():
            assert props == set(info["dynamics"][colour])
        sizes[len(described)] += 1
    assert set(sizes) == {1, 2, 3}, sizes


def test_lorem_description_has_the_shape_and_no_information():
    informative = set(COLOR_NAMES) | set(WORD_TO_PROPERTY)
    for difficulty in ("Easy", "Hard"):
        full = quiet_make(envs.env_id("GoToLocal", difficulty, "Test")).unwrapped
        lorem = quiet_make(envs.env_id("GoToLocal", difficulty, "Test"), text="lorem").unwrapped
        texts = set()
        for seed in range(40):
            obs_full, info_full = full.reset(seed=seed)
            obs_lorem, info_lorem = lorem.reset(seed=seed)
            # A control must differ only in the text: same level, same dynamics.
            assert obs_lorem["mission"] == obs_full["mission"]
            assert info_lorem["dynamics"] == info_full["dynamics"]
            assert np.array_equal(lorem.floor, full.floor)
            shape_full = sorted(len(words) for _, words in parse_description(obs_full["description"]))
            sentences = parse_description(obs_lorem["description"])
            assert sorted(len(words) for _, words in sentences) == shape_full
            words = set(re.findall(r"[a-z]+", obs_lorem["description"]))
            assert not words & informative, obs_lorem["description"]
            texts.add(obs_lorem["description"])
        assert len(texts) > 20  # drawn afresh, not one fixed string


def test_none_description_is_empty_and_modes_share_the_world():
    none = quiet_make("BabyAIPP/GoToLocal-Hard-Test-v0", text="none").unwrapped
    partial = quiet_make("BabyAIPP/GoToLocal-Hard-Test-v0", text="partial").unwrapped
    for seed in range(20):
        obs, info = none.reset(seed=seed)
        assert obs["description"] == "" and info["dynamics"]
        _, info_partial = partial.reset(seed=seed)
        assert info_partial["dynamics"] == info["dynamics"] and np.array_equal(partial.floor, none.floor)


# ---------------------------------------------------------------------------- the floor in the view
def reference_image(env) -> np.ndarray:
    """The agent's view computed by minigrid itself on a grid where each bare tile is a ``Floor``."""
    grid = Grid(env.width, env.height)
    grid.grid = list(env.grid.grid)
    for x in range(env.width):
        for y in range(env.height):
            if env.floor[x, y] != -1 and env.grid.get(x, y) is None:
                grid.set(x, y, Floor(IDX_TO_COLOR[int(env.floor[x, y])]))
    real = env.grid
    env.grid = grid
    try:
        view, vis_mask = MiniGridEnv.gen_obs_grid(env)
    finally:
        env.grid = real
    return view.encode(vis_mask)


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("BabyAIPP/GoToLocal-Hard-Test-v0", {}),
        ("BabyAIPP/GoTo-Easy-Test-v0", {}),
        ("BabyAIPP/GoTo-Hard-Test-v0", {"agent_view_size": 5}),
        ("BabyAIPP/PutNextLocal-Hard-Test-v0", {"agent_view_size": 9}),
    ],
)
def test_view_shows_the_floor_as_minigrid_would(env_id: str, kwargs: dict):
    env = quiet_make(env_id, **kwargs).unwrapped
    rng = np.random.default_rng(0)
    floor_cells_seen = 0
    for seed in range(25):
        obs, _ = env.reset(seed=seed)
        assert np.array_equal(obs["image"], reference_image(env))
        for direction in range(4):
            env.agent_dir = direction
            image = env.gen_obs()["image"]
            assert np.array_equal(image, reference_image(env)), (seed, direction)
            floor_cells_seen += int((image[..., 0] == OBJECT_TO_IDX["floor"]).sum())
        for _ in range(15):
            obs, _, terminated, truncated, _ = env.step(int(rng.choice([0, 1, 2, 2, 2])))
            assert np.array_equal(obs["image"], reference_image(env)), seed
            if terminated or truncated:
                break
    assert floor_cells_seen > 100


def test_agent_cell_is_never_shown_as_a_tile():
    env = hand_built_env(agent_pos=(4, 4), agent_dir=EAST, tiles={(4, 4): "blue"}, dynamics={"blue": ("sticky",)})
    image = env.gen_obs()["image"]
    view = env.agent_view_size
    assert tuple(image[view // 2, view - 1]) == (OBJECT_TO_IDX["empty"], 0, 0)


def test_an_object_dropped_on_a_tile_hides_it_until_picked_up():
    env = hand_built_env(agent_pos=(4, 4), agent_dir=EAST, tiles={(5, 4): "green"}, dynamics={"green": ("fliplr",)})
    view = env.agent_view_size
    front = (view // 2, view - 2)
    floor_code = (OBJECT_TO_IDX["floor"], COLOR_TO_IDX["green"], 0)
    assert tuple(env.gen_obs()["image"][front]) == floor_code
    key = Key("yellow")
    env.carrying = key
    obs, *_ = env.step(4)  # drop onto the tile
    assert env.grid.get(5, 4) is key and env.tile_at(5, 4) == "green"
    assert tuple(obs["image"][front]) == (OBJECT_TO_IDX["key"], COLOR_TO_IDX["yellow"], 0)
    obs, *_ = env.step(3)  # pick it up again
    assert env.carrying is key and tuple(obs["image"][front]) == floor_code


def test_sample_mapping_refuses_an_unknown_split_or_difficulty():
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidChoiceError, match="'Tset'.*Train, Test, TargetPairOnly"):
        sample_mapping(rng, "Easy", "Tset", 1)
    with pytest.raises(InvalidChoiceError, match="'Medium'"):
        sample_mapping(rng, "Medium", "Train", 1)
