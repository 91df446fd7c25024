"""Generalisation evaluation: success on Train, Test and TargetPairOnly with standard errors.

The spec's protocol: train on a ``Train`` id, then run the same policy (actions sampled from it by
default, as BabyAI evaluates; its argmax with ``greedy=True``) on the ``Train``,
``Test`` and ``TargetPairOnly`` ids of the same task and difficulty, ``episodes`` each, and report
success rate ± binomial standard error, mean return and the gap Train − TargetPairOnly.

Seeding rule (recorded in every result as ``seed_rule``): episode ``k`` (0-based) of every split
starts with ``env.reset(seed=seed_base + k)``; ``seed_base`` defaults to
:data:`~babyaipp.defaults.EVAL_SEED_START` (``10**6``) and may not be lower, because training seeds
are below it. A vectorised rollout hands the next unused
seed to whichever env finishes first, and results are keyed by ``k``, so they do not depend on
the number of parallel envs.

Four reference policies sit on the same table, each run one env at a time on the same seeds:

* ``random``: actions drawn from ``np.random.default_rng([7919, seed_base + k])`` in episode ``k``;
* ``oracle``: the planner that reads the episode's mapping (:class:`babyaipp.envs.oracle.Oracle`);
* ``memoriser``: the same planner with the Train split's statistics instead of the mapping (the
  best a perfect memoriser of Train can do; :class:`babyaipp.envs.reference_planners.ReferencePlanner`);
* ``cautious``: the same planner knowing nothing of the mapping (avoids tiles, else crosses as few
  colours as it can).

A model whose TargetPairOnly success is above the memoriser's by more than 1.96 standard errors
must be using the description: :func:`reading_margin` computes the difference, stored in results
under ``READING_KEY`` and shown in every table.

No function here prints; long loops show a tqdm bar on stderr when ``progress=True``.

The seeded rollouts, the per-episode records and their per-split statistics (success ± SE, the
gap, held-out-pair breakdowns) live in :mod:`babyaipp.agents.evaluation_episodes`; this module
holds the policies and the ``evaluate_*`` flow.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from babyaipp.agents.evaluation_episodes import (
    ActFn,
    difference_se,
    rollout_single,
    rollout_vectorised,
    seed_rule,
    split_gap,
    summarise_episodes,
)
from babyaipp.agents.runs import load_run
from babyaipp.defaults import (
    DEFAULT_EVAL_DEVICE,
    DEFAULT_EVAL_EPISODES,
    DEFAULT_EVAL_N_ENVS,
    DEFAULT_GREEDY,
    DEFAULT_TEXT,
    EVAL_SEED_START,
)
from babyaipp.envs import SPLITS, make, split_ids
from babyaipp.envs.oracle import NoPlanError
from babyaipp.envs.physics import DONE
from babyaipp.envs.reference_planners import make_reference_planner
from babyaipp.envs.registration import make_tokenized
from babyaipp.envs.threads import engine_thread_limit, limited_threads
from babyaipp.errors import (
    BabyAIPPError,
    CheckpointError,
    ConfigError,
    InvalidChoiceError,
    check_choice,
    check_range,
)

DEFAULT_SPLITS: tuple[str, ...] = SPLITS
REFERENCE_POLICIES: tuple[str, ...] = ("random", "oracle", "memoriser", "cautious")
#: The planners among the references (the oracle and the two that never read the description).
PLANNER_POLICIES: tuple[str, ...] = ("oracle", "memoriser", "cautious")
#: References that :func:`evaluate_reference_on_splits` also runs on request but eval tables leave
#: out: ``walker`` ignores colours and walks the shortest path (a floor-layout diagnostic).
EXTRA_REFERENCE_POLICIES: tuple[str, ...] = ("walker",)
#: Key of the model's TargetPairOnly success minus the memoriser's, with its SE and verdict.
READING_KEY = "target_pair_only_minus_memoriser"
#: How many standard errors above the memoriser count as reading (two-sided 95%).
READING_Z = 1.96
#: Second seed word of the random policy's generator, so its actions are not the env's own stream.
RANDOM_POLICY_STREAM = 7919
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
EVAL_SUBDIR = "eval"
GAP_KEY = "gap_train_minus_target_pair_only"


# --------------------------------------------------------------------------- policies
def sb3_act_fn(model: Any, greedy: bool = DEFAULT_GREEDY) -> ActFn:
    """Actions of an SB3 model: greedy (argmax), or sampled from the policy as BabyAI evaluates.

    For RecurrentPPO the LSTM state is carried and reset at episode starts (plain PPO ignores
    ``state`` and ``episode_start``). Sampling draws from torch's global generator, which
    :func:`evaluate_policy_on_splits` seeds per split.
    """

    def act(obs: dict[str, np.ndarray], state: Any, episode_start: np.ndarray) -> tuple[np.ndarray, Any]:
        actions, new_state = model.predict(obs, state=state, episode_start=episode_start, deterministic=greedy)
        return np.asarray(actions).reshape(-1), new_state

    return act


def _check_common(splits: Iterable[str], episodes: int, seed_base: int) -> list[str]:
    splits = list(splits)
    if not splits:
        raise InvalidChoiceError("split list", splits, SPLITS)
    for s in splits:
        check_choice("split", s, SPLITS)
    check_range("episodes", episodes, 1)
    check_range("seed_base", seed_base, EVAL_SEED_START)
    return splits


def _finish(split_results: dict[str, Any], episodes: int, seed_base: int, text: str, **extra: Any) -> dict:
    return {
        **extra,
        "text": text,
        "episodes_per_split": episodes,
        "seed_base": seed_base,
        "seed_rule": seed_rule(seed_base),
        "splits": split_results,
        GAP_KEY: split_gap(split_results),
    }


def evaluate_policy_on_splits(
    act_fn: ActFn,
    env_id: str,
    splits: Sequence[str] = DEFAULT_SPLITS,
    episodes: int = DEFAULT_EVAL_EPISODES,
    text: str = DEFAULT_TEXT,
    seed_base: int = EVAL_SEED_START,
    recurrent: bool = False,
    progress: bool = False,
    n_envs: int = DEFAULT_EVAL_N_ENVS,
    greedy: bool = DEFAULT_GREEDY,
    **env_kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a batched policy on the split ids of ``env_id``'s task and difficulty.

    ``act_fn`` (or an SB3 model, whose ``predict`` is used, greedy or sampled per ``greedy``) sees
    token observations (:class:`~babyaipp.envs.wrappers.TokenObsWrapper`), as the agents were
    trained on. torch's global generator is seeded with ``seed_base`` for each split (and restored
    afterwards), so sampled actions are reproducible for a given ``n_envs``; greedy results do not
    depend on ``n_envs`` at all. Returns a JSON-ready dict (see :func:`summarise_episodes` for the
    per-split keys) with the seed rule and the Train − TargetPairOnly gap.
    """
    if hasattr(act_fn, "predict"):  # an SB3 model passed as it is
        act_fn = sb3_act_fn(act_fn, greedy=greedy)
    splits = _check_common(splits, episodes, seed_base)
    ids = split_ids(env_id)
    results: dict[str, Any] = {}
    for split in splits:
        split_env = ids[split]
        # The policy's forward passes under the engine's thread rule, as in training: split over
        # torch's default threads they run ~10x slower while another process holds a core.
        with torch.random.fork_rng(devices=[]), limited_threads(engine_thread_limit()):
            torch.manual_seed(seed_base)
            records = rollout_vectorised(
                lambda split_env=split_env: make_tokenized(split_env, text=text, **env_kwargs),
                act_fn,
                episodes,
                seed_base=seed_base,
                n_envs=n_envs,
                progress=progress,
                desc=f"eval {split}",
            )
        results[split] = summarise_episodes(records, split_env)
    actions = (
        "greedy (argmax)" if greedy else f"sampled from the policy (torch seeded with {seed_base}, n_envs={n_envs})"
    )
    return _finish(
        results, episodes, seed_base, text, env_id=env_id, policy="model", recurrent=recurrent, actions=actions
    )


