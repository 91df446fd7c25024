"""Levels drawn on the device: same distribution as the single env's, and exact replays through ``Level``.

Distribution checks use fixed thresholds: a chi-square test at p = 0.001 (Wilson-Hilferty critical
value) for mapping frequencies, and four standard errors for mean tile counts; each is shown to
fail on a draw that lacks the ingredient it checks (the split's rules, the solvability check).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from minigrid.core.constants import COLOR_TO_IDX

import babyaipp.envs as envs
from babyaipp.envs import dynamics as dyn
from babyaipp.envs.batched import BatchedBabyAIPP
from babyaipp.envs.batched_state import FLOOR_SHIFT, encode_env
from babyaipp.envs.device_dense import faces_all_round_trip, place_dense
from babyaipp.envs.device_floor import PLAIN, faceable, faces_all, layout_masks, place_sparse, reachable_targets
from babyaipp.envs.device_levels import DENSE_REDRAWS, PLACEMENT_TRIES, TAIL_ROWS, DeviceLevels
from babyaipp.envs.oracle import faceable_cells, round_trip_cells
from babyaipp.envs.properties import PROPERTY_BIT
from babyaipp.envs.tiles import NO_TILE, free_and_candidate_cells, place_dense_tiles, place_tiles
from babyaipp.envs.tiles import reachable_targets as cpu_reachable_targets
from babyaipp.envs.wrappers import TokenObsWrapper
from babyaipp.errors import ConfigError

from .conftest import quiet_make

EASY = "BabyAIPP/GoToRedBall-Easy-{}-v0"
HARD = "BabyAIPP/GoToLocal-Hard-{}-v0"
OBS_KEYS = ("image", "direction", "mission", "description")


def _engine(env_id: str, num_envs: int = 16, seed: int = 0, stock_size: int | None = None, **kwargs) -> BatchedBabyAIPP:
    engine = BatchedBabyAIPP(env_id, num_envs, seed=seed, device_levels=True, **kwargs)
    if stock_size is not None:
        engine.device_levels.stock_size = stock_size
    engine.reset()
    return engine


def chi_square_critical(df: int, z: float = 3.09) -> float:
    """Upper critical value of chi-square with ``df`` degrees of freedom (z = 3.09: p = 0.001)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def uniform_chi_square(counts: np.ndarray) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


def _mapping_counts(levels: DeviceLevels, count: int) -> tuple[np.ndarray, torch.Tensor]:
    _, _, mapping = levels.draw(count)
    return np.bincount(mapping.numpy(), minlength=len(levels.table.mappings)), mapping


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [(EASY.format(s), {}) for s in dyn.SPLITS]
    + [(HARD.format("Test"), {}), (HARD.format("Train"), {"properties_per_colour": 1})],
)
def test_mapping_frequencies_are_uniform_over_the_split(env_id: str, kwargs: dict) -> None:
    """Drawn mappings are those of ``split_mappings`` with equal frequency (as ``sample_mapping``)."""
    levels = _engine(env_id, **kwargs).device_levels
    base = levels.engine.single.unwrapped
    assert levels.table.mappings == dyn.split_mappings(base.difficulty, base.split, base.properties_per_colour)
    counts, mapping = _mapping_counts(levels, 3000 if len(levels.table.mappings) > 20 else 1200)
    assert uniform_chi_square(counts) < chi_square_critical(len(counts) - 1), counts
    held = levels.table.held_out[mapping]
    if base.split == "Train":
        assert int(held.max()) == 0
    if base.split == "TargetPairOnly":
        assert int(held.min()) >= 1


def test_mapping_check_fails_on_another_splits_draws() -> None:
    """The frequency test has power: Train's draws, counted against Test's mappings, fail it."""
    train = _engine(EASY.format("Train")).device_levels
    test_mappings = dyn.split_mappings("Easy", "Test", 1)
    _, mapping = _mapping_counts(train, 1200)
    counts = Counter(test_mappings.index(train.table.mappings[int(k)]) for k in mapping)
    observed = np.array([counts.get(k, 0) for k in range(len(test_mappings))])
    assert uniform_chi_square(observed) > chi_square_critical(len(observed) - 1)


def _rule_violations(level, env) -> list[str]:
    """The placement rules checked on the CPU grid of a replayed level."""
    base = env.unwrapped
    free, candidates = free_and_candidate_cells(base.grid, base.agent_pos)
    problems = []
    tiled = set(zip(*np.nonzero(level.floor != NO_TILE)))
    if not tiled <= set(candidates):
        problems.append("tile off the candidate cells")
    for colour, props in level.dynamics.items():
        idx = COLOR_TO_IDX[colour]
        mine = level.floor == idx
        want = max(1, round(dyn.coverage(props) * len(free)))
        if not 1 <= mine.sum() <= want:
            problems.append(f"{colour}: {mine.sum()} tiles, want {want}")
        if dyn.SPARSE_PROPERTIES.intersection(props):
            padded = np.pad(mine, 1)
            same = padded[2:, 1:-1].astype(int) + padded[:-2, 1:-1] + padded[1:-1, 2:] + padded[1:-1, :-2]
            if (same[mine] > 1).any():
                problems.append(f"{colour}: a sparse tile with two same-coloured neighbours")
    return problems


