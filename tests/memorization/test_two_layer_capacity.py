"""Tests of the network-size / weight-size module (Bubeck, Eldan, Lee, Mikulincer 2020)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from babyaipp.errors import ConfigError
from babyaipp.memorization import two_layer_capacity as tlc
from babyaipp.memorization.base import run_module


def data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return tlc.sphere_points(n, d, rng), rng


@pytest.mark.parametrize(("n", "d", "ones"), [(37, 5, 10), (37, 5, 30), (50, 10, 25), (3, 4, 1)])
def test_baum_fits_binary_labels_exactly_with_stated_units(n: int, d: int, ones: int) -> None:
    x, rng = data(n, d)
    labels = np.zeros(n, dtype=int)
    labels[rng.choice(n, ones, replace=False)] = 1
    net = tlc.baum_threshold_network(x, labels)
    assert np.array_equal(net(x), labels.astype(float))
    minority = min(ones, n - ones)
    assert net.neurons == 2 * math.ceil(minority / d) <= math.ceil(n / d) + 1
    assert net.total_weight() == math.inf  # step units: no finite slope


@pytest.mark.parametrize(("n", "d"), [(40, 5), (63, 8), (7, 10)])
def test_relu_construction_interpolates_real_labels(n: int, d: int) -> None:
    x, rng = data(n, d, seed=1)
    y = 3.0 * rng.standard_normal(n)
    net = tlc.relu_interpolation_network(x, y)
    assert net.neurons == 4 * math.ceil(n / d)
    assert np.max(np.abs(net(x) - y)) < 1e-6


def test_relu_construction_is_zero_away_from_a_groups_slab() -> None:
    """Each group's four units vanish on every other data point (the slab isolates the group)."""
    x, rng = data(30, 6, seed=2)
    y = np.zeros(30)
    y[:6] = rng.standard_normal(6)  # only the first group carries labels
    net = tlc.relu_interpolation_network(x, y)
    first_group = tlc.TwoLayerNet(net.weights[:4], net.bias[:4], net.out[:4], "relu")
    assert np.max(np.abs(first_group(x[6:]))) < 1e-9


def test_ntk_pairs_equal_their_linearisation_and_reach_eps() -> None:
    x, rng = data(120, 10, seed=3)
    y = rng.choice([-1.0, 1.0], 120)
    net, trace = tlc.ntk_network(x, y, 0.05, 0.5, rng)
    assert tlc.relative_error(net(x), y) <= 0.05
    assert trace.rel_error[-1] == pytest.approx(tlc.relative_error(net(x), y))
    assert np.all(np.diff(trace.rel_error) < 0)  # every block reduces the residual
    assert net.neurons <= 2 * 120 / 10 * math.log(1 / 0.05) + 2 * 6


def test_recombination_reaches_eps_with_small_weights() -> None:
    x, rng = data(150, 10, seed=4)
    y = rng.choice([-1.0, 1.0], 150)
    net, trace = tlc.recombination_network(x, y, 0.05, 0.5, 32, 2.0, rng)
    assert tlc.relative_error(net(x), y) <= 0.05
    assert net.neurons <= 150 / 10 * math.log(1 / 0.05) / 0.05
    relu = tlc.relu_interpolation_network(x, y)
    assert net.total_weight() * 5 < relu.total_weight()
    assert net.total_weight() < 20 * math.sqrt(150)


def test_weight_measures_are_rescaling_invariant_for_relu() -> None:
    x, rng = data(20, 4, seed=5)
    net = tlc.relu_interpolation_network(x, rng.standard_normal(20))
    scaled = tlc.TwoLayerNet(net.weights * 3, net.bias * 3, net.out / 3, "relu")
    assert np.allclose(scaled(x), net(x))
    assert scaled.total_weight() == pytest.approx(net.total_weight())
    assert scaled.sum_sq_weights() == pytest.approx(net.sum_sq_weights())


def test_quick_run_holds(tmp_path) -> None:
    result = run_module("two_layer_capacity", quick=True, seed=0, out=tmp_path)
    assert result.held, result.checks
    assert (tmp_path / "result.json").exists() and (tmp_path / "figure.png").exists()
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["metrics"]["weight_ratio_min"] >= 5.0
    for row in saved["metrics"]["rows"]:
        assert row["baum"]["errors"] == 0
        assert row["relu"]["max_abs_error"] < 1e-6


def test_claim_fails_without_selecting_correlated_neurons() -> None:
    """Ablation: pool_factor=1 turns the recombination into plain least squares on random features."""
    result = run_module("two_layer_capacity", quick=True, seed=0, overrides={"pool_factor": 1})
    details = result.check_details
    assert details["selection_saves_neurons"]["kind"] == "claim"
    assert not details["selection_saves_neurons"]["held"]
    assert not result.held
    # The weight-size check discriminates: the NTK network's W grows far faster than √n.
    exponents = result.metrics["weight_growth_exponent"]["10"]
    assert exponents["ntk"] > 0.75 >= exponents["recombination"]


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("sizes", (0, 10), "valid range: [1, inf)"),
        ("eps_values", (0.0,), "valid range: (0.0, 1.0)"),
        ("eps_values", (1.0,), "valid range: (0.0, 1.0)"),
        ("dims", (1,), "valid range: [2, inf)"),
        ("block_fraction", 1.5, "valid range: (0.0, 1.0]"),
    ],
)
def test_bad_config_names_range(field: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        tlc.TwoLayerCapacityConfig(**{field: value})
    assert needle in str(info.value)
    assert field in str(info.value)
