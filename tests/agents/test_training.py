"""``babyaipp train``: every model trains through the CLI, checkpoints resume, bad input fails cleanly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.agents import training_resume
from babyaipp.agents.models import MODELS, AttentionExtractor
from babyaipp.agents.progress import PROGRESS_COLUMNS, ProgressCallback
from babyaipp.agents.runs import (
    checkpoints,
    latest_checkpoint,
    load_algorithm,
    load_run,
)
from babyaipp.agents.training_setup import REFRESH_SEED_BASE, make_vec_env, train_seed
from babyaipp.cli import main
from babyaipp.defaults import EVAL_SEED_START
from babyaipp.envs.registration import make_tokenized
from babyaipp.errors import CheckpointError

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"
#: Tiny rollouts so a CLI run of a few hundred steps takes seconds.
FAST = ["--n-envs", "2", "--set", "n_steps=64", "--set", "batch_size=64", "--device", "cpu"]


def _train(out: Path, *extra: str, steps: int = 256) -> int:
    return main(["train", "--steps", str(steps), "--out", str(out), *FAST, *extra])


def _progress(run: Path) -> list[dict[str, str]]:
    with (run / "progress.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", list(MODELS))
def test_each_model_trains_through_the_cli(model, tmp_path, capsys):
    run = tmp_path / model
    assert _train(run, "--model", model, "--checkpoint-every", "128") == 0
    assert "frames/s" in capsys.readouterr().out
    assert {p.name for p in run.iterdir()} >= {
        "config.json",
        "model.zip",
        "progress.csv",
        "checkpoints",
        "tb",
    }
    assert sorted(checkpoints(run)) == [128, 256]
    assert not [p for p in run.rglob(".*") if p.is_file()], "no temporary file left behind"
    assert any((run / "tb").rglob("events.out.tfevents*"))
    rows = _progress(run)
    assert list(rows[0]) == list(PROGRESS_COLUMNS)
    assert [int(r["timesteps"]) for r in rows] == [128, 256]

    agent, config = load_run(run)
    assert type(agent).__name__ == "PPO" and agent.num_timesteps == 256
    assert (config["env_id"], config["model"], config["text"], config["recurrent"]) == (
        ENV_ID,
        model,
        "full",
        False,
    )
    assert config["hyperparameters"]["n_steps"] == 64 and config["hyperparameters"]["learning_rate"] == 1e-4
    assert config["train_seeds_used"] == [0, 1] and config["train_seed_range"]["last"] < 10**6
    assert isinstance(agent.policy.features_extractor, MODELS[model].extractor)
    env = make_tokenized(ENV_ID)
    obs, _ = env.reset(seed=10**6)
    action, _ = agent.predict(obs, deterministic=True)
    assert 0 <= int(action) < env.action_space.n


def test_recurrent_variant_trains_and_loads(tmp_path):
    run = tmp_path / "lstm"
    assert _train(run, "--model", "attention", "--recurrent", "--text", "partial", steps=128) == 0
    agent, config = load_run(run)
    assert type(agent).__name__ == "RecurrentPPO" and config["recurrent"] and config["text"] == "partial"
    assert isinstance(agent.policy.features_extractor, AttentionExtractor)
    assert agent.policy.lstm_actor.hidden_size == config["hyperparameters"]["lstm_hidden_dim"]
    obs, _ = make_tokenized(ENV_ID, text="partial").reset(seed=10**6)
    action, state = agent.predict(obs, state=None, episode_start=np.ones(1, dtype=bool), deterministic=True)
    assert state is not None


def test_checkpoint_resume_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, "--model", "concat", "--checkpoint-every", "128") == 0
    first, _ = load_run(run)
    # Simulate a run cut short after its step-256 checkpoint: the final model was never written.
    (run / "model.zip").unlink()
    assert latest_checkpoint(run) == (256, run / "checkpoints" / "step_256.zip")
    capsys.readouterr()
    assert main(["train", "--resume", "--steps", "512", "--out", str(run), "--device", "cpu"]) == 0
    assert "resumed from step 256" in capsys.readouterr().out

    agent, config = load_run(run)
    assert agent.num_timesteps == 512  # counted from the checkpoint, not reset
    assert sorted(checkpoints(run)) == [128, 256, 384, 512]
    assert [int(r["timesteps"]) for r in _progress(run)] == [128, 256, 384, 512]
    episodes = [int(r["episodes"]) for r in _progress(run)]
    assert episodes == sorted(episodes)
    assert config["steps"] == 512 and config["completed"] and len(config["segments"]) == 2
    assert config["train_seeds_used"] == [0, 1]  # resumed exactly: the envs continued their episodes
    # The resumed model continued from the checkpoint's weights, then kept learning.
    ckpt = load_algorithm(run / "checkpoints" / "step_256.zip", False, "cpu")
    for a, b in zip(ckpt.policy.parameters(), first.policy.parameters()):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(agent.policy.parameters(), first.policy.parameters()))

    # Resuming a finished run to the same target does no more steps.
    assert main(["train", "--resume", "--out", str(run), "--device", "cpu"]) == 0
    assert load_run(run)[0].num_timesteps == 512


def test_ctrl_c_checkpoints_the_last_update_and_resume_finishes(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    original = ProgressCallback._on_step

    def interrupt_mid_rollout(self):
        if self.num_timesteps >= 160:  # 32 steps into the second rollout (rollouts of 2 x 64)
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(ProgressCallback, "_on_step", interrupt_mid_rollout)
    assert _train(run, "--model", "image", "--checkpoint-every", "0") == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "step_128.zip" in err and "--resume" in err
    # The partial rollout was never learnt from, so the checkpoint counts only the 128 trained steps.
    assert sorted(checkpoints(run)) == [128] and not (run / "model.zip").exists()
    monkeypatch.setattr(ProgressCallback, "_on_step", original)
    assert main(["train", "--resume", "--out", str(run), "--device", "cpu"]) == 0
    agent, config = load_run(run)
    assert agent.num_timesteps == 256 and config["completed"]


def test_resume_refuses_a_different_run_definition(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, "--model", "image", steps=128) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--model", "film", "--out", str(run)]) == 2
    assert "--model 'film' differs" in capsys.readouterr().err
    assert _train(run, "--model", "image", steps=128) == 2  # a second run into the same DIR
    assert "already holds a run" in capsys.readouterr().err


def test_resume_without_checkpoint_raises(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="config.json"):
        training_resume.resume(tmp_path / "nothing")
    run = tmp_path / "bare"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps(
            {
                "env_id": ENV_ID,
                "text": "full",
                "recurrent": False,
                "model": "image",
                "steps": 10,
                "n_envs": 1,
                "seed": 0,
            }
        )
    )
    with pytest.raises(CheckpointError, match="no checkpoint"):
        training_resume.resume(run, device="cpu")
    assert main(["train", "--resume", "--out", str(run)]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_load_run_names_the_missing_or_corrupt_path(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is corrupt"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text(
        json.dumps({"env_id": ENV_ID, "text": "full", "recurrent": False, "model": "image"})
    )
    with pytest.raises(CheckpointError, match="model.zip not found"):
        load_run(tmp_path)
    (tmp_path / "model.zip").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="model.zip is corrupt"):
        load_run(tmp_path)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--model", "transformer"],
            "unknown model 'transformer'; valid choices: image, concat, film, attention",
        ),
        (["--env", "BabyAIPP/Nope-Easy-Train-v0"], "unknown task 'Nope'; valid choices: GoToRedBall"),
        (["--text", "loud"], "unknown text mode 'loud'; valid choices: full, partial, lorem, none"),
        (["--env-kwarg", "room_sise=5"], "room_sise"),
        (["--set", "learning_rate=-1"], "learning_rate=-1 is out of range"),
        (["--set", "batch_size=4096"], "batch_size=4096 is larger than a rollout"),
        (["--seed", "1000"], "seed=1000 is out of range"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_input_fails_with_one_line_and_writes_nothing(args, message, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(run, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (run / "config.json").exists() and not (run / "model.zip").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "r"), "--steps", "64"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("engine", "env_kwargs"), [("batched", {"room_size": 7}), ("gym", {"room_size": 6, "num_dists": 3})]
)
def test_make_vec_env_seeds_env_i_with_seed_times_1000_plus_i(engine: str, env_kwargs: dict):
    vec = make_vec_env(ENV_ID, 3, seed=2, text="full", env_kwargs=env_kwargs, engine=engine)
    first = vec.reset()
    for i in range(3):
        single, _ = make_tokenized(ENV_ID, text="full", **env_kwargs).reset(seed=2000 + i)
        for key in single:
            np.testing.assert_array_equal(first[key][i], single[key])
    again = make_vec_env(ENV_ID, 3, seed=2, text="full", env_kwargs=env_kwargs, engine=engine).reset()
    np.testing.assert_array_equal(first["image"], again["image"])
    assert train_seed(999, 999) < EVAL_SEED_START
    vec.close()


def test_batched_training_envs_refresh_their_pool_reproducibly():
    """The default engine keeps bringing in new levels (about one per finished episode), identically per seed."""
    pools = []
    for _ in range(2):
        vec = make_vec_env(ENV_ID, 4, seed=3, text="full", env_kwargs={"max_steps": 6})
        vec.reset()
        engine = vec.venv.engine
        rng = np.random.default_rng(0)
        for _ in range(60):  # 4 envs x 60 steps, episodes of at most 6 steps: >= 40 finished
            vec.step(rng.integers(7, size=4))
        for _ in range(200):
            if engine.levels_refreshed:
                break
            vec.step(rng.integers(7, size=4))
        assert engine.levels_refreshed >= 64
        seeds = engine.pool.tensors["level_seed"].tolist()
        assert min(s for s in seeds if s >= REFRESH_SEED_BASE) == 4 * REFRESH_SEED_BASE
        pools.append(seeds)
        vec.close()
    assert pools[0] == pools[1]


def _success_rate(env, policy, episodes: int) -> float:
    """Fraction of evaluation-seeded episodes (seeds 10**6 + k) that end with reward > 0."""
    wins = 0
    for k in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED_START + k)
        done, reward = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs, k))
            done = terminated or truncated
        wins += reward > 0
    return wins / episodes


@pytest.mark.slow
def test_trained_policy_clearly_beats_random(tmp_path):
    """Image PPO on a 5x5 GoToRedBall with 2 distractors, 16k steps, lr 3e-4, seed 0.

    Measured when written (200 episodes): greedy trained policy 0.62 success, random 0.29-0.31;
    training took 32 s on one CPU thread (about 500 frames/s).
    """
    run = tmp_path / "learn"
    env_args = ["--env-kwarg", "room_size=5", "--env-kwarg", "num_dists=2"]
    assert (
        main(
            [
                "train",
                "--model",
                "image",
                "--steps",
                "16384",
                "--seed",
                "0",
                "--out",
                str(run),
                "--set",
                "learning_rate=3e-4",
                "--checkpoint-every",
                "0",
                "--device",
                "cpu",
                *env_args,
            ]
        )
        == 0
    )
    agent, config = load_run(run)
    env = make_tokenized(config["env_id"], text=config["text"], **config["env_kwargs"])
    trained = _success_rate(env, lambda obs, k: int(agent.predict(obs, deterministic=True)[0]), 200)
    rngs: dict[int, np.random.Generator] = {}

    def random_policy(obs, k: int) -> int:
        return int(rngs.setdefault(k, np.random.default_rng([7919, k])).integers(env.action_space.n))

    baseline = _success_rate(env, random_policy, 200)
    assert trained >= baseline + 0.2, (trained, baseline)
    rows = _progress(run)
    assert float(rows[-1]["success_rate"]) > float(rows[0]["success_rate"])  # the curve goes up


def test_the_same_seed_gives_the_same_training_curve_and_weights(tmp_path):
    """On the default (batched) engine, refreshed pool included: episodes end fast here (max_steps=8),
    so fresh levels are swapped in several times during the run."""
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        assert _train(run, "--model", "image", "--env-kwarg", "max_steps=8", "--n-envs", "4", steps=1024) == 0
    curves = [[{k: row[k] for k in row if k != "fps"} for row in _progress(run)] for run in runs]
    assert curves[0] == curves[1] and len(curves[0]) >= 2
    assert int(curves[0][-1]["episodes"]) >= 2 * 64  # two refresh chunks swapped in
    weights = [load_run(run)[0].policy.state_dict() for run in runs]
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


@pytest.mark.parametrize(("engine_threads", "expected"), [("3", 3), ("0", None)])
def test_the_sb3_trainer_updates_under_the_engines_thread_rule(engine_threads, expected, tmp_path, monkeypatch):
    """Under load, gradient steps split over torch's default threads run several times slower
    (docs/performance.md), so SB3's loop runs under the engine's rule, as the device trainer does;
    a count the user chose (here ``BABYAIPP_ENGINE_THREADS=0``: torch's own) is left alone."""
    from stable_baselines3 import PPO

    from babyaipp.envs import threads

    for name in threads.USER_THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(threads.ENV_VAR, engine_threads)
    seen: list[int] = []
    original = PPO.train

    def recording(self):
        seen.append(torch.get_num_threads())
        return original(self)

    monkeypatch.setattr(PPO, "train", recording)
    before = torch.get_num_threads()
    assert _train(tmp_path / "run", steps=128) == 0
    assert seen and set(seen) == {before if expected is None else expected}
    assert torch.get_num_threads() == before, "torch's setting is restored"


def test_refresh_workers_one_on_cpu_and_the_cores_but_two_on_a_gpu(monkeypatch):
    from babyaipp.agents.training_setup import MAX_REFRESH_WORKERS, refresh_workers

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert refresh_workers(torch.device("cpu")) == 1
    assert refresh_workers(torch.device("cuda")) == min(MAX_REFRESH_WORKERS, 14) > 1
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert refresh_workers(torch.device("cuda")) == 1
