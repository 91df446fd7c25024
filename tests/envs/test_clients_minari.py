"""Minari's API on datasets this package records: the env comes back, and so does its provenance."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.envs.provenance import code_permalink, environment_requirements
from babyaipp.envs.wrappers import TokenObsWrapper

minari = pytest.importorskip("minari")

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    from babyaipp.agents.demos import minari_root, record_demos

    out = tmp_path_factory.mktemp("minari") / "demos"
    result = record_demos(out, ENV_ID, 3, seed=5, text="partial")
    with minari_root(out):
        yield minari.load_dataset(result.dataset_id)


def test_the_wrapper_is_in_the_env_spec_with_its_arguments():
    env = TokenObsWrapper(gym.make(ENV_ID), mission_length=40)
    (wrapper,) = env.spec.additional_wrappers
    assert wrapper.entry_point == "babyaipp.envs.wrappers:TokenObsWrapper"
    assert wrapper.kwargs == {"mission_length": 40, "sentence_length": 8, "max_sentences": 3}
    rebuilt = gym.make(env.spec)
    assert rebuilt.observation_space == env.observation_space and rebuilt.get_wrapper_attr("mission_length") == 40


def test_recover_environment_rebuilds_the_recording_env(dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not installed" / "version does not meet" warnings either
        env = dataset.recover_environment()
    assert isinstance(env, TokenObsWrapper)
    assert env.observation_space == dataset.observation_space
    assert env.unwrapped.text_mode == "partial"
    first = next(dataset.iterate_episodes())
    obs, _ = env.reset(seed=5)  # the first recorded episode's seed
    for key in obs:
        assert np.array_equal(obs[key], first.observations[key][0]), key


def test_requirements_and_code_permalink_are_recorded(dataset):
    metadata = dataset.storage.metadata
    assert metadata["requirements"] == environment_requirements()
    assert {r.split("==")[0] for r in metadata["requirements"]} == {"babyaipp", "minigrid", "gymnasium"}
    # The commit may move on while the tests run (a shared checkout); the link's form may not.
    assert metadata["code_permalink"].split("/tree/")[0] == code_permalink().split("/tree/")[0]
    assert re.fullmatch(r".+/tree/[0-9a-f]{40}(\+dirty)?|.+ \(version .+\)", metadata["code_permalink"])


def test_code_permalink_names_a_commit_in_a_checkout():
    link = code_permalink()
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        assert "/tree/" in link
        commit = link.rsplit("/", 1)[-1].removesuffix("+dirty")
        assert len(commit) == 40 and int(commit, 16) >= 0