def _solvable_on_cpu(env) -> bool:
    """The single env's own check: traps never wall off a plain-floor target; physics search where flipud+magic."""
    base = env.unwrapped
    start = tuple(int(v) for v in base.agent_pos)
    targets = cpu_reachable_targets(base.grid, start)
    traps = np.isin(base.floor, [COLOR_TO_IDX[c] for c, p in base.dynamics.items() if "trap" in p])
    if targets != cpu_reachable_targets(base.grid, start, traps):
        return False
    if any("flipud" in p and "magic" in p for p in base.dynamics.values()):
        return targets <= faceable_cells(base)
    return True


@pytest.mark.parametrize("env_id", [EASY.format("Test"), HARD.format("Test")])
def test_drawn_levels_keep_the_placement_rules_and_are_solvable(env_id: str) -> None:
    """Exported levels replay in the single env, keep every placement rule, and pass its solvability check."""
    engine = _engine(env_id, num_envs=8, pool_size=64)
    levels, env = engine.device_levels, quiet_make(env_id)
    for row in range(120):
        level = levels.level(row)
        env.reset(options={"level": level})
        assert _rule_violations(level, env) == [], row
        assert _solvable_on_cpu(env), row


def test_unchecked_floors_are_sometimes_unsolvable() -> None:
    """The solvability test has power: without the check, some drawn floors wall off the ball."""
    engine = _engine(EASY.format("Test"), num_envs=8, pool_size=64)
    levels, env = engine.device_levels, quiet_make(EASY.format("Test"))
    levels._solvable = lambda floor, layout, mapping: torch.ones(len(floor), dtype=torch.bool)
    levels._refill()
    unsolvable = 0
    for row in range(300):
        env.reset(options={"level": levels.level(row)})
        unsolvable += not _solvable_on_cpu(env)
    assert unsolvable > 0


def _tile_counts(floors: list[np.ndarray], mappings: list[dict]) -> dict[str, list[int]]:
    """Tiles per colour, keyed by the colour's property set."""
    out: dict[str, list[int]] = {}
    for floor, mapping in zip(floors, mappings):
        for colour, props in mapping.items():
            out.setdefault("+".join(props), []).append(int((floor == COLOR_TO_IDX[colour]).sum()))
    return out


def _close_means(a: list[int], b: list[int]) -> bool:
    se = math.sqrt(np.var(a) / len(a) + np.var(b) / len(b)) + 1e-9
    return abs(np.mean(a) - np.mean(b)) < 4 * se + 0.05


@pytest.mark.parametrize(
    "env_id",
    [
        EASY.format("Test"),
        HARD.format("Test"),
        "BabyAIPP/GoToRedBallDense-Easy-Test-v0",
        pytest.param("BabyAIPP/PutNextLocalDense-Hard-Test-v0", marks=pytest.mark.slow),
    ],
)
def test_tile_counts_match_the_single_env(env_id: str) -> None:
    """Mean tiles per colour, per property set, as in the single env's levels (same env id, 600
    levels each, four standard errors), sparse and dense."""
    n = 600
    env = quiet_make(env_id)
    single_floors, single_maps = [], []
    for seed in range(n):
        env.reset(seed=10_000 + seed)
        single_floors.append(env.unwrapped.floor.copy())
        single_maps.append(dict(env.unwrapped.dynamics))
    engine = _engine(env_id, num_envs=8, pool_size=400)
    levels = engine.device_levels
    rows, _, mapping = levels.draw(n)
    hp, width = levels.hp, engine.geometry.width
    floors = ((rows["cells"].view(n, -1, hp) >> 9) & 7)[:, 6 : 6 + width, 6 : 6 + engine.geometry.height].numpy()
    device_floors = [np.where(f == PLAIN, NO_TILE, f) for f in floors]
    device_maps = [dict(levels.table.mappings[int(k)]) for k in mapping]
    single, device = _tile_counts(single_floors, single_maps), _tile_counts(device_floors, device_maps)
    assert single.keys() == device.keys()
    for props in single:
        assert _close_means(single[props], device[props]), (props, np.mean(single[props]), np.mean(device[props]))
    # The comparison has power: floors with every trap removed differ in the trap counts.
    no_traps = [
        np.where(np.isin(f, [COLOR_TO_IDX[c] for c, p in m.items() if "trap" in p]), NO_TILE, f)
        for f, m in zip(device_floors, device_maps)
    ]
    trap_key = next(k for k in single if "trap" in k.split("+"))
    assert not _close_means(single[trap_key], _tile_counts(no_traps, device_maps)[trap_key])


