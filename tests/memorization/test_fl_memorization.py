"""Tests of the federated-memorization module: exposure arithmetic, FedAvg/DP aggregation, config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from babyaipp.errors import ConfigError
from babyaipp.memorization import fl_memorization as flm
from babyaipp.memorization._federated import DPSettings, FlowerAggregator, get_arrays, rdp_epsilon, set_arrays
from babyaipp.memorization.base import run_module


def test_exposure_of_hand_made_ranks() -> None:
    assert flm.exposure_from_rank(1, 1024) == pytest.approx(10.0)
    assert flm.exposure_from_rank(1024, 1024) == pytest.approx(0.0)
    assert flm.exposure_from_rank(4, 1024) == pytest.approx(8.0)
    assert flm.exact_rank(0.5, np.array([0.1, 0.2, 0.5, 0.9])) == 3  # two strictly lower


def test_estimated_rank_from_a_hand_made_sample() -> None:
    sample = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    # 2 of 8 sampled candidates are more likely than the canary -> rank 1 + 1000 * 0.25
    assert flm.estimated_rank(2.5, sample, space_size=1000) == pytest.approx(251.0)
    assert flm.estimated_rank(0.5, sample, space_size=1000) == pytest.approx(1.0)


def test_trie_scores_match_direct_scoring() -> None:
    torch.manual_seed(0)
    model = flm.NextWordGRU(vocab_size=20, embed_dim=4, hidden_dim=5)
    prefix, digits = [0, 3, 4], list(range(10, 20))
    scores = flm.candidate_logperps(model, prefix, digits, n_digits=2)
    assert scores.shape == (100,)
    rows = torch.tensor([prefix + [digits[7], digits[3]]])
    with torch.no_grad():
        logits, _ = model(rows[:, :-1])
    logp = torch.log_softmax(logits.double(), dim=-1)
    direct = -(logp[0, 2, digits[7]] + logp[0, 3, digits[3]]) / np.log(2)
    assert scores[73] == pytest.approx(float(direct), rel=1e-6)


def test_fedavg_of_identical_clients_equals_central_sgd() -> None:
    torch.manual_seed(1)
    rows = torch.randint(0, 30, (12, 6))
    init = flm.NextWordGRU(30, 8, 8)
    central = flm.NextWordGRU(30, 8, 8)
    set_arrays(central, get_arrays(init))
    flm.sgd_train(
        central, rows, epochs=1, batch_size=len(rows), lr=0.5, grad_clip=1e9, generator=torch.Generator().manual_seed(0)
    )
    federated = flm.NextWordGRU(30, 8, 8)
    set_arrays(federated, get_arrays(init))
    flm.train_federated(
        federated,
        [rows, rows, rows],
        rounds=1,
        clients_per_round=3,
        local_epochs=1,
        lr=0.5,
        grad_clip=1e9,
        dp=None,
        rng=np.random.default_rng(0),
    )
    for a, b in zip(get_arrays(central), get_arrays(federated), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_batched_local_training_matches_one_client_at_a_time() -> None:
    """The vmapped functional GRU reproduces nn.GRU and per-client SGD with clipping and padding."""
    torch.manual_seed(2)
    model = flm.NextWordGRU(30, 8, 8)
    params = dict(model.named_parameters())
    rows = torch.randint(0, 30, (5, 6))
    torch.testing.assert_close(flm.functional_logits(params, rows), model(rows)[0], atol=1e-5, rtol=0)
    clients = [torch.randint(0, 30, (n, 6)) for n in (3, 7)]
    batched = flm.local_training(model, clients, steps=2, lr=0.5, grad_clip=0.3)
    for rows_c, arrays in zip(clients, batched, strict=True):
        one = flm.NextWordGRU(30, 8, 8)
        set_arrays(one, get_arrays(model))
        flm.sgd_train(
            one,
            rows_c,
            epochs=2,
            batch_size=len(rows_c),
            lr=0.5,
            grad_clip=0.3,
            generator=torch.Generator().manual_seed(0),
        )
        for a, b in zip(get_arrays(one), arrays, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_dp_noise_has_the_configured_std() -> None:
    sigma, clip, users = 2.0, 0.5, 10
    aggregator = FlowerAggregator(users, DPSettings(sigma, clip))
    current = [np.zeros((200, 100), np.float32)]
    clients = [[np.full((200, 100), 1e-4, np.float32)] for _ in range(users)]
    new = aggregator.aggregate(1, current, clients, [5] * users, np.random.default_rng(0))[0]
    noise = new - 1e-4
    assert aggregator.noise_std == pytest.approx(sigma * clip / users)
    assert noise.std() == pytest.approx(sigma * clip / users, rel=0.02)
    assert abs(noise.mean()) < 0.01
    # the same generator seed gives the same noise, and NumPy's global state is left untouched
    state = np.random.get_state()[1].copy()
    again = aggregator.aggregate(1, current, clients, [5] * users, np.random.default_rng(0))[0]
    np.testing.assert_array_equal(new, again)
    np.testing.assert_array_equal(state, np.random.get_state()[1])


def test_dp_clips_each_update_to_norm_s() -> None:
    aggregator = FlowerAggregator(2, DPSettings(0.0, 1.0))
    current = [np.zeros(4, np.float32)]
    clients = [[np.array([10.0, 0, 0, 0], np.float32)], [np.array([0, 0.5, 0, 0], np.float32)]]
    new = aggregator.aggregate(1, current, clients, [100, 1], np.random.default_rng(0))[0]
    np.testing.assert_allclose(new, [0.5, 0.25, 0, 0], atol=1e-6)  # clipped to 1, equal weights


def test_epsilon_is_finite_and_falls_with_noise() -> None:
    assert np.isfinite(rdp_epsilon(1.0, 0.1, 100, 1e-5))
    assert rdp_epsilon(2.0, 0.1, 100, 1e-5) < rdp_epsilon(1.0, 0.1, 100, 1e-5)
    assert rdp_epsilon(0.0, 0.1, 100, 1e-5) == float("inf")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("noise_multiplier", -0.1, r"noise_multiplier=-0.1 is out of range; valid range: \[0.0, 1000.0\]"),
        ("clip", 0.0, r"clip=0.0 is out of range; valid range: \(0.0, inf\)"),
        ("delta", -0.1, r"delta=-0.1 is out of range; valid range: \[0.0, 1.0\)"),
        ("clients_per_round", 0, r"clients_per_round=0 is out of range; valid range: \[1, 10000\]"),
    ],
)
def test_bad_config_names_the_range(field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        flm.FLMemorizationConfig(**{field: value})


@pytest.mark.slow
def test_quick_run_measures_every_setting(tmp_path) -> None:
    result = run_module("fl_memorization", quick=True, seed=0, out=tmp_path)
    assert (tmp_path / "result.json").exists() and (tmp_path / "figure.png").exists()
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["held"] == result.held
    settings = result.metrics["settings"]
    assert set(settings) == {"central", "fedavg", "clip_only", "dp_fedavg"}
    assert settings["central"]["mean_exposure"] > settings["fedavg"]["mean_exposure"] + 1.0
    assert result.check_details["exposure_central_gt_fedavg"]["held"]
    assert result.metrics["epsilon"] <= 10 and result.metrics["delta"] == pytest.approx(1 / result.metrics["n_users"])
    assert result.check_details["epsilon_at_most_bound"]["kind"] == "sanity"


def test_noise_check_fails_without_noise() -> None:
    """Ablation: noise 0 turns DP-FedAvg into the clip-only run, so the noise cannot lower exposure."""
    result = run_module("fl_memorization", quick=True, seed=0, overrides={"noise_multiplier": 0.0})
    details = result.check_details
    assert not details["noise_lowers_exposure_beyond_clipping"]["held"]
    assert details["noise_lowers_exposure_beyond_clipping"]["measured"] == pytest.approx(0.0, abs=1e-9)
    assert not details["epsilon_at_most_bound"]["held"]  # no noise: no privacy
    assert details["exposure_central_gt_fedavg"]["held"]  # the noise does not touch this comparison
