"""Generalisation evaluation: seeds, statistics, reference policies, eval/compare CLIs.

The policy under test is a small untrained SB3 PPO built here (its greedy actions depend on the
observation, so a seed handed to the wrong episode would change the records), loaded through the
``loader`` hook of :func:`evaluate_run`; the end-to-end test with ``babyaipp train``'s real
``load_run`` runs once that module exists.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402

from babyaipp.agents import evaluation as ev
from babyaipp.agents import reports  # noqa: E402
from babyaipp.agents.evaluation_episodes import (
    EpisodeRecord,
    binomial_se,
    difference_se,
    rollout_vectorised,
    split_gap,
    summarise_episodes,
)
from babyaipp.cli import main  # noqa: E402
from babyaipp.defaults import EVAL_SEED_START
from babyaipp.envs.registration import make_tokenized  # noqa: E402
from babyaipp.errors import BabyAIPPError, ConfigError  # noqa: E402

ENV = "BabyAIPP/GoToRedBall-Easy-Train-v0"


class FlatTokens(BaseFeaturesExtractor):
    """Every observation key as floats, flattened and concatenated (a stub, not a model)."""

    def __init__(self, observation_space: spaces.Dict):
        size = sum(int(np.prod(s.shape)) if s.shape else 4 for s in observation_space.spaces.values())
        super().__init__(observation_space, features_dim=32)
        self.net = nn.Sequential(nn.Linear(size, 32), nn.Tanh())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(torch.cat([v.float().flatten(1) for v in obs.values()], dim=1))


@pytest.fixture(scope="module")
def stub_model() -> PPO:
    env = make_tokenized(ENV)
    return PPO(
        "MultiInputPolicy",
        env,
        seed=0,
        n_steps=64,
        batch_size=64,
        device="cpu",
        policy_kwargs={"features_extractor_class": FlatTokens, "normalize_images": False},
    )


def stub_loader(model: PPO, env_id: str = ENV):
    config = {"env_id": env_id, "text": "full", "recurrent": False, "model": "stub", "seed": 0}
    return lambda run_dir, device: (model, config)


# ------------------------------------------------------------------------- statistics
def test_binomial_se_and_gap_on_hand_made_numbers():
    assert binomial_se(30, 100) == pytest.approx(math.sqrt(0.3 * 0.7 / 100))
    assert binomial_se(0, 10) == 0.0 and binomial_se(10, 10) == 0.0
    assert binomial_se(0, 0) == 0.0
    assert difference_se(0.03, 0.04) == pytest.approx(0.05)
    gap = split_gap(
        {
            "Train": {"success_rate": 0.9, "success_se": math.sqrt(0.9 * 0.1 / 100)},
            "TargetPairOnly": {"success_rate": 0.6, "success_se": math.sqrt(0.6 * 0.4 / 100)},
        }
    )
    assert gap["gap"] == pytest.approx(0.3)
    assert gap["se"] == pytest.approx(math.sqrt((0.09 + 0.24) / 100))
    assert split_gap({"Train": {"success_rate": 0.9, "success_se": 0.01}}) is None


def test_summary_groups_episodes_by_held_out_pair():
    R = EpisodeRecord
    records = [
        R(0, 10**6, True, 0.9, 5, ()),
        R(1, 10**6 + 1, False, 0.0, 64, (("green", "trap"),)),
        R(2, 10**6 + 2, True, 0.5, 30, (("green", "trap"), ("blue", "slippery"))),
        R(3, 10**6 + 3, False, 0.0, 3, ()),
    ]
    s = summarise_episodes(records, ENV)
    assert (s["episodes"], s["successes"], s["success_rate"]) == (4, 2, 0.5)
    assert s["success_se"] == pytest.approx(math.sqrt(0.25 / 4))
    assert s["mean_return"] == pytest.approx(1.4 / 4) and s["mean_length"] == pytest.approx(25.5)
    assert (s["with_held_out_pair"]["episodes"], s["with_held_out_pair"]["successes"]) == (2, 1)
    assert (s["without_held_out_pair"]["episodes"], s["without_held_out_pair"]["successes"]) == (2, 1)
    assert s["per_held_out_pair"]["green-trap"]["episodes"] == 2
    assert s["per_held_out_pair"]["blue-slippery"] == {
        "episodes": 1,
        "successes": 1,
        "success_rate": 1.0,
        "success_se": 0.0,
    }


# ------------------------------------------------------------------------- seeds and vectorisation
def looking_act_fn(obs, state, episode_start):
    """Obs- and memory-dependent turns/forwards: a step counter per env, zeroed at episode start,
    so handing an env another env's observation, seed or state changes the records."""
    counts = np.zeros(len(episode_start), dtype=np.int64) if state is None else state.copy()
    counts[episode_start] = 0
    seen = obs["image"].reshape(len(counts), -1).sum(axis=1) + obs["direction"] + counts
    actions = np.where(seen % 4 == 3, 2, seen % 3)  # mostly forward (2), some left (0) / right (1)
    return actions, counts + 1


