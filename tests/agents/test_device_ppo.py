"""``--trainer device``: the device-resident PPO loop in the usual run directory (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.agents import training, training_resume
from babyaipp.agents.progress import read_progress
from babyaipp.agents.runs import load_run
from babyaipp.agents.training_setup import TrainResult, build_agent, make_vec_env
from babyaipp.cli import main

ENV = "BabyAIPP/GoToRedBall-Easy-Train-v0"
#: 4 envs x 16 steps = 64 frames per update, two minibatches of 32.
TINY = {"n_steps": 16, "batch_size": 32}


def _train(run: Path, model: str = "image", steps: int = 128, seed: int = 0, **kwargs) -> TrainResult:
    kwargs.setdefault("hyperparameters", TINY)
    return training.train(
        run,
        model=model,
        steps=steps,
        n_envs=4,
        seed=seed,
        device="cpu",
        checkpoint_every=64,
        trainer="device",
        **kwargs,
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    model, _ = load_run(run)
    return model.policy.state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _curve(run: Path) -> list[str]:
    """progress.csv without its fps column (NaN-safe: compared as text)."""
    return [repr((r["timesteps"], r["episodes"], r["mean_return"], r["success_rate"])) for r in read_progress(run)]


@pytest.mark.parametrize(
    ("model", "recurrent"),
    [
        ("image", False),
        ("attention", False),
        # 20-40 s each on the shared 2-core machine: the same path with the other extractors and the LSTM
        pytest.param("concat", False, marks=pytest.mark.slow),
        pytest.param("film", False, marks=pytest.mark.slow),
        pytest.param("attention", True, marks=pytest.mark.slow),
    ],
)
def test_train_checkpoint_resume_eval_round_trip(model, recurrent, tmp_path):
    from babyaipp.agents.evaluation import evaluate_run

    run = tmp_path / "run"
    first = _train(run, model, recurrent=recurrent)
    assert first.num_timesteps == 128
    config = json.loads((run / "config.json").read_text())
    assert config["trainer"] == "device" and config["model"] == model and config["recurrent"] is recurrent
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_128.state.pt",
        "step_128.zip",
        "step_64.state.pt",
        "step_64.zip",
    ]
    assert [r["timesteps"] for r in read_progress(run)] == [64, 128]
    assert any((run / "tb").rglob("events.out.tfevents.*"))

    resumed = training_resume.resume(run, steps=192, device="cpu")
    assert (resumed.resumed_from, resumed.num_timesteps) == (128, 192)
    assert [r["timesteps"] for r in read_progress(run)] == [64, 128, 192]
    assert json.loads((run / "config.json").read_text())["segments"][-1]["ended"] == "completed"

    results = evaluate_run(run, splits=("Train",), episodes=2, n_envs=2, references=False)
    assert results["run"]["model"] == model and results["splits"]["Train"]["episodes"] == 2
    agent, _ = load_run(run)
    assert hasattr(agent.policy, "lstm_actor") == recurrent


def test_the_same_seed_gives_the_same_curve_and_weights(tmp_path):
    a, b, c = (_train(tmp_path / name, "attention", seed=seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert _curve(a.run_dir) == _curve(b.run_dir)
    assert _same(_weights(a.run_dir), _weights(b.run_dir))
    assert not _same(_weights(a.run_dir), _weights(c.run_dir)), "another seed must train other weights"


def test_resume_ends_where_the_uninterrupted_run_ends(tmp_path):
    straight = _train(tmp_path / "straight", "film", steps=192)
    _train(tmp_path / "split", "film", steps=64)
    resumed = training_resume.resume(tmp_path / "split", steps=192, device="cpu")
    assert resumed.resumed_from == 64
    assert _curve(straight.run_dir) == _curve(resumed.run_dir)
    assert _same(_weights(straight.run_dir), _weights(resumed.run_dir))


def test_resume_without_the_sidecar_continues_on_fresh_levels(tmp_path):
    run = tmp_path / "run"
    _train(run, steps=64)
    straight = _train(tmp_path / "straight", steps=128)
    (run / "model.state.pt").unlink()
    (run / "checkpoints" / "step_64.state.pt").unlink()
    training_resume.resume(run, steps=128, device="cpu")
    config = json.loads((run / "config.json").read_text())
    assert len(config["train_seeds_used"]) == 8, "the resumed segment takes the next seeds of the run's block"
    assert not _same(_weights(run), _weights(straight.run_dir))


def test_device_trainer_starts_from_the_sb3_trainers_weights(tmp_path):
    """With one seed both trainers start from the same policy (and the same levels): only the loop differs."""
    from babyaipp.agents.models import model_spec

    config = model_spec("image").config.from_dict(TINY)
    vec = make_vec_env(ENV, 4, 0)
    try:
        sb3 = build_agent(vec, "image", config, False, 0, "cpu", tmp_path / "tb").policy.state_dict()
    finally:
        vec.close()
    from babyaipp.agents.device_training import make_engine_env

    vec = make_engine_env(ENV, 4, 0, "full", {}, 0, "cpu")
    try:
        device = build_agent(vec, "image", config, False, 0, "cpu", tmp_path / "tb").policy.state_dict()
    finally:
        vec.close()
    assert _same(sb3, device)


def test_cli_trains_with_the_device_trainer_and_refuses_a_bad_one(tmp_path, capsys):
    run = tmp_path / "run"
    fast = ["--n-envs", "4", "--set", "n_steps=16", "--set", "batch_size=32", "--device", "cpu", "--steps", "64"]
    assert main(["train", *fast, "--trainer", "device", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["trainer"] == "device"
    capsys.readouterr()
    assert main(["train", "--resume", "--trainer", "sb3", "--out", str(run)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trainer 'sb3' differs" in err, err

    bad = tmp_path / "bad"
    assert main(["train", *fast, "--trainer", "jax", "--out", str(bad)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "'jax'" in err and "sb3" in err and "device" in err, err
    assert not bad.exists(), "a refused run writes nothing"

    assert main(["train", "--algo", "bc", "--demos", str(tmp_path), "--trainer", "device", "--out", str(bad)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trainer does not apply to --algo bc" in err, err


def test_device_trainer_refuses_the_gym_engine(tmp_path):
    from babyaipp.errors import ConfigError

    with pytest.raises(ConfigError, match="--engine 'gym'"):
        _train(tmp_path / "run", engine="gym")
    assert not (tmp_path / "run").exists()


def test_sweep_passes_the_trainer_to_its_trials(tmp_path):
    from babyaipp.experiments.trials import expand_grid, run_trial

    def grid(**kwargs):
        return expand_grid([ENV], ["image"], [0], steps=64, episodes=2, n_envs=4, hyperparameters=TINY, **kwargs)

    (sb3,), (default,), (device,) = grid(trainer="sb3"), grid(), grid(trainer="device")
    assert sb3.key == default.key, "the default trainer keeps the keys of sweeps made before it existed"
    assert device.trainer == "device" and device.key != sb3.key
    outcome = run_trial(device.as_dict(), str(tmp_path / "trial"), checkpoint_every=0)
    assert outcome["status"] == "done", outcome
    assert json.loads((tmp_path / "trial" / "config.json").read_text())["trainer"] == "device"
    from babyaipp.errors import InvalidChoiceError

    with pytest.raises(InvalidChoiceError, match="unknown trainer 'jax'; valid choices: sb3, device"):
        grid(trainer="jax")


def test_ctrl_c_checkpoints_the_last_update_and_resume_matches_the_uninterrupted_run(tmp_path, monkeypatch):
    from babyaipp.agents.device_ppo import DevicePPO

    straight = _train(tmp_path / "straight", steps=192)
    collect, calls = DevicePPO.collect, []

    def interrupted(self, state):
        calls.append(1)
        if len(calls) == 3:  # mid-run, after two updates
            raise KeyboardInterrupt
        return collect(self, state)

    monkeypatch.setattr(DevicePPO, "collect", interrupted)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        _train(run, steps=192)
    monkeypatch.setattr(DevicePPO, "collect", collect)
    config = json.loads((run / "config.json").read_text())
    assert config["segments"][-1]["ended"] == "interrupted" and config["segments"][-1]["to"] == 128
    assert (run / "checkpoints" / "step_128.state.pt").is_file()
    training_resume.resume(run, device="cpu")
    assert _curve(run) == _curve(straight.run_dir)
    assert _same(_weights(run), _weights(straight.run_dir))


@pytest.mark.parametrize("model", ["image", "attention"])
def test_the_lean_path_computes_what_sb3s_policy_computes(model, tmp_path):
    """The lean forward (no distribution objects) gives SB3's values, log-probs, entropy and actions."""
    from babyaipp.agents.device_ppo import DevicePPO, PPOSettings
    from babyaipp.agents.device_training import make_engine_env
    from babyaipp.agents.models import model_spec

    config = model_spec(model).config.from_dict(TINY)
    vec = make_engine_env(ENV, 4, 0, "full", {}, 0, "cpu")
    try:
        policy = build_agent(vec, model, config, False, 0, "cpu", tmp_path / "tb").policy
        vec.reset()
        engine = vec.venv.engine
        engine.auto_reset = False
        loop = DevicePPO(engine, policy, PPOSettings.from_config(config))
        assert loop._lean, "a feed-forward Categorical policy takes the lean path"
        loop.collect(loop.initial_state())
        obs = {k: v.reshape(-1, *v.shape[2:]) for k, v in loop._buffer.obs.items()}
        actions = torch.arange(obs["image"].shape[0]) % policy.action_space.n
        with torch.no_grad():
            lean = loop._evaluate({**obs, "actions": actions})
            reference = policy.evaluate_actions(obs, actions)
            for a, b in zip(lean, reference, strict=True):
                assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
            torch.manual_seed(3)
            lean_actions, lean_values, lean_log_probs = loop._act(obs)
            torch.manual_seed(3)
            sb3_actions, sb3_values, sb3_log_probs = policy(obs)
        assert torch.equal(lean_actions, sb3_actions), "the same draw from the same generator state"
        assert torch.allclose(lean_values, sb3_values) and torch.allclose(lean_log_probs, sb3_log_probs, atol=1e-6)
        assert not torch.allclose(lean[1], lean[1].roll(1)), "the log-probs depend on the action"
    finally:
        vec.close()


