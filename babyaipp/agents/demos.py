"""Oracle demonstrations recorded as a local Minari dataset, and their loader.

``record_demos`` plays the planning oracle (:class:`babyaipp.envs.oracle.Oracle`) for ``episodes``
episodes and writes them with Minari's own API (``minari.create_dataset_from_buffers``, HDF5
storage, no JPEG encoding) under an output directory that acts as the Minari datasets root::

    OUT/babyaipp/<Task>-<Difficulty>-<Split>/oracle-v0/data/{main_data.hdf5, metadata.json}

so ``MINARI_DATASETS_PATH=OUT`` makes it loadable with ``minari.load_dataset(dataset_id)``;
nothing is written to ``~/.minari`` and nothing is uploaded or downloaded.

What is stored, so that training sees exactly what it would see online and a loader can group
episodes by held-out pair:

* observations: the :class:`~babyaipp.envs.wrappers.TokenObsWrapper` arrays (``image``,
  ``direction``, ``mission``, ``description``), ``T + 1`` per episode (the last is the final one);
* actions, rewards, terminations, truncations (Minari's fields);
* per-step ``infos``: ``seed`` and ``has_held_out_pair`` (constant over the episode);
* per-episode metadata (``dataset.storage.get_episode_metadata``): ``seed``, ``mission``,
  ``description`` (the text, in the dataset's text mode), ``dynamics`` and ``held_out_pairs``
  (JSON), ``success``, ``episode_return``, ``length``;
* dataset metadata ``babyaipp``: env id, text mode, env keywords, seed rule, package version.

Seeding: episode ``k`` is reset with ``seed + k``. Demonstration seeds stay below
:data:`~babyaipp.defaults.EVAL_SEED_START` (``10**6``), the first evaluation seed, so a cloned
policy is never evaluated on a level it saw. Workers receive contiguous blocks of seeds and their
episodes are written in seed order, so the dataset is the same for any number of workers.

The dataset is built in a hidden temporary directory beside ``OUT`` (``.OUT.tmp-<pid>-*``) and
renamed onto ``OUT`` at the end: an interrupted (Ctrl-C, or SIGTERM through the CLI) or failed run
removes it and leaves no dataset behind; one killed outright (SIGKILL) leaves it, and the next run
into ``OUT`` removes it.

The loader (:func:`~babyaipp.agents.demos_loading.load_demos`, ``find_dataset``,
``Demonstrations``) and the format markers it checks live in :mod:`babyaipp.agents.demos_loading`.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from babyaipp import __version__
from babyaipp.agents.demos_loading import FORMAT, METADATA_KEY
from babyaipp.defaults import DEFAULT_TEXT, EVAL_SEED_START
from babyaipp.envs import provenance
from babyaipp.envs.oracle import NoPlanError, Oracle
from babyaipp.envs.physics import DONE
from babyaipp.envs.pool import init_worker, process_alive
from babyaipp.envs.registration import make_tokenized, parse_env_id
from babyaipp.envs.text import TEXT_MODES
from babyaipp.errors import ConfigError, check_choice, check_range
from babyaipp.utils import check_out_dir

DATASET_NAME = "oracle-v0"
#: Episodes per worker task: large enough to amortise inter-process transfer, small enough for
#: a smooth progress bar.
CHUNK_EPISODES = 32


@dataclass
class DemoEpisode:
    """One oracle episode, as recorded (observations hold ``length + 1`` entries)."""

    seed: int
    observations: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    mission: str
    description: str
    dynamics: dict[str, list[str]]
    held_out_pairs: list[list[str]]

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    @property
    def success(self) -> bool:
        return bool(self.rewards.size and self.rewards[-1] > 0 and self.terminations[-1])

    def metadata(self) -> dict[str, Any]:
        """HDF5-attribute-friendly episode metadata (scalars and strings only)."""
        return {
            "mission": self.mission,
            "description": self.description,
            "dynamics": json.dumps(self.dynamics, sort_keys=True),
            "held_out_pairs": json.dumps(self.held_out_pairs),
            "success": self.success,
            "episode_return": float(self.rewards.sum()),
            "length": self.length,
        }


@dataclass
class RecordResult:
    """What :func:`record_demos` wrote; the CLI prints it."""

    out: Path
    dataset_id: str
    episodes: int
    steps: int
    successes: int
    elapsed_s: float

    @property
    def demos_per_second(self) -> float:
        return self.episodes / self.elapsed_s if self.elapsed_s > 0 else 0.0


def dataset_id_for(env_id: str) -> str:
    """``babyaipp/<Task>-<Difficulty>-<Split>/oracle-v0``, Minari's ``namespace/env/name-vN`` form."""
    task, difficulty, split = parse_env_id(env_id)
    return f"babyaipp/{task}-{difficulty}-{split}/{DATASET_NAME}"