def _recurrent_stub():
    from sb3_contrib import RecurrentPPO

    return RecurrentPPO(
        "MultiInputLstmPolicy",
        make_tokenized(ENV),
        seed=0,
        n_steps=64,
        batch_size=64,
        device="cpu",
        policy_kwargs={"features_extractor_class": FlatTokens, "normalize_images": False, "lstm_hidden_size": 8},
    )


@pytest.mark.parametrize("policy", ["looking", "ppo", "recurrent_ppo"])
def test_seeds_disjoint_from_training_and_results_independent_of_n_envs(policy, stub_model):
    if policy == "recurrent_ppo":
        pytest.importorskip("sb3_contrib")
    act = {
        "looking": lambda: looking_act_fn,
        "ppo": lambda: ev.sb3_act_fn(stub_model, greedy=True),
        "recurrent_ppo": lambda: ev.sb3_act_fn(_recurrent_stub(), greedy=True),
    }[policy]()
    episodes = 12

    def run(n_envs: int) -> list[EpisodeRecord]:
        return rollout_vectorised(
            lambda: make_tokenized("BabyAIPP/GoToRedBall-Easy-Test-v0"), act, episodes, n_envs=n_envs
        )

    one, five = run(1), run(5)
    assert [r.seed for r in one] == [EVAL_SEED_START + k for k in range(episodes)]
    assert min(r.seed for r in one) >= EVAL_SEED_START
    assert one == five
    if policy == "looking":  # episodes of different lengths and outcomes: a mix-up would show
        assert len({r.length for r in one}) > 3 and 0 < sum(r.success for r in one) < episodes
    with pytest.raises(ConfigError, match="seed_base"):
        ev.evaluate_policy_on_splits(act, ENV, episodes=2, seed_base=5)


def test_sampled_evaluation_is_reproducible_and_leaves_the_global_rng_alone(stub_model):
    def run(greedy: bool) -> dict:
        return ev.evaluate_policy_on_splits(stub_model, ENV, splits=["Train"], episodes=6, n_envs=3, greedy=greedy)

    before = torch.random.get_rng_state()
    first, second = run(greedy=False), run(greedy=False)
    assert torch.equal(before, torch.random.get_rng_state())
    assert first == second
    assert first["actions"].startswith("sampled") and run(greedy=True)["actions"].startswith("greedy")


def test_random_vs_oracle_references():
    refs = ev.evaluate_references(ENV, splits=("Train", "TargetPairOnly"), episodes=30)
    random, oracle = refs["random"]["splits"], refs["oracle"]["splits"]
    for split in ("Train", "TargetPairOnly"):
        assert oracle[split]["success_rate"] >= 0.9
        assert oracle[split]["success_rate"] - random[split]["success_rate"] > 0.3
    # every TargetPairOnly episode has a held-out pair, no Train episode has one
    assert random["TargetPairOnly"]["with_held_out_pair"]["episodes"] == 30
    assert random["Train"]["with_held_out_pair"]["episodes"] == 0
    again = ev.evaluate_reference_on_splits("random", ENV, splits=("Train",), episodes=30)
    assert again["splits"] == {"Train": random["Train"]}


# ------------------------------------------------------------------------- results on disk
@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory, stub_model) -> Path:
    run_dir = tmp_path_factory.mktemp("run_a")
    result = ev.evaluate_run(run_dir, episodes=8, n_envs=4, loader=stub_loader(stub_model))
    reports.write_results(result, run_dir / "eval")
    (run_dir / "progress.csv").write_text(
        "timesteps,episodes,mean_return,success_rate,fps\n"
        "1000,20,0.1,0.15,500\n2000,45,0.3,0.35,510\n3000,70,0.5,0.6,505\n"
    )
    return run_dir


def test_results_written_and_reread(evaluated_run):
    result = reports.read_results(evaluated_run)
    assert list(result["splits"]) == ["Train", "Test", "TargetPairOnly"]
    assert result["seed_base"] == 10**6 and "disjoint" in result["seed_rule"]
    assert result["splits"]["TargetPairOnly"]["env_id"] == "BabyAIPP/GoToRedBall-Easy-TargetPairOnly-v0"
    assert set(result["references"]) == {"random", "oracle", "memoriser", "cautious"}
    gap = result["gap_train_minus_target_pair_only"]
    train, tpo = result["splits"]["Train"], result["splits"]["TargetPairOnly"]
    assert gap["gap"] == pytest.approx(train["success_rate"] - tpo["success_rate"])
    md = (evaluated_run / "eval" / "results.md").read_text()
    assert "Gap Train − TargetPairOnly" in md and "| oracle | Train |" in md and "| model | Test |" in md
    assert json.loads((evaluated_run / "eval" / "results.json").read_text()) == result


