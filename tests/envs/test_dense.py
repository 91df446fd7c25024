"""The dense floor (``floor="dense"``): solvable, densely tiled, blind to the mapping, and the sparse floor unchanged.

The dense layout is drawn from the colours in play only (routes avoiding each colour, then region
growing), so it must not depend on which colour is the trap; the tests here check that exactly
(same seed, mapping swapped, same floor) and check that the same test catches a layout that does
read the mapping (the sparse floor).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX

import babyaipp.envs as envs
import babyaipp.envs.core as core
from babyaipp.envs import dynamics as dyn
from babyaipp.envs.level import Level
from babyaipp.envs.oracle import NoPlanError, Oracle
from babyaipp.envs.tiles import FLOORS, NO_TILE, reachable_targets
from babyaipp.errors import InvalidChoiceError

from .conftest import quiet_make

FIRST_SEED = 200_000  # away from the seeds other tests use


def _fingerprint(env_id: str, seed: int) -> str:
    """Hash of three consecutive start states (seeded, then unseeded): grid, floor, mission, description, mapping."""
    env = quiet_make(env_id)
    digest = hashlib.sha256()
    for k in range(3):
        env.reset(seed=seed if k == 0 else None)
        base = env.unwrapped
        digest.update(np.ascontiguousarray(base.floor).tobytes())
        digest.update(base.grid.encode().tobytes())
        state = (base.mission, base.description, tuple(int(v) for v in base.agent_pos), int(base.agent_dir))
        digest.update(repr((*state, sorted(base.dynamics.items()))).encode())
    return digest.hexdigest()[:16]


#: Fingerprints of sparse-floor episodes recorded before the dense floor existed.
SPARSE_FINGERPRINTS = {
    ("BabyAIPP/GoToRedBall-Easy-Train-v0", 0): "c4f52018c6b61156",
    ("BabyAIPP/GoToRedBall-Easy-TargetPairOnly-v0", 7): "5083c8dd8b06c7ab",
    ("BabyAIPP/GoToRedBall-Easy-Test-v0", 123): "a6ee3bf016228d4d",
    ("BabyAIPP/GoToRedBall-Hard-Train-v0", 0): "d7228dc864ad9988",
    ("BabyAIPP/GoToRedBall-Hard-TargetPairOnly-v0", 7): "843a7bfd87cd7f3e",
    ("BabyAIPP/GoToRedBall-Hard-Test-v0", 123): "3292553e66301a02",
    ("BabyAIPP/GoToLocal-Easy-Train-v0", 0): "786c5f7c4da307f9",
    ("BabyAIPP/GoToLocal-Easy-TargetPairOnly-v0", 7): "5f9b94a5dbe4300e",
    ("BabyAIPP/GoToLocal-Easy-Test-v0", 123): "1fd27a712b8cf3b2",
    ("BabyAIPP/GoToLocal-Hard-Train-v0", 0): "81c5572fade2bbb2",
    ("BabyAIPP/GoToLocal-Hard-TargetPairOnly-v0", 7): "6d19a8d1a75c34df",
    ("BabyAIPP/GoToLocal-Hard-Test-v0", 123): "627f2c60becd6a3c",
    ("BabyAIPP/GoToRedBallMaze-Easy-Train-v0", 0): "db286ff4a8766634",
    ("BabyAIPP/GoToRedBallMaze-Easy-TargetPairOnly-v0", 7): "b9f46f18dfdff405",
    ("BabyAIPP/GoToRedBallMaze-Easy-Test-v0", 123): "8175fc79359c0d15",
    ("BabyAIPP/GoToRedBallMaze-Hard-Train-v0", 0): "453b9b24578e6a9d",
    ("BabyAIPP/GoToRedBallMaze-Hard-TargetPairOnly-v0", 7): "2d3724d28a208654",
    ("BabyAIPP/GoToRedBallMaze-Hard-Test-v0", 123): "2a75684a0479f87a",
    ("BabyAIPP/GoTo-Easy-Train-v0", 0): "728fc92197f9ec1b",
    ("BabyAIPP/GoTo-Easy-TargetPairOnly-v0", 7): "bac9cc1a01d75dcb",
    ("BabyAIPP/GoTo-Easy-Test-v0", 123): "0c20f2eaa053b583",
    ("BabyAIPP/GoTo-Hard-Train-v0", 0): "b8907a384dc775f8",
    ("BabyAIPP/GoTo-Hard-TargetPairOnly-v0", 7): "5ddb0186bd78e037",
    ("BabyAIPP/GoTo-Hard-Test-v0", 123): "1901ed8fec511041",
    ("BabyAIPP/PutNextLocal-Easy-Train-v0", 0): "2a1ccc76efd902ec",
    ("BabyAIPP/PutNextLocal-Easy-TargetPairOnly-v0", 7): "02979b13efda0821",
    ("BabyAIPP/PutNextLocal-Easy-Test-v0", 123): "dc2f79c0abcbf72d",
    ("BabyAIPP/PutNextLocal-Hard-Train-v0", 0): "e6a8870ebb2b84cd",
    ("BabyAIPP/PutNextLocal-Hard-TargetPairOnly-v0", 7): "5a1d65396222eda4",
    ("BabyAIPP/PutNextLocal-Hard-Test-v0", 123): "147f8a16742d218d",
    ("BabyAIPP/PickupLoc-Easy-Train-v0", 0): "3d5fff8480f7d063",
    ("BabyAIPP/PickupLoc-Easy-TargetPairOnly-v0", 7): "56c65aea33026524",
    ("BabyAIPP/PickupLoc-Easy-Test-v0", 123): "0d486e03c5800013",
    ("BabyAIPP/PickupLoc-Hard-Train-v0", 0): "454ed1b0e0d14f82",
    ("BabyAIPP/PickupLoc-Hard-TargetPairOnly-v0", 7): "7dfb2adb5e23afcd",
    ("BabyAIPP/PickupLoc-Hard-Test-v0", 123): "1cd7048d71b9d7d1",
    ("BabyAIPP/Unlock-Easy-Train-v0", 0): "5886e1a420b01e45",
    ("BabyAIPP/Unlock-Easy-TargetPairOnly-v0", 7): "4f0234a201046132",
    ("BabyAIPP/Unlock-Easy-Test-v0", 123): "30d34a4c0c6b06c5",
    ("BabyAIPP/Unlock-Hard-Train-v0", 0): "50ecd9d02c6ca169",
    ("BabyAIPP/Unlock-Hard-TargetPairOnly-v0", 7): "ea8aa5db04d022e8",
    ("BabyAIPP/Unlock-Hard-Test-v0", 123): "2e6d5e01897e9d5e",
    ("BabyAIPP/GoToSeq-Easy-Train-v0", 0): "4e44cb8844bed3ca",
    ("BabyAIPP/GoToSeq-Easy-TargetPairOnly-v0", 7): "5aa483e2a2421e0c",
    ("BabyAIPP/GoToSeq-Easy-Test-v0", 123): "c292cbfbc30da83a",
    ("BabyAIPP/GoToSeq-Hard-Train-v0", 0): "2b75f20b4782ad2e",
    ("BabyAIPP/GoToSeq-Hard-TargetPairOnly-v0", 7): "9372c894e895f43f",
    ("BabyAIPP/GoToSeq-Hard-Test-v0", 123): "03d77ef7bb18d117",
}


@pytest.mark.parametrize("env_id, seed", list(SPARSE_FINGERPRINTS))
def test_sparse_floor_episodes_are_unchanged(env_id: str, seed: int) -> None:
    assert _fingerprint(env_id, seed) == SPARSE_FINGERPRINTS[env_id, seed]


#: Fingerprints of dense-floor episodes as the headroom tables of docs/environments.md measured
#: them (recorded at c4733af, before the generation speed-ups, which must keep every level). A
#: change of the dense rules changes these on purpose: then rerun the headroom rows and the studies.
DENSE_FINGERPRINTS = {
    ("BabyAIPP/GoToRedBallDense-Hard-Train-v0", 0): "7bd6f0c78375cf72",
    ("BabyAIPP/GoToRedBallDense-Hard-TargetPairOnly-v0", 7): "0b90fd46a3ab6662",
    ("BabyAIPP/GoToRedBallDense-Easy-TargetPairOnly-v0", 7): "fb947fe5e3678899",
    ("BabyAIPP/GoToLocalDense-Hard-Train-v0", 0): "3a353661cabb86b8",
    ("BabyAIPP/GoToLocalDense-Hard-TargetPairOnly-v0", 7): "d19328b4bb683d07",
    ("BabyAIPP/GoToLocalDense-Easy-TargetPairOnly-v0", 7): "38396cf8986df924",
    ("BabyAIPP/GoToRedBallMazeDense-Hard-Train-v0", 0): "d6eadb649bd63969",
    ("BabyAIPP/GoToRedBallMazeDense-Hard-TargetPairOnly-v0", 7): "66d809d065855578",
    ("BabyAIPP/GoToRedBallMazeDense-Easy-TargetPairOnly-v0", 7): "e281d6e538bdd657",
    ("BabyAIPP/GoToDense-Hard-Train-v0", 0): "a264b2d16fcbee4c",
    ("BabyAIPP/GoToDense-Hard-TargetPairOnly-v0", 7): "c06c18aefc70c02b",
    ("BabyAIPP/GoToDense-Easy-TargetPairOnly-v0", 7): "8ad5742c84ab3a98",
    ("BabyAIPP/PutNextLocalDense-Hard-Train-v0", 0): "dd6a99b5280b1af9",
    ("BabyAIPP/PutNextLocalDense-Hard-TargetPairOnly-v0", 7): "6c51aa18434a3d79",
    ("BabyAIPP/PutNextLocalDense-Easy-TargetPairOnly-v0", 7): "7e86dd6d124e0b06",
    ("BabyAIPP/PickupLocDense-Hard-Train-v0", 0): "d64050c99dd1ec23",
    ("BabyAIPP/PickupLocDense-Hard-TargetPairOnly-v0", 7): "d3462eff0eed870e",
    ("BabyAIPP/PickupLocDense-Easy-TargetPairOnly-v0", 7): "23a51658705265dc",
    ("BabyAIPP/UnlockDense-Hard-Train-v0", 0): "f526d952250ee15e",
    ("BabyAIPP/UnlockDense-Hard-TargetPairOnly-v0", 7): "43ca7d7148772450",
    ("BabyAIPP/UnlockDense-Easy-TargetPairOnly-v0", 7): "c96c4d4a8ba9728b",
    ("BabyAIPP/GoToSeqDense-Hard-Train-v0", 0): "363d1b86b808a039",
    ("BabyAIPP/GoToSeqDense-Hard-TargetPairOnly-v0", 7): "2b9967a583c33682",
    ("BabyAIPP/GoToSeqDense-Easy-TargetPairOnly-v0", 7): "f90315a56ac9792e",
}


@pytest.mark.parametrize("env_id, seed", list(DENSE_FINGERPRINTS))
def test_dense_floor_episodes_are_those_the_docs_measured(env_id: str, seed: int) -> None:
    assert _fingerprint(env_id, seed) == DENSE_FINGERPRINTS[env_id, seed]


# ---------------------------------------------------------------------------- keyword and ids
def test_bad_floor_value_names_the_valid_ones() -> None:
    for bad in ("thick", "Dense", None, 1):
        with pytest.raises(InvalidChoiceError) as err:
            quiet_make("BabyAIPP/GoToRedBall-Easy-Train-v0", floor=bad)
        message = str(err.value)
        assert "floor" in message and repr(bad) in message and "sparse, dense" in message
        assert "\n" not in message
    assert FLOORS == ("sparse", "dense")


def test_every_family_has_a_dense_alias_registered_for_every_difficulty_and_split() -> None:
    sparse = [t for t, spec in envs.TASKS.items() if spec.floor == "sparse"]
    dense = [t for t, spec in envs.TASKS.items() if spec.floor == "dense"]
    assert len(sparse) == len(dense) == 10 and dense == [f"{t}Dense" for t in sparse]
    for task in dense:
        assert envs.TASKS[task].cls.__mro__[1] is envs.TASKS[task.removesuffix("Dense")].cls
        for difficulty in envs.DIFFICULTIES:
            for split in envs.SPLITS:
                assert envs.env_id(task, difficulty, split) in envs.ENV_IDS
    env = quiet_make("BabyAIPP/GoToLocalDense-Hard-TargetPairOnly-v0").unwrapped
    assert (env.floor_layout, env.difficulty, env.split) == ("dense", "Hard", "TargetPairOnly")
    assert quiet_make("BabyAIPP/GoToLocal-Hard-Test-v0").unwrapped.floor_layout == "sparse"
    assert envs.parse_env_id("BabyAIPP/GoToLocalDense-Hard-Test-v0") == ("GoToLocalDense", "Hard", "Test")
    assert envs.split_ids("BabyAIPP/GoToLocalDense-Easy-Train-v0")["TargetPairOnly"] == (
        "BabyAIPP/GoToLocalDense-Easy-TargetPairOnly-v0"
    )


def test_dense_id_and_floor_keyword_give_the_same_levels() -> None:
    by_id = quiet_make("BabyAIPP/GoToRedBallDense-Hard-Test-v0")
    by_keyword = quiet_make("BabyAIPP/GoToRedBall-Hard-Test-v0", floor="dense")
    for seed in range(5):
        a, b = Level.from_env(_reset(by_id, seed)), Level.from_env(_reset(by_keyword, seed))
        b.task = a.task  # the only difference: the name of the task the level was captured from
        assert a == b
    assert Level.from_env(by_id).task == "GoToRedBallDense"


def test_cli_lists_the_dense_ids() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "babyaipp.cli", "levels", "--task", "GoToRedBallDense"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [line.split()[0] for line in out] == [
        envs.env_id("GoToRedBallDense", d, s) for d in envs.DIFFICULTIES for s in envs.SPLITS
    ]
    assert all("dense floor" in line for line in out)


# ---------------------------------------------------------------------------- seeding
def _reset(env, seed: int | None):
    env.reset(seed=seed)
    return env


def test_same_seed_same_dense_level_in_a_fresh_env() -> None:
    env_id = "BabyAIPP/GoToSeqDense-Hard-Test-v0"
    a, b = quiet_make(env_id), quiet_make(env_id)
    for seed in (0, 1, 2):
        assert Level.from_env(_reset(a, seed)) == Level.from_env(_reset(b, seed))
        assert Level.from_env(_reset(a, None)) == Level.from_env(_reset(b, None))  # the env's own stream too
    assert not np.array_equal(_reset(a, 0).unwrapped.floor, _reset(b, 1).unwrapped.floor)


# ---------------------------------------------------------------------------- solvability
def _oracle_results(env_id: str, episodes: int, first_seed: int = FIRST_SEED) -> list[int]:
    """Seeds of the episodes the oracle fails (no plan, trap, truncation or wrong object)."""
    env = quiet_make(env_id)
    oracle = Oracle(env)
    failed = []
    for seed in range(first_seed, first_seed + episodes):
        env.reset(seed=seed)
        oracle.reset()
        reward = 0.0
        while True:
            try:
                action = oracle.act()
            except NoPlanError:
                break
            _, reward, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        if reward <= 0:
            failed.append(seed)
    return failed


@pytest.mark.parametrize("difficulty", envs.DIFFICULTIES)
@pytest.mark.parametrize("task", ["GoToRedBallDense", "GoToLocalDense"])
def test_oracle_solves_every_dense_level(task: str, difficulty: str) -> None:
    assert _oracle_results(envs.env_id(task, difficulty, "Test"), 500) == []


@pytest.mark.slow
@pytest.mark.parametrize("difficulty", envs.DIFFICULTIES)
@pytest.mark.parametrize("task", ["GoToRedBallDense", "GoToLocalDense"])
def test_oracle_solves_every_dense_level_many(task: str, difficulty: str) -> None:
    assert _oracle_results(envs.env_id(task, difficulty, "TargetPairOnly"), 3000) == []


#: PutNext: the oracle fails seed 87 of ~300 on the sparse floor too (the same level, a planning
#: limit of put-next, not a floor matter).
OTHER_DENSE = ["GoToRedBallMaze", "GoToObjMaze", "GoTo", "PutNextLocal", "PutNext", "PickupLoc", "Unlock", "GoToSeq"]


@pytest.mark.slow
@pytest.mark.parametrize("difficulty", envs.DIFFICULTIES)
@pytest.mark.parametrize("task", OTHER_DENSE)
def test_oracle_solves_the_other_dense_families(task: str, difficulty: str) -> None:
    failed = _oracle_results(envs.env_id(f"{task}Dense", difficulty, "Test"), 300, first_seed=0)
    assert len(failed) <= 3, failed


# ---------------------------------------------------------------------------- density
def _candidate_count(env) -> int:
    """Free cells a dense tile may cover: not on or 4-next to the start or a door, nor (where a
    colour can be magic) next to an object to pick up (the dense placement rules)."""
    base = env.unwrapped
    blocked = {tuple(int(v) for v in base.agent_pos)}
    blocked |= {(x, y) for x in range(base.width) for y in range(base.height) if _is(base, x, y, "door")}
    near = {(x + dx, y + dy) for x, y in blocked for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))}
    if "magic" in dyn.DIFFICULTY_PROPERTIES[base.difficulty]:
        near |= base._pickup_cells()
    return sum(
        base.grid.get(x, y) is None and (x, y) not in near for x in range(base.width) for y in range(base.height)
    )


def _is(base, x: int, y: int, kind: str) -> bool:
    cell = base.grid.get(x, y)
    return cell is not None and cell.type == kind


@pytest.mark.parametrize("difficulty", envs.DIFFICULTIES)
@pytest.mark.parametrize("task", ["GoToRedBallDense", "GoToLocalDense", "PutNextLocalDense", "PickupLocDense"])
def test_every_colour_appears_and_almost_every_candidate_cell_is_tiled(task: str, difficulty: str) -> None:
    env = quiet_make(envs.env_id(task, difficulty, "Test"))
    colours = {COLOR_TO_IDX[c] for c in dyn.DIFFICULTY_COLOURS[difficulty]}
    fractions = []
    for seed in range(FIRST_SEED, FIRST_SEED + 200):
        base = _reset(env, seed).unwrapped
        tiles = base.floor[base.floor != NO_TILE]
        assert set(np.unique(tiles).tolist()) == colours, seed
        fractions.append(len(tiles) / _candidate_count(env))
    # measured over 300 levels: mean 0.94-0.98, 1st percentile 0.68-0.83, minimum 0.52 (PutNextLocal)
    assert np.mean(fractions) >= 0.9 and min(fractions) >= 0.4


@pytest.mark.slow
@pytest.mark.parametrize("task", ["GoToRedBallMaze", "GoToObjMaze", "GoTo", "PutNext", "Unlock", "GoToSeq"])
def test_maze_levels_are_tiled_almost_everywhere(task: str) -> None:
    env = quiet_make(envs.env_id(f"{task}Dense", "Hard", "Test"))
    fractions = [(_reset(env, s).unwrapped.floor != NO_TILE).sum() / _candidate_count(env) for s in range(60)]
    assert np.mean(fractions) >= 0.97  # measured 0.984-1.000


def _instruction_target_on_plain_floor(env) -> bool:
    base = env.unwrapped
    start = tuple(int(v) for v in base.agent_pos)
    targets = {tuple(int(v) for v in obj.cur_pos) for obj in base.instrs.desc.obj_set}
    return bool(targets & reachable_targets(base.grid, start, base.floor != NO_TILE))


@pytest.mark.parametrize("difficulty", envs.DIFFICULTIES)
def test_the_goal_is_never_reachable_without_crossing_a_tile(monkeypatch, difficulty: str) -> None:
    """Levels whose instruction can be done on plain floor are redrawn, so reaching the ball means crossing tiles.

    Without the redraw about a third of the levels would need no tile (measured 0.36 Easy, 0.34
    Hard over 300 levels): the check below would catch its loss.
    """
    env_id = envs.env_id("GoToRedBallDense", difficulty, "Test")

    def plain_fraction(levels: int) -> float:
        env = quiet_make(env_id)
        return float(
            np.mean(
                [_instruction_target_on_plain_floor(_reset(env, s)) for s in range(FIRST_SEED, FIRST_SEED + levels)]
            )
        )

    assert plain_fraction(300) == 0.0
    monkeypatch.setattr(core, "DENSE_REDRAWS", 0)
    assert plain_fraction(100) > 0.2


def _doable_on_plain_and_one_colour(env) -> bool:
    """Whether plain floor plus the tiles of one colour reach an object of every description of the instruction."""
    base = env.unwrapped
    start = tuple(int(v) for v in base.agent_pos)
    groups = base._instruction_groups()
    for colour in dyn.DIFFICULTY_COLOURS[base.difficulty]:
        one = reachable_targets(base.grid, start, (base.floor != NO_TILE) & (base.floor != COLOR_TO_IDX[colour]))
        if all(group & one for group in groups):
            return True
    return False


@pytest.mark.parametrize("task", ["GoToRedBallDense", "GoToLocalDense"])
def test_hard_levels_need_two_colours(monkeypatch, task: str) -> None:
    """On Hard every way to the target crosses two colours, so a non-reader must guess a safe pair.

    Without the Hard rule's redraws (layouts and levels; the proper colouring kept) a large share
    of levels can be done on plain floor and one colour: the check below catches its loss.
    """
    env_id = envs.env_id(task, "Hard", "Test")

    def leaky_fraction(levels: int) -> float:
        env = quiet_make(env_id)
        seeds = range(FIRST_SEED, FIRST_SEED + levels)
        return float(np.mean([_doable_on_plain_and_one_colour(_reset(env, s)) for s in seeds]))

    assert leaky_fraction(200) <= 0.01  # kept only once a level's redraws are spent
    monkeypatch.setattr(core, "DENSE_REDRAWS", 0)
    monkeypatch.setattr("babyaipp.envs.tiles.PAIR_REDRAWS", 0)
    assert leaky_fraction(100) > 0.2


@pytest.mark.parametrize("task", ["PickupLocDense", "PutNextLocalDense"])
def test_cells_next_to_objects_to_pick_up_stay_plain_on_hard(task: str) -> None:
    """A pickup made from a magic tile entered with a turn is pushed down, perhaps onto a trap: on
    Hard the cells facing an object to pick up are plain (tests/envs/test_oracle.py's trap-free
    check failed on 2 of 40 PickupLocDense-Hard levels without this)."""
    env = quiet_make(envs.env_id(task, "Hard", "Test"))
    for seed in range(FIRST_SEED, FIRST_SEED + 50):
        base = _reset(env, seed).unwrapped
        cells = base._pickup_cells()
        assert cells, seed
        assert all(base.floor[c] == NO_TILE for c in cells), seed
    easy_env = quiet_make(envs.env_id(task, "Easy", "Test"))  # no magic on Easy: the cells may be tiled
    tiled_on_easy = 0
    for seed in range(FIRST_SEED, FIRST_SEED + 20):
        base = _reset(easy_env, seed).unwrapped
        tiled_on_easy += any(base.floor[c] != NO_TILE for c in base._pickup_cells())
    assert tiled_on_easy > 0


# ---------------------------------------------------------------------------- blind to the mapping
def _floors_under(monkeypatch, env_id: str, seed: int, mappings, floor: str) -> list[np.ndarray]:
    """The floor of level ``seed`` when the episode's mapping is replaced by each of ``mappings``.

    The real draw still happens (same random stream), only its result is swapped.
    """
    env = quiet_make(env_id, floor=floor)
    original = dyn.sample_mapping
    floors = []
    for mapping in mappings:

        def forced(rng, difficulty, split, properties_per_colour, mapping=mapping):
            original(rng, difficulty, split, properties_per_colour)
            return dict(mapping)

        monkeypatch.setattr(dyn, "sample_mapping", forced)
        base = _reset(env, seed).unwrapped
        assert dict(base.dynamics) == dict(mapping)
        floors.append(base.floor.copy())
    monkeypatch.setattr(dyn, "sample_mapping", original)
    return floors


def _flipud_magic(mapping) -> bool:
    return any("flipud" in p and "magic" in p for _, p in mapping)


@pytest.mark.parametrize("floor", FLOORS)
@pytest.mark.parametrize("difficulty", envs.DIFFICULTIES)
def test_dense_layout_does_not_depend_on_the_mapping(monkeypatch, floor: str, difficulty: str) -> None:
    """Same seed, the mapping swapped (trap on each colour in turn, or none): the same dense floor.

    Hard mappings with a flipud+magic colour are left out: there the physics check may redraw a
    layout (measured on GoToLocalDense-Hard: 18% of seeds differ under one of three such
    mappings), the only way the mapping reaches the layout. The sparse floor, which paints each
    colour at its property's density, must fail the same check: the test can tell.
    """
    mappings = dyn.all_mappings(difficulty, dyn.DEFAULT_PROPERTIES_PER_COLOUR[difficulty])
    mappings = [m for m in mappings if not _flipud_magic(m)][:: 1 if difficulty == "Easy" else 9]
    trap_colours = {c for m in mappings for c, p in m if "trap" in p}
    assert trap_colours == set(dyn.DIFFICULTY_COLOURS[difficulty])  # the trap moves over every colour
    env_id = envs.env_id("GoToLocal", difficulty, "Test")
    same = []
    for seed in range(FIRST_SEED, FIRST_SEED + 10):
        floors = _floors_under(monkeypatch, env_id, seed, mappings, floor=floor)
        same.append(all(np.array_equal(floors[0], f) for f in floors[1:]))
    assert all(same) if floor == "dense" else not any(same)


def test_trap_colour_covers_its_share_of_the_dense_floor() -> None:
    """Over whole distributions (redraws included) the trap colour covers 1/3 of the Hard tiles.

    Measured 0.33 over 300 Test levels; on the sparse floor, where trap tiles are 5% of cells, the
    share is far lower, so a layout that painted traps apart would fail here.
    """
    shares = {}
    for name in ("GoToRedBallDense", "GoToRedBall"):
        env = quiet_make(envs.env_id(name, "Hard", "Test"))
        share = []
        for seed in range(FIRST_SEED, FIRST_SEED + 300):
            base = _reset(env, seed).unwrapped
            trap = [COLOR_TO_IDX[c] for c, p in base.dynamics.items() if "trap" in p]
            tiles = base.floor[base.floor != NO_TILE]
            share.append(np.mean(tiles == trap[0]))
        shares[name] = float(np.mean(share))
    assert abs(shares["GoToRedBallDense"] - 1 / 3) < 0.03, shares
    assert shares["GoToRedBall"] < 0.2, shares
