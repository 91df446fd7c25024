"""Tests of the NT-kernel interpolation transition module (Montanari & Zhong)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from babyaipp.errors import ConfigError
from babyaipp.memorization.base import run_module
from babyaipp.memorization.interpolation_transition import (
    InterpolationTransitionConfig,
    ntk_kernel,
    sample_sphere,
    self_induced_lambda,
)


def test_quick_run_holds(tmp_path):
    result = run_module("interpolation_transition", quick=True, seed=0, out=tmp_path)
    assert result.held, result.checks
    assert (tmp_path / "result.json").exists() and (tmp_path / "figure.png").exists()
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["metrics"]["max_lambda_min_rel_below_1"] < 1e-9
    relu = saved["metrics"]["per_activation"]["relu"]
    assert relu["ntk_test_error"] < saved["metrics"]["ridge_error_lambda_to_zero"]
    assert relu["lambda_star"] == pytest.approx(1.0)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_kernel_matches_autograd_jacobian_and_is_psd(activation):
    rng = np.random.default_rng(1)
    n, d, neurons = 7, 3, 4
    x = sample_sphere(rng, n, d)
    w = rng.standard_normal((neurons, d))
    a = rng.standard_normal(neurons)  # non-unit second layer: a_i^2 must enter the kernel
    act = torch.relu if activation == "relu" else torch.tanh

    w_t = torch.tensor(w, requires_grad=True)
    x_t, a_t = torch.tensor(x), torch.tensor(a)
    rows = []
    for i in range(n):
        out = (a_t * act(w_t @ x_t[i])).sum()
        (grad,) = torch.autograd.grad(out, w_t)
        rows.append(grad.reshape(-1).numpy())
    jac = np.stack(rows)  # n x (N d): Jacobian with respect to the first layer
    k = ntk_kernel(x, x, w, a, activation)
    np.testing.assert_allclose(k, jac @ jac.T / neurons, atol=1e-12)
    assert np.linalg.eigvalsh(k).min() > -1e-12


def test_rank_at_most_nd():
    rng = np.random.default_rng(2)
    n, d, neurons = 60, 5, 3
    x = sample_sphere(rng, n, d)
    k = ntk_kernel(x, x, rng.standard_normal((neurons, d)), np.ones(neurons), "tanh")
    assert np.linalg.matrix_rank(k, tol=1e-10 * np.abs(k).max()) <= neurons * d


def test_self_induced_lambda_values():
    assert self_induced_lambda("relu") == pytest.approx(1.0)
    # tanh' = sech^2 is far from constant but less so than the ReLU step: 0 < lambda* < 1
    assert 0.1 < self_induced_lambda("tanh") < 0.5


@pytest.mark.parametrize(
    "field, value, text",
    [
        ("kernel_n", 1, "kernel_n=1 is out of range; valid range: [4, 20000]"),
        ("noise_std", -1.0, "noise_std=-1.0 is out of range; valid range: [0.0, 100.0]"),
        ("trials", 0, "trials=0 is out of range; valid range: [1, 1000]"),
    ],
)
def test_bad_config_raises(field, value, text):
    with pytest.raises(ConfigError, match=re.escape(text)):
        InterpolationTransitionConfig(**{field: value})


def test_bad_activation_rejected():
    with pytest.raises(ValueError, match="valid choices: relu, tanh"):
        InterpolationTransitionConfig(activations=("gelu",))


def test_claim_fails_without_the_nonlinearity():
    """Ablation: a linear network's NT kernel is X Xᵀ (rank <= d), so λmin never leaves zero."""
    result = run_module("interpolation_transition", quick=True, seed=0, overrides={"activations": ("linear",)})
    details = result.check_details
    assert details["lambda_min_positive_above_4n"]["kind"] == "claim"
    assert not details["lambda_min_positive_above_4n"]["held"]
    assert not details["linear_beats_ridgeless_least_squares"]["held"]
    assert details["rank_at_most_Nd"]["held"]  # the sanity check still holds: it cannot fail
    assert not result.held