def evaluate_reference_on_splits(
    policy: str,
    env_id: str,
    splits: Sequence[str] = DEFAULT_SPLITS,
    episodes: int = DEFAULT_EVAL_EPISODES,
    text: str = DEFAULT_TEXT,
    seed_base: int = EVAL_SEED_START,
    progress: bool = False,
    **env_kwargs: Any,
) -> dict[str, Any]:
    """A reference policy (``random``, ``oracle``, ``memoriser``, ``cautious``) on the model's splits and seeds."""
    check_choice("reference policy", policy, REFERENCE_POLICIES + EXTRA_REFERENCE_POLICIES)
    splits = _check_common(splits, episodes, seed_base)
    ids = split_ids(env_id)
    results: dict[str, Any] = {}
    for split in splits:
        env = make(ids[split], text=text, **env_kwargs)
        try:
            chooser = _reference_chooser(policy, env, seed_base)
            records = rollout_single(env, chooser, episodes, seed_base, progress, f"{policy} {split}")
        finally:
            env.close()
        results[split] = summarise_episodes(records, ids[split])
    return _finish(results, episodes, seed_base, text, env_id=env_id, policy=policy)


def _reference_chooser(policy: str, env: Any, seed_base: int) -> Callable[[int], Callable[[], int]]:
    if policy == "random":
        n_actions = int(env.action_space.n)

        def choose_random(k: int) -> Callable[[], int]:
            rng = np.random.default_rng([RANDOM_POLICY_STREAM, seed_base + k])
            return lambda: int(rng.integers(n_actions))

        return choose_random
    oracle = make_reference_planner(policy, env)

    def choose_oracle(k: int) -> Callable[[], int]:
        oracle.reset()
        stuck = False

        def act() -> int:
            # A planner failure should not happen; if it does, the episode is played out with
            # 'done' and counts as whatever the env says (a failure), rather than crashing a
            # long evaluation.
            nonlocal stuck
            if not stuck:
                try:
                    return oracle.act()
                except NoPlanError:
                    stuck = True
            return DONE

        return act

    return choose_oracle


