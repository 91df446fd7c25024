"""Every default is stated once, in babyaipp/defaults.py, and the library, the command line and its
help text all read it from there."""

from __future__ import annotations

import argparse
import ast
import inspect
from pathlib import Path

from babyaipp import defaults
from babyaipp.agents import cli as train_cli
from babyaipp.agents import evaluation_cli
from babyaipp.agents.evaluation import evaluate_policy_on_splits, evaluate_run, sb3_act_fn
from babyaipp.agents.imitation import train_bc
from babyaipp.agents.models import MODELS
from babyaipp.agents.training import train
from babyaipp.experiments import cli as experiments_cli
from babyaipp.experiments.trials import TrialConfig

PACKAGE = Path(__file__).resolve().parents[1] / "babyaipp"
NAMES = [name for name in vars(defaults) if name.isupper()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    for module in (train_cli, evaluation_cli, experiments_cli):
        module.add_parsers(sub)
    return parser


def _default(function, name: str):
    return inspect.signature(function).parameters[name].default


def test_no_other_module_defines_a_default():
    """No module assigns a name that defaults.py defines (it imports it instead)."""
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "defaults.py":
            continue
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            offences += [f"{path.name}: {t.id}" for t in targets if isinstance(t, ast.Name) and t.id in NAMES]
    assert not offences, offences


def test_the_library_reads_the_defaults():
    assert _default(train, "env_id") == defaults.DEFAULT_ENV
    assert _default(train, "model") == defaults.DEFAULT_MODEL
    assert _default(train, "steps") == defaults.DEFAULT_STEPS
    assert _default(train, "n_envs") == defaults.DEFAULT_N_ENVS
    assert _default(train, "text") == defaults.DEFAULT_TEXT
    assert _default(train, "engine") == defaults.DEFAULT_ENGINE
    assert _default(train, "checkpoint_every") == defaults.DEFAULT_CHECKPOINT_EVERY
    assert _default(train, "algo") == defaults.DEFAULT_ALGO
    assert _default(train, "trainer") == defaults.DEFAULT_TRAINER
    assert _default(train, "device") == _default(train_bc, "device") == defaults.DEFAULT_DEVICE
    assert _default(train_bc, "epochs") == defaults.DEFAULT_BC_EPOCHS
    for function in (sb3_act_fn, evaluate_policy_on_splits, evaluate_run):
        assert _default(function, "greedy") is defaults.DEFAULT_GREEDY, function.__name__
    for function in (evaluate_policy_on_splits, evaluate_run):
        assert _default(function, "seed_base") == defaults.EVAL_SEED_START
        assert _default(function, "episodes") == defaults.DEFAULT_EVAL_EPISODES
        assert _default(function, "n_envs") == defaults.DEFAULT_EVAL_N_ENVS
    assert _default(evaluate_run, "device") == defaults.DEFAULT_EVAL_DEVICE
    trial = {f.name: f.default for f in TrialConfig.__dataclass_fields__.values()}
    assert (trial["greedy"], trial["engine"], trial["n_envs"], trial["text"], trial["algo"]) == (
        defaults.DEFAULT_GREEDY,
        defaults.DEFAULT_ENGINE,
        defaults.DEFAULT_N_ENVS,
        defaults.DEFAULT_TEXT,
        defaults.DEFAULT_ALGO,
    )


def test_the_command_line_reads_the_defaults():
    parser = _parser()
    run = train_cli.RUN_DEFAULTS
    assert (run["env"], run["model"], run["n_envs"], run["text"], run["engine"], run["trainer"]) == (
        defaults.DEFAULT_ENV,
        defaults.DEFAULT_MODEL,
        defaults.DEFAULT_N_ENVS,
        defaults.DEFAULT_TEXT,
        defaults.DEFAULT_ENGINE,
        defaults.DEFAULT_TRAINER,
    )
    trained = parser.parse_args(["train", "--out", "x"])
    assert (trained.algo, trained.device) == (defaults.DEFAULT_ALGO, defaults.DEFAULT_DEVICE)
    evaluation = parser.parse_args(["eval", "run"])
    assert (evaluation.episodes, evaluation.n_envs, evaluation.seed_base, evaluation.greedy, evaluation.device) == (
        defaults.DEFAULT_EVAL_EPISODES,
        defaults.DEFAULT_EVAL_N_ENVS,
        defaults.EVAL_SEED_START,
        defaults.DEFAULT_GREEDY,
        defaults.DEFAULT_EVAL_DEVICE,
    )
    sweep = parser.parse_args(["sweep", "--out", "x"])
    assert (sweep.envs, sweep.steps, sweep.n_envs, sweep.episodes, sweep.engine, sweep.greedy) == (
        [defaults.DEFAULT_ENV],
        defaults.DEFAULT_STEPS,
        defaults.DEFAULT_N_ENVS,
        defaults.DEFAULT_EVAL_EPISODES,
        defaults.DEFAULT_ENGINE,
        defaults.DEFAULT_GREEDY,
    )
    assert (sweep.checkpoint_every, sweep.algos, sweep.text) == (
        defaults.DEFAULT_CHECKPOINT_EVERY,
        [defaults.DEFAULT_ALGO],
        [defaults.DEFAULT_TEXT],
    )
    assert train_cli.MODEL_CHOICES == tuple(MODELS)


def test_eval_help_says_how_actions_are_chosen():
    """``eval --help`` states the action rule the default gives (sampled), and the seed boundary."""
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = " ".join(sub.choices["eval"].format_help().split())
    assert "sampled from the policy" in text and "greedy actions" not in text
    assert f"seeds {defaults.EVAL_SEED_START} + k" in text
    assert f"(default: {'on' if defaults.DEFAULT_GREEDY else 'off'})" in text
