"""``--engine device-levels``: training on levels drawn on the engine's device (no CPU worker), for
both trainers, with exact resume, and the device trainer's progress bar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.agents import training, training_resume
from babyaipp.agents.progress import read_progress
from babyaipp.agents.runs import load_run
from babyaipp.agents.training_setup import SEEDS_PER_RUN, TrainResult, make_vec_env
from babyaipp.envs.sb3 import BatchedSB3VecEnv
from babyaipp.errors import ConfigError

ENV = "BabyAIPP/GoToRedBall-Easy-Train-v0"
#: 4 envs x 16 steps = 64 frames per update, two minibatches of 32.
TINY = {"n_steps": 16, "batch_size": 32}


def _train(run: Path, trainer: str, steps: int, **kwargs) -> TrainResult:
    return training.train(
        run,
        model="image",
        steps=steps,
        n_envs=4,
        seed=0,
        device="cpu",
        checkpoint_every=64,
        trainer=trainer,
        engine="device-levels",
        hyperparameters=TINY,
        **kwargs,
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_run(run)[0].policy.state_dict()


def test_the_run_engine_draws_levels_on_the_device_with_no_worker():
    vec = make_vec_env(ENV, 4, seed=2, engine="device-levels")
    try:
        vec.reset()
        engine = vec.venv.engine
        assert engine.device_levels is not None and not engine.refresh
        assert engine.generator_procs.workers == 0, "no CPU worker makes levels"
        seeds = engine.device_levels.layout_seeds.tolist()
        assert sorted(seeds) == list(range(2 * SEEDS_PER_RUN, 3 * SEEDS_PER_RUN)), "layouts: the run's seed block"
        assert (engine.state["level_seed"] == -1).all(), "every episode is a drawn level"
    finally:
        vec.close()


@pytest.mark.parametrize("trainer", ["device", "sb3"])
def test_resume_ends_where_the_uninterrupted_run_ends(trainer, tmp_path):
    straight = _train(tmp_path / "straight", trainer, 192)
    _train(tmp_path / "split", trainer, 64)
    resumed = training_resume.resume(tmp_path / "split", steps=192, device="cpu")
    assert resumed.resumed_from == 64
    config = json.loads((tmp_path / "split" / "config.json").read_text())
    assert config["engine"] == "device-levels"
    rows = [(r["timesteps"], r["episodes"], r["mean_return"]) for r in read_progress(straight.run_dir)]
    assert rows == [(r["timesteps"], r["episodes"], r["mean_return"]) for r in read_progress(resumed.run_dir)]
    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_snapshot_restores_the_draws_across_a_new_stock():
    """The stock is refilled mid-way (a stock of 8 levels, 4 envs): the restored engine draws the
    same new levels as the original."""

    def engine_env() -> BatchedSB3VecEnv:
        vec = BatchedSB3VecEnv(ENV, 4, pool_size=16, seed=0, device_levels=True)
        vec.engine.device_levels.stock_size = 8
        return vec

    def play(vec: BatchedSB3VecEnv, steps: int) -> list[torch.Tensor]:
        seen = []
        actions = torch.Generator().manual_seed(1)
        for _ in range(steps):
            vec.step_async(torch.randint(3, (4,), generator=actions).numpy())
            obs, *_ = vec.step_wait()
            seen.append(torch.as_tensor(obs["image"]).clone())
            seen.append(vec.engine.state["cells"].clone())  # the floors of the levels being played
        return seen

    original = engine_env()
    original.reset()
    play(original, 40)
    snapshot = original.snapshot()
    drawn_before = original.engine.device_levels.levels_drawn
    expected = play(original, 200)
    assert original.engine.device_levels.levels_drawn > drawn_before, "the window must draw a new stock"
    copy = engine_env()
    copy.restore(snapshot)
    got = play(copy, 200)
    assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_a_snapshot_is_refused_by_an_engine_with_the_other_level_source():
    drawn = BatchedSB3VecEnv(ENV, 2, pool_size=8, seed=0, device_levels=True)
    drawn.reset()
    pooled = BatchedSB3VecEnv(ENV, 2, pool_size=8, seed=0)
    with pytest.raises(ConfigError, match="device_levels"):
        pooled.restore(drawn.snapshot())


def test_a_snapshot_from_another_kind_of_device_is_refused_before_anything_changes():
    """A CUDA generator's state (16 bytes of Philox) cannot seed a CPU engine's Mersenne Twister:
    one line naming the device, not torch's RuntimeError, and the engine untouched."""
    vec = BatchedSB3VecEnv(ENV, 2, pool_size=8, seed=0)
    vec.reset()
    snapshot = vec.snapshot()
    snapshot["generator"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA generator's state
    state = {k: v.clone() for k, v in vec.engine.state.items()}
    with pytest.raises(ConfigError, match="another kind of device.*cpu"):
        vec.restore(snapshot)
    assert all(torch.equal(state[k], v) for k, v in vec.engine.state.items())


@pytest.mark.parametrize("shown", [True, False])
def test_the_device_trainer_shows_a_progress_bar_only_when_asked(shown, tmp_path, capsys):
    _train(tmp_path / "run", "device", 128, progress_bar=shown)
    err = capsys.readouterr().err
    assert ("128/128" in err) == shown, err
