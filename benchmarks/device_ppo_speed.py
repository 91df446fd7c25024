"""Training frames/s of ``--trainer device`` beside ``--trainer sb3`` and the gradient-step cap, and
TorchRL's PPO pieces beside the plain loop on the same data.

    python benchmarks/device_ppo_speed.py [--model attention] [--n-envs 16 64] [--updates 4]
        [--device cpu] [--skip trainers bound torchrl] [--compare-text-cache] [--bound-reps 5]

1. *Trainers*: ``babyaipp.agents.training.train`` (the ``babyaipp train`` code path) with
   ``trainer="sb3"`` and ``trainer="device"`` at the same settings (batched engine, the model's
   PPO defaults, ``n_steps`` 128, batch 256), steady-state frames/s (updates 2.. of progress.csv,
   as ``benchmarks/train_speed.py``), the device trainer twice (``DevicePPO.lean`` off, then on:
   SB3's distribution objects and single-tensor Adam, then the lean path), and the model's
   gradient-step cap (``train_speed.update_bound``, SB3's step; and :func:`lean_cap`, the lean
   step) measured just before each set of runs, under torch's thread count as this process starts
   and under one thread. Thread settings are the defaults: leave ``OMP_NUM_THREADS`` unset to measure what a
   user gets. ``--compare-text-cache`` adds a lean run whose collection re-encodes every env's text at
   every step (``DevicePPO.cache_text`` off), beside the default that encodes a text when an env's changes.
2. *The loop's bound*: the device trainer's collect and update alternated in one process (first pair
   dropped), min (median) seconds of each and 1 / (1 + collect/update), the most of the gradient-step
   cap any loop that collects with one forward per frame can reach (the update runs at the cap).
3. *TorchRL vs the plain loop*, the same policy and engine: a rollout with TorchRL's
   ``SyncDataCollector`` over :class:`~babyaipp.envs.torchrl_env.BabyAIPPTorchRLEnv` against
   :meth:`DevicePPO.collect`; on one and the same rollout, TorchRL's ``GAE`` against
   :meth:`DevicePPO.advantages`, and ``n_epochs`` of minibatch steps with ``ClipPPOLoss`` against
   :meth:`DevicePPO.update`. The policy is split the way TorchRL's PPO examples split a shared trunk
   (``ActorValueOperator``: the loss runs the trunk once for the actor and once for the critic).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import steady_fps, update_bound  # noqa: E402

from babyaipp.agents import training  # noqa: E402
from babyaipp.agents.models import model_spec  # noqa: E402
from babyaipp.agents.progress import read_progress  # noqa: E402
from babyaipp.agents.training_setup import build_agent  # noqa: E402
from babyaipp.defaults import DEFAULT_ENV  # noqa: E402

OBS_KEYS = ("image", "direction", "mission", "description")


def trainer_fps(
    trainer: str,
    model: str,
    n_envs: int,
    updates: int,
    n_steps: int,
    device: str,
    lean: bool = True,
    cache_text: bool = True,
) -> tuple[float, float]:
    """(steady-state frames/s, first update's frames/s) of a short run; ``lean``: DevicePPO.lean,
    ``cache_text``: DevicePPO.cache_text."""
    from babyaipp.agents.device_ppo import DevicePPO

    DevicePPO.lean, DevicePPO.cache_text = lean, cache_text
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        training.train(
            run,
            model=model,
            n_envs=n_envs,
            steps=updates * n_steps * n_envs,
            device=device,
            trainer=trainer,
            hyperparameters={"n_steps": n_steps, "batch_size": min(256, n_steps * n_envs)},
            checkpoint_every=0,
        )
        DevicePPO.lean, DevicePPO.cache_text = True, True
        return steady_fps(read_progress(run))


def cap(model: str, threads: int | None) -> float:
    """The model's gradient-step cap in frames/s under ``threads`` torch threads (None: as now)."""
    from babyaipp.envs.threads import limited_threads

    with limited_threads(threads):
        return update_bound(model, model_spec(model).config().n_epochs)[1]


def lean_cap(model: str, threads: int | None, batch_size: int = 256, reps: int = 10) -> float:
    """``update_bound``'s gradient step taken the lean way (DevicePPO's update path: the heads
    without distribution objects, foreach clipping and Adam), in frames/s under ``threads``."""
    from babyaipp.envs.threads import limited_threads

    with limited_threads(threads):
        vec, agent, loop = build_loop(model, 2, 128, "cpu")
        try:
            from babyaipp.envs.batched import BatchedBabyAIPP

            obs = BatchedBabyAIPP(DEFAULT_ENV, batch_size, seed=0).reset()
            actions = torch.randint(7, (batch_size,), generator=torch.Generator().manual_seed(0))
            loop._buffer = type("Keys", (), {"obs": obs})  # _evaluate reads the observation keys from it
            policy = agent.policy
            parameters = [p for p in policy.parameters() if p.requires_grad]

            def step() -> None:
                values, log_prob, entropy = loop._evaluate({**obs, "actions": actions})
                loss = (
                    -(log_prob.exp() * torch.randn_like(log_prob)).mean() + 0.5 * values.pow(2).mean() - entropy.mean()
                )
                policy.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 0.5, foreach=True)
                policy.optimizer.step()

            for _ in range(3):
                step()
            began = time.perf_counter()
            for _ in range(reps):
                step()
            seconds = (time.perf_counter() - began) / reps
        finally:
            vec.close()
    return batch_size / (model_spec(model).config().n_epochs * seconds)


