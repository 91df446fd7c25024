"""The top-level command line loads every command module or fails loudly; a missing optional extra
only stops the commands that need it, with one line saying what to install."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from babyaipp import cli

#: A package no environment has, standing in for an optional extra that is not installed.
ABSENT = "babyaipp_test_absent_extra_pkg"


def _module(tmp_path, monkeypatch, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def _with_module(monkeypatch, name: str, commands: tuple[str, ...]) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", {**cli.COMMAND_MODULES, name: commands})


@pytest.mark.parametrize(
    "source, error",
    [
        ("import babyaipp.no_such_module\n", "ModuleNotFoundError: No module named 'babyaipp.no_such_module'"),
        ("from babyaipp.errors import NoSuchName\n", "ImportError: cannot import name 'NoSuchName'"),
    ],
)
def test_a_command_module_that_cannot_import_stops_the_command_line(tmp_path, monkeypatch, capsys, source, error):
    _module(tmp_path, monkeypatch, "broken_cli", source + "def add_parsers(sub):\n    pass\n")
    _with_module(monkeypatch, "broken_cli", ("broken",))
    code = cli.main(["levels"])  # even a command of another, healthy module
    err = capsys.readouterr().err
    assert code == cli.EXIT_NOT_INSTALLED != 0
    assert err.count("\n") == 1 and "broken_cli" in err and error in err


def test_a_module_missing_an_optional_extra_leaves_the_other_commands(tmp_path, monkeypatch, capsys):
    _module(tmp_path, monkeypatch, "extra_cli", f"import {ABSENT}\n")
    _with_module(monkeypatch, "extra_cli", ("needy",))
    monkeypatch.setitem(cli.OPTIONAL_EXTRAS, ABSENT, "fancy")
    assert cli.main(["levels", "--task", "GoToRedBall"]) == 0
    out, err = capsys.readouterr()
    assert "GoToRedBall" in out and err == ""  # nothing said about the extra until its command runs

    for argv in (["needy", "--some-flag", "x"], ["needy", "--help"], ["needy"]):
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == cli.EXIT_NOT_INSTALLED
        assert err.count("\n") == 1 and "babyaipp needy" in err and "pip install 'babyaipp[fancy]'" in err


def test_an_extra_missing_when_a_command_runs_says_what_to_install(tmp_path, monkeypatch, capsys):
    _module(
        tmp_path,
        monkeypatch,
        "late_cli",
        f"""
        def add_parsers(sub):
            p = sub.add_parser("late")
            p.set_defaults(func=run)

        def run(args):
            import {ABSENT}
        """,
    )
    _with_module(monkeypatch, "late_cli", ("late",))
    monkeypatch.setitem(cli.OPTIONAL_EXTRAS, ABSENT, "fancy")
    code = cli.main(["late"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_NOT_INSTALLED and err.count("\n") == 1 and "babyaipp[fancy]" in err

    monkeypatch.delitem(cli.OPTIONAL_EXTRAS, ABSENT)  # not an extra: a real bug, raised as it is
    with pytest.raises(ModuleNotFoundError):
        cli.main(["late"])


def test_the_extras_named_are_those_pyproject_declares():
    from pathlib import Path

    import tomllib

    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extras = declared["optional-dependencies"]
    assert set(cli.OPTIONAL_EXTRAS.values()) <= set(extras)
    for package, extra in cli.OPTIONAL_EXTRAS.items():
        names = " ".join(extras[extra]).replace("-", "_").lower()
        assert package.split("_")[0] in names or package in ("sklearn", "faiss", "pygame"), (package, extra)


def test_every_command_module_loads_and_adds_the_commands_it_declares():
    """The real modules: ``--help`` lists exactly the declared commands, in order."""
    out = subprocess.run([sys.executable, "-m", "babyaipp.cli", "--help"], capture_output=True, text=True, check=True)
    listed = re.findall(r"^    (\w+)", out.stdout, flags=re.MULTILINE)
    assert listed == [c for commands in cli.COMMAND_MODULES.values() for c in commands]


def test_building_the_command_line_loads_no_heavy_dependency():
    """Why the command modules import some of the package inside their commands: ``--help`` stays fast."""
    code = (
        "import sys, babyaipp.cli as c; c.build_parser(); "
        "print(sorted({'torch', 'stable_baselines3', 'ray', 'matplotlib', 'minari'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