def _lean_loop(model: str, config, tmp_path: Path, policy=None, n_envs: int = 4, seed: int = 0):
    """(vec, policy, DevicePPO) on a fresh engine; ``policy``: share one policy between loops."""
    from babyaipp.agents.device_ppo import DevicePPO, PPOSettings
    from babyaipp.agents.device_training import make_engine_env

    vec = make_engine_env(ENV, n_envs, seed, "full", {}, 0, "cpu")
    if policy is None:
        policy = build_agent(vec, model, config, False, 0, "cpu", tmp_path / "tb").policy
    vec.reset()
    engine = vec.venv.engine
    engine.auto_reset = False
    return vec, policy, DevicePPO(engine, policy, PPOSettings.from_config(config))


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("image", {}),
        ("concat", {}),
        ("film", {}),
        ("attention", {}),
        ("attention", {"keys": "colour"}),
        ("attention", {"values": "properties"}),
    ],
)
def test_collection_with_the_text_cache_matches_the_uncached_forward(model, options, tmp_path):
    """Same actions and rewards; values and log-probs to float rounding (a text first met mid-rollout
    is encoded in a smaller batch than the uncached forward's, so its last bits may differ)."""
    from babyaipp.agents.models import model_spec

    config = model_spec(model).config.from_dict({"n_steps": 64, "batch_size": 32, **options})
    vec_a, policy, cached = _lean_loop(model, config, tmp_path)
    vec_b, _, uncached = _lean_loop(model, config, tmp_path, policy)
    try:
        uncached._cache_text = False
        assert cached._cache_text == (model != "image"), "the cache serves the models that read text"
        torch.manual_seed(5)
        a, state_a, last_a = cached.collect(cached.initial_state())
        a = {k: getattr(a, k).clone() for k in ("actions", "log_probs", "values", "rewards", "episode_starts")}
        torch.manual_seed(5)
        b, state_b, last_b = uncached.collect(uncached.initial_state())
        assert a["episode_starts"][1:].any(), "an episode restarts mid-rollout, so its env's text is looked up anew"
        assert torch.equal(a["actions"], b.actions) and torch.equal(a["rewards"], b.rewards)
        assert torch.equal(a["episode_starts"], b.episode_starts)
        for x, y in ((a["values"], b.values), (a["log_probs"], b.log_probs), (last_a, last_b)):
            assert torch.allclose(x, y, atol=1e-6), (x - y).abs().max()
        assert all(torch.equal(state_a.obs[k], state_b.obs[k]) for k in state_a.obs)
    finally:
        vec_a.close()
        vec_b.close()


