"""PPO with the batched engine, the rollout buffer and the policy on one torch device (CPU or CUDA).

``babyaipp train --trainer device`` runs this loop. It reads top to bottom like CleanRL's
``ppo.py``: the settings, collection, GAE, the update (the rollout buffer and the state carried
between rollouts are in :mod:`babyaipp.agents.rollout`). Nothing is copied to NumPy, no Python
runs per env and no info dicts are built: a step is the engine's tensor step, one policy forward
and a few writes into preallocated tensors.

The policy is the one ``--trainer sb3`` trains (SB3's ``ActorCriticPolicy``, sb3-contrib's
``RecurrentActorCriticPolicy`` with ``--recurrent``, the package's four feature extractors), so the
two trainers share ``model.zip`` and ``babyaipp eval``. The update follows SB3's PPO step by step
(GAE, the time-limit bootstrap, advantages normalised per minibatch, clipped surrogate, unclipped
value loss, entropy bonus, gradient clipping), so both learn alike; minibatches are drawn with
``torch.randperm`` where SB3 uses NumPy. With ``--recurrent`` a minibatch is whole env
sequences (``batch_size // n_steps`` envs, CleanRL's recurrent PPO) instead of sb3-contrib's padded
episode pieces, so recurrent runs of the two trainers differ more than feed-forward ones.

Feed-forward policies with a discrete action space take a lean path (:attr:`DevicePPO.lean`):
the rollout's and the update's forwards run the policy's extractor and heads directly and compute
log-probabilities, entropy and the sampled action from one ``log_softmax``, where SB3's
``forward``/``evaluate_actions`` build a ``Categorical`` distribution object per call; Adam and
gradient clipping use torch's multi-tensor (``foreach``) kernels, and on CPU the convolution
weights are stored channels-last. The values are SB3's to float
rounding, and the action draw is the same ``torch.multinomial`` call on the same probabilities.
On the lean path collection also keeps every env's text features
(:class:`~babyaipp.agents.text_cache.TextCache`): an env's mission and description change only
when its episode restarts, so the text encoders run on the rows whose tokens changed instead of
on every env at every step (:attr:`DevicePPO.cache_text`).

TorchRL's ``ClipPPOLoss``, ``GAE`` and collector compute the same thing; measured side by side on
the same data they cost more than this loop (``benchmarks/device_ppo_speed.py``, docs/performance.md),
so the plain loop is the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from stable_baselines3.common.preprocessing import preprocess_obs
from torch import nn

from babyaipp.agents.model_config import ModelConfig
from babyaipp.agents.rollout import LoopState, Rollout, UpdateStats
from babyaipp.agents.text_cache import TextCache


@dataclass(frozen=True)
class PPOSettings:
    """The loop's hyperparameters. Read from the run's model config (:meth:`from_config`), so
    ``--set name=value`` means the same for both trainers; the defaults are the config's."""

    n_steps: int = ModelConfig.n_steps
    """Steps collected from every env before each update (the rollout is ``n_steps * num_envs`` frames)."""
    batch_size: int = ModelConfig.batch_size
    """Frames per gradient step (recurrent: rounded down to whole env sequences, at least one)."""
    n_epochs: int = ModelConfig.n_epochs
    """Passes over the rollout per update."""
    gamma: float = ModelConfig.gamma
    """Discount factor."""
    gae_lambda: float = ModelConfig.gae_lambda
    """GAE's lambda: 1 is the Monte Carlo return, 0 the one-step TD error."""
    clip_range: float = ModelConfig.clip_range
    """PPO's clip on the probability ratio."""
    ent_coef: float = ModelConfig.ent_coef
    """Weight of the entropy bonus in the loss."""
    vf_coef: float = ModelConfig.vf_coef
    """Weight of the value loss in the loss."""
    max_grad_norm: float = ModelConfig.max_grad_norm
    """Gradients are rescaled to at most this global norm."""
    normalize_advantage: bool = True
    """Normalise advantages per minibatch (SB3's default)."""

    @classmethod
    def from_config(cls, config: ModelConfig) -> PPOSettings:
        names = [f for f in cls.__dataclass_fields__ if f != "normalize_advantage"]
        return cls(**{name: getattr(config, name) for name in names})


#: Episodes the time limit cut off at one step: (step, env rows, the rows' last observation).
CutOff = tuple[int, torch.Tensor, dict[str, torch.Tensor]]


def _rnn_states(lstm: tuple[torch.Tensor, ...]) -> Any:
    from sb3_contrib.common.recurrent.type_aliases import RNNStates

    h_pi, c_pi, h_vf, c_vf = lstm
    return RNNStates((h_pi, c_pi), (h_vf, c_vf))


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


