"""Rote learning: the label-dependent and label-independent parts of the gradient.

Reproduces the gradient decomposition of Stephenson et al., "On the geometry of generalization
and memorization in deep neural networks" (ICLR 2021), appendix A. For softmax cross-entropy
with logits ``z = f_θ(x)``, probabilities ``p = softmax(z)`` and one-hot label ``y``, the gradient
with respect to the logits is ``p − y``, so for any parameter θ (with ``J = ∂z/∂θ``)::

    ∂L/∂θ = Jᵀp − Jᵀy
            (label-independent)  (label-dependent)

Both parts are computed per layer (each ``Linear``'s weight) by back-propagating two surrogate
scalars: ``(p.detach() · z).sum()`` gives ``Jᵀp`` and ``(y · z).sum()`` gives ``Jᵀy``. They are
summed separately over the examples whose labels were permuted and over the unpermuted ones, and
divided by the group size (a per-example mean, so the two groups are comparable whatever their
sizes). The paper's Eq. 25 argues that the label-dependent part from permuted examples averages
out (their labels are uncorrelated with the inputs) while that of unpermuted examples does not,
so with small initial weights gradient descent first ignores the permuted labels; late in
training both parts grow and cancel as the loss is minimised.

Checks, all computed from the measured curves:

* ``early_permuted_dep_small``: over the first ``early_fraction`` of epochs, the mean per-example
  label-dependent gradient norm of permuted examples is below ``early_ratio_max`` (0.3) times
  that of unpermuted examples, in every layer.
* ``unpermuted_learned_first``: unpermuted examples reach 90% training accuracy (on their given,
  correct labels) at an earlier epoch than permuted examples reach 90% on their permuted labels,
  and the latter do reach it (the network does memorise).
* ``parts_grow``: at the end, both parts (whole network, both groups) are larger than their
  early values.
* ``parts_cancel``: at the end ``‖Jᵀ(p − ȳ) − Jᵀ(y − ȳ)‖ / ‖Jᵀ(p − ȳ)‖`` (the gradient over the
  label-independent part) is below 0.1 for both groups.

Scale and choices: the paper trains VGG16 on CIFAR-100 (and other nets); here an MLP
64→256→256→10 (200 epochs, gradient parts measured every other epoch) on the 1797 sklearn
digits (standardised), with half of the labels permuted among
themselves (the paper permutes a fraction of labels; a permutation keeps the class frequencies).
Weights start at ``init_scale`` × PyTorch's default initialisation, the "small weight
initialisation" the paper's argument assumes, and biases at zero.

The activation is ReLU, as in the paper's networks, and the label-dependent part is *centred*:
with ``ȳ`` the class frequencies of the whole training set (identical for both groups, since a
permutation keeps them, and the same for every example, so it carries no label information),

    ∂L/∂θ = Jᵀ(p − ȳ) − Jᵀ(y − ȳ)

and ``Jᵀ(y − ȳ)`` is the label-dependent part measured. Uncentred, the permuted examples' mean
``Jᵀy`` tends to ``mean(h)·mean(y)ᵀ`` in a layer whose input features are ``h``; ReLU features have
a positive mean, so that class-frequency term (which ``Jᵀp`` also contains at initialisation,
where ``p`` is nearly uniform) kept the last layer's early ratio at 0.59 on a full run. Centring
removes exactly that term; ``centre_labels=False`` measures the uncentred ``Jᵀy``, and
``activation="tanh"`` (whose features are centred at initialisation) remains available.

Claim checks: ``early_permuted_dep_small``, ``unpermuted_learned_first`` and ``parts_grow``.
``parts_cancel`` is a sanity check: it follows from the network fitting its training set. The
ablation ``permute=False`` keeps the chosen half's *true* labels: then that half's early
label-dependent gradient is as large as the rest's, and the first claim check must fail (a test
shows it does). Training is mini-batch SGD with momentum; the gradient parts are measured on the
full training set at the start of every epoch (epoch 0 is the initialisation) and once after
the last. The paper's manifold-capacity analysis is not reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from babyaipp.errors import check_choice, check_range
from babyaipp.memorization.base import Check, MemoConfig, MemoSpec, Outcome, claim, sanity

GROUPS = ("permuted", "unpermuted")
PARTS = ("dep", "indep")
ACTIVATIONS = ("tanh", "relu")
#: The quick run trains a narrower net (and caps the epochs); both measure every other epoch.
QUICK_HIDDEN, QUICK_EPOCHS, QUICK_MEASURE_EVERY = 128, 200, 2


@dataclass
class RoteLearningConfig(MemoConfig):
    """Hyperparameters; ``quick`` shortens training."""

    permuted_fraction: float = 0.5
    hidden: int = 256
    activation: str = "relu"
    centre_labels: bool = True  # label-dependent part Jᵀ(y − ȳ): no class-frequency term
    permute: bool = True  # False = ablation: the chosen group keeps its true labels
    init_scale: float = 0.3
    lr: float = 0.1
    momentum: float = 0.9
    batch_size: int = 128
    epochs: int = 200  # permuted examples reach 90% around epoch 60; 200 leaves them time to be fitted
    early_fraction: float = 0.1
    # Random labels average out: the permuted group's mean label-dependent gradient is O(1/√n) of one
    # example's (n ≈ 900), against O(1) for labels correlated with the inputs; 0.3 leaves room for the
    # finite-n and early-training terms while still meaning "close to zero" relative to unpermuted.
    early_ratio_max: float = 0.3
    accuracy_threshold: float = 0.9
    # At the end the residual ‖Jᵀp − Jᵀy‖ is the training gradient, near zero once the set is fitted.
    cancel_max: float = 0.1

    def __post_init__(self) -> None:
        check_range("permuted_fraction", self.permuted_fraction, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_range("hidden", self.hidden, 1)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_range("init_scale", self.init_scale, 0.0, low_inclusive=False)
        check_range("lr", self.lr, 0.0, low_inclusive=False)
        check_range("momentum", self.momentum, 0.0, 1.0, high_inclusive=False)
        check_range("batch_size", self.batch_size, 1)
        check_range("epochs", self.epochs, 10)
        check_range("early_fraction", self.early_fraction, 0.0, 1.0, low_inclusive=False)
        check_range("early_ratio_max", self.early_ratio_max, 0.0, low_inclusive=False)
        check_range("accuracy_threshold", self.accuracy_threshold, 0.0, 1.0, low_inclusive=False)

    @property
    def width(self) -> int:
        """Hidden width actually used (the quick run caps it)."""
        return min(self.hidden, QUICK_HIDDEN) if self.quick else self.hidden

    @property
    def measure_every(self) -> int:
        """Measure the gradient parts every this many epochs (they cost about one epoch each)."""
        return QUICK_MEASURE_EVERY

    @property
    def train_epochs(self) -> int:
        """Epochs actually trained: the quick run stops early (memorisation still completes)."""
        return min(self.epochs, QUICK_EPOCHS) if self.quick else self.epochs


def load_data(config: RoteLearningConfig) -> tuple[Any, Any, Any]:
    """Standardised digits, labels with a seeded fraction permuted, and the permuted mask."""
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data.astype(np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    labels = digits.target.astype(np.int64)
    labels = labels.copy()
    rng = np.random.default_rng(config.seed)
    n = len(labels)
    chosen = rng.choice(n, size=int(round(config.permuted_fraction * n)), replace=False)
    shuffled = labels[chosen][rng.permutation(len(chosen))]
    if config.permute:
        labels[chosen] = shuffled
    permuted = np.zeros(n, dtype=bool)
    permuted[chosen] = True
    return torch.from_numpy(x), torch.from_numpy(labels), torch.from_numpy(permuted)


def make_model(config: RoteLearningConfig, n_in: int = 64, n_out: int = 10) -> Any:
    """MLP; weights scaled down from the default initialisation, biases start at zero.

    Zero biases with tanh keep every layer's features centred at initialisation, the setting in
    which the permuted examples' label-dependent gradient averages out (see the module docstring).
    """
    import torch
    from torch import nn

    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[config.activation]
    model = nn.Sequential(
        nn.Linear(n_in, config.width),
        act(),
        nn.Linear(config.width, config.width),
        act(),
        nn.Linear(config.width, n_out),
    )
    with torch.no_grad():
        for layer in linear_layers(model):
            layer.weight.mul_(config.init_scale)
            layer.bias.zero_()
    return model.to(config.device)


def linear_layers(model: Any) -> list[Any]:
    """Every Linear layer, input to output."""
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def linear_weights(model: Any) -> list[Any]:
    """The weight matrix of every Linear layer, input to output."""
    return [m.weight for m in linear_layers(model)]


def gradient_parts(
    model: Any, x: Any, labels: Any, n_classes: int = 10, centre: Any = None
) -> tuple[list[Any], list[Any]]:
    """Per-example means of ``Jᵀ(p − ȳ)`` and ``Jᵀ(y − ȳ)`` for every Linear weight, as tensors.

    ``centre`` is ``ȳ`` (a class-frequency vector; None = 0, the uncentred ``Jᵀp`` and ``Jᵀy``).
    The difference of the two parts is exactly the gradient of the mean cross-entropy whatever
    ``ȳ`` is (checked by the tests).
    """
    import torch

    weights = linear_weights(model)
    logits = model(x)
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(logits.dtype)
    probs = torch.softmax(logits, dim=1).detach()
    if centre is not None:
        onehot = onehot - centre.to(logits.dtype)
        probs = probs - centre.to(logits.dtype)
    n = len(labels)
    indep = torch.autograd.grad((probs * logits).sum() / n, weights, retain_graph=True)
    dep = torch.autograd.grad((onehot * logits).sum() / n, weights)
    return list(indep), list(dep)


def _norm(tensors: list[Any]) -> float:
    return float(math.sqrt(sum(float((t**2).sum()) for t in tensors)))


def measure(model: Any, x: Any, labels: Any, permuted: Any, centre: Any = None) -> dict[str, Any]:
    """Gradient-part norms per layer and in total, the residual, and accuracy, per group."""
    import torch

    row: dict[str, Any] = {}
    for group, mask in zip(GROUPS, (permuted, ~permuted)):
        indep, dep = gradient_parts(model, x[mask], labels[mask], centre=centre)
        row[f"{group}_indep_layers"] = [float(t.norm()) for t in indep]
        row[f"{group}_dep_layers"] = [float(t.norm()) for t in dep]
        row[f"{group}_indep_total"] = _norm(indep)
        row[f"{group}_dep_total"] = _norm(dep)
        row[f"{group}_residual_total"] = _norm([a - b for a, b in zip(indep, dep)])
        with torch.no_grad():
            row[f"{group}_acc"] = float((model(x[mask]).argmax(1) == labels[mask]).float().mean())
    return row


def first_epoch_reaching(epochs: list[int], values: list[float], threshold: float) -> int | None:
    """First epoch whose value is at least ``threshold`` (None if never)."""
    return next((e for e, v in zip(epochs, values) if v >= threshold), None)


def run(config: RoteLearningConfig) -> Outcome:
    import torch

    x, labels, permuted = load_data(config)
    x, labels, permuted = x.to(config.device), labels.to(config.device), permuted.to(config.device)
    model = make_model(config)
    centre = torch.bincount(labels, minlength=10).float() / len(labels) if config.centre_labels else None
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.train_epochs)
    gen = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, Any]] = []
    measured_epochs: list[int] = []
    for epoch in range(config.train_epochs):
        if epoch % config.measure_every == 0:
            measured_epochs.append(epoch)
            history.append(measure(model, x, labels, permuted, centre))
        order = torch.randperm(len(labels), generator=gen).to(config.device)
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    measured_epochs.append(config.train_epochs)
    history.append(measure(model, x, labels, permuted, centre))
    metrics = collect_metrics(history, measured_epochs, config)
    checks = compute_checks(metrics, config)
    key_figures = {
        "early_dep_ratio": round(max(metrics["early_dep_ratio_layers"]), 3),
        "epoch90_unperm": metrics["epoch_to_threshold"]["unpermuted"],
        "epoch90_perm": metrics["epoch_to_threshold"]["permuted"],
        "end_residual": round(max(metrics["end_residual_ratio"].values()), 4),
    }
    return Outcome(metrics=metrics, checks=checks, key_figures=key_figures, plot=lambda fig: plot(fig, metrics))


def collect_metrics(history: list[dict[str, Any]], epochs: list[int], config: RoteLearningConfig) -> dict[str, Any]:
    """Curves (one entry per measured epoch) and the summary numbers the checks read."""
    curves = {key: [row[key] for row in history] for key in history[0]}
    n_early = max(1, math.ceil(config.early_fraction * epochs[-1]))
    early = slice(0, max(1, sum(e < n_early for e in epochs)))
    n_layers = len(history[0]["permuted_dep_layers"])

    def early_mean(key: str, layer: int | None = None) -> float:
        values = curves[key][early]
        return float(np.mean([v[layer] for v in values] if layer is not None else values))

    early_ratio = [
        early_mean("permuted_dep_layers", k) / max(early_mean("unpermuted_dep_layers", k), 1e-30)
        for k in range(n_layers)
    ]
    growth = {
        f"{g}_{p}": curves[f"{g}_{p}_total"][-1] / max(early_mean(f"{g}_{p}_total"), 1e-30)
        for g in GROUPS
        for p in PARTS
    }
    residual = {
        group: history[-1][f"{group}_residual_total"] / max(history[-1][f"{group}_indep_total"], 1e-30)
        for group in GROUPS
    }
    return {
        "epochs": epochs,
        "n_early_epochs": n_early,
        "curves": curves,
        "early_dep_ratio_layers": early_ratio,
        "epoch_to_threshold": {
            group: first_epoch_reaching(epochs, curves[f"{group}_acc"], config.accuracy_threshold) for group in GROUPS
        },
        "growth_end_over_early": growth,
        "end_residual_ratio": residual,
        "final_acc": {group: curves[f"{group}_acc"][-1] for group in GROUPS},
    }


def compute_checks(metrics: dict[str, Any], config: RoteLearningConfig) -> dict[str, Check]:
    reach = metrics["epoch_to_threshold"]
    never = float(config.train_epochs + 1)  # "did not reach 90%" counts as after the last epoch
    lead = (reach["permuted"] if reach["permuted"] is not None else never) - (
        reach["unpermuted"] if reach["unpermuted"] is not None else never
    )
    return {
        "early_permuted_dep_small": claim(
            max(metrics["early_dep_ratio_layers"]),
            "<",
            config.early_ratio_max,
            "worst layer's early permuted/unpermuted label-dependent ratio; random labels average out",
        ),
        "unpermuted_learned_first": claim(
            lead if reach["permuted"] is not None else -1.0,
            ">",
            0.0,
            "epochs by which clean examples reach 90% before permuted ones (which must reach it)",
        ),
        "parts_grow": claim(
            min(metrics["growth_end_over_early"].values()),
            ">",
            1.0,
            "smallest end/early ratio of either part: both parts grow during training",
        ),
        "parts_cancel": sanity(
            max(metrics["end_residual_ratio"].values()),
            "<",
            config.cancel_max,
            "the residual is the training gradient, ~0 once the training set is fitted",
        ),
    }


def plot(fig: Any, metrics: dict[str, Any]) -> None:
    """One panel per layer (four gradient-part curves, log scale), then the accuracy curves."""
    curves = metrics["curves"]
    epochs = metrics["epochs"]
    n_layers = len(curves["permuted_dep_layers"][0])
    axes = fig.subplots(1, n_layers + 1)
    styles = {
        ("unpermuted", "dep"): ("tab:blue", "-"),
        ("permuted", "dep"): ("tab:red", "-"),
        ("unpermuted", "indep"): ("tab:blue", ":"),
        ("permuted", "indep"): ("tab:red", ":"),
    }
    names = {"dep": "label-dep. ‖Jᵀy‖", "indep": "label-indep. ‖Jᵀp‖"}
    for k, ax in enumerate(axes[:-1]):
        for (group, part), (color, ls) in styles.items():
            values = [row[k] for row in curves[f"{group}_{part}_layers"]]
            ax.plot(epochs, values, color=color, linestyle=ls, label=f"{names[part]}, {group}")
        ax.axvspan(0, metrics["n_early_epochs"], color="0.9", zorder=0)
        ax.set_yscale("log")
        ax.set_title(f"layer {k + 1} weight")
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("gradient-part norm per example")
    axes[0].legend(fontsize=6, loc="lower right")
    ax = axes[-1]
    for group, color in (("unpermuted", "tab:blue"), ("permuted", "tab:red")):
        ax.plot(epochs, curves[f"{group}_acc"], color=color, label=group)
    ax.axhline(0.9, color="0.5", linewidth=0.8, linestyle="--")
    ax.set_title("train accuracy")
    ax.set_ylabel("accuracy on the given labels")
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    fig.suptitle(
        "Rote learning: permuted labels contribute no label-dependent gradient early (grey: early "
        "epochs); late, both parts grow and cancel",
        fontsize=9,
    )


SPEC = MemoSpec(
    name="rote_learning",
    paper=(
        "Stephenson, Padhy, Ganesh, Hui, Tang, Chung, On the geometry of generalization and "
        "memorization in deep neural networks (ICLR 2021)"
    ),
    claim=(
        "Early in training the label-dependent gradient from permuted-label examples is near zero, so "
        "clean examples are learnt first; late, both gradient parts grow and cancel."
    ),
    config_cls=RoteLearningConfig,
    run=run,
    paper_headline=(
        "VGG16/CIFAR-100 (Fig. A.1): permuted examples give close to zero label-dependent "
        "gradient early in training; both parts grow and cancel at the end"
    ),
)