def test_eval_refuses_seeds_overlapping_the_runs_training_seeds(stub_model, tmp_path):
    model, config = stub_loader(stub_model)(tmp_path, "cpu")
    config = {**config, "train_seed_range": {"first": 0, "last": 2 * 10**6}}
    with pytest.raises(ConfigError, match=r"overlaps this run's training seeds"):
        ev.evaluate_run(tmp_path, episodes=2, references=False, loader=lambda d, device: (model, config))
    # a model passed as it is evaluates like its sb3_act_fn
    direct = ev.evaluate_policy_on_splits(stub_model, ENV, splits=("Test",), episodes=3)
    wrapped = ev.evaluate_policy_on_splits(ev.sb3_act_fn(stub_model), ENV, splits=("Test",), episodes=3)
    assert direct == wrapped


def test_observation_space_mismatch_names_both(stub_model):
    other = SimpleNamespace(observation_space=spaces.Dict({"image": spaces.Box(0, 255, (5, 5, 3), np.uint8)}))
    with pytest.raises(BabyAIPPError, match=r"GoToLocal-Easy-Train-v0.*does not match the checkpoint"):
        ev.check_observation_space(other, "BabyAIPP/GoToLocal-Easy-Train-v0", "full")
    ev.check_observation_space(stub_model, "BabyAIPP/GoToLocal-Easy-Train-v0", "full")  # same format


# ------------------------------------------------------------------------- CLI
def test_eval_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and "\n" not in err
    assert main(["eval", str(tmp_path), "--splits", "Train,Bogus", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown split 'Bogus'" in err and "TargetPairOnly" in err and "\n" not in err


def test_compare_writes_table_and_figures(evaluated_run, tmp_path, capsys):
    run_b = tmp_path / "run_b"
    result = reports.read_results(evaluated_run)
    result["run"]["model"] = "other"
    reports.write_results(result, run_b / "eval")  # no progress.csv: named, not silently dropped
    out = tmp_path / "cmp"
    assert main(["compare", str(evaluated_run), str(run_b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = (out / "comparison.md").read_text()
    assert "run_b (other, full)" in table and "*random*" in table and "*oracle*" in table
    assert "No learning curve" in table and "run_b" in table.split("No learning curve")[1]
    assert "Train success ± SE" in printed
    for png in ("success_by_split.png", "learning_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["compare", str(evaluated_run), str(tmp_path / "never_evaluated"), "--out", str(out)]) == 2
    assert "run `babyaipp eval" in capsys.readouterr().err


# ------------------------------------------------------------------------- with babyaipp train's runs
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    training = pytest.importorskip("babyaipp.agents.training")
    run_dir = tmp_path_factory.mktemp("trained")
    training.train(
        run_dir,
        model="attention",
        steps=64,
        n_envs=2,
        seed=3,
        device="cpu",
        checkpoint_every=0,
        hyperparameters={"n_steps": 32, "batch_size": 32, "n_epochs": 1},
    )
    return run_dir


def test_eval_cli_on_a_trained_run(trained_run, capsys):
    assert main(["eval", str(trained_run), "--episodes", "6", "--n-envs", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| model | TargetPairOnly |" in printed and "| oracle | Train |" in printed
    result = reports.read_results(trained_run)
    assert result["run"]["model"] == "attention" and result["run"]["seed"] == 3
    train_seeds = result["run"]["train_seed_range"]
    assert train_seeds["last"] < result["seed_base"]
    # the same world format in another task is accepted through --env
    args = [
        "eval",
        str(trained_run),
        "--episodes",
        "2",
        "--splits",
        "Train",
        "--no-references",
        "--quiet",
        "--env",
        "BabyAIPP/GoToLocal-Easy-Train-v0",
    ]
    assert main(args) == 0
    assert reports.read_results(trained_run)["env_id"] != "BabyAIPP/GoToLocal-Easy-Train-v0"  # own results kept
    other = json.loads((trained_run / "eval" / "GoToLocal-Easy" / "results.json").read_text())
    assert other["env_id"] == "BabyAIPP/GoToLocal-Easy-Train-v0"


def test_eval_cli_corrupt_checkpoint_is_one_line(trained_run, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    (broken / "model.zip").write_bytes(b"not a zip")
    assert main(["eval", str(broken), "--episodes", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.zip" in err and "\n" not in err
    (broken / "config.json").unlink()
    assert main(["eval", str(broken), "--episodes", "2", "--quiet"]) == 2
    assert "config.json" in capsys.readouterr().err
