"""What a checkpoint needs besides the weights for ``--resume`` to continue exactly.

A checkpoint ``checkpoints/step_N.zip`` (or ``model.zip``) of a run on the batched engine gets a
sidecar ``step_N.state.pt`` (``model.state.pt``) holding, as of the end of the update that produced
the weights:

* every random generator the next steps draw from: torch's (CPU and CUDA), NumPy's global one
  (SB3 shuffles minibatches with it) and Python's;
* the engine: its level pool, every slot's episode state, its draw generator and refresh
  counters (:meth:`babyaipp.envs.sb3.BatchedSB3VecEnv.snapshot`);
* SB3's last observation and episode starts, the LSTM states of a recurrent policy, VecMonitor's
  running episode returns and lengths, SB3's episode buffers (TensorBoard's rollout means) and the
  progress window behind ``progress.csv``.

Everything is a tensor, a number or a string, written with ``torch.save`` and read back with
``torch.load(weights_only=True)``: restoring runs no code from the file. A resumed run then takes
the same steps, updates and weights as the uninterrupted one. Runs on ``--engine gym`` (single
envs, whose state is Python objects) get no sidecar and resume as docs/agents.md describes.
"""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecMonitor

from babyaipp.envs.sb3 import BatchedSB3VecEnv
from babyaipp.errors import CheckpointError
from babyaipp.utils import atomic_write

FORMAT = 1
SUFFIX = ".state.pt"


def state_path(checkpoint: Path) -> Path:
    """``step_N.zip`` -> ``step_N.state.pt`` (``model.zip`` -> ``model.state.pt``)."""
    return checkpoint.with_name(checkpoint.stem + SUFFIX)


def _chain(venv: Any) -> list[Any]:
    chain = [venv]
    while hasattr(chain[-1], "venv"):
        chain.append(chain[-1].venv)
    return chain


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(cuda),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def capture(agent: Any, progress_returns: Any, progress_episodes: int) -> dict[str, Any] | None:
    """The state of ``agent``'s training between two updates, or None where it cannot be captured
    (single envs, or before the first reset)."""
    chain = _chain(agent.get_env())
    adapter, monitors = chain[-1], [v for v in chain if isinstance(v, VecMonitor)]
    if not isinstance(adapter, BatchedSB3VecEnv) or not monitors or agent._last_obs is None:
        return None
    monitor = monitors[0]
    lstm = getattr(agent, "_last_lstm_states", None)
    return {
        "format": FORMAT,
        "num_timesteps": int(agent.num_timesteps),
        "rng": _rng_state(),
        "engine": adapter.snapshot(),
        "last_obs": {k: torch.from_numpy(np.array(v)) for k, v in agent._last_obs.items()},
        "last_episode_starts": torch.from_numpy(np.array(agent._last_episode_starts)),
        "lstm": None if lstm is None else [t.detach().cpu().clone() for pair in lstm for t in pair],
        "monitor": {
            "returns": torch.from_numpy(monitor.episode_returns.copy()),
            "lengths": torch.from_numpy(monitor.episode_lengths.copy()),
            "count": int(monitor.episode_count),
        },
        "ep_info": torch.tensor([[e["r"], e["l"], e["t"]] for e in agent.ep_info_buffer or []], dtype=torch.float64),
        "ep_success": torch.tensor([bool(x) for x in agent.ep_success_buffer or []], dtype=torch.bool),
        "progress": {
            "returns": torch.tensor(list(progress_returns), dtype=torch.float64),
            "episodes": progress_episodes,
        },
    }


def save(path: Path, state: dict[str, Any]) -> Path:
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load(path: Path) -> dict[str, Any] | None:
    """The sidecar at ``path``, or None when there is none; a corrupt one is a :class:`CheckpointError`."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f"{path} is corrupt ({type(err).__name__}); delete it to resume inexactly") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a resume state this version reads; delete it to resume inexactly")
    return state


def restore(agent: Any, state: dict[str, Any]) -> None:
    """Put ``agent`` and its envs back in ``state`` (after loading the checkpoint's weights)."""
    from stable_baselines3.common.vec_env import VecMonitor

    chain = _chain(agent.get_env())
    adapter = chain[-1]
    monitor = next(v for v in chain if isinstance(v, VecMonitor))
    adapter.restore(state["engine"])
    agent._last_obs = {k: v.numpy() for k, v in state["last_obs"].items()}
    agent._last_episode_starts = state["last_episode_starts"].numpy()
    if state["lstm"] is not None:
        from sb3_contrib.common.recurrent.type_aliases import RNNStates

        h_pi, c_pi, h_vf, c_vf = (t.to(agent.device) for t in state["lstm"])
        agent._last_lstm_states = RNNStates((h_pi, c_pi), (h_vf, c_vf))
    monitor.episode_returns = state["monitor"]["returns"].numpy().copy()
    monitor.episode_lengths = state["monitor"]["lengths"].numpy().copy()
    monitor.episode_count = int(state["monitor"]["count"])
    window = agent._stats_window_size
    agent.ep_info_buffer = deque(
        ({"r": r, "l": int(l), "t": t} for r, l, t in state["ep_info"].tolist()), maxlen=window
    )
    agent.ep_success_buffer = deque(state["ep_success"].tolist(), maxlen=window)
    _set_rng_state(state["rng"])


__all__ = ["FORMAT", "SUFFIX", "capture", "load", "restore", "save", "state_path"]
