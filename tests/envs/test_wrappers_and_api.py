"""Copying and pickling, rendering, the token wrapper, silence, and the ``babyaipp levels|play`` CLI."""

from __future__ import annotations

import copy
import os
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, COLORS, OBJECT_TO_IDX
from minigrid.core.world_object import Key
from PIL import Image

import babyaipp.envs as envs
from babyaipp.cli import main
from babyaipp.envs.registration import make_tokenized
from babyaipp.envs.text import VOCABULARY, decode
from babyaipp.envs.wrappers import TokenObsWrapper

from .conftest import EAST, hand_built_env, quiet_make

ACTION_SCRIPT = [2, 2, 0, 2, 1, 2, 2, 3, 2, 1, 2, 2, 5, 0, 2, 2, 4, 2, 1, 2] * 3


def _same_obs(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a)


def _trace(env, actions: list[int]) -> list:
    out = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs, reward, terminated, truncated, env.unwrapped.step_count))
        if terminated or truncated:
            break
    return out


def _traces_equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all(_same_obs(x[0], y[0]) and x[1:] == y[1:] for x, y in zip(a, b))


# ---------------------------------------------------------------------------- copy and pickle
@pytest.mark.parametrize("env_id", ["BabyAIPP/GoToLocal-Hard-Test-v0", "BabyAIPP/GoToRedBallMaze-Easy-Test-v0"])
@pytest.mark.parametrize("clone", ["deepcopy", "pickle"])
def test_a_copy_steps_identically_to_the_original(env_id: str, clone: str):
    env = quiet_make(env_id)
    env.reset(seed=4)
    _trace(env, ACTION_SCRIPT[:5])
    twin = copy.deepcopy(env) if clone == "deepcopy" else pickle.loads(pickle.dumps(env))
    assert np.array_equal(twin.unwrapped.floor, env.unwrapped.floor)
    assert twin.unwrapped.dynamics == env.unwrapped.dynamics
    assert _traces_equal(_trace(twin, ACTION_SCRIPT), _trace(env, ACTION_SCRIPT))
    # ... and the copies' random generators continue identically into the next episode.
    assert _same_obs(twin.reset()[0], env.reset()[0])


def test_a_copy_is_independent():
    env = quiet_make("BabyAIPP/GoToLocal-Hard-Test-v0").unwrapped
    env.reset(seed=1)
    before = (tuple(env.agent_pos), env.agent_dir, env.step_count, env.floor.copy())
    twin = copy.deepcopy(env)
    _trace(twin, [2, 0, 2, 1, 2])
    twin.floor[:] = -1
    assert (tuple(env.agent_pos), env.agent_dir, env.step_count) == before[:3]
    assert np.array_equal(env.floor, before[3])


# ---------------------------------------------------------------------------- rendering
def _colour_pixel(colour: str) -> np.ndarray:
    """The pixel value a bare tile of ``colour`` is drawn with (half the minigrid colour)."""
    return (COLORS[colour] / 2).astype(np.uint8)


def _has_pixel(frame: np.ndarray, pixel: np.ndarray) -> bool:
    return bool((frame == pixel).all(axis=-1).any())


def test_render_shows_every_floor_colour():
    tile = 12
    env = quiet_make("BabyAIPP/GoToLocal-Hard-Test-v0", render_mode="rgb_array", tile_size=tile, highlight=False)
    for seed in range(3):
        _, info = env.reset(seed=seed)
        frame = env.render()
        base = env.unwrapped
        assert frame.shape == (base.height * tile, base.width * tile, 3) and frame.dtype == np.uint8
        for colour in info["dynamics"]:
            assert _has_pixel(frame, _colour_pixel(colour)), (seed, colour)