# ---------------------------------------------------------------------------------------------
# TorchRL's pieces beside the plain loop
# ---------------------------------------------------------------------------------------------


def build_loop(
    model: str, n_envs: int, n_steps: int, device: str, batch_size: int = 256, engine: str = "batched"
) -> tuple[Any, Any, Any]:
    """(vec, agent, DevicePPO) for a fresh run's policy and engine, as ``--trainer device`` builds them
    (the model's PPO defaults but ``n_steps`` and ``batch_size``; ``engine`` as ``--engine``); close
    ``vec`` when done."""
    from babyaipp.agents.device_ppo import DevicePPO, PPOSettings
    from babyaipp.agents.device_training import make_engine_env

    settings = {"n_steps": n_steps, "batch_size": min(batch_size, n_steps * n_envs)}
    config = model_spec(model).config.from_dict(settings)
    vec = make_engine_env(DEFAULT_ENV, n_envs, 0, "full", {}, 0, device, engine)
    agent = build_agent(vec, model, config, False, 0, device, Path(tempfile.gettempdir()) / "unused-tb")
    vec.reset()
    engine = vec.venv.engine
    engine.auto_reset = False
    return vec, agent, DevicePPO(engine, agent.policy, PPOSettings.from_config(config))


def _torchrl_modules(policy: Any) -> tuple[Any, Any]:
    """The SB3 policy as TorchRL's actor and critic (a shared trunk, as ``ActorValueOperator``)."""
    from tensordict.nn import TensorDictModule
    from torch import nn
    from torchrl.modules import ActorValueOperator, ProbabilisticActor, ValueOperator

    class Trunk(nn.Module):
        def __init__(self):
            super().__init__()
            self.policy = policy

        def forward(self, image, direction, mission, description):
            batch = image.shape[:-3]  # [N] when collecting, [N, T] in GAE: the SB3 policy takes one flat batch
            obs = {
                "image": image.reshape(-1, *image.shape[-3:]),
                "direction": direction.reshape(-1),
                "mission": mission.reshape(-1, mission.shape[-1]),
                "description": description.reshape(-1, *description.shape[-2:]),
            }
            latent_pi, latent_vf = self.policy.mlp_extractor(self.policy.extract_features(obs))
            return latent_pi.reshape(*batch, -1), latent_vf.reshape(*batch, -1)

    class Head(nn.Module):
        def __init__(self, layer: nn.Module):
            super().__init__()
            self.layer = layer

        def forward(self, latent):
            return self.layer(latent)

    common = TensorDictModule(Trunk(), in_keys=list(OBS_KEYS), out_keys=["latent_pi", "latent_vf"])
    logits = TensorDictModule(Head(policy.action_net), in_keys=["latent_pi"], out_keys=["logits"])
    actor_head = ProbabilisticActor(
        logits, in_keys=["logits"], distribution_class=torch.distributions.Categorical, return_log_prob=True
    )
    value_head = ValueOperator(Head(policy.value_net), in_keys=["latent_vf"])
    both = ActorValueOperator(common, actor_head, value_head)
    return both.get_policy_operator(), both.get_value_operator()