def _drive_against_single(
    env_id: str, steps: int, seed: int, copy_rows: bool = True, stock_size: int | None = None, **kwargs
) -> int:
    """Step an engine with device levels and single envs replaying its exported levels; returns restarts."""
    n = 6
    engine = _engine(env_id, num_envs=n, seed=seed, stock_size=stock_size, **kwargs)
    engine.copy_rows = copy_rows
    levels = engine.device_levels
    singles = [TokenObsWrapper(quiet_make(env_id, **kwargs)) for _ in range(n)]
    obs = engine.observation()
    for i in range(n):
        want, _ = singles[i].reset(options={"level": levels.level(i)})
        for key in OBS_KEYS:
            assert np.array_equal(obs[key][i].numpy(), np.asarray(want[key])), (i, key)
    rng = np.random.default_rng(seed)
    restarts = 0
    for t in range(steps):
        actions = rng.integers(7, size=n)
        obs, reward, terminated, truncated = engine.step(torch.as_tensor(actions))
        for i in range(n):
            want, r, term, trunc, _ = singles[i].step(int(actions[i]))
            assert (reward[i].item(), bool(terminated[i]), bool(truncated[i])) == (r, term, trunc), (t, i)
            if term or trunc:
                restarts += 1
                want, _ = singles[i].reset(options={"level": levels.level(int(engine.last_pick[i]))})
            for key in OBS_KEYS:
                assert np.array_equal(obs[key][i].numpy(), np.asarray(want[key])), (t, i, key)
    return restarts


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        (EASY.format("Test"), {"max_steps": 12}),
        (HARD.format("Test"), {"text": "partial", "max_steps": 10}),
        (HARD.format("TargetPairOnly"), {"text": "lorem", "max_steps": 10}),
    ],
)
def test_device_levels_replay_exactly_in_the_single_env(env_id: str, kwargs: dict) -> None:
    """Every episode (first and auto-reset ones, across stock refills) replays in the single env step for step."""
    assert _drive_against_single(env_id, steps=60, seed=3, **kwargs) >= 12


def test_device_reset_path_replays_exactly() -> None:
    """The reset used off the CPU (``torch.where`` over all rows) hands out the same fresh levels."""
    assert _drive_against_single(EASY.format("Train"), steps=40, seed=4, copy_rows=False, max_steps=8) >= 12


ALL_IDS = [envs.env_id(task, difficulty, "Test") for task in envs.TASKS for difficulty in envs.DIFFICULTIES]


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_every_family_draws_valid_levels_that_replay(env_id: str) -> None:
    """Every family, sparse and dense: 60 drawn levels keep the rules and pass the single env's
    solvability check; 40 steps replay exactly."""
    engine = _engine(
        env_id, num_envs=4, pool_size=64, stock_size=64
    )  # stocks of 64: the heavy families draw slowly on CPU
    env = quiet_make(env_id)
    dense = env.unwrapped.floor_layout == "dense"
    for row in range(60):
        level = engine.device_levels.level(row)
        env.reset(options={"level": level})
        if dense:
            assert set(zip(*np.nonzero(level.floor != NO_TILE))) <= _dense_candidates(env), row
            assert _dense_solvable_on_cpu(env), row
        else:
            assert _rule_violations(level, env) == [], row
            assert _solvable_on_cpu(env), row
    _drive_against_single(env_id, steps=40, seed=6, stock_size=16, max_steps=10)  # refills the stock too


@pytest.mark.slow
@pytest.mark.parametrize("split", dyn.SPLITS)
def test_mapping_frequencies_over_many_levels(split: str) -> None:
    """20 000 Hard levels per split: uniform over the split's mappings (chi-square, p = 0.001)."""
    levels = _engine(HARD.format(split), num_envs=8, pool_size=256).device_levels
    counts, _ = _mapping_counts(levels, 20_000)
    assert uniform_chi_square(counts) < chi_square_critical(len(counts) - 1), counts


def test_description_order_and_subset_are_uniform() -> None:
    """``partial``: 1..C sentences with equal frequency and any colour first, as ``text.describe`` draws them."""
    levels = _engine(HARD.format("Test"), num_envs=4, text="partial").device_levels
    tokens = levels._description(torch.zeros(6000, dtype=torch.long)).numpy()
    shown = (tokens != 0).any(2).sum(1)
    assert np.all((tokens != 0).any(2) == (np.arange(tokens.shape[1]) < shown[:, None]))  # no gaps
    sizes = np.bincount(shown, minlength=4)[1:]
    first = np.unique(tokens[:, 0, 0], return_counts=True)[1]
    assert len(first) == 3
    for counts in (sizes, first):
        assert uniform_chi_square(counts) < chi_square_critical(len(counts) - 1), counts
    assert uniform_chi_square(np.array([6000, 0, 0])) > chi_square_critical(2)  # an unshuffled order fails


def test_exported_level_encodes_to_the_drawn_row() -> None:
    """The single env replaying an exported level encodes to the drawn row, field by field."""
    engine = _engine(HARD.format("Test"), num_envs=4, pool_size=32)
    levels = engine.device_levels
    for row in range(40):
        engine.single.reset(options={"level": levels.level(row)})
        encoded = encode_env(engine.single, engine.geometry)
        for key, value in encoded.items():
            if key == "obj_pos":
                value = np.pad(value, (0, engine.num_objects - len(value)), constant_values=-1)
            if key in ("track_a", "track_b"):
                value = value[:, : engine.num_objects]
            drawn = levels.stock[key][row].numpy()
            assert np.array_equal(drawn, np.asarray(value).reshape(drawn.shape)), (row, key)


