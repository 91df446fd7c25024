"""Evaluation episodes: the seed rule, the rollouts that follow it, and per-split statistics.

This is the policy-agnostic layer under :mod:`babyaipp.agents.evaluation`: episode ``k`` of a
split starts with ``env.reset(seed=seed_base + k)`` (:func:`rollout_vectorised` for a batched
policy, :func:`rollout_single` for the one-env reference policies), each finished episode becomes
an :class:`EpisodeRecord`, and :func:`summarise_episodes` / :func:`split_gap` turn the records into
success ± binomial SE, mean return and length, held-out-pair breakdowns and the
Train − TargetPairOnly gap. Kept apart from the ``evaluate_*`` flow so that flow reads top to
bottom and this module, which imports nothing of it, serves the other callers (behaviour cloning's
fit check, the headroom study) as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from babyaipp.defaults import DEFAULT_EVAL_N_ENVS, EVAL_SEED_START
from babyaipp.errors import check_range

GAP_SPLITS = ("Train", "TargetPairOnly")

#: ``act_fn(obs_batch, state, episode_start) -> (actions, state)``, i.e. SB3's ``predict`` signature.
ActFn = Callable[[dict[str, np.ndarray], Any, np.ndarray], tuple[np.ndarray, Any]]


# --------------------------------------------------------------------------- statistics
def binomial_se(successes: int, n: int) -> float:
    """Standard error of a success rate, ``sqrt(p (1 - p) / n)``; 0 for ``n == 0``."""
    if n <= 0:
        return 0.0
    p = successes / n
    return math.sqrt(p * (1.0 - p) / n)


def difference_se(se_a: float, se_b: float) -> float:
    """Standard error of a difference of two independent estimates."""
    return math.sqrt(se_a**2 + se_b**2)


def seed_rule(seed_base: int) -> str:
    return (
        f"episode k (0-based) of every split starts with env.reset(seed={seed_base} + k); "
        f"training seeds are < {EVAL_SEED_START}, so evaluation seeds are disjoint from them"
    )


def evaluation_seeds(episodes: int, seed_base: int = EVAL_SEED_START) -> list[int]:
    """The reset seeds of episodes ``0 .. episodes - 1``."""
    return [seed_base + k for k in range(episodes)]


# --------------------------------------------------------------------------- episode records
@dataclass(frozen=True)
class EpisodeRecord:
    """One finished evaluation episode."""

    index: int
    seed: int
    success: bool
    episode_return: float
    length: int
    held_out_pairs: tuple[tuple[str, str], ...]


@dataclass
class _Group:
    episodes: int = 0
    successes: int = 0

    def add(self, success: bool) -> None:
        self.episodes += 1
        self.successes += int(success)

    def as_dict(self) -> dict[str, Any]:
        rate = self.successes / self.episodes if self.episodes else None
        se = binomial_se(self.successes, self.episodes) if self.episodes else None
        return {"episodes": self.episodes, "successes": self.successes, "success_rate": rate, "success_se": se}


@dataclass
class _SplitSummary:
    overall: _Group = field(default_factory=_Group)
    with_held_out: _Group = field(default_factory=_Group)
    without_held_out: _Group = field(default_factory=_Group)
    per_pair: dict[str, _Group] = field(default_factory=dict)


def pair_name(pair: Sequence[str]) -> str:
    colour, prop = pair
    return f"{colour}-{prop}"


def summarise_episodes(records: Sequence[EpisodeRecord], env_id: str) -> dict[str, Any]:
    """Success ± SE, mean return/length, held-out-pair groups and per-pair success of one split."""
    summary = _SplitSummary()
    for rec in records:
        summary.overall.add(rec.success)
        (summary.with_held_out if rec.held_out_pairs else summary.without_held_out).add(rec.success)
        for pair in rec.held_out_pairs:
            summary.per_pair.setdefault(pair_name(pair), _Group()).add(rec.success)
    overall = summary.overall.as_dict()
    returns = [r.episode_return for r in records]
    lengths = [r.length for r in records]
    return {
        "env_id": env_id,
        **overall,
        "mean_return": float(np.mean(returns)) if records else None,
        "mean_length": float(np.mean(lengths)) if records else None,
        "with_held_out_pair": summary.with_held_out.as_dict(),
        "without_held_out_pair": summary.without_held_out.as_dict(),
        "per_held_out_pair": {name: g.as_dict() for name, g in sorted(summary.per_pair.items())},
    }


def split_gap(split_results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Train − TargetPairOnly success gap and its SE (independent samples), if both were run."""
    a, b = (split_results.get(s) for s in GAP_SPLITS)
    if not a or not b or a.get("success_rate") is None or b.get("success_rate") is None:
        return None
    return {
        "splits": list(GAP_SPLITS),
        "gap": a["success_rate"] - b["success_rate"],
        "se": difference_se(a["success_se"], b["success_se"]),
    }