def evaluate_references(
    env_id: str,
    policies: Sequence[str] = REFERENCE_POLICIES,
    **kwargs: Any,
) -> dict[str, Any]:
    """Every reference policy in ``policies`` on the same splits and seeds."""
    out: dict[str, Any] = {}
    for policy in policies:
        out[policy] = evaluate_reference_on_splits(policy, env_id, **kwargs)
    return out


def reading_margin(result: dict[str, Any]) -> dict[str, Any] | None:
    """The model's TargetPairOnly success minus the memoriser's on the same seeds, with its SE.

    ``reads`` is True when the difference exceeds ``READING_Z`` standard errors: no policy that
    ignores the description can beat a perfect memoriser of Train on held-out pairs except by
    chance. ``None`` when either side lacks a TargetPairOnly result.
    """
    mem = ((result.get("references") or {}).get("memoriser") or {}).get("splits", {}).get("TargetPairOnly")
    own = (result.get("splits") or {}).get("TargetPairOnly")
    if not mem or not own or own.get("success_rate") is None or mem.get("success_rate") is None:
        return None
    diff = own["success_rate"] - mem["success_rate"]
    se = difference_se(own["success_se"], mem["success_se"])
    return {"difference": diff, "se": se, "z": READING_Z, "reads": bool(diff > READING_Z * se)}


# --------------------------------------------------------------------------- runs on disk
def check_observation_space(model: Any, env_id: str, text: str, **env_kwargs: Any) -> None:
    """Raise a clear error when ``env_id``'s token observations differ from the checkpoint's."""
    env = make_tokenized(env_id, text=text, **env_kwargs)
    try:
        env_space = env.observation_space
    finally:
        env.close()
    model_space = model.observation_space
    if not spaces_match(env_space, model_space):
        raise BabyAIPPError(
            f"observation space of {env_id} ({env_space}) does not match the checkpoint's ({model_space})"
        )