def test_physics_search_and_flood_fill_match_the_cpu_searches() -> None:
    """On random floors of flipud+magic mappings: faceable cells and trap-free reach equal the CPU's."""
    engine = _engine(HARD.format("Test"), num_envs=4, pool_size=48)
    levels = engine.device_levels
    table, hp = levels.table, levels.hp
    mapping = table.flip_magic.nonzero().squeeze(1)
    layout = torch.arange(48) % len(levels.layout_seeds)
    mapping = mapping[torch.arange(48) % len(mapping)]
    floor, ok = place_sparse(
        engine.generator,
        levels.masks["candidate"][layout],
        levels.n_free[layout],
        table.colours,
        table.coverage[mapping],
        table.sparse[mapping],
        hp,
    )
    assert bool(ok.all())
    levels.stock_layout, levels.stock_mapping = layout, mapping
    levels.stock = levels._rows(layout, mapping, floor)
    props_here = table.props[mapping].gather(1, floor)
    masks = layout_masks(levels.stock["cells"], levels.stock["agent_pos"], hp)
    faced = faceable(props_here, masks["walkable"], levels.stock["agent_pos"], levels.stock["agent_dir"], hp)
    # The early-stopping form the draw uses agrees with the full search, for targets met or not
    # (a padding corner, never faced, is wanted in every other row).
    unreachable = levels.plain_targets[layout].clone()
    unreachable[::2, 0] = True
    for wanted in (levels.plain_targets[layout], unreachable):
        start, direction = levels.stock["agent_pos"], levels.stock["agent_dir"]
        early = faces_all(props_here, masks["walkable"], start, direction, wanted, hp)
        assert torch.equal(early, ~(wanted & ~faced).any(1))
    assert not bool(early[::2].any())
    traps = (props_here & PROPERTY_BIT["trap"]) > 0
    found = reachable_targets(masks, levels.stock["agent_pos"], hp, blocked=traps)
    env = engine.single
    for row in range(48):
        env.reset(options={"level": levels.level(row)})
        base = env.unwrapped
        start = tuple(int(v) for v in base.agent_pos)
        want_faced = {c for c in faceable_cells(base) if 0 <= c[0] < base.width and 0 <= c[1] < base.height}
        got_faced = {(x, y) for x in range(base.width) for y in range(base.height) if faced[row, (x + 6) * hp + y + 6]}
        assert got_faced == want_faced, row
        trap_cells = np.isin(base.floor, [COLOR_TO_IDX[c] for c, p in base.dynamics.items() if "trap" in p])
        want_found = cpu_reachable_targets(base.grid, start, trap_cells)
        got_found = {(x, y) for x in range(base.width) for y in range(base.height) if found[row, (x + 6) * hp + y + 6]}
        assert got_found == want_found, row


def test_same_seed_same_levels_and_each_level_played_once() -> None:
    a, b = (BatchedBabyAIPP(EASY.format("Train"), 8, seed=5, device_levels=True) for _ in range(2))
    for engine in (a, b):
        engine.device_levels.stock_size = 16
        engine.reset()
    for key in a.device_levels.stock:
        assert torch.equal(a.device_levels.stock[key], b.device_levels.stock[key]), key
    drawn_before = a.device_levels.levels_drawn
    rng = np.random.default_rng(0)
    seen: list[int] = []  # stock rows handed out since the last redraw
    for _ in range(80):
        drawn = a.device_levels.levels_drawn
        a.step(torch.as_tensor(rng.integers(7, size=8)))
        picks = a.last_pick[a.last_pick >= 0].tolist()
        seen = picks if a.device_levels.levels_drawn != drawn else seen + picks
        assert len(seen) == len(set(seen))  # no stock row is played twice
    assert a.device_levels.levels_drawn > drawn_before  # the stock ran out and was redrawn


#: The fake placement of the tests below: leaks (a level redraw) on even mappings half the time,
#: and passes the solvability check with a probability that depends on the mapping (rarely on
#: mappings divisible by 3, so that the 50-try limit binds there).
FAKE_LEAK = 0.5


def _fake_solvable(mapping: np.ndarray | torch.Tensor):
    return 0.02 + 0.18 * (mapping % 3 != 0)


def _sequential_tries(rng: np.random.Generator, n_mappings: int, levels: int) -> list[list[float]]:
    """The draw loop's rules, one try at a time, under the fake placement: per kept level, whether
    its mapping is even, whether it is divisible by 3, and how many tries failed on its row."""
    out: list[list[float]] = [[], [], []]
    for _ in range(levels):
        fails = redraws = 0
        kept = None
        while kept is None:  # a level: its tries until one is kept, redrawn, or the limit
            mapping = int(rng.integers(n_mappings))
            for _ in range(PLACEMENT_TRIES):
                if mapping % 2 == 0 and redraws < DENSE_REDRAWS and rng.random() < FAKE_LEAK:
                    redraws, fails = redraws + 1, fails + 1
                    break
                if rng.random() < _fake_solvable(mapping):
                    kept = mapping
                    break
                fails += 1
        for values, value in zip(out, (kept % 2 == 0, kept % 3 == 0, fails)):
            values.append(float(value))
    return out


