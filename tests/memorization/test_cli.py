"""Tests of ``babyaipp memo``: listing, running one module, bad input, and run-all summaries."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass

import pytest

from babyaipp.cli import main
from babyaipp.errors import ConfigError, InvalidChoiceError
from babyaipp.memorization import base, runner
from babyaipp.memorization.base import MemoConfig, MemoResult, MemoSpec, Outcome, claim, sanity


def test_list_names_every_module_with_paper_and_claim(capsys) -> None:
    assert main(["memo", "list"]) == 0
    out = capsys.readouterr().out
    for name in base.MODULES:
        assert name in out
    assert "Stephenson" in out and "Early-Learning Regularization" in out
    assert out.count("claim:") >= 2


def test_run_quick_writes_result_and_figure(tmp_path, capsys) -> None:
    code = main(["memo", "run", "rote_learning", "--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads((tmp_path / "rote_learning" / "result.json").read_text())
    assert result["held"] is True and result["config"]["quick"] is True
    assert (tmp_path / "rote_learning" / "figure.png").exists()
    assert "held:    yes" in out and "result.json" in out and "claim:" in out


def test_unknown_module_exits_2_and_names_the_choices(capsys) -> None:
    assert main(["memo", "run", "rote_lerning"]) == 2
    err = capsys.readouterr().err
    assert "rote_lerning" in err and "valid choices" in err and "rote_learning" in err and "all" in err


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("epochz=3", "valid choices"),  # unknown key: the valid keys are listed
        ("lr=fast", "not a valid"),  # value of the wrong type
        ("lr=-1", "valid range"),  # out of range
        ("lr", "KEY=VALUE"),  # malformed
    ],
)
def test_bad_param_exits_2_with_one_line(param: str, expected: str, tmp_path, capsys) -> None:
    code = main(["memo", "run", "rote_learning", "--quick", "--out", str(tmp_path), "--param", param])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rote_learning" / "result.json").exists()


def test_unknown_key_lists_the_module_parameters(capsys) -> None:
    assert main(["memo", "run", "elr", "--param", "lamda=3"]) == 2
    err = capsys.readouterr().err
    assert "lam" in err and "beta" in err


def test_param_with_all_is_refused(capsys) -> None:
    assert main(["memo", "run", "all", "--param", "lr=0.1"]) == 2
    assert "single module" in capsys.readouterr().err


def _result(name: str, held: bool, figures: dict, seconds: float = 1.0, error: str | None = None) -> MemoResult:
    return MemoResult(
        name=name,
        paper="A, B (2020)",
        claim=f"claim of {name} | with a pipe",
        held=held,
        checks={} if error else {"c": held},
        key_figures=figures,
        metrics={"error": error} if error else {},
        config={},
        seconds=seconds,
    )


def test_summary_table_from_hand_made_results() -> None:
    results = [
        _result("alpha", True, {"acc": 0.91234, "n": 3}, seconds=12.345),
        _result("beta", False, {"gap": -0.5}),
        _result("gamma", False, {}, error="ImportError: no module gamma"),
    ]
    lines = runner.summary_table(results).splitlines()
    assert lines[0] == "| module | claim | key figures | held | seconds |"
    assert lines[2] == "| alpha | claim of alpha \\| with a pipe | acc=0.912, n=3 | yes | 12.3 |"
    assert lines[3].startswith("| beta |") and "gap=-0.5 | no |" in lines[3]
    assert "failed: ImportError: no module gamma | no |" in lines[4]
    summary = runner.summary_dict(results, quick=True, seed=0)
    assert summary["all_held"] is False
    assert [m["error"] for m in summary["modules"]] == [None, None, "ImportError: no module gamma"]


@dataclass
class _TinyConfig(MemoConfig):
    value: float = 1.0


def _install_fake_modules(monkeypatch) -> None:
    """Register three stand-ins: one holds, one raises while running, one does not exist."""

    def fine(config: _TinyConfig) -> Outcome:
        return Outcome(metrics={"v": config.value}, checks={"ok": True}, key_figures={"v": config.value})

    def broken(config: _TinyConfig) -> Outcome:
        raise RuntimeError("diverged")

    for name, run in (("fine", fine), ("broken", broken)):
        module = types.ModuleType(f"_fake_memo_{name}")
        module.SPEC = MemoSpec(name=name, paper="P", claim=f"{name} claim", config_cls=_TinyConfig, run=run)
        monkeypatch.setitem(sys.modules, f"_fake_memo_{name}", module)
    monkeypatch.setattr(
        base,
        "MODULES",
        {
            "fine": "_fake_memo_fine",
            "broken": "_fake_memo_broken",
            "ghost": "_fake_memo_not_written_yet",
        },
    )


def test_run_all_records_failures_and_writes_the_summary(tmp_path, monkeypatch) -> None:
    _install_fake_modules(monkeypatch)
    seen: list[str] = []
    results = runner.run_all(
        tmp_path, names=list(base.MODULES), quick=True, on_done=lambda name, result: seen.append(name)
    )
    assert seen == ["fine", "broken", "ghost"]
    assert [r.held for r in results] == [True, False, False]
    assert runner.error_of(results[1]) == "RuntimeError: diverged"
    assert "_fake_memo_not_written_yet" in runner.error_of(results[2])
    assert results[1].claim == "broken claim"
    md = (tmp_path / "summary.md").read_text()
    assert "1 of 3 claims held" in md and "failed: RuntimeError: diverged" in md
    assert json.loads((tmp_path / "summary.json").read_text())["all_held"] is False
    assert (tmp_path / "fine" / "result.json").exists()


def test_cli_run_all_exits_1_when_a_claim_fails(tmp_path, monkeypatch, capsys) -> None:
    _install_fake_modules(monkeypatch)
    assert main(["memo", "run", "all", "--quick", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "1 of 3 claims held" in captured.out
    assert "broken (seed 0): FAILED" in captured.err
    assert (tmp_path / "summary.md").exists() and (tmp_path / "summary.json").exists()


def test_cli_run_all_exits_0_when_every_claim_holds(tmp_path, monkeypatch) -> None:
    _install_fake_modules(monkeypatch)
    monkeypatch.setattr(base, "MODULES", {"fine": "_fake_memo_fine"})
    assert main(["memo", "run", "all", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["all_held"] is True


def test_help_texts(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["memo", "run", "--help"])
    out = capsys.readouterr().out
    assert "--param KEY=VALUE" in out and "Exit status" in out and "runs/memo" in out


@pytest.mark.parametrize(
    "seed_args", [["--seed", "-1"], ["--seed", str(2**32)], ["--seeds", "0--1"], ["--seeds", "3-1"], ["--seeds", "a"]]
)
def test_bad_seed_exits_2_naming_value_and_range(seed_args, tmp_path, capsys) -> None:
    code = main(["memo", "run", "rote_learning", "--quick", "--out", str(tmp_path), *seed_args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert seed_args[1] in err or seed_args[1].replace("-", "") in err
    assert "valid" in err or "LOW-HIGH" in err or "[0, " in err
    assert not (tmp_path / "rote_learning").exists()


def test_seed_minus_one_names_the_range(capsys) -> None:
    assert main(["memo", "run", "elr", "--seed", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "seed=-1" in err and "valid range: [0, 4294967295]" in err


def test_out_that_is_a_file_fails_before_running(tmp_path, monkeypatch, capsys) -> None:
    _install_fake_modules(monkeypatch)
    ran: list[str] = []
    monkeypatch.setattr(runner, "run_module", lambda name, **kw: ran.append(name))
    target = tmp_path / "a_file"
    target.write_text("keep me")
    assert main(["memo", "run", "all", "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert "a_file" in err and "existing file" in err and len(err.splitlines()) == 1
    assert ran == [] and target.read_text() == "keep me"


def test_out_that_is_not_writable_fails_before_running(tmp_path, monkeypatch, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        probe = locked / "probe"
        try:  # root ignores permissions: the check cannot be exercised there
            probe.write_text("x")
            probe.unlink()
            pytest.skip("running as a user that can write to a read-only directory")
        except OSError:
            pass
        called: list[str] = []
        monkeypatch.setattr(base, "run_module", lambda *a, **kw: called.append("ran"))
        assert main(["memo", "run", "rote_learning", "--quick", "--out", str(locked / "sub")]) == 2
        err = capsys.readouterr().err.strip()
        assert "not writable" in err and "locked" in err and len(err.splitlines()) == 1
        assert called == []
    finally:
        locked.chmod(0o700)


def test_check_writable_dir_reports_an_unwritable_parent(tmp_path, monkeypatch) -> None:
    """Simulate an unwritable place (works under root too): mkdir raising PermissionError."""

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(tmp_path), "mkdir", refuse)
    with pytest.raises(ConfigError, match="not writable \\(Permission denied\\)"):
        runner.check_writable_dir(tmp_path / "new")


def test_parse_seeds() -> None:
    assert runner.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert runner.parse_seeds("0,3,7") == [0, 3, 7]
    assert runner.parse_seeds("2-3,9") == [2, 3, 9]
    with pytest.raises(ConfigError, match="repeats"):
        runner.parse_seeds("1,1")


def test_check_margin_and_kind() -> None:
    c = claim(0.7, ">", 0.5, "why")
    assert c.held and abs(c.margin - 0.2) < 1e-12 and c.to_dict()["kind"] == "claim"
    assert not claim(float("nan"), "<", 1.0).held
    assert not sanity(2.0, "<=", 1.0).held
    with pytest.raises(InvalidChoiceError):
        claim(1.0, "=>", 0.0)


@dataclass
class _SeededConfig(MemoConfig):
    pass


def _install_seed_dependent_module(monkeypatch, fails_on: set[int]) -> None:
    """A module whose claim fails on the seeds in ``fails_on``; its sanity check always holds."""

    def run(config: _SeededConfig) -> Outcome:
        value = 0.4 if config.seed in fails_on else 0.6 + 0.01 * config.seed
        return Outcome(
            metrics={},
            key_figures={"value": value},
            checks={"value_high": claim(value, ">", 0.5, "half"), "built": sanity(1, ">=", 1)},
        )

    module = types.ModuleType("_fake_memo_seeded")
    module.SPEC = MemoSpec(name="seeded", paper="P", claim="c", config_cls=_SeededConfig, run=run)
    monkeypatch.setitem(sys.modules, "_fake_memo_seeded", module)
    monkeypatch.setattr(base, "MODULES", {"seeded": "_fake_memo_seeded"})


@pytest.mark.parametrize(("fails_on", "verdict", "code"), [({3}, True, 0), ({1, 3}, False, 1)])
def test_seeds_judge_each_claim_on_4_of_5(fails_on, verdict, code, tmp_path, monkeypatch, capsys) -> None:
    _install_seed_dependent_module(monkeypatch, fails_on)
    assert main(["memo", "run", "seeded", "--seeds", "0-4", "--out", str(tmp_path)]) == code
    summary = json.loads((tmp_path / "summary.json").read_text())
    module = summary["modules"][0]
    assert summary["seeds"] == [0, 1, 2, 3, 4] and module["held"] is verdict
    check = module["checks"]["value_high"]
    assert check["held"] == 5 - len(fails_on) and check["of"] == 5 and check["kind"] == "claim"
    assert abs(check["margin"]["min"] - (0.4 - 0.5)) < 1e-9
    assert abs(check["margin"]["max"] - (0.64 - 0.5)) < 1e-9
    assert module["checks"]["built"]["kind"] == "sanity"
    md = (tmp_path / "summary.md").read_text()
    assert "## Claim checks" in md and "## Sanity checks" in md and f"{5 - len(fails_on)}/5" in md
    for s in range(5):
        assert (tmp_path / "seeded" / f"seed{s}" / "result.json").exists()
    assert f"claim held on {5 - len(fails_on)}/5 seeds" in capsys.readouterr().out


def test_jobs_out_of_range_exits_2(capsys) -> None:
    assert main(["memo", "run", "elr", "--jobs", "0"]) == 2
    assert "--jobs=0 is out of range" in capsys.readouterr().err


def test_parallel_jobs_give_the_same_results_in_run_order(tmp_path) -> None:
    """Two worker processes, two seeds of a real (fast) module: same numbers as a serial run."""
    serial = runner.run_all(tmp_path / "serial", names=["interpolation_transition"], quick=True, seeds=[0, 1])
    parallel = runner.run_all(
        tmp_path / "parallel", names=["interpolation_transition"], quick=True, seeds=[0, 1], jobs=2
    )
    assert [r.config["seed"] for r in parallel] == [0, 1]
    assert [r.checks for r in parallel] == [r.checks for r in serial]
    assert [r.key_figures for r in parallel] == [r.key_figures for r in serial]
