"""docs/extending.md against the code: the files a new property or task family touches, listed from the code.

* The property tables of the page name the module that declares properties and the one that holds
  their rules; every other module of the package that names a property (a string equal to a
  property name) must be in the page's table of such places, with exactly the names it uses.
* Every property has a rule in both engines' motion functions.
* A task family added to ``levels.py`` alone (in a fresh interpreter) is registered on both floors,
  captured and replayed as a ``Level``, and played identically by the batched engine.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import babyaipp
from babyaipp.envs import levels, physics, properties
from babyaipp.envs.properties import TILE_PROPERTIES

ROOT = Path(babyaipp.__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "extending.md"
NAMES = {p.name for p in TILE_PROPERTIES}


def _section(title: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _tables(section: str) -> list[list[list[str]]]:
    """The markdown tables of a section, as rows of cells (header and rule rows dropped)."""
    tables, current = [], []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            tables.append([row for row in current[2:]])
            current = []
    return tables


def _path(cell: str) -> str:
    return re.fullmatch(r"`([^`]+)`", cell).group(1)


def _relative(module) -> str:
    return Path(inspect.getsourcefile(module)).resolve().relative_to(ROOT).as_posix()


def _property_names_by_module() -> dict[str, set[str]]:
    """Every module of the package that has a string constant equal to a property name, with those names.

    The vocabulary's word list (``text.WORDS``) is skipped: its words are words, some spelled as names.
    """
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "babyaipp").rglob("*.py")):
        tree = ast.parse(path.read_text())
        skip = {
            id(node)
            for stmt in ast.walk(tree)
            if isinstance(stmt, (ast.Assign, ast.AnnAssign))
            and any(
                isinstance(t, ast.Name) and t.id == "WORDS"
                for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
            )
            for node in ast.walk(stmt)
        }
        names = {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in NAMES and id(node) not in skip
        }
        if names:
            found[path.relative_to(ROOT).as_posix()] = names
    return found


def test_property_files_are_where_the_declarations_and_rules_live():
    files_to_edit, named_elsewhere = _tables(_section("A new tile property"))
    assert [_path(row[0]) for row in files_to_edit] == [_relative(properties), _relative(physics)]
    assert inspect.getmodule(TILE_PROPERTIES[0].__class__) is properties
    for function in (physics.resolve_motion, physics.resolve_motion_tensors):
        assert inspect.getmodule(function) is physics
    listed = {_path(row[0]): {n.strip() for n in row[1].split(",")} for row in named_elsewhere}
    found = _property_names_by_module()
    assert found.pop(_relative(properties)) == NAMES
    assert found.pop(_relative(physics)) == NAMES
    assert found == listed, (
        "modules naming a property outside properties.py and physics.py differ from docs/extending.md's table: "
        f"code has {found}, the page lists {listed}"
    )


def test_every_property_has_a_rule_in_both_engines():
    for function in (physics.resolve_motion, physics.resolve_motion_tensors):
        tree = ast.parse(inspect.getsource(function))
        named = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in NAMES}
        assert named == NAMES, f"{function.__name__} has no rule for {sorted(NAMES - named)}"


def test_task_family_files_are_where_the_tasks_live():
    (files_to_edit,) = _tables(_section("A new task family"))
    assert [_path(row[0]) for row in files_to_edit] == [_relative(levels)]
    assert "_SPARSE_TASKS" in inspect.getsource(levels) and "TASKS" in vars(levels)


#: Run in a fresh interpreter: levels.py gets one more class and Task line as it is imported.
_NEW_FAMILY = r'''
import importlib.abc, importlib.machinery, importlib.util, json, pathlib, sys

class AddFamily(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name != "babyaipp.envs.levels":
            return None
        origin = importlib.machinery.PathFinder.find_spec(name, path).origin
        return importlib.util.spec_from_loader(name, self, origin=origin)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = pathlib.Path(module.__spec__.origin).read_text()
        anchor = "_SPARSE_TASKS = ("
        family = (
            "class GoToRedBallAgainPP(BabyAIPPMixin, GoToRedBall):\n"
            '    """Go to the red ball, once more."""\n\n\n'
        )
        source = source.replace(anchor, family + anchor + '\n    Task("GoToRedBallAgain", GoToRedBallAgainPP),', 1)
        module.__file__ = module.__spec__.origin
        exec(compile(source, module.__file__, "exec"), module.__dict__)

sys.meta_path.insert(0, AddFamily())
import numpy as np
import babyaipp.envs as envs
from babyaipp.envs.level import Level
from tests.envs.twin import BatchedTwin
from tests.envs.conftest import quiet_make

out = {"ids": [i for i in envs.ENV_IDS if "GoToRedBallAgain" in i]}
for task in ("GoToRedBallAgain", "GoToRedBallAgainDense"):
    env_id = envs.env_id(task, "Hard", "Test")
    env = quiet_make(env_id)
    env.reset(seed=1)
    level = Level.from_json(Level.from_env(env).to_json())
    out[task] = {"level_task": level.task, "floor_tiles": int((level.floor >= 0).sum())}
twin = BatchedTwin(env, env_id)  # the dense alias, a subclass of the new family, in the batched engine
rng = np.random.default_rng(0)
for _ in range(30):
    action = int(rng.integers(3))
    result = env.step(action)
    twin.step(env, action, result)
    if result[2] or result[3]:
        break
out["batched_steps"] = twin.steps
print(json.dumps(out))
'''


def test_a_family_added_in_levels_py_alone_is_complete():
    out = subprocess.run([sys.executable, "-c", _NEW_FAMILY], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(got["ids"]) == 2 * 2 * 3  # both floors x difficulties x splits
    assert got["GoToRedBallAgain"]["level_task"] == "GoToRedBallAgain"
    assert got["GoToRedBallAgainDense"]["level_task"] == "GoToRedBallAgainDense"
    assert got["GoToRedBallAgainDense"]["floor_tiles"] > got["GoToRedBallAgain"]["floor_tiles"]
    assert got["batched_steps"] >= 1
