"""The engine's thread limit: one thread inside its calls unless the user chose threads, restored afterwards."""

from __future__ import annotations

import pytest
import torch

from babyaipp.envs import threads
from babyaipp.envs.batched import BatchedBabyAIPP
from babyaipp.errors import ConfigError

ENV_ID = "BabyAIPP/GoToRedBall-Easy-Train-v0"


@pytest.fixture
def no_user_threads(monkeypatch):
    for name in (threads.ENV_VAR, *threads.USER_THREAD_VARS):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


def _threads_seen_in_step(engine: BatchedBabyAIPP) -> list[int]:
    """Run one step, recording torch's thread count inside the engine's tensor code."""
    seen: list[int] = []
    inner = engine._advance_fn

    def recording(*args):
        seen.append(torch.get_num_threads())
        return inner(*args)

    engine._advance_fn = recording
    engine.step(torch.zeros(engine.num_envs, dtype=torch.long))
    return seen


def test_limit_rules(no_user_threads):
    assert threads.engine_thread_limit() == 1
    no_user_threads.setenv("OMP_NUM_THREADS", "2")
    assert threads.engine_thread_limit() is None
    no_user_threads.setenv(threads.ENV_VAR, "3")
    assert threads.engine_thread_limit() == 3  # the engine's own variable wins
    no_user_threads.setenv(threads.ENV_VAR, "0")
    assert threads.engine_thread_limit() is None
    for bad in ("-1", "two"):
        no_user_threads.setenv(threads.ENV_VAR, bad)
        with pytest.raises(ConfigError, match=threads.ENV_VAR):
            threads.engine_thread_limit()


def test_a_count_set_by_the_user_is_left_alone(no_user_threads):
    torch.set_num_threads(threads._THREADS_AT_IMPORT + 1)
    assert threads.engine_thread_limit() is None


def test_engine_steps_under_the_limit_and_restores_torch_setting(no_user_threads):
    no_user_threads.setenv(threads.ENV_VAR, "3")
    engine = BatchedBabyAIPP(ENV_ID, 4)
    engine.reset(seed=0)
    outside = torch.get_num_threads()
    assert _threads_seen_in_step(engine) == [3]
    assert torch.get_num_threads() == outside


def test_engine_default_is_one_thread_inside_its_calls(no_user_threads):
    engine = BatchedBabyAIPP(ENV_ID, 4)
    engine.reset(seed=0)
    assert _threads_seen_in_step(engine) == [1]
    torch.set_num_threads(threads._THREADS_AT_IMPORT + 1)  # the user's choice after import wins
    assert _threads_seen_in_step(engine) == [threads._THREADS_AT_IMPORT + 1]


def test_limited_threads_restores_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), threads.limited_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
