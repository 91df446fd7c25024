"""Tests of the rote-learning module: the gradient decomposition and a quick end-to-end run."""

from __future__ import annotations

import json

import pytest
import torch

from babyaipp.errors import BabyAIPPError, ConfigError
from babyaipp.memorization import rote_learning as rl
from babyaipp.memorization.base import run_module


def test_parts_difference_is_the_cross_entropy_gradient() -> None:
    torch.manual_seed(0)
    config = rl.RoteLearningConfig(hidden=16, init_scale=1.0)
    model = rl.make_model(config).double()
    x = torch.randn(37, 64, dtype=torch.float64)
    labels = torch.randint(0, 10, (37,))
    loss = torch.nn.functional.cross_entropy(model(x), labels)
    full = torch.autograd.grad(loss, rl.linear_weights(model))
    assert len(full) == 3
    for centre in (None, torch.bincount(labels, minlength=10).double() / 37):
        indep, dep = rl.gradient_parts(model, x, labels, centre=centre)
        for a, b, g in zip(indep, dep, full):
            torch.testing.assert_close(a - b, g, atol=1e-5, rtol=0)
            assert float(a.norm()) > 0 and float(b.norm()) > 0


def test_centring_removes_the_class_frequency_term() -> None:
    """Random labels on positive (ReLU-like) features: uncentred Jᵀy keeps mean(h)·mean(y)ᵀ."""
    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(8, 10).double()
    x = torch.rand(4000, 8, dtype=torch.float64, generator=gen) + 1.0  # positive features
    labels = torch.randint(0, 10, (4000,), generator=gen)
    centre = torch.bincount(labels, minlength=10).double() / 4000
    _, raw = rl.gradient_parts(layer, x, labels)
    _, centred = rl.gradient_parts(layer, x, labels, centre=centre)
    assert float(centred[0].norm()) < 0.1 * float(raw[0].norm())


def test_load_data_permutes_the_requested_fraction_and_keeps_class_counts() -> None:
    config = rl.RoteLearningConfig(permuted_fraction=0.5)
    x, labels, permuted = rl.load_data(config)
    assert x.shape == (1797, 64) and int(permuted.sum()) == 898
    assert torch.allclose(x.mean(0), torch.zeros(64), atol=1e-4)
    from sklearn.datasets import load_digits

    true = torch.from_numpy(load_digits().target)
    assert torch.equal(labels[~permuted], true[~permuted])
    assert torch.equal(torch.bincount(labels, minlength=10), torch.bincount(true, minlength=10))
    assert float((labels[permuted] != true[permuted]).float().mean()) > 0.8


def test_first_epoch_reaching() -> None:
    assert rl.first_epoch_reaching([0, 2, 4], [0.1, 0.95, 0.99], 0.9) == 2
    assert rl.first_epoch_reaching([0, 2, 4], [0.1, 0.5, 0.6], 0.9) is None


def test_quick_run_holds(tmp_path) -> None:
    result = run_module("rote_learning", quick=True, seed=0, out=tmp_path)
    assert result.held, result.checks
    assert result.config["activation"] == "relu" and result.config["centre_labels"] is True
    metrics = result.metrics
    assert max(metrics["early_dep_ratio_layers"]) < 0.3
    reach = metrics["epoch_to_threshold"]
    assert reach["unpermuted"] < reach["permuted"]
    assert min(metrics["final_acc"].values()) > 0.95
    assert (tmp_path / "figure.png").stat().st_size > 0
    assert json.loads((tmp_path / "result.json").read_text())["held"] is True


def test_claim_fails_without_label_permutation() -> None:
    """Ablation: the chosen half keeps its true labels, so its label-dependent gradient is not small."""
    result = run_module("rote_learning", quick=True, seed=1, overrides={"permute": False})
    details = result.check_details
    assert details["early_permuted_dep_small"]["kind"] == "claim"
    assert not details["early_permuted_dep_small"]["held"]
    assert details["early_permuted_dep_small"]["measured"] > 0.8
    assert not result.held


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [("permuted_fraction", 1.5, "(0.0, 1.0)"), ("lr", 0.0, "(0.0, inf)"), ("epochs", 3, "[10, inf)")],
)
def test_bad_hyperparameter_names_the_range(field: str, value: float, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        rl.RoteLearningConfig(**{field: value})
    assert field in str(info.value) and f"valid range: {shown}" in str(info.value)


def test_bad_activation_names_the_choices() -> None:
    with pytest.raises(BabyAIPPError, match="tanh, relu"):
        rl.RoteLearningConfig(activation="sigmoid")