# --------------------------------------------------------------------------- rollouts
def _stack(observations: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    return {key: np.stack([np.asarray(o[key]) for o in observations]) for key in observations[0]}


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled, leave=False, dynamic_ncols=True)


def rollout_vectorised(
    make_env: Callable[[], Any],
    act_fn: ActFn,
    episodes: int,
    seed_base: int = EVAL_SEED_START,
    n_envs: int = DEFAULT_EVAL_N_ENVS,
    progress: bool = False,
    desc: str = "eval",
) -> list[EpisodeRecord]:
    """Run ``episodes`` episodes over ``n_envs`` envs with one batched ``act_fn`` call per step.

    We reset envs ourselves instead of relying on a vector env's auto-reset, so that a finished
    env always starts the next unused seed; envs left without an episode at the tail keep their
    last observation in the batch (their actions are ignored), so the batch shape and the
    recurrent state's layout never change.
    """
    check_range("episodes", episodes, 1)
    check_range("n_envs", n_envs, 1)
    n_envs = min(n_envs, episodes)
    envs = [make_env() for _ in range(n_envs)]
    records: list[EpisodeRecord | None] = [None] * episodes
    current: list[int | None] = [None] * n_envs
    observations: list[Any] = [None] * n_envs
    returns = np.zeros(n_envs)
    lengths = np.zeros(n_envs, dtype=np.int64)
    held_out: list[tuple[tuple[str, str], ...]] = [()] * n_envs
    episode_start = np.ones(n_envs, dtype=bool)
    next_episode = 0

    def start(i: int) -> None:
        nonlocal next_episode
        if next_episode >= episodes:
            current[i] = None
            return
        k, next_episode = next_episode, next_episode + 1
        obs, info = envs[i].reset(seed=seed_base + k)
        current[i], observations[i] = k, obs
        returns[i], lengths[i] = 0.0, 0
        held_out[i] = tuple(tuple(p) for p in info.get("held_out_pairs", ()))
        episode_start[i] = True

    try:
        with _progress_bar(episodes, desc, progress) as bar:
            for i in range(n_envs):
                start(i)
            state: Any = None
            while any(k is not None for k in current):
                actions, state = act_fn(_stack(observations), state, episode_start.copy())
                episode_start[:] = False
                for i, k in enumerate(current):
                    if k is None:
                        continue
                    obs, reward, terminated, truncated, _ = envs[i].step(int(np.asarray(actions[i]).item()))
                    observations[i] = obs
                    returns[i] += float(reward)
                    lengths[i] += 1
                    if terminated or truncated:
                        records[k] = EpisodeRecord(
                            index=k,
                            seed=seed_base + k,
                            success=bool(terminated and reward > 0),
                            episode_return=float(returns[i]),
                            length=int(lengths[i]),
                            held_out_pairs=held_out[i],
                        )
                        bar.update(1)
                        start(i)
    finally:
        for env in envs:
            env.close()
    return [r for r in records if r is not None]


def rollout_single(
    env: Any,
    choose_action: Callable[[int], Callable[[], int]],
    episodes: int,
    seed_base: int = EVAL_SEED_START,
    progress: bool = False,
    desc: str = "eval",
) -> list[EpisodeRecord]:
    """One env, one episode at a time; ``choose_action(k)`` is called after ``reset`` of episode
    ``k`` and returns the per-step action function (used by the random and oracle references)."""
    check_range("episodes", episodes, 1)
    records: list[EpisodeRecord] = []
    with _progress_bar(episodes, desc, progress) as bar:
        for k in range(episodes):
            _, info = env.reset(seed=seed_base + k)
            act = choose_action(k)
            total, length, done = 0.0, 0, False
            reward, terminated = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(int(act()))
                total += float(reward)
                length += 1
                done = terminated or truncated
            records.append(
                EpisodeRecord(
                    index=k,
                    seed=seed_base + k,
                    success=bool(terminated and reward > 0),
                    episode_return=total,
                    length=length,
                    held_out_pairs=tuple(tuple(p) for p in info.get("held_out_pairs", ())),
                )
            )
            bar.update(1)
    return records


__all__ = [
    "GAP_SPLITS",
    "ActFn",
    "EpisodeRecord",
    "binomial_se",
    "difference_se",
    "evaluation_seeds",
    "pair_name",
    "rollout_single",
    "rollout_vectorised",
    "seed_rule",
    "split_gap",
    "summarise_episodes",
]