@pytest.mark.parametrize("count", [8, 1])
def test_pending_levels_trying_several_placements_at_once_keep_the_sequential_tries(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    """Pending levels try several placements per round (``TAIL_ROWS``); which levels are kept and
    how many tries failed are distributed as with one try at a time (four standard errors), under
    a fake placement (``FAKE_LEAK``, ``_fake_solvable``): level redraws, the 50-try limit and the
    count of failed tries all bear on the three statistics."""
    levels = _engine(EASY.format("Test"), num_envs=4, pool_size=16).device_levels
    coins = torch.Generator().manual_seed(0)
    width = levels.layouts["cells"].shape[1]

    def fake_place(layout, mapping, may_redraw):
        leak = (mapping % 2 == 0) & (torch.rand(len(mapping), generator=coins) < FAKE_LEAK)
        return torch.full((len(layout), width), PLAIN), torch.ones(len(layout), dtype=torch.bool), leak

    def fake_solvable(floor, layout, mapping):
        return torch.rand(len(floor), generator=coins) < _fake_solvable(mapping)

    monkeypatch.setattr(levels, "_place", fake_place)
    monkeypatch.setattr(levels, "_solvable", fake_solvable)
    assert TAIL_ROWS >= 4 * count  # several tries per pending level
    got: list[list[float]] = [[], [], []]
    for _ in range((2400 if count > 1 else 1200) // count):
        before = levels.redraws
        _, _, mapping = levels.draw(count)
        got[0].append(float((mapping % 2 == 0).float().mean()))
        got[1].append(float((mapping % 3 == 0).float().mean()))
        got[2].append((levels.redraws - before) / count)
    want = _sequential_tries(np.random.default_rng(0), len(levels.table.mappings), 8000)
    for a, b in zip(got, want):
        se = math.sqrt(np.var(a) / len(a) + np.var(b) / len(b))
        assert abs(np.mean(a) - np.mean(b)) < 4 * se, (np.mean(a), np.mean(b), se)


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="refresh"):
        BatchedBabyAIPP(EASY.format("Train"), 2, device_levels=True, refresh=True, workers=1)


def _adjacent_pairs(tiles: np.ndarray) -> np.ndarray:
    """Same-colour 4-neighbour pairs per placement of a (n, W, H) boolean stack."""
    return (tiles[:, 1:, :] & tiles[:, :-1, :]).sum((1, 2)) + (tiles[:, :, 1:] & tiles[:, :, :-1]).sum((1, 2))


@pytest.mark.parametrize("env_id", [EASY.format("Test"), HARD.format("Test")])
def test_placement_matches_place_tiles_cell_by_cell(env_id: str) -> None:
    """One layout and mapping, 3,000 placements each way: per-cell tile frequencies of every colour,
    tiles per colour and same-colour neighbour pairs equal ``tiles.place_tiles``'s (four standard
    errors); without the sparse neighbour rule, runs of three same tiles appear, never with it."""
    engine = _engine(env_id, num_envs=4, pool_size=8)
    levels, n = engine.device_levels, 3000
    table = levels.table
    # A mapping whose widest sparse colour is slippery or magic (15 % of the floor: the rule binds).
    k = next(i for i, m in enumerate(table.mappings) if any(p[0] in ("slippery", "magic") for _, p in m))
    mapping = dict(table.mappings[k])
    env = engine.single
    env.reset(options={"level": levels.level(0)})  # row 0's layout, on the CPU
    base, layout = env.unwrapped, levels.stock_layout[0]
    rng = np.random.default_rng(0)
    cpu = np.stack([place_tiles(rng, base.grid, tuple(base.agent_pos), mapping) for _ in range(n)])
    lay, mp = layout.repeat(n), torch.full((n,), k)
    hp, w, h = levels.hp, base.width, base.height

    def on_device(sparse: torch.Tensor) -> np.ndarray:
        floor, ok = place_sparse(
            engine.generator,
            levels.masks["candidate"][lay],
            levels.n_free[lay],
            table.colours,
            table.coverage[mp],
            sparse,
            hp,
        )
        assert bool(ok.all())
        floor = floor.view(n, -1, hp)[:, 6 : 6 + w, 6 : 6 + h].numpy()
        return np.where(floor == PLAIN, NO_TILE, floor)

    device = on_device(table.sparse[mp])
    for colour in mapping:
        idx = COLOR_TO_IDX[colour]
        p_cpu, p_dev = (cpu == idx).mean(0), (device == idx).mean(0)
        se = np.sqrt((p_cpu * (1 - p_cpu) + p_dev * (1 - p_dev)) / n) + 1e-3
        assert np.all(np.abs(p_cpu - p_dev) < 4 * se + 0.01), colour
        assert _close_means((cpu == idx).sum((1, 2)).tolist(), (device == idx).sum((1, 2)).tolist()), colour
        assert _close_means(_adjacent_pairs(cpu == idx).tolist(), _adjacent_pairs(device == idx).tolist()), colour
    sparse_colour = next(c for c, p in mapping.items() if p[0] in ("slippery", "magic"))
    idx = COLOR_TO_IDX[sparse_colour]
    unruled = on_device(torch.zeros_like(table.sparse[mp]))
    for floors, want_crowded in ((cpu, False), (device, False), (unruled, True)):
        tiles = np.pad(floors == idx, ((0, 0), (1, 1), (1, 1)))
        same = tiles[:, 2:, 1:-1].astype(int) + tiles[:, :-2, 1:-1] + tiles[:, 1:-1, 2:] + tiles[:, 1:-1, :-2]
        assert bool(((same >= 2) & (floors == idx)).any()) == want_crowded  # a run of three same tiles


# ----------------------------------------------------------------------------- dense floor
DENSE_EASY = "BabyAIPP/GoToRedBallDense-Easy-{}-v0"
DENSE_HARD = "BabyAIPP/GoToLocalDense-Hard-{}-v0"


def _cpu_needed(env) -> set[tuple[int, int]]:
    """What the single env's dense placement routes to (``BabyAIPPMixin._place_dense_floor``)."""
    base = env.unwrapped
    start = tuple(int(v) for v in base.agent_pos)
    locked = np.zeros((base.width, base.height), dtype=bool)
    targets = cpu_reachable_targets(base.grid, start)
    for x, y in targets:
        cell = base.grid.get(x, y)
        locked[x, y] = cell.type == "door" and cell.is_locked
    groups = base._instruction_groups()
    return set().union(*groups) & (cpu_reachable_targets(base.grid, start, locked) if locked.any() else targets)


def _dense_candidates(env) -> set[tuple[int, int]]:
    """The single env's dense candidate cells: off the start's and doors' 4-neighbourhoods and,
    where a colour can be magic, off the cells next to objects to pick up (``_pickup_cells``)."""
    base = env.unwrapped
    _, candidates = free_and_candidate_cells(base.grid, base.agent_pos, neighbourhood=4)
    return set(candidates) - _kept_plain(env)


def _kept_plain(env) -> set[tuple[int, int]]:
    base = env.unwrapped
    return base._pickup_cells() if "magic" in dyn.DIFFICULTY_PROPERTIES[base.difficulty] else set()


def _dense_solvable_on_cpu(env) -> bool:
    base = env.unwrapped
    start = tuple(int(v) for v in base.agent_pos)
    needed = _cpu_needed(env)
    traps = np.isin(base.floor, [COLOR_TO_IDX[c] for c, p in base.dynamics.items() if "trap" in p])
    if not needed <= cpu_reachable_targets(base.grid, start, traps):
        return False
    several = len(base._instruction_groups()) > 1  # core._solvable_with_physics's several_subgoals
    if any("flipud" in p and "magic" in p or (several and "magic" in p) for p in base.dynamics.values()):
        return needed <= round_trip_cells(base)
    return True


@pytest.mark.parametrize("env_id", [DENSE_EASY.format("Test"), DENSE_HARD.format("Test")])
def test_dense_levels_keep_the_rules_and_are_solvable(env_id: str) -> None:
    """Dense: the routed targets are the single env's, tiles lie on its candidate cells, every colour
    appears, the single env's solvability check passes, and the instruction cannot be done
    without reading (on plain floor; on Hard, on plain floor and any one colour)."""
    engine = _engine(env_id, num_envs=4, pool_size=48)
    levels, env = engine.device_levels, quiet_make(env_id)
    hp = levels.hp
    tile_free = 0
    for row in range(80):
        level = levels.level(row)
        env.reset(options={"level": level})
        base = env.unwrapped
        needed = levels.masks["needed"][levels.stock_layout[row]]
        got = {(x, y) for x in range(base.width) for y in range(base.height) if needed[(x + 6) * hp + y + 6]}
        assert got == _cpu_needed(env), row
        assert set(zip(*np.nonzero(level.floor != NO_TILE))) <= _dense_candidates(env), row
        assert all((level.floor == COLOR_TO_IDX[c]).any() for c in level.dynamics), row
        assert _dense_solvable_on_cpu(env), row
        tile_free += base._doable_without_reading(tuple(base.agent_pos), base._instruction_groups())
    assert tile_free <= 4  # kept only once a level's 50 redraws are spent


def _one_colour_leaks(base, floors: np.ndarray) -> np.ndarray:
    """Per floor, whether plain cells and the cells of one colour reach an object of every object
    description of the instruction (the single env's ``_doable_without_reading`` on Hard)."""
    start = tuple(int(v) for v in base.agent_pos)
    groups = base._instruction_groups()
    colours = [COLOR_TO_IDX[c] for c in dyn.DIFFICULTY_COLOURS["Hard"]]
    return np.array(
        [
            any(all(g & cpu_reachable_targets(base.grid, start, (f >= 0) & (f != c)) for g in groups) for c in colours)
            for f in floors
        ]
    )


def _place_layouts(engine, layout: torch.Tensor, groups: torch.Tensor | None = None):
    """``place_dense`` on pool layouts ``layout`` (one row each), with the engine's masks."""
    levels = engine.device_levels
    m = levels.masks
    return place_dense(
        engine.generator,
        m["candidate4"][layout],
        m["route_walkable"][layout],
        m["needed"][layout],
        levels.layouts["agent_pos"][layout],
        len(levels.table.colours),
        levels.hp,
        groups,
    )


@pytest.mark.parametrize("with_groups", [False, True])
def test_dense_placement_matches_place_dense_tiles_cell_by_cell(with_groups: bool) -> None:
    """One Hard layout, 1,500 dense placements each way: per-cell frequency of every colour and of
    plain floor, same-colour neighbour pairs and the share of floors that plain cells and one colour
    cross equal ``tiles.place_dense_tiles``'s within four standard errors (with its colour order;
    with the instruction's groups, also its layout redraws). The per-cell frequencies alone cannot
    tell the three-colour fill apart (colours are symmetric); the pairs and the crossings can."""
    env_id, n = DENSE_HARD.format("Test"), 1500
    engine = _engine(env_id, num_envs=4, pool_size=8)
    levels, env = engine.device_levels, engine.single
    env.reset(options={"level": levels.level(0)})
    base, layout = env.unwrapped, levels.stock_layout[0]
    colours = dyn.DIFFICULTY_COLOURS["Hard"]
    rng = np.random.default_rng(0)
    start = tuple(int(v) for v in base.agent_pos)
    needed = _cpu_needed(env)
    groups = [g & needed for g in base._instruction_groups() if g & needed] if with_groups else None
    kept = _kept_plain(env)
    cpu = np.stack([place_dense_tiles(rng, base.grid, start, colours, needed, groups, False, kept) for _ in range(n)])
    lay = layout.repeat(n)
    m = levels.masks
    assert not bool(m["one_tile"][layout])  # the layout redraws apply
    slots, ok = _place_layouts(engine, lay, m["pair_groups"][lay] if with_groups else None)
    assert bool(ok.all())
    hp, w, h = levels.hp, base.width, base.height
    device = levels._slot_colour[slots].view(n, -1, hp)[:, 6 : 6 + w, 6 : 6 + h].numpy()
    device = np.where(device == PLAIN, NO_TILE, device)
    for idx in [COLOR_TO_IDX[c] for c in colours] + [NO_TILE]:
        p_cpu, p_dev = (cpu == idx).mean(0), (device == idx).mean(0)
        se = np.sqrt((p_cpu * (1 - p_cpu) + p_dev * (1 - p_dev)) / n) + 1e-3
        assert np.all(np.abs(p_cpu - p_dev) < 4 * se + 0.01), idx
    pairs_cpu, pairs_dev = (sum(_adjacent_pairs(f == COLOR_TO_IDX[c]) for c in colours) for f in (cpu, device))
    assert _close_means(pairs_cpu.tolist(), pairs_dev.tolist()), (pairs_cpu.mean(), pairs_dev.mean())
    leaks_cpu, leaks_dev = _one_colour_leaks(base, cpu), _one_colour_leaks(base, device)
    assert _close_means(leaks_cpu.tolist(), leaks_dev.tolist()), (leaks_cpu.mean(), leaks_dev.mean())


@pytest.mark.parametrize("env_id", [DENSE_HARD.format("Test"), "BabyAIPP/PutNextLocalDense-Hard-Test-v0"])
def test_hard_dense_levels_need_two_colours(env_id: str) -> None:
    """Hard dense: on drawn levels plain floor plus any one colour never reaches every object
    description of the instruction (but on the few kept once their 50 redraws are spent). One
    layout draw per pool layout, ten times, crosses on one colour as often as ``place_dense_tiles``'s
    with the instruction's groups (four standard errors: fails with the two-colour fill, which
    crosses on most), and the device's check equals the single env's ``_doable_without_reading``
    on every one of these floors, both answers occurring. Each layout's candidate cells are the
    single env's (on put-next, the cells next to the moved objects stay plain)."""
    engine = _engine(env_id, num_envs=4, pool_size=32)
    levels, base = engine.device_levels, engine.single.unwrapped
    n = 200
    rows, layout, _ = levels.draw(n)
    doable = levels.doable_without_reading((rows["cells"] >> FLOOR_SHIFT) & 7, layout)
    assert int(doable.sum()) <= n // 20  # as the dense rules test: 4 in 80
    m, n_layouts, reps = levels.masks, len(levels.layout_seeds), 10
    lay = torch.arange(n_layouts).repeat(reps)
    # a layout one tile away is drawn once (no layout redraws)
    slots, ok = _place_layouts(engine, lay, m["pair_groups"][lay] & ~m["one_tile"][lay].view(-1, 1, 1))
    assert bool(ok.all())
    floor = levels._slot_colour[slots]
    device_doable = levels.doable_without_reading(floor, lay).tolist()
    hp, w, h = levels.hp, base.width, base.height
    grid_floor = floor.view(len(lay), -1, hp)[:, 6 : 6 + w, 6 : 6 + h].numpy()
    grid_floor = np.where(grid_floor == PLAIN, NO_TILE, grid_floor).astype(np.int8)
    colours = dyn.DIFFICULTY_COLOURS["Hard"]
    rng = np.random.default_rng(0)
    cpu_doable, single_doable, with_pickups = [], [], 0
    for i in range(n_layouts):
        engine.single.reset(seed=int(levels.layout_seeds[i]))
        start, groups = tuple(int(v) for v in base.agent_pos), base._instruction_groups()
        needed = _cpu_needed(engine.single)
        pair_groups, kept = [g & needed for g in groups if g & needed], _kept_plain(engine.single)
        candidates = {(x, y) for x in range(w) for y in range(h) if m["candidate4"][i, (x + 6) * hp + y + 6]}
        assert candidates == _dense_candidates(engine.single), i
        with_pickups += bool(kept)
        for j in range(i, len(lay), n_layouts):
            floor_j = place_dense_tiles(rng, base.grid, start, colours, needed, pair_groups, False, kept)
            base._set_floor(floor_j)
            cpu_doable.append(base._doable_without_reading(start, groups))
            base._set_floor(grid_floor[j])
            single_doable.append((j, base._doable_without_reading(start, groups)))
    assert [device_doable[j] for j, _ in single_doable] == [d for _, d in single_doable]
    assert with_pickups == (n_layouts if "PutNext" in env_id else 0)  # the moved objects' cells stay plain
    assert 0 < sum(device_doable) < len(device_doable)
    assert _close_means(cpu_doable, device_doable), (np.mean(cpu_doable), np.mean(device_doable))


def test_round_trip_search_matches_the_oracle() -> None:
    """On dense floors of flipud+magic mappings: the device round-trip check equals ``round_trip_cells``."""
    engine = _engine(DENSE_HARD.format("Test"), num_envs=4, pool_size=32)
    levels = engine.device_levels
    table, hp, n = levels.table, levels.hp, 32
    mapping = table.flip_magic.nonzero().squeeze(1)
    layout, mapping = torch.arange(n) % len(levels.layout_seeds), mapping[torch.arange(n) % len(mapping)]
    m = levels.masks
    slots, _ = _place_layouts(engine, layout)
    floor = levels._slot_colour[slots]
    levels.stock_layout, levels.stock_mapping = layout, mapping
    levels.stock = levels._rows(layout, mapping, floor)
    props_here = table.props[mapping].gather(1, floor)
    wanted = m["needed"][layout]
    got = faces_all_round_trip(
        props_here, m["walkable"][layout], levels.stock["agent_pos"], levels.stock["agent_dir"], wanted, hp
    )
    want = []
    for row in range(n):
        engine.single.reset(options={"level": levels.level(row)})
        want.append(_cpu_needed(engine.single) <= round_trip_cells(engine.single.unwrapped))
    assert got.tolist() == want
    assert not all(want)  # some floors cut a target off (the comparison covers both answers)


@pytest.mark.parametrize(
    ("env_id", "n"),
    [
        ("BabyAIPP/PutNextLocalDense-Hard-Test-v0", 48),
        pytest.param("BabyAIPP/GoToSeqDense-Hard-Test-v0", 128, marks=pytest.mark.slow),
    ],
)
def test_magic_with_several_objects_takes_the_round_trip_search(env_id: str, n: int) -> None:
    """Dense floors of mappings with a magic colour (none flipud and magic) where the instruction
    names several objects: the device's solvability check equals the single env's (the round trip,
    ``_solvable_with_physics``'s ``several_subgoals``) on every floor, and some floor strands the
    agent, which the trap-avoiding search alone would pass."""
    engine = _engine(env_id, num_envs=4, pool_size=32, stock_size=8)
    levels, m, table = engine.device_levels, engine.device_levels.masks, engine.device_levels.table
    several = m["several_groups"].nonzero().squeeze(1)
    magic = (table.magic & ~table.flip_magic).nonzero().squeeze(1)
    lay = several[torch.arange(n) % len(several)]
    mapping = magic[torch.randint(len(magic), (n,), generator=torch.Generator().manual_seed(0))]
    slots, ok = _place_layouts(engine, lay, m["pair_groups"][lay] & ~m["one_tile"][lay].view(-1, 1, 1))
    floor = levels._slot_colour[slots]
    got = levels._solvable(floor, lay, mapping).tolist()
    levels.stock_layout, levels.stock_mapping = lay, mapping
    levels.stock = levels._rows(lay, mapping, floor)
    want = []
    for row in range(n):
        engine.single.reset(options={"level": levels.level(row)})
        assert len(engine.single.unwrapped._instruction_groups()) > 1
        want.append(_dense_solvable_on_cpu(engine.single))
    assert got == want
    assert not all(want)


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [(DENSE_EASY.format("Test"), {"max_steps": 12}), (DENSE_HARD.format("Test"), {"max_steps": 10})],
)
def test_dense_device_levels_replay_exactly(env_id: str, kwargs: dict) -> None:
    assert _drive_against_single(env_id, steps=50, seed=8, **kwargs) >= 10


def test_a_stock_drawn_in_chunks_is_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stock larger than one pass is drawn in chunks; rows on both sides of a boundary replay exactly."""
    import babyaipp.envs.device_levels as device_levels

    monkeypatch.setattr(device_levels, "DRAW_CHUNK", 100)
    engine = BatchedBabyAIPP(EASY.format("Test"), 4, seed=2, device_levels=True)
    engine.device_levels.stock_size = 250
    engine.reset()
    levels = engine.device_levels
    assert levels.stock["cells"].shape[0] == len(levels.stock_layout) == 250
    for row in (99, 100, 249):
        engine.single.reset(options={"level": levels.level(row)})
        encoded = encode_env(engine.single, engine.geometry)
        for key in ("cells", "props", "description", "mission", "agent_pos"):
            assert np.array_equal(levels.stock[key][row].numpy(), np.asarray(encoded[key])), (row, key)
