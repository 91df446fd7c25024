"""Federated-averaging helpers shared by ``fl_memorization`` and ``forsaken``.

Why Flower's *strategy objects* driven by an in-process loop instead of ``flwr.simulation``: the
simulation engine starts Ray and costs about 3 s of overhead per round on the 2 shared CPU cores
(notes: 12.5 s for 4 clients x 3 rounds of a trivial model), while these modules need 40-100
rounds in about a minute. The aggregation itself is still done by Flower: :class:`FlowerAggregator`
wraps ``flwr.server.strategy.FedAvg`` (optionally inside
``DifferentialPrivacyServerSideFixedClipping``) and calls its ``aggregate_fit`` with ordinary
``FitRes`` messages, exactly what the Ray-backed ``ServerApp`` would call with the clients' replies,
so the same strategies scale unchanged to the simulation engine. What the loop does itself:

* sample the round's clients from a seeded generator (Flower's ``ClientManager.sample`` draws from
  Python's global ``random``);
* hand the strategy the round's starting parameters (``current_round_params``; Flower sets it in
  ``configure_fit``, which needs a client manager with live clients);
* seed NumPy's global generator, which Flower's ``add_gaussian_noise_inplace`` draws from, from the
  caller's generator around each aggregation, restoring the previous global state afterwards.

Flower's logger (``"flwr"``) is disabled while aggregating, so nothing is printed.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

Arrays = list[np.ndarray]


@contextlib.contextmanager
def silenced_flower() -> Iterator[None]:
    """Disable Flower's (and Ray's) loggers for the duration, restoring their previous state."""
    loggers = [logging.getLogger(name) for name in ("flwr", "ray")]
    previous = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, was in zip(loggers, previous, strict=True):
            lg.disabled = was


@contextlib.contextmanager
def seeded_numpy_global(rng: np.random.Generator) -> Iterator[None]:
    """Seed NumPy's legacy global RNG from ``rng`` (Flower's DP noise uses it), then restore it."""
    state = np.random.get_state()
    np.random.seed(int(rng.integers(2**32 - 1)))
    try:
        yield
    finally:
        np.random.set_state(state)


def get_arrays(model: nn.Module) -> Arrays:
    """The model's parameters as float32 NumPy copies, in ``state_dict`` order (Flower's NDArrays)."""
    return [p.detach().cpu().numpy().astype(np.float32, copy=True) for p in model.parameters()]


def set_arrays(model: nn.Module, arrays: Sequence[np.ndarray]) -> None:
    """Load NDArrays (as returned by :func:`get_arrays`) into the model in place."""
    with torch.no_grad():
        for param, array in zip(model.parameters(), arrays, strict=True):
            param.copy_(torch.as_tensor(array, dtype=param.dtype))


@dataclass(frozen=True)
class DPSettings:
    """User-level DP of DP-FedAvg (McMahan et al. 2018): clip each update to ``clip``, add noise."""

    noise_multiplier: float
    clip: float


class FlowerAggregator:
    """One server: Flower's ``FedAvg`` (optionally wrapped for server-side fixed-clipping DP).

    Without DP the average is weighted by each client's number of examples (FedAvg). With DP every
    client gets weight 1, so the clipped updates are averaged uniformly and the sensitivity of the
    average is ``clip / num_sampled``; Flower's wrapper then adds N(0, (sigma * clip / num_sampled)^2)
    to every coordinate, i.e. noise ``sigma * clip`` on the sum divided by the number of users.
    """

    def __init__(self, num_sampled: int, dp: DPSettings | None = None):
        from flwr.server.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

        self.num_sampled = num_sampled
        self.dp = dp
        with silenced_flower():
            base = FedAvg(min_fit_clients=1, min_available_clients=1, min_evaluate_clients=1)
            self.strategy: Any = (
                base
                if dp is None
                else DifferentialPrivacyServerSideFixedClipping(
                    base, noise_multiplier=dp.noise_multiplier, clipping_norm=dp.clip, num_sampled_clients=num_sampled
                )
            )

    @property
    def noise_std(self) -> float:
        """Standard deviation of the Gaussian noise added to each aggregated coordinate."""
        return 0.0 if self.dp is None else self.dp.noise_multiplier * self.dp.clip / self.num_sampled

    def aggregate(
        self,
        server_round: int,
        current: Arrays,
        client_arrays: Sequence[Arrays],
        num_examples: Sequence[int],
        rng: np.random.Generator,
    ) -> Arrays:
        """New global parameters from the clients' locally trained parameters (Flower's ``aggregate_fit``)."""
        from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
        from flwr.server.client_proxy import ClientProxy

        weights = [1] * len(client_arrays) if self.dp is not None else list(num_examples)
        results = [
            (
                cast(ClientProxy, None),
                FitRes(
                    status=Status(code=Code.OK, message=""),
                    parameters=ndarrays_to_parameters(arrays),
                    num_examples=int(n),
                    metrics={},
                ),
            )
            for arrays, n in zip(client_arrays, weights, strict=True)
        ]
        if self.dp is not None:
            self.strategy.current_round_params = [a.copy() for a in current]
        with silenced_flower(), seeded_numpy_global(rng):
            parameters, _ = self.strategy.aggregate_fit(server_round, results, [])
        return [a.astype(np.float32, copy=False) for a in parameters_to_ndarrays(parameters)]


def rdp_epsilon(noise_multiplier: float, sample_rate: float, rounds: int, delta: float) -> float:
    """(epsilon, delta) of ``rounds`` subsampled Gaussian mechanisms, by Opacus's RDP accountant.

    ``noise_multiplier == 0`` has no privacy: returns ``inf``.
    """
    if noise_multiplier <= 0:
        return float("inf")
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, rounds)]
    with warnings.catch_warnings():  # "optimal order is the smallest alpha" for weak noise: still valid
        warnings.simplefilter("ignore")
        return float(accountant.get_epsilon(delta=delta))