def test_render_draws_a_tile_in_its_cell_and_an_object_on_it():
    tile = 16
    env = hand_built_env(agent_pos=(4, 4), agent_dir=EAST, tiles={(5, 6): "green"}, dynamics={"green": ("sticky",)})
    env.render_mode = "rgb_array"
    env.tile_size = tile
    frame = env.get_frame(highlight=False, tile_size=tile)
    cell = frame[6 * tile : 7 * tile, 5 * tile : 6 * tile]
    green = _colour_pixel("green")
    assert (cell == green).all(axis=-1).mean() > 0.5
    assert (frame == green).all(axis=-1).sum() == (cell == green).all(axis=-1).sum()  # nowhere else
    env.grid.set(5, 6, Key("yellow"))
    cell = env.get_frame(highlight=False, tile_size=tile)[6 * tile : 7 * tile, 5 * tile : 6 * tile]
    assert _has_pixel(cell, green) and _has_pixel(cell, COLORS["yellow"].astype(np.uint8))
    env.floor[:] = -1
    env._padded_floor[:] = -1
    env._dynamics = {}
    assert not _has_pixel(env.get_frame(highlight=False, tile_size=tile), green)


def _highlighted(pixel: np.ndarray) -> np.ndarray:
    """minigrid's ``highlight_img`` applied to one pixel (visible cells are blended with white)."""
    return (pixel + 0.30 * (np.array([255, 255, 255], dtype=np.uint8) - pixel)).clip(0, 255).astype(np.uint8)


def test_pov_render_shows_the_floor_where_the_view_does():
    tile = 8
    env = quiet_make("BabyAIPP/GoToLocal-Easy-Test-v0", render_mode="rgb_array", tile_size=tile, agent_pov=True)
    tiles_seen = 0
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        frame = env.render()
        view = obs["image"]
        assert frame.shape == (view.shape[1] * tile, view.shape[0] * tile, 3)
        for colour in info["dynamics"]:
            pixel = _highlighted(_colour_pixel(colour))
            for i in range(view.shape[0]):
                for j in range(view.shape[1]):
                    cell = frame[j * tile : (j + 1) * tile, i * tile : (i + 1) * tile]
                    is_tile = tuple(view[i, j, :2]) == (OBJECT_TO_IDX["floor"], COLOR_TO_IDX[colour])
                    assert _has_pixel(cell, pixel) == is_tile, (seed, colour, i, j)
                    tiles_seen += is_tile
    assert tiles_seen > 10


# ---------------------------------------------------------------------------- token wrapper
def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@pytest.mark.parametrize("task", list(envs.TASKS))
def test_tokens_decode_back_to_the_text_over_the_closed_vocabulary(task: str):
    env_id = envs.env_id(task, "Hard", "Test")
    raw = quiet_make(env_id)
    tokenized = make_tokenized(env_id)
    space = tokenized.observation_space
    for seed in range(8):
        obs, _ = raw.reset(seed=seed)
        tok, _ = tokenized.reset(seed=seed)
        assert space.contains(tok)
        assert tok["mission"].dtype == np.int64 and tok["description"].shape == (3, 8)
        assert np.array_equal(tok["image"], obs["image"]) and tok["direction"] == obs["direction"]
        for ids in (tok["mission"], tok["description"]):
            assert ids.max() < len(VOCABULARY) and not (ids == 1).any(), "unknown word: vocabulary not closed"
        assert decode(tok["mission"]) == " ".join(_words(obs["mission"])), obs["mission"]
        sentences = [s for s in obs["description"].split(".") if s.strip()]
        assert (tok["description"].any(axis=1)).sum() == len(sentences)
        for row, sentence in zip(tok["description"], sentences):
            assert decode(row) == " ".join(_words(sentence))
        assert not tok["description"][len(sentences) :].any()


@pytest.mark.filterwarnings("ignore:.*not within the observation space")  # text="none": see test_registration
@pytest.mark.parametrize("text", ["none", "partial", "lorem"])
def test_token_rows_follow_the_text_mode(text: str):
    env = make_tokenized("BabyAIPP/GoToLocal-Hard-Test-v0", text=text)
    counts = set()
    for seed in range(30):
        tok, _ = env.reset(seed=seed)
        rows = int(tok["description"].any(axis=1).sum())
        counts.add(rows)
        assert tok["description"][rows:].sum() == 0  # sentences first, padding after
        assert not (tok["description"] == 1).any()
    assert counts == {"none": {0}, "partial": {1, 2, 3}, "lorem": {3}}[text]


def test_token_wrapper_is_deterministic():
    a = make_tokenized("BabyAIPP/GoToSeq-Hard-Test-v0")
    b = TokenObsWrapper(quiet_make("BabyAIPP/GoToSeq-Hard-Test-v0"))
    for seed in range(5):
        ta, tb = a.reset(seed=seed)[0], b.reset(seed=seed)[0]
        assert _same_obs(ta, tb)
        for action in (2, 0, 2):
            assert _same_obs(a.step(action)[0], b.step(action)[0])