class DevicePPO:
    """Collect with ``engine`` (a :class:`~babyaipp.envs.batched.BatchedBabyAIPP` with
    ``auto_reset=False``), update ``policy`` (its optimizer is ``policy.optimizer``); see the module
    docstring. Random draws (actions, minibatches) come from torch's generator of the device."""

    lean: bool = True
    """Run feed-forward Categorical policies through :meth:`_heads` (no distribution objects),
    Adam/clipping with ``foreach`` kernels and, on CPU, channels-last convolution weights; False
    keeps SB3's ``forward``/``evaluate_actions``, single-tensor Adam and the weights' layout (the
    reference the benchmark and tests compare against)."""

    cache_text: bool = True
    """On the lean path, collect with a :class:`TextCache` (text encoded when an env's tokens
    change); False re-encodes every env's text at every step (the reference the benchmark and
    tests compare against). The update always encodes the text: its gradient flows through it."""

    def __init__(self, engine: Any, policy: nn.Module, settings: PPOSettings, recurrent: bool = False):
        from stable_baselines3.common.distributions import CategoricalDistribution

        self.engine, self.policy, self.settings, self.recurrent = engine, policy, settings, recurrent
        self.device = engine.device
        self.num_envs = engine.num_envs
        self._buffer: Rollout | None = None
        self._lean = self.lean and not recurrent and isinstance(policy.action_dist, CategoricalDistribution)
        extractor = getattr(policy, "features_extractor", None)
        self._cache_text = (
            self._lean
            and self.cache_text
            and policy.share_features_extractor
            and bool(getattr(extractor, "uses_text", False))
            and hasattr(extractor, "text_features")
        )
        # Multi-tensor Adam: one kernel per state tensor kind instead of one per parameter. The
        # flag lives in the param group, so a checkpoint saved here carries it (same arithmetic).
        for group in policy.optimizer.param_groups:
            if "foreach" in group:
                group["foreach"] = True if self.lean else None
        if self.lean and self.device.type == "cpu":
            # Channels-last convolution weights: oneDNN's kernels for the extractors' small 3x3
            # convolutions ran the attention model's gradient step about 7% faster (median of 7
            # alternated pairs, one thread). Layout only: the parameters stay the same objects.
            policy.to(memory_format=torch.channels_last)

    def initial_state(self) -> LoopState:
        """The loop's state at the engine's current observation, every env starting an episode."""
        n, dev = self.num_envs, self.device
        lstm = None
        if self.recurrent:
            layers, _, hidden = self.policy.lstm_hidden_state_shape
            lstm = tuple(torch.zeros((layers, n, hidden), device=dev) for _ in range(4))
        return LoopState(
            obs=self.engine.observation(),
            episode_starts=torch.ones(n, device=dev),
            episode_returns=torch.zeros(n, device=dev),
            episode_lengths=torch.zeros(n, dtype=torch.long, device=dev),
            lstm=lstm,
        )

    def iterate(self, state: LoopState) -> tuple[LoopState, UpdateStats]:
        """One PPO iteration: a rollout, its advantages, ``n_epochs`` of minibatch updates."""
        rollout, state, last_values = self.collect(state)
        advantages, returns = self.advantages(rollout, last_values, state.episode_starts)
        losses = self.update(rollout, advantages, returns)
        ended = ~torch.isnan(rollout.ended_returns)  # row-major: episodes in the order they ended
        stats = UpdateStats(rollout.ended_returns[ended].tolist(), rollout.ended_lengths[ended].tolist(), losses)
        return state, stats

    # ----------------------------------------------------------------- 1. collect
    @torch.no_grad()
    def collect(self, state: LoopState) -> tuple[Rollout, LoopState, torch.Tensor]:
        """``n_steps`` steps of every env; returns the rollout, the state after it and V(last obs)."""
        s, policy, engine = self.settings, self.policy, self.engine
        policy.set_training_mode(False)
        if self._buffer is None:
            self._buffer = Rollout.empty(s.n_steps, state.obs)
        buf = self._buffer
        buf.lstm_start = state.lstm
        obs, starts, ep_return, ep_length, lstm = (
            state.obs,
            state.episode_starts,
            state.episode_returns,
            state.episode_lengths,
            state.lstm,
        )
        # Rebuilt every rollout: the update since the last one changed the text encoders' weights.
        cache = TextCache(policy.features_extractor, obs) if self._cache_text else None
        cut_off: list[CutOff] = []
        for t in range(s.n_steps):
            if self._lean:
                actions, values, log_probs = self._act(obs, None if cache is None else cache.lookup(obs))
            elif lstm is None:
                actions, values, log_probs = policy(obs)
            else:
                actions, values, log_probs, states = policy(obs, _rnn_states(lstm), starts)
                lstm = (*states.pi, *states.vf)
            for key, value in obs.items():
                buf.obs[key][t] = value
            buf.actions[t], buf.log_probs[t], buf.values[t] = actions, log_probs, values.flatten()
            buf.episode_starts[t] = starts

            reward, terminated, truncated = engine.advance(actions)
            reward = reward.to(torch.float32)
            ep_return = ep_return + reward  # the episode's own return, before the bootstrap below
            time_limit = truncated & ~terminated
            if bool(time_limit.any()):  # bootstrap a cut-off episode from its last observation's value
                rows = time_limit.nonzero().squeeze(1)
                last_obs = engine.observation(rows)
                if lstm is None:  # valued after the rollout, all cut-off episodes in one forward
                    cut_off.append((t, rows, last_obs))
                else:  # the value head's LSTM state is this step's
                    vf = (lstm[2][:, rows].contiguous(), lstm[3][:, rows].contiguous())
                    last_value = policy.predict_values(last_obs, vf, torch.zeros(rows.numel(), device=self.device))
                    reward = reward.index_add(0, rows, s.gamma * last_value.flatten())
            done = terminated | truncated
            engine.restart(done)
            obs = engine.observation()

            ep_length = ep_length + 1
            buf.rewards[t] = reward
            buf.ended_returns[t] = torch.where(done, ep_return, torch.nan)
            buf.ended_lengths[t] = torch.where(done, ep_length, 0)
            ep_return = torch.where(done, 0.0, ep_return)
            ep_length = torch.where(done, 0, ep_length)
            starts = done.to(torch.float32)
        self._bootstrap(buf.rewards, cut_off)
        if self._lean:
            last_values = self._heads(obs, None if cache is None else cache.lookup(obs))[1].flatten()
        elif lstm is None:
            last_values = policy.predict_values(obs).flatten()
        else:
            last_values = policy.predict_values(obs, (lstm[2], lstm[3]), starts).flatten()
        return buf, LoopState(obs, starts, ep_return, ep_length, lstm), last_values

    def _bootstrap(self, rewards: torch.Tensor, cut_off: list[CutOff]) -> None:
        """Add ``gamma * V(last obs)`` to the reward of every episode the time limit cut off (SB3's
        bootstrap), for a feed-forward policy after the rollout: its weights do not change during
        one, and a cut-off costs a forward of its own otherwise (at 256 envs on GoToRedBall-Easy a
        step cut one off almost every step, each a whole forward for a few rows). The rows are
        valued in batches of at most ``num_envs``, the size collection's forward already holds."""
        if not cut_off:
            return
        steps = torch.cat([torch.full_like(rows, t) for t, rows, _ in cut_off])
        envs = torch.cat([rows for _, rows, _ in cut_off])
        last_obs = {key: torch.cat([obs[key] for _, _, obs in cut_off]) for key in cut_off[0][2]}
        for start in range(0, envs.numel(), self.num_envs):
            part = slice(start, start + self.num_envs)
            chunk = {key: value[part] for key, value in last_obs.items()}
            values = self._heads(chunk)[1] if self._lean else self.policy.predict_values(chunk)
            rewards.index_put_((steps[part], envs[part]), self.settings.gamma * values.flatten(), accumulate=True)

    # ----------------------------------------------------------------- 2. advantages
    @torch.no_grad()
    def advantages(
        self, rollout: Rollout, last_values: torch.Tensor, last_starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE(lambda) advantages and returns, as SB3's ``compute_returns_and_advantage``."""
        s = self.settings
        advantages = torch.zeros_like(rollout.rewards)
        gae = torch.zeros_like(last_values)
        for t in reversed(range(s.n_steps)):
            if t == s.n_steps - 1:
                next_non_terminal, next_values = 1.0 - last_starts, last_values
            else:
                next_non_terminal, next_values = 1.0 - rollout.episode_starts[t + 1], rollout.values[t + 1]
            delta = rollout.rewards[t] + s.gamma * next_values * next_non_terminal - rollout.values[t]
            gae = delta + s.gamma * s.gae_lambda * next_non_terminal * gae
            advantages[t] = gae
        return advantages, advantages + rollout.values

    # ----------------------------------------------------------------- 3. update
    def update(self, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        """``n_epochs`` passes of clipped-PPO minibatch steps; the mean of each loss term."""
        s, policy = self.settings, self.policy
        policy.set_training_mode(True)
        names = ("policy_gradient_loss", "value_loss", "entropy_loss", "loss", "approx_kl", "clip_fraction")
        totals = torch.zeros(len(names), device=self.device)
        parameters = [p for p in policy.parameters() if p.requires_grad]
        count = 0
        for _ in range(s.n_epochs):
            for batch in self._minibatches(rollout, advantages, returns):
                values, log_prob, entropy = self._evaluate(batch)
                advantage = batch["advantages"]
                if s.normalize_advantage and advantage.numel() > 1:
                    advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
                log_ratio = log_prob - batch["log_probs"]
                ratio = torch.exp(log_ratio)
                policy_loss = -torch.min(
                    advantage * ratio, advantage * torch.clamp(ratio, 1 - s.clip_range, 1 + s.clip_range)
                ).mean()
                value_loss = nn.functional.mse_loss(batch["returns"], values.flatten())
                entropy_loss = -entropy.mean()
                loss = policy_loss + s.ent_coef * entropy_loss + s.vf_coef * value_loss

                policy.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(parameters, s.max_grad_norm, foreach=True if self.lean else None)
                policy.optimizer.step()

                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()
                    clip_fraction = ((ratio - 1).abs() > s.clip_range).float().mean()
                    totals += torch.stack([policy_loss, value_loss, entropy_loss, loss, approx_kl, clip_fraction])
                count += 1
        means = (totals / max(count, 1)).tolist()  # one host sync per update
        return dict(zip(names, means, strict=True))

    def _minibatches(self, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor):
        """Shuffled minibatches: frames (feed-forward) or whole env sequences (recurrent), flattened."""
        s, n = self.settings, self.num_envs
        columns = {
            "actions": rollout.actions,
            "log_probs": rollout.log_probs,
            "advantages": advantages,
            "returns": returns,
            "episode_starts": rollout.episode_starts,
        }
        if not self.recurrent:
            flat = {k: v.reshape(s.n_steps * n, *v.shape[2:]) for k, v in {**rollout.obs, **columns}.items()}
            order = torch.randperm(s.n_steps * n, device=self.device)
            for start in range(0, s.n_steps * n, s.batch_size):
                index = order[start : start + s.batch_size]
                yield {k: v[index] for k, v in flat.items()}
            return
        envs_per_batch = max(1, s.batch_size // s.n_steps)
        order = torch.randperm(n, device=self.device)
        for start in range(0, n, envs_per_batch):
            envs = order[start : start + envs_per_batch]
            # env-major (env 0's steps, then env 1's): the layout sb3-contrib's LSTM reads sequences in
            data = {**rollout.obs, **columns}
            batch = {k: v[:, envs].transpose(0, 1).reshape(-1, *v.shape[2:]) for k, v in data.items()}
            batch["lstm"] = tuple(h[:, envs] for h in rollout.lstm_start)
            yield batch

    def _evaluate(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        obs = {key: batch[key] for key in self._buffer.obs}
        if self._lean:
            logits, values = self._heads(obs)
            log_probs = logits.log_softmax(dim=-1)
            log_prob = log_probs.gather(1, batch["actions"].view(-1, 1)).squeeze(1)
            entropy = -(log_probs * log_probs.exp()).sum(dim=-1)
            return values, log_prob, entropy
        if not self.recurrent:
            return self.policy.evaluate_actions(obs, batch["actions"])
        return self.policy.evaluate_actions(obs, batch["actions"], _rnn_states(batch["lstm"]), batch["episode_starts"])

    # ----------------------------------------------------------------- the lean forward
    def _heads(
        self, obs: dict[str, torch.Tensor], text: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(action logits, values) of a feed-forward policy: SB3's forward up to the distribution.

        ``text``: the rows' text features (a :class:`TextCache` lookup; shared extractor only)."""
        policy = self.policy
        if text is None:
            features = policy.extract_features(obs)
        else:
            preprocessed = preprocess_obs(obs, policy.observation_space, normalize_images=policy.normalize_images)
            features = policy.features_extractor(preprocessed, text)
        if policy.share_features_extractor:
            latent_pi, latent_vf = policy.mlp_extractor(features)
        else:
            latent_pi = policy.mlp_extractor.forward_actor(features[0])
            latent_vf = policy.mlp_extractor.forward_critic(features[1])
        return policy.action_net(latent_pi), policy.value_net(latent_vf)

    def _act(
        self, obs: dict[str, torch.Tensor], text: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(actions, values, log-probs) sampled as ``Categorical(logits=...).sample()`` samples."""
        logits, values = self._heads(obs, text)
        log_probs = logits.log_softmax(dim=-1)
        actions = torch.multinomial(logits.softmax(dim=-1), 1, True)
        return actions.squeeze(1), values, log_probs.gather(1, actions).squeeze(1)
