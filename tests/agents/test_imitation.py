"""Oracle demonstrations (Minari round trip, worker-independence, atomicity) and behaviour cloning
(same SB3 policies as PPO, eval/compare unchanged, warm start, clear errors on mismatched data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.agents import imitation, training_resume
from babyaipp.agents.demos import dataset_id_for, record_demos
from babyaipp.agents.demos_loading import load_demos
from babyaipp.agents.imitation_data import StepData, episode_batches, load_steps, step_batches
from babyaipp.agents.models import MODELS
from babyaipp.agents.progress import read_progress
from babyaipp.agents.runs import load_run, read_config
from babyaipp.agents.training_setup import build_agent, make_vec_env
from babyaipp.agents.warm_start import warm_start_from
from babyaipp.cli import main
from babyaipp.envs.registration import make_tokenized
from babyaipp.errors import BabyAIPPError, ConfigError

minari = pytest.importorskip("minari")
pytest.importorskip("h5py")

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"
TEST_ID = "BabyAIPP/GoToRedBall-Easy-Test-v0"


def _demos(out: Path, *extra: str, episodes: int = 12, env: str = ENV_ID) -> None:
    argv = ["demos", "--env", env, "--episodes", str(episodes), "--out", str(out), "--quiet", *extra]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def small_demos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demos") / "gtrb"
    _demos(out, "--seed", "5", episodes=40)
    return out


# --------------------------------------------------------------------------- datasets
def test_round_trip_through_minari_and_replay(tmp_path, monkeypatch, capsys):
    out = tmp_path / "test-split"
    _demos(out, "--seed", "100", env=TEST_ID)
    printed = capsys.readouterr().out
    assert "12 demonstrations" in printed and "demos/s" in printed

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    dataset = minari.load_dataset(dataset_id_for(TEST_ID))
    assert dataset.total_episodes == 12
    episodes = list(dataset.iterate_episodes())
    assert dataset.total_steps == sum(len(ep) for ep in episodes)
    meta = list(dataset.storage.get_episode_metadata(range(12)))
    assert [m["seed"] for m in meta] == list(range(100, 112))
    assert dataset.storage.metadata["babyaipp"]["env_id"] == TEST_ID

    env = make_tokenized(TEST_ID)
    for ep, m in zip(episodes, meta):
        obs, info = env.reset(seed=m["seed"])
        assert json.loads(m["held_out_pairs"]) == [list(p) for p in info["held_out_pairs"]]
        assert json.loads(m["dynamics"]) == {c: list(p) for c, p in info["dynamics"].items()}
        assert m["mission"] == env.unwrapped.mission and m["description"] == env.unwrapped.description
        assert np.all(ep.infos["seed"] == m["seed"])
        for t, action in enumerate(ep.actions):
            for key in obs:
                np.testing.assert_array_equal(ep.observations[key][t], obs[key], err_msg=f"{key} at step {t}")
            obs, reward, terminated, truncated, _ = env.step(int(action))
            assert reward == pytest.approx(ep.rewards[t]) and terminated == ep.terminations[t]
        for key in obs:
            np.testing.assert_array_equal(ep.observations[key][-1], obs[key])
        assert bool(m["success"]) == bool(ep.rewards[-1] > 0)
    assert sum(bool(m["success"]) for m in meta) >= 11  # the oracle solves (nearly) every level

    demos = load_demos(out)
    groups = demos.by_held_out_pair()
    with_pairs = [i for i, m in enumerate(meta) if json.loads(m["held_out_pairs"])]
    assert sorted({i for name, idx in groups.items() if name != "none" for i in idx}) == with_pairs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary directory left"


def test_workers_give_the_identical_dataset(tmp_path):
    one, two = tmp_path / "w1", tmp_path / "w2"
    record_demos(one, ENV_ID, 40, seed=3, workers=1)
    result = record_demos(two, ENV_ID, 40, seed=3, workers=2)
    assert result.episodes == 40 and result.demos_per_second > 0
    a, b = load_demos(one), load_demos(two)
    assert a.dataset.total_steps == b.dataset.total_steps
    for ea, eb in zip(a.dataset.iterate_episodes(), b.dataset.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(ea.actions, eb.actions)
        for key in ea.observations:
            np.testing.assert_array_equal(ea.observations[key], eb.observations[key])
    assert a.episode_metadata() == b.episode_metadata()


def test_interrupted_recording_leaves_nothing(tmp_path):
    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "demos"
    with pytest.raises(KeyboardInterrupt):
        record_demos(out, ENV_ID, 40, on_block=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_bad_recording_arguments(tmp_path, small_demos, capsys):
    with pytest.raises(ConfigError, match="already exists"):
        record_demos(small_demos, ENV_ID, 2)
    with pytest.raises(ConfigError, match="seed"):
        record_demos(tmp_path / "x", ENV_ID, 10, seed=10**6 - 5)
    assert main(["demos", "--env", "BabyAIPP/Nope-Easy-Train-v0", "--episodes", "2", "--out", str(tmp_path / "y")]) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


# --------------------------------------------------------------------------- bad datasets
def test_mismatched_or_broken_datasets_fail_clearly(tmp_path, small_demos, capsys):
    argv = ["train", "--algo", "bc", "--demos", str(small_demos), "--device", "cpu", "--epochs", "1"]
    assert main([*argv, "--env", "BabyAIPP/GoToLocal-Easy-Train-v0", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert ENV_ID in err and "GoToLocal-Easy-Train" in err
    assert main([*argv, "--text", "none", "--out", str(tmp_path / "b")]) == 2
    assert "text='full'" in capsys.readouterr().err
    assert main([*argv, "--env-kwarg", "room_size=6", "--out", str(tmp_path / "c")]) == 2
    assert "room_size" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() or not (tmp_path / "a" / "config.json").exists()

    with pytest.raises(BabyAIPPError, match="no Minari dataset"):
        load_demos(tmp_path)  # exists, holds no dataset
    with pytest.raises(BabyAIPPError, match="does not exist"):
        load_demos(tmp_path / "missing")
    broken = tmp_path / "broken"
    record_demos(broken, ENV_ID, 3)
    (data,) = broken.rglob("main_data.hdf5")
    data.write_bytes(b"not an hdf5 file")
    with pytest.raises(BabyAIPPError, match="corrupt"):
        load_steps(load_demos(broken), 0.99)
    (meta,) = broken.rglob("metadata.json")
    meta.write_text("{not json")
    with pytest.raises(BabyAIPPError, match="corrupt"):
        load_demos(broken)


def test_algorithm_specific_options_are_checked(tmp_path, small_demos, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "--algo", "bc", "--out", out]) == 2
    assert "--demos" in capsys.readouterr().err
    assert main(["train", "--algo", "bc", "--demos", str(small_demos), "--steps", "9", "--out", out]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert main(["train", "--demos", str(small_demos), "--out", out]) == 2
    assert "only to --algo bc" in capsys.readouterr().err


# --------------------------------------------------------------------------- behaviour cloning
def test_episode_batches_are_whole_padded_sequences():
    lengths = np.array([3, 1, 4])
    n = int(lengths.sum())
    data = StepData({"x": np.arange(n)}, np.arange(n), np.zeros(n, np.float32), lengths, skipped_failures=0)
    batches = episode_batches(data, batch_size=100, rng=np.random.default_rng(0))
    (batch,) = batches
    assert batch.n_sequences == 3 and batch.mask.sum() == n and batch.mask.size == 3 * 4
    rows = batch.observations["x"].reshape(3, 4)
    starts = batch.episode_starts.reshape(3, 4)
    mask = batch.mask.reshape(3, 4)
    assert np.all(starts[:, 0] == 1) and np.all(starts[:, 1:] == 0)
    real = sorted(tuple(r[m]) for r, m in zip(rows, mask))
    assert real == [(0, 1, 2), (3,), (4, 5, 6, 7)]  # every episode whole and in order
    steps = step_batches(data, batch_size=3, rng=np.random.default_rng(0))
    assert sorted(np.concatenate([b.actions for b in steps]).tolist()) == list(range(n))


@pytest.mark.parametrize("model", list(MODELS))
def test_bc_run_is_a_ppo_run_on_disk(model, tmp_path, small_demos):
    run = tmp_path / model
    result = imitation.train_bc(run, demos=small_demos, model=model, epochs=1, device="cpu", checkpoint_every=1)
    assert {p.name for p in run.iterdir()} >= {"config.json", "model.zip", "progress.csv", "tb", "checkpoints"}
    agent, config = load_run(run)
    assert type(agent).__name__ == "PPO" and isinstance(agent.policy.features_extractor, MODELS[model].extractor)
    assert config["algo"] == "bc" and config["demos"]["episodes"] == 40
    assert config["train_seed_range"] == {**config["train_seed_range"], "first": 5, "last": 44}
    assert agent.num_timesteps == result.num_timesteps == config["demos"]["frames"]
    rows = read_progress(run)
    assert list(rows[0]) == list(imitation.PROGRESS_COLUMNS) and 0 <= rows[0]["accuracy"] <= 1
    assert any((run / "tb").rglob("events.out.tfevents*"))


def test_recurrent_bc_learns_whole_episodes(tmp_path, small_demos):
    run = tmp_path / "lstm"
    imitation.train_bc(
        run, demos=small_demos, model="image", recurrent=True, epochs=3, device="cpu", progress_episodes=0
    )
    agent, config = load_run(run)
    assert type(agent).__name__ == "RecurrentPPO" and config["recurrent"]
    losses = [r["loss"] for r in read_progress(run)]
    assert losses[-1] < losses[0]
    obs, _ = make_tokenized(ENV_ID).reset(seed=10**6)
    _, state = agent.predict(obs, state=None, episode_start=np.ones(1, dtype=bool), deterministic=True)
    assert state is not None


def test_warm_start_copies_the_policy_and_checks_shape(tmp_path, small_demos):
    bc = tmp_path / "bc"
    imitation.train_bc(bc, demos=small_demos, model="concat", epochs=1, device="cpu", progress_episodes=0)
    assert (
        main(
            [
                "train",
                "--init-from",
                str(bc),
                "--model",
                "concat",
                "--steps",
                "64",
                "--n-envs",
                "2",
                "--set",
                "n_steps=32",
                "--set",
                "batch_size=64",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "ppo"),
            ]
        )
        == 0
    )
    assert read_config(tmp_path / "ppo")["init_from"]["algo"] == "bc"

    source, _ = load_run(bc)
    config = MODELS["concat"].config()
    vec = make_vec_env(ENV_ID, 2, 0)
    agent = build_agent(vec, "concat", config, False, 1, "cpu", tmp_path / "tb")
    warm_start_from(agent, bc, "concat", False, config, "cpu")
    for (name, a), b in zip(agent.policy.state_dict().items(), source.policy.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ConfigError, match="'concat' model"):
        warm_start_from(agent, bc, "film", False, config, "cpu")
    with pytest.raises(ConfigError, match="features_dim"):
        warm_start_from(agent, bc, "concat", False, MODELS["concat"].config(features_dim=64), "cpu")
    with pytest.raises(ConfigError, match="cannot be resumed"):
        training_resume.resume(bc)


def test_bc_eval_compare_through_the_cli(tmp_path, small_demos, capsys):
    run = tmp_path / "bc"
    assert (
        main(
            [
                "train",
                "--algo",
                "bc",
                "--demos",
                str(small_demos),
                "--model",
                "film",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert "cloned" in capsys.readouterr().out
    assert main(["eval", str(run), "--episodes", "4", "--splits", "Train,TargetPairOnly", "--quiet"]) == 0
    results = json.loads((run / "eval" / "results.json").read_text())
    assert results["run"]["model"] == "film" and results["splits"]["Train"]["episodes"] == 4
    assert main(["compare", str(run), "--out", str(tmp_path / "cmp")]) == 0
    assert "bc (film, full)" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_bc_clearly_beats_random_on_train(tmp_path):
    """200 demonstrations, 20 epochs of the image model, 100 Train evaluation episodes: about 9 s
    of CPU (30 s wall on a loaded 2-core machine), so it runs by default."""
    demos, run = tmp_path / "demos", tmp_path / "bc"
    record_demos(demos, ENV_ID, 200, seed=0)
    imitation.train_bc(run, demos=demos, model="image", epochs=20, seed=0, device="cpu", progress_episodes=0)
    assert main(["eval", str(run), "--episodes", "100", "--splits", "Train", "--quiet"]) == 0
    results = json.loads((run / "eval" / "results.json").read_text())
    model = results["splits"]["Train"]["success_rate"]
    rand = results["references"]["random"]["splits"]["Train"]["success_rate"]
    assert model >= rand + 0.3, (model, rand)