def test_vocabulary_is_closed_and_the_same_in_a_fresh_interpreter():
    assert VOCABULARY[0] == "<pad>" and len(set(VOCABULARY)) == len(VOCABULARY)
    code = "from babyaipp.envs.text import VOCABULARY; print(','.join(VOCABULARY))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().split(",") == list(VOCABULARY)


def test_stable_baselines3_accepts_the_tokenized_env():
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = make_tokenized("BabyAIPP/GoToLocal-Easy-Train-v0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sb3_checker.check_env(env, warn=False)


# ---------------------------------------------------------------------------- silence
def test_resetting_and_stepping_prints_nothing(capfd):
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for task in envs.TASKS:
            for difficulty in ("Easy", "Hard"):
                env = envs.make(envs.env_id(task, difficulty, "Test"), text="partial")
                for seed in range(6):
                    env.reset(seed=seed)
                    for _ in range(10):
                        _, _, terminated, truncated, _ = env.step(int(rng.integers(7)))
                        if terminated or truncated:
                            break
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert [str(w.message) for w in caught] == []


# ---------------------------------------------------------------------------- CLI
def test_cli_levels_lists_every_id(capsys):
    assert main(["levels"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(envs.ENV_IDS)
    assert main(["levels", "--task", "GoToLocal"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all(line.startswith("BabyAIPP/GoToLocal-") for line in lines)


def test_cli_console_script_lists_120_ids():
    out = subprocess.run([sys.executable, "-m", "babyaipp.cli", "levels"], capture_output=True, text=True, check=True)
    assert len(out.stdout.splitlines()) == 120


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_cli_play_writes_an_image(tmp_path, capsys, suffix: str):
    path = tmp_path / f"episode{suffix}"
    tile = 10
    code = main(
        ["play", "BabyAIPP/GoToRedBall-Hard-Test-v0", "--seed", "3", "--out", str(path), "--tile-size", str(tile)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "success" in out and str(path) in out
    steps = int(re.search(r"in (\d+) steps", out)[1])
    env = quiet_make("BabyAIPP/GoToRedBall-Hard-Test-v0").unwrapped
    env.reset(seed=3)
    side = env.width * tile
    with Image.open(path) as image:
        assert image.format == suffix[1:].upper()
        if suffix == ".png":
            assert image.size == (2 * side + 8, env.height * tile)
        else:
            assert image.size == (side, env.height * tile)
            # Pillow merges identical consecutive frames, adding up their durations.
            durations = []
            for frame in range(image.n_frames):
                image.seek(frame)
                durations.append(image.info["duration"])
            assert 2 <= image.n_frames <= steps + 1
            assert abs(sum(durations) - (steps + 1) * 1000 / 6) <= 10 * (steps + 1)


@pytest.mark.parametrize(
    "argv, names",
    [
        (["play", "BabyAIPP/GoToBlueBall-Easy-Train-v0"], ["GoToBlueBall", "GoToRedBall"]),
        (["play", "BabyAIPP/GoToLocal-Medium-Train-v0"], ["Medium", "Easy, Hard"]),
        (["play", "BabyAIPP/GoToLocal-Easy-Train-v0", "--out", "x.jpg"], [".jpg", ".png", ".gif"]),
        (["play", "BabyAIPP/GoToLocal-Easy-Train-v0", "--text", "loud"], ["loud", "lorem"]),
        (["levels", "--task", "Dance"], ["Dance", "GoToLocal"]),
    ],
)
def test_cli_bad_input_exits_2_with_the_message(tmp_path, monkeypatch, capsys, argv: list[str], names: list[str]):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    for name in names:
        assert name in captured.err, captured.err
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("option, value", [("--tile-size", "0"), ("--seed", "-1")])
def test_cli_play_rejects_bad_numbers_cleanly(tmp_path, capsys, option: str, value: str):
    argv = ["play", "BabyAIPP/GoToRedBall-Easy-Train-v0", "--out", str(tmp_path / "x.png"), option, value]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refusing the value is fine too
        code = exit_.code
    assert code == 2
    assert value in capsys.readouterr().err