@pytest.mark.parametrize("lean", [True, False])
def test_an_episode_cut_off_by_the_time_limit_is_bootstrapped_from_its_last_observation(lean, tmp_path):
    """The rollout's reward at a time-limit cut is the env's reward + gamma * V(the episode's last
    observation), valued by SB3's ``predict_values`` at that step; every other reward is the env's."""
    from babyaipp.agents.models import model_spec

    config = model_spec("attention").config.from_dict({"n_steps": 160, "batch_size": 32})
    vec, policy, loop = _lean_loop("attention", config, tmp_path)
    try:
        loop._lean = loop._lean and lean
        engine = loop.engine
        raw: list[torch.Tensor] = []
        expected: list[torch.Tensor] = []
        cut: list[torch.Tensor] = []
        advance, observation = engine.advance, engine.observation

        def recorded_advance(actions):
            reward, terminated, truncated = advance(actions)
            raw.append(reward.to(torch.float32))
            expected.append(raw[-1].clone())
            cut.append(truncated & ~terminated)
            return reward, terminated, truncated

        def recorded_observation(rows=None):
            obs = observation(rows)
            if rows is not None:  # a cut-off episode's last observation, valued now as SB3 does
                with torch.no_grad():
                    value = policy.predict_values(obs).flatten()
                expected[-1] = expected[-1].index_add(0, rows, loop.settings.gamma * value)
            return obs

        engine.advance, engine.observation = recorded_advance, recorded_observation
        torch.manual_seed(0)
        rollout, _, _ = loop.collect(loop.initial_state())
        assert int(torch.stack(cut).sum()) >= 2, "the time limit cut off episodes in this rollout"
        changed = rollout.rewards != torch.stack(raw)
        assert torch.equal(changed, torch.stack(cut)), "exactly the cut-off steps are bootstrapped"
        difference = (rollout.rewards - torch.stack(expected)).abs().max()
        assert difference < 1e-5, difference  # rows valued in another batch: float rounding
    finally:
        vec.close()