@contextmanager
def minari_root(path: str | os.PathLike) -> Iterator[None]:
    """Point Minari's datasets root at ``path`` for the duration (never at ``~/.minari``)."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


# ---------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------


def _make_env(env_id: str, text: str, env_kwargs: dict[str, Any]) -> Any:
    return make_tokenized(env_id, text=text, **env_kwargs)


def record_episode(env: Any, oracle: Any, seed: int) -> DemoEpisode:
    """Reset ``env`` with ``seed`` and let the oracle play until the episode ends.

    A planner failure (which generated levels should never cause) is played out with ``done``
    as in evaluation, so the episode is kept with ``success`` False rather than crashing a run.
    """
    obs, info = env.reset(seed=seed)
    oracle.reset()
    observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
    stuck = False
    while True:
        action = DONE
        if not stuck:
            try:
                action = oracle.act()
            except NoPlanError:
                stuck = True
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        terminations.append(terminated)
        truncations.append(truncated)
        if terminated or truncated:
            break
    base = env.unwrapped
    return DemoEpisode(
        seed=seed,
        observations={key: np.stack([np.asarray(o[key]) for o in observations]) for key in observations[0]},
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terminations, dtype=bool),
        truncations=np.asarray(truncations, dtype=bool),
        mission=str(base.mission),
        description=str(base.description),
        dynamics={colour: list(props) for colour, props in sorted(info["dynamics"].items())},
        held_out_pairs=[list(pair) for pair in info["held_out_pairs"]],
    )


def record_seeds(env_id: str, text: str, env_kwargs: dict[str, Any], seeds: list[int]) -> list[DemoEpisode]:
    """Record one episode per seed (a worker's task; module level so it pickles)."""
    env = _make_env(env_id, text, env_kwargs)
    try:
        oracle = Oracle(env)
        return [record_episode(env, oracle, s) for s in seeds]
    finally:
        env.close()


def _buffer(index: int, episode: DemoEpisode) -> Any:
    from minari.data_collector import EpisodeBuffer

    n = episode.length + 1
    return EpisodeBuffer(
        id=index,
        seed=episode.seed,
        observations=episode.observations,
        actions=episode.actions,
        rewards=episode.rewards,
        terminations=episode.terminations,
        truncations=episode.truncations,
        infos={
            "seed": np.full(n, episode.seed, dtype=np.int64),
            "has_held_out_pair": np.full(n, bool(episode.held_out_pairs)),
        },
    )


def _chunks(seeds: list[int], size: int) -> list[list[int]]:
    return [seeds[i : i + size] for i in range(0, len(seeds), size)]


def _episode_stream(
    env_id: str, text: str, env_kwargs: dict[str, Any], seeds: list[int], workers: int
) -> Iterator[list[DemoEpisode]]:
    """Blocks of episodes in seed order, from this process or from ``workers`` processes."""
    blocks = _chunks(seeds, CHUNK_EPISODES)
    if workers == 1:
        for block in blocks:
            yield record_seeds(env_id, text, env_kwargs, block)
        return
    # spawn: workers start clean (no copied torch/tqdm threads); map() yields in submission order.
    context = get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=(os.getpid(),))
    try:
        n = len(blocks)
        yield from pool.map(record_seeds, [env_id] * n, [text] * n, [env_kwargs] * n, blocks)
    finally:  # on Ctrl-C/SIGTERM, drop the queued blocks instead of recording them all first
        pool.shutdown(wait=True, cancel_futures=True)


