"""Bad input and a hostile filesystem through the command line: one-line errors, nothing half-written,
finished work kept; ``eval --env`` on another task keeps the run's own results."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import babyaipp  # noqa: F401  (registers the ids)
from babyaipp.cli import EXIT_BROKEN_PIPE, main

ENV = "BabyAIPP/GoToRedBall-Easy-Train-v0"
OTHER = "BabyAIPP/GoToLocal-Easy-Train-v0"  # another task with the same observation space
FAST = ["--n-envs", "2", "--set", "n_steps=64", "--set", "batch_size=64", "--device", "cpu", "--steps", "128"]
EVAL = ["--episodes", "2", "--splits", "Train", "--no-references", "--quiet", "--n-envs", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", *FAST, "--out", str(run)]) == 0
    return run


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ eval
def test_eval_on_another_task_keeps_the_runs_own_results(trained, capsys):
    assert main(["eval", str(trained), *EVAL]) == 0
    own = trained / "eval" / "results.json"
    before = own.read_bytes()
    assert json.loads(before)["run_dir"] == ".."  # relative to eval/: no absolute path
    capsys.readouterr()
    assert main(["eval", str(trained), *EVAL, "--env", OTHER]) == 0
    assert own.read_bytes() == before, "the run's own results were not overwritten"
    other = trained / "eval" / "GoToLocal-Easy" / "results.json"
    assert json.loads(other.read_text())["env_id"].startswith("BabyAIPP/GoToLocal-Easy")
    assert str(other) in capsys.readouterr().out
    # --env naming the run's own task and difficulty is the run's own evaluation.
    assert main(["eval", str(trained), *EVAL, "--env", "BabyAIPP/GoToRedBall-Easy-Test-v0"]) == 0
    assert own.read_bytes() != before


def test_eval_on_a_full_disk_prints_the_finished_results(trained, monkeypatch, capsys):
    from babyaipp.agents import reports

    def full(result, out_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out_dir / "results.json"))

    monkeypatch.setattr(reports, "write_results", full)
    assert main(["eval", str(trained), *EVAL]) == 2
    captured = capsys.readouterr()
    assert "| Train" in captured.out or "Train" in captured.out  # the table reached stdout
    lines = captured.err.strip().splitlines()
    assert json.loads(lines[0])["splits"]["Train"]["episodes"] == 2  # the JSON, on stderr
    assert "No space left on device" in lines[1] and "printed above" in lines[1] and len(lines) == 2


def test_eval_n_envs_zero_names_the_flag(trained, capsys):
    assert main(["eval", str(trained), "--n-envs", "0"]) == 2
    assert "--n-envs=0 is out of range" in _one_line_error(capsys)


# ------------------------------------------------------------------ compare
def test_compare_refuses_a_results_file_without_results(trained, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "eval").mkdir(parents=True)
    (empty / "eval" / "results.json").write_text("{}")
    out = tmp_path / "cmp"
    assert main(["compare", str(empty), "--out", str(out)]) == 2
    assert "holds no per-split results" in _one_line_error(capsys)
    assert not out.exists()


def test_compare_into_a_file_is_one_line(trained, tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert main(["compare", str(trained), "--out", str(out)]) == 2
    assert "is a file, not a directory" in _one_line_error(capsys)


# ------------------------------------------------------------------ train
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "learning_rate=abc"], "learning_rate='abc' is not a number"),
        (["--set", "learning_rate=nan"], "learning_rate='nan' is not a number"),
        (["--set", "learning_rate=1e999"], "learning_rate=inf must be a finite number"),
        (["--set", "n_epochs=2.5"], "n_epochs=2.5 must be a whole number"),
        (["--n-envs", "0"], "--n-envs=0 is out of range"),
        (["--env-kwarg", "max_steps=0"], "max_steps"),
    ],
)
def test_bad_training_input_is_one_line_and_leaves_nothing(extra, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *FAST, *extra, "--out", str(out)]) == 2
    assert message in _one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "demos"])
def test_an_out_that_is_a_file_is_one_line(command, tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    args = [*FAST, "--out", str(out)] if command == "train" else ["--episodes", "1", "--out", str(out)]
    assert main([command, *args]) == 2
    assert "is a file" in _one_line_error(capsys)
    assert out.read_text() == "x"


def test_an_out_under_a_file_is_one_line(tmp_path, capsys):
    parent = tmp_path / "file"
    parent.write_text("x")
    assert main(["train", *FAST, "--out", str(parent / "run")]) == 2
    assert "cannot be created or written" in _one_line_error(capsys)


def test_an_os_error_anywhere_in_a_command_is_one_line(tmp_path, monkeypatch, capsys):
    from babyaipp.agents import training

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "config.json"))

    monkeypatch.setattr(training, "atomic_write_json", full)
    assert main(["train", *FAST, "--out", str(tmp_path / "run")]) == 2
    err = _one_line_error(capsys)
    assert "No space left on device" in err and "free some space" in err


# ------------------------------------------------------------------ play
def test_play_checks_its_out_before_playing(tmp_path, capsys):
    assert main(["play", ENV, "--out", str(tmp_path)]) == 2
    assert "is a directory" in _one_line_error(capsys)
    (tmp_path / "file").write_text("x")
    assert main(["play", ENV, "--out", str(tmp_path / "file" / "ep.gif")]) == 2
    assert "cannot be written" in _one_line_error(capsys)
    assert main(["play", ENV, "--out", str(tmp_path / "ep.txt")]) == 2
    assert "must end in .png or .gif" in _one_line_error(capsys)


# ------------------------------------------------------------------ a closed pipe
class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no file descriptor")


def test_levels_into_a_closed_pipe_exits_quietly(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["levels"]) == EXIT_BROKEN_PIPE
    assert capsys.readouterr().err == ""


def test_levels_piped_into_a_reader_that_went_away_prints_no_traceback():
    proc = subprocess.Popen(
        [sys.executable, "-m", "babyaipp.cli", "levels"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # like `| head` exiting before the command writes
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_BROKEN_PIPE and b"Traceback" not in err and err == b"", err


def test_demos_on_a_full_disk_is_one_line_and_leaves_no_temporary_directory(tmp_path, monkeypatch, capsys):
    from babyaipp.agents import demos

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "main_data.hdf5"))

    monkeypatch.setattr(demos, "_dataset_metadata", full)  # fails after every episode was recorded
    out = tmp_path / "demos"
    assert main(["demos", "--env", ENV, "--episodes", "2", "--quiet", "--out", str(out)]) == 2
    assert "No space left on device" in _one_line_error(capsys)
    assert not out.exists() and not list(tmp_path.glob(".demos.tmp-*"))
