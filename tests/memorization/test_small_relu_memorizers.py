"""Tests of the explicit small-ReLU memoriser module (Yun, Sra & Jadbabaie)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from babyaipp.errors import ConfigError
from babyaipp.memorization.base import run_module
from babyaipp.memorization.small_relu_memorizers import (
    SmallReluMemorizersConfig,
    build_three_layer,
    build_two_layer,
    three_layer_widths,
)


def test_quick_run_holds(tmp_path):
    result = run_module("small_relu_memorizers", quick=True, seed=0, out=tmp_path)
    assert result.held, result.checks
    assert (tmp_path / "result.json").exists() and (tmp_path / "figure.png").exists()
    metrics = json.loads((tmp_path / "result.json").read_text())["metrics"]
    assert metrics["max_construction_error"] < 1e-6
    assert 0.4 <= metrics["three_layer_loglog_slope"] <= 0.6


@pytest.mark.parametrize("n_points", [2, 3, 7, 30, 101])
def test_three_layer_construction_fits_exactly_with_stated_widths(n_points):
    rng = np.random.default_rng(n_points)
    x = rng.standard_normal((n_points, 4))
    y = rng.normal(scale=3.0, size=n_points)  # real labels beyond [-1, 1] are allowed
    net = build_three_layer(x, y, rng, slack=0.0)
    d1, d2 = net.widths
    assert (d1, d2) == three_layer_widths(n_points)
    assert (d1 + 1) * (d2 + 1) >= 4 * n_points
    np.testing.assert_allclose(net(x), y, atol=1e-9)


def test_widths_grow_like_sqrt_n():
    for n in (100, 10000):
        d1, d2 = three_layer_widths(n)
        assert d1 + d2 <= 4 * np.sqrt(n) + 2


def test_two_layer_construction_width_and_fit():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 3))
    y = rng.uniform(-1, 1, 50)
    net = build_two_layer(x, y, rng)
    assert net.widths == [49]
    np.testing.assert_allclose(net(x), y, atol=1e-9)


def test_duplicate_inputs_rejected():
    x = np.ones((5, 2))
    with pytest.raises(ConfigError, match="distinct"):
        build_three_layer(x, np.arange(5.0), np.random.default_rng(0), draws=2)


@pytest.mark.parametrize(
    "field, value, text",
    [
        ("input_dim", 0, "input_dim=0 is out of range; valid range: [1, 10000]"),
        ("boundary_slack", 2.0, "boundary_slack=2.0 is out of range; valid range: [0.0, 1.0]"),
        ("sizes", (1, 10), "N (sizes / train_sizes entry)=1 is out of range; valid range: [2, 100000]"),
    ],
)
def test_bad_config_raises(field, value, text):
    with pytest.raises(ConfigError, match=re.escape(text)):
        SmallReluMemorizersConfig(**{field: value})


def test_narrow_width_respects_the_parameter_budget():
    from babyaipp.memorization.small_relu_memorizers import narrow_width, parameter_count

    w = narrow_width(2048, 10, 0.5)
    assert parameter_count(w, 10) <= 1024 < parameter_count(w + 1, 10)


def test_claim_fails_when_width_is_below_sqrt_n():
    """Ablation: width 0.3√N per layer (fewer parameters than points) cannot fit random labels."""
    result = run_module("small_relu_memorizers", quick=True, seed=0, overrides={"train_width_factor": 0.3})
    details = result.check_details
    assert details["trained_largest_N_sign_accuracy"]["kind"] == "claim"
    assert not details["trained_largest_N_sign_accuracy"]["held"]
    assert details["three_layer_exact_fit_all_N"]["kind"] == "sanity"
    assert not result.held