def _temporary_prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def _remove_stale_temporaries(out: Path) -> None:
    """Remove the temporary directories of earlier runs into ``out`` whose process is gone.

    Ctrl-C, SIGTERM (through the CLI) and errors remove their own; only a run killed outright
    (SIGKILL, a lost machine) leaves one, named ``.OUT.tmp-<pid>-*``, and the next run clears it.
    """
    for path in out.parent.glob(f"{glob.escape(_temporary_prefix(out))}*"):
        pid = path.name[len(_temporary_prefix(out)) :].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _check_out(out: Path) -> None:
    check_out_dir(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists and is not empty; choose another --out")


def record_demos(
    out: str | os.PathLike,
    env_id: str,
    episodes: int,
    seed: int = 0,
    workers: int = 1,
    text: str = DEFAULT_TEXT,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    on_block: Callable[[int], None] | None = None,
) -> RecordResult:
    """Record ``episodes`` oracle episodes (seeds ``seed .. seed + episodes - 1``) into ``out``.

    ``on_block(n)`` is called after each block of ``n`` episodes is written (tests use it to
    interrupt a run). Raises :class:`ConfigError` for bad arguments or an existing ``out``.
    """
    import minari

    out = Path(out).absolute()  # Minari mis-joins relative data paths when it sizes the file
    parse_env_id(env_id)
    check_choice("text mode", text, TEXT_MODES)
    check_range("episodes", episodes, 1, EVAL_SEED_START)
    check_range("seed", seed, 0, EVAL_SEED_START - episodes)
    check_range("workers", workers, 1, 64)
    env_kwargs = dict(env_kwargs or {})
    _check_out(out)
    probe = _make_env(env_id, text, env_kwargs)  # bad keywords fail here, before any process starts
    dataset_id = dataset_id_for(env_id)
    seeds = list(range(seed, seed + episodes))

    from tqdm.auto import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f"{_temporary_prefix(out)}{os.getpid()}-"))
    began = time.perf_counter()
    written = steps = successes = 0
    dataset = None
    try:
        with minari_root(tmp), tqdm(total=episodes, desc="demos", unit="ep", disable=not progress) as bar:
            for block in _episode_stream(env_id, text, env_kwargs, seeds, workers):
                buffers = [_buffer(written + i, ep) for i, ep in enumerate(block)]
                if dataset is None:
                    with warnings.catch_warnings():  # Minari nags about author/e-mail/permalink
                        warnings.simplefilter("ignore")
                        dataset = minari.create_dataset_from_buffers(
                            dataset_id,
                            buffers,
                            env=probe,
                            algorithm_name="babyaipp.envs.oracle.Oracle",
                            author="babyaipp",
                            description=f"Oracle demonstrations on {env_id} (text={text})",
                            data_format="hdf5",
                            jpeg_encoding=False,
                            code_permalink=provenance.code_permalink(),
                            requirements=provenance.environment_requirements(),
                        )
                else:
                    dataset.storage.update_episodes(buffers)
                dataset.storage.update_episode_metadata(
                    [ep.metadata() for ep in block], range(written, written + len(block))
                )
                written += len(block)
                steps += sum(ep.length for ep in block)
                successes += sum(ep.success for ep in block)
                bar.update(len(block))
                if on_block is not None:
                    on_block(len(block))
            assert dataset is not None
            dataset.storage.update_metadata({METADATA_KEY: _dataset_metadata(env_id, text, env_kwargs, seed, episodes)})
        elapsed = time.perf_counter() - began
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; give it the usual mode
        if out.exists():
            out.rmdir()  # empty (checked above); os.replace needs it gone or empty
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        probe.close()
    return RecordResult(out, dataset_id, written, steps, successes, elapsed)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _dataset_metadata(env_id: str, text: str, env_kwargs: dict[str, Any], seed: int, episodes: int) -> dict:
    return {
        "format": FORMAT,
        "package_version": __version__,
        "env_id": env_id,
        "text": text,
        "env_kwargs": env_kwargs,
        "seed": seed,
        "episodes": episodes,
        "seed_rule": f"episode k is reset with seed {seed} + k (all < {EVAL_SEED_START}, the first evaluation seed)",
    }


__all__ = [
    "DATASET_NAME",
    "DemoEpisode",
    "RecordResult",
    "dataset_id_for",
    "minari_root",
    "record_demos",
    "record_episode",
    "record_seeds",
]