def test_the_text_cache_encodes_only_texts_new_to_the_rollout(tmp_path):
    from babyaipp.agents.models import model_spec
    from babyaipp.agents.text_cache import TextCache

    config = model_spec("attention").config.from_dict(TINY)
    vec, policy, loop = _lean_loop("attention", config, tmp_path, n_envs=6)
    other_vec, _, other = _lean_loop("attention", config, tmp_path, policy, n_envs=6, seed=7)
    try:
        extractor = policy.features_extractor
        obs, fresh_levels = loop.engine.observation(), other.engine.observation()
        with torch.no_grad():
            cache = TextCache(extractor, obs)
            encoded: list[int] = []
            for source, encode in list(cache.encoders.items()):

                def counted(tokens, encode=encode):
                    encoded.append(tokens.shape[0])
                    return encode(tokens)

                cache.encoders[source] = counted
            before = {k: v.clone() for k, v in cache.lookup(obs).items()}
            assert encoded == [], "unchanged tokens are not encoded again"
            # Env 0 takes env 5's text (seen), envs 1-2 the texts of other levels (mostly unseen).
            mixed = {k: v.clone() for k, v in obs.items()}
            for key in ("mission", "description"):
                mixed[key][0] = obs[key][5]
                mixed[key][1:3] = fresh_levels[key][:2]
            seen = {k: {tuple(row.flatten().tolist()) for row in obs[k]} for k in ("mission", "description")}
            unseen = sum(tuple(row.flatten().tolist()) not in seen[k] for k in seen for row in mixed[k][:3])
            assert unseen > 0, "the other levels bring a text this rollout has not met"
            looked_up = {k: v.clone() for k, v in cache.lookup(mixed).items()}
            assert sum(encoded) == unseen, "only the texts not seen yet are encoded"
            expected = extractor.text_features(mixed)
            assert looked_up.keys() == expected.keys()
            for key, value in expected.items():
                assert torch.allclose(looked_up[key].float(), value.float(), atol=1e-6), key
                assert torch.equal(looked_up[key][3:], before[key][3:]), "untouched envs keep their rows"
            stale = [not torch.allclose(before[k][:3].float(), value[:3].float()) for k, value in expected.items()]
            assert any(stale), "the changed envs' features differ from the stale ones"
    finally:
        vec.close()
        other_vec.close()