def spaces_match(env_space: Any, model_space: Any) -> bool:
    """Equal, allowing image boxes that SB3 stored channels-first (``VecTransposeImage``); its
    ``predict`` transposes channels-last observations itself."""
    from gymnasium import spaces

    def same(a: Any, b: Any) -> bool:
        if a == b:
            return True
        if isinstance(a, spaces.Box) and isinstance(b, spaces.Box) and len(a.shape) == 3:
            return b.shape == (a.shape[2], *a.shape[:2]) and a.dtype == b.dtype  # bounds: older runs stored 0..255
        return False

    if isinstance(env_space, spaces.Dict) and isinstance(model_space, spaces.Dict):
        return env_space.keys() == model_space.keys() and all(
            same(env_space[k], model_space[k]) for k in env_space.keys()
        )
    return same(env_space, model_space)


def default_loader(run_dir: Path, device: str) -> tuple[Any, dict[str, Any]]:
    return load_run(run_dir, device=device)


def evaluate_run(
    run_dir: str | os.PathLike,
    splits: Sequence[str] = DEFAULT_SPLITS,
    episodes: int = DEFAULT_EVAL_EPISODES,
    device: str = DEFAULT_EVAL_DEVICE,
    references: bool = True,
    env_id: str | None = None,
    seed_base: int = EVAL_SEED_START,
    n_envs: int = DEFAULT_EVAL_N_ENVS,
    progress: bool = False,
    loader: Callable[[Path, str], tuple[Any, dict[str, Any]]] | None = None,
    greedy: bool = DEFAULT_GREEDY,
) -> dict[str, Any]:
    """Load a training run and evaluate it (and, optionally, the reference policies).

    ``env_id`` overrides the run's own id (e.g. another task of the same observation format).
    Actions are sampled from the policy by default, as BabyAI evaluates its agents (a greedy
    policy can loop forever in a partially observed room); ``greedy=True`` takes the argmax.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    splits = _check_common(splits, episodes, seed_base)
    model, config = (loader or default_loader)(run_dir, device)
    for key in ("env_id", "text"):
        if key not in config:
            raise CheckpointError(f"the config of {run_dir} has no {key!r}; the run is incomplete or corrupt")
    target = env_id or config["env_id"]
    split_ids(target)  # clear error for a bad id before any work
    last_train_seed = (config.get("train_seed_range") or {}).get("last")
    if isinstance(last_train_seed, int) and seed_base <= last_train_seed:
        raise ConfigError(
            f"seed_base={seed_base} overlaps this run's training seeds (up to {last_train_seed}); "
            f"valid range: [{last_train_seed + 1}, inf]"
        )
    text = config["text"]
    env_kwargs = dict(config.get("env_kwargs") or {})  # e.g. room_size: evaluate the world it trained in
    check_observation_space(model, target, text, **env_kwargs)
    recurrent = bool(config.get("recurrent", False))
    result = evaluate_policy_on_splits(
        sb3_act_fn(model, greedy=greedy),
        target,
        splits,
        episodes,
        text,
        seed_base,
        recurrent,
        progress,
        n_envs,
        greedy=greedy,
        **env_kwargs,
    )
    result["env_kwargs"] = env_kwargs
    result["run_dir"] = str(run_dir)
    result["run"] = {k: config.get(k) for k in ("env_id", "text", "recurrent", "model", "seed")}
    result["run"]["num_timesteps"] = config.get("num_timesteps")
    if config.get("train_seed_range"):
        result["run"]["train_seed_range"] = config["train_seed_range"]
    result["references"] = (
        evaluate_references(
            target,
            splits=splits,
            episodes=episodes,
            text=text,
            seed_base=seed_base,
            progress=progress,
            **env_kwargs,
        )
        if references
        else {}
    )
    result[READING_KEY] = reading_margin(result)
    return result


__all__ = [
    "EVAL_SUBDIR",
    "PLANNER_POLICIES",
    "READING_KEY",
    "REFERENCE_POLICIES",
    "RESULTS_JSON",
    "check_observation_space",
    "evaluate_policy_on_splits",
    "evaluate_reference_on_splits",
    "evaluate_references",
    "evaluate_run",
    "reading_margin",
    "sb3_act_fn",
    "spaces_match",
]