def timed(fn: Any, device: torch.device) -> tuple[Any, float]:
    """(``fn()``, its seconds), the device synchronised before and after (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - began


def torchrl_vs_plain(model: str, n_envs: int, n_steps: int, device: str, reps: int = 2) -> dict[str, float]:
    """Seconds per rollout of each piece, TorchRL's and the plain loop's (best of ``reps``)."""
    from torchrl.collectors import Collector
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    from babyaipp.envs.threads import limited_threads
    from babyaipp.envs.torchrl_env import BabyAIPPTorchRLEnv

    vec, agent, loop = build_loop(model, n_envs, n_steps, device)
    s, dev = loop.settings, loop.device
    frames = n_steps * n_envs
    actor, critic = _torchrl_modules(agent.policy)
    env = BabyAIPPTorchRLEnv(engine=loop.engine)
    times: dict[str, list[float]] = {}
    from babyaipp.agents.training_setup import trainer_thread_limit

    try:
        with limited_threads(trainer_thread_limit(dev)):
            collector = Collector(
                env, actor, frames_per_batch=frames, total_frames=-1, device=dev, auto_register_policy_transforms=False
            )
            batches = iter(collector)
            next(batches)  # warm-up: the first reset
            state = loop.initial_state()
            for _ in range(reps):
                with torch.no_grad():
                    batch, seconds = timed(lambda: next(batches), dev)
                times.setdefault("collect_torchrl", []).append(seconds)
                (rollout, state, last_values), seconds = timed(lambda st=state: loop.collect(st), dev)
                times.setdefault("collect_plain", []).append(seconds)

            # One rollout, in both layouts: the plain loop's buffer, and TorchRL's [N, T] tensordict of it.
            (adv, ret), seconds = timed(lambda: loop.advantages(rollout, last_values, state.episode_starts), dev)
            times["gae_plain"] = [seconds]
            td = _as_tensordict(rollout, state, batch)
            gae = GAE(gamma=s.gamma, lmbda=s.gae_lambda, value_network=critic, deactivate_vmap=True)  # vmap: .item()
            for _ in range(reps):
                with torch.no_grad():
                    _, seconds = timed(lambda: gae(td), dev)
                times.setdefault("gae_torchrl", []).append(seconds)

            loss = ClipPPOLoss(
                actor,
                critic,
                clip_epsilon=s.clip_range,
                entropy_coeff=s.ent_coef,
                critic_coeff=s.vf_coef,
                loss_critic_type="l2",
                normalize_advantage=True,
            )
            optimizer = agent.policy.optimizer
            flat = td.reshape(-1)

            def torchrl_update() -> None:
                for _ in range(s.n_epochs):
                    order = torch.randperm(frames, device=dev)
                    for start in range(0, frames, s.batch_size):
                        parts = loss(flat[order[start : start + s.batch_size]])
                        total = parts["loss_objective"] + parts["loss_critic"] + parts["loss_entropy"]
                        optimizer.zero_grad()
                        total.backward()
                        torch.nn.utils.clip_grad_norm_(agent.policy.parameters(), s.max_grad_norm)
                        optimizer.step()

            for _ in range(reps):
                _, seconds = timed(torchrl_update, dev)
                times.setdefault("update_torchrl", []).append(seconds)
                _, seconds = timed(lambda: loop.update(rollout, adv, ret), dev)
                times.setdefault("update_plain", []).append(seconds)
            collector.shutdown()
    finally:
        vec.close()
    return {name: min(values) for name, values in times.items()}


def _as_tensordict(rollout: Any, state: Any, batch: Any) -> Any:
    """The plain loop's rollout as TorchRL's [N, T] tensordict (observations, ("next", ...), log-probs)."""
    from tensordict import TensorDict

    obs = {k: v.transpose(0, 1) for k, v in rollout.obs.items()}
    next_obs = {k: torch.cat([v[:, 1:], state.obs[k].unsqueeze(1)], dim=1) for k, v in obs.items()}
    done = torch.cat([rollout.episode_starts[1:], state.episode_starts.unsqueeze(0)]).transpose(0, 1).bool()
    n, t = done.shape
    return TensorDict(
        {
            **obs,
            "action": rollout.actions.transpose(0, 1),
            "sample_log_prob": rollout.log_probs.transpose(0, 1),
            "action_log_prob": rollout.log_probs.transpose(0, 1),
            "next": {
                **next_obs,
                "reward": rollout.rewards.transpose(0, 1).unsqueeze(-1),
                "done": done.unsqueeze(-1),
                "terminated": done.unsqueeze(-1),
            },
        },
        batch_size=[n, t],
        device=batch.device,
    )


def loop_bound(model: str, n_envs: int, n_steps: int, device: str, reps: int = 5) -> dict[str, list[float]]:
    """Seconds of the device trainer's collect and update, alternated in this process (the first of
    each dropped as warm-up): how far below the gradient-step cap the loop must stay, as
    1 / (1 + collect / update), since its update runs the same gradient steps as the cap."""
    from babyaipp.agents.training_setup import trainer_thread_limit
    from babyaipp.envs.threads import limited_threads

    vec, _, loop = build_loop(model, n_envs, n_steps, device)
    times: dict[str, list[float]] = {"collect": [], "update": []}
    try:
        with limited_threads(trainer_thread_limit(loop.device)):
            state = loop.initial_state()
            for _ in range(reps):
                (rollout, state, last_values), seconds = timed(lambda st=state: loop.collect(st), loop.device)
                times["collect"].append(seconds)
                advantages, returns = loop.advantages(rollout, last_values, state.episode_starts)
                _, seconds = timed(lambda r=rollout, a=advantages, g=returns: loop.update(r, a, g), loop.device)
                times["update"].append(seconds)
    finally:
        vec.close()
    return {k: v[1:] for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="attention")
    parser.add_argument("--n-envs", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--n-steps", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip", nargs="*", default=[], choices=["trainers", "torchrl", "bound"])
    parser.add_argument("--bound-reps", type=int, default=5, help="alternated collect/update pairs (first dropped)")
    parser.add_argument(
        "--compare-text-cache", action="store_true", help="also run the lean device trainer without its text cache"
    )
    args = parser.parse_args()
    np.seterr(all="ignore")
    load = os.getloadavg()
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "BABYAIPP_ENGINE_THREADS")}
    print(
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; torch "
        f"{torch.__version__}, {torch.get_num_threads()} torch threads; {threads}",
        flush=True,
    )
    if "trainers" not in args.skip:
        for n in args.n_envs:
            # The cap is measured beside each set of runs: on a shared machine it drifts with the load.
            caps = {"torch default": cap(args.model, None), "1 thread": cap(args.model, 1)}
            lean = {"torch default": lean_cap(args.model, None), "1 thread": lean_cap(args.model, 1)}
            print(
                "gradient-step cap (frames/s), SB3's step: "
                + ", ".join(f"{k} {v:,.0f}" for k, v in caps.items())
                + "; the lean step: "
                + ", ".join(f"{k} {v:,.0f}" for k, v in lean.items()),
                flush=True,
            )
            runs = {"sb3": ("sb3", True, True), "device-ref": ("device", False, True)}
            if args.compare_text_cache:
                runs["device-uncached"] = ("device", True, False)
            runs["device"] = ("device", True, True)
            fps = {
                name: trainer_fps(t, args.model, n, args.updates, args.n_steps, args.device, lean, cache)
                for name, (t, lean, cache) in runs.items()
            }
            best_cap = max(caps.values())
            print(
                f"n_envs={n:4d} {args.model}: sb3 {fps['sb3'][0]:7.0f} ({fps['sb3'][1]:.0f})  device, SB3 objects "
                f"{fps['device-ref'][0]:7.0f} ({fps['device-ref'][1]:.0f})  device, lean {fps['device'][0]:7.0f} "
                f"({fps['device'][1]:.0f})  lean/sb3 {fps['device'][0] / fps['sb3'][0]:.2f}x  lean/ref "
                f"{fps['device'][0] / fps['device-ref'][0]:.2f}x  lean/cap {fps['device'][0] / best_cap:.2f}  "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            if args.compare_text_cache:
                uncached = fps["device-uncached"]
                print(
                    f"n_envs={n:4d} {args.model}: device, lean, text re-encoded every step {uncached[0]:7.0f} "
                    f"({uncached[1]:.0f})  cached/uncached {fps['device'][0] / uncached[0]:.2f}x  "
                    f"uncached/cap {uncached[0] / best_cap:.2f}",
                    flush=True,
                )
    if "bound" not in args.skip:
        for n in args.n_envs:
            b = loop_bound(args.model, n, args.n_steps, args.device, args.bound_reps)
            c, u = b["collect"], b["update"]
            print(
                f"n_envs={n:4d} collect {min(c):.3f} ({statistics.median(c):.3f}) s, update {min(u):.3f} "
                f"({statistics.median(u):.3f}) s per {n * args.n_steps} frames, min (median); "
                f"bound 1/(1+collect/update) "
                f"{1 / (1 + min(c) / min(u)):.2f} ({1 / (1 + statistics.median(c) / statistics.median(u)):.2f})  "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    if "torchrl" not in args.skip:
        for n in args.n_envs:
            t = torchrl_vs_plain(args.model, n, args.n_steps, args.device)
            frames = n * args.n_steps
            total_trl = t["collect_torchrl"] + t["gae_torchrl"] + t["update_torchrl"]
            total_plain = t["collect_plain"] + t["gae_plain"] + t["update_plain"]
            print(f"n_envs={n:4d} seconds per rollout of {frames} frames (TorchRL / plain / overhead):")
            for piece in ("collect", "gae", "update"):
                a, b = t[f"{piece}_torchrl"], t[f"{piece}_plain"]
                print(f"    {piece:8s} {a:8.3f} {b:8.3f}  {100 * (a / b - 1):+6.0f}%")
            print(
                f"    {'total':8s} {total_trl:8.3f} {total_plain:8.3f}  {100 * (total_trl / total_plain - 1):+6.0f}%"
                f"   frames/s {frames / total_trl:,.0f} vs {frames / total_plain:,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
