"""The level pool made in worker processes: same levels as in-process, refreshed without stalling.

One engine with two ``forkserver`` workers is built per test module (starting the workers costs a
few seconds); its pool must equal an in-process engine's, and levels that the workers add later
(``refresh=True``) must replay exactly in the single env from their recorded seed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from babyaipp.envs.batched import BatchedBabyAIPP
from babyaipp.envs.pool import CHUNK
from babyaipp.envs.wrappers import TokenObsWrapper

from .conftest import quiet_make

ENV_ID = "BabyAIPP/GoToLocal-Hard-Train-v0"


@pytest.fixture(scope="module")
def worker_engine():
    engine = BatchedBabyAIPP(ENV_ID, 8, pool_size=CHUNK + 6, seed=3, workers=2, refresh=True, max_steps=8)
    yield engine
    engine.close()


def test_worker_pool_equals_in_process_pool(worker_engine: BatchedBabyAIPP) -> None:
    worker_engine.reset(seed=3)
    local = BatchedBabyAIPP(ENV_ID, 8, pool_size=CHUNK + 6, seed=3, max_steps=8)
    local.reset()
    assert worker_engine.pool is not None and local.pool is not None
    assert worker_engine.pool.tensors.keys() == local.pool.tensors.keys()
    for key, value in local.pool.tensors.items():
        assert torch.equal(worker_engine.pool.tensors[key], value), key
    assert worker_engine.pool.tensors["level_seed"].tolist() == list(range(3, 3 + CHUNK + 6))


def test_refreshed_levels_replay_exactly(worker_engine: BatchedBabyAIPP) -> None:
    engine = worker_engine
    engine.reset(seed=3)
    size = engine.pool.size
    single = TokenObsWrapper(quiet_make(ENV_ID, max_steps=8))
    rng = np.random.default_rng(0)
    deadline, checked_new = time.monotonic() + 60, 0
    while time.monotonic() < deadline and checked_new < 3:
        obs, _, terminated, truncated = engine.step(torch.as_tensor(rng.integers(7, size=engine.num_envs)))
        for i in np.flatnonzero((terminated | truncated).numpy()):
            seed = int(engine.state["level_seed"][i])
            want, _ = single.reset(seed=seed)
            for key in want:
                assert np.array_equal(obs[key][i].numpy(), np.asarray(want[key])), (seed, key)
            checked_new += seed >= 3 + size  # a level the workers made after the reset
        if engine.levels_refreshed == 0:
            time.sleep(0.01)  # let the workers run on a busy machine
    assert engine.levels_refreshed >= CHUNK
    assert checked_new >= 3
    # Refreshed levels replace pool rows as a ring, in seed order, after the pool's own seeds.
    want = list(range(3, 3 + size))
    for k in range(engine.levels_refreshed):
        want[k % size] = 3 + size + k
    assert engine.pool.tensors["level_seed"].tolist() == want


def test_the_episodes_do_not_depend_on_the_number_of_workers() -> None:
    """Chunks enter in seed order when enough episodes have ended, however many workers make them,
    so a run on a GPU (several refresh workers) plays the episodes a one-worker run plays."""
    engines = [
        BatchedBabyAIPP(ENV_ID, 8, pool_size=CHUNK + 6, seed=3, workers=n, refresh=True, max_steps=8) for n in (1, 3)
    ]
    try:
        observations = [engine.reset(seed=3) for engine in engines]
        actions = torch.Generator().manual_seed(0)
        for _ in range(300):
            action = torch.randint(7, (8,), generator=actions)
            observations = [engine.step(action)[0] for engine in engines]
            one, three = observations
            assert all(torch.equal(one[k], three[k]) for k in one)
            assert torch.equal(engines[0].state["level_seed"], engines[1].state["level_seed"])
        assert engines[0].levels_refreshed == engines[1].levels_refreshed >= 2 * CHUNK, "chunks were swapped in"
    finally:
        for engine in engines:
            engine.close()
