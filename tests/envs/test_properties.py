"""The property declarations and what derives from them: tables, bits, vocabulary with stable ids.

Today's values are pinned here, written out, so that a change to the declarations (or to how the
tables derive from them) that moves a coverage, a bit or a token id fails a test. Adding a
property is shown end to end in a fresh interpreter: its word takes the next token id and every
existing id stays.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from minigrid.core.constants import COLOR_TO_IDX

from babyaipp.envs import dynamics
from babyaipp.envs.batched_state import Geometry, encode_env
from babyaipp.envs.level import Level
from babyaipp.envs.properties import BY_NAME, PROPERTY_BIT, TILE_PROPERTIES, names_of_mask, property_mask
from babyaipp.envs.text import PROPERTY_WORDS, VOCABULARY, WORD_TO_ID, WORDS, build_vocabulary, sentence, tokenize
from babyaipp.errors import InvalidChoiceError

from .conftest import quiet_make

#: Token ids of every word as trained models know them (id = position). Never edit: append.
PINNED_VOCABULARY = (
    "<pad>",
    "<unk>",
    "a",
    "adipiscing",
    "after",
    "amet",
    "and",
    "are",
    "ball",
    "behind",
    "blue",
    "box",
    "consectetur",
    "dolor",
    "door",
    "elit",
    "floors",
    "front",
    "go",
    "green",
    "grey",
    "in",
    "ipsum",
    "key",
    "left",
    "lorem",
    "magic",
    "mirrored",
    "next",
    "object",
    "of",
    "on",
    "open",
    "pick",
    "purple",
    "put",
    "red",
    "reversed",
    "right",
    "sit",
    "slippery",
    "sticky",
    "the",
    "then",
    "to",
    "traps",
    "up",
    "yellow",
    "you",
    "your",
)


def test_tables_derived_from_the_declarations_keep_todays_values():
    assert dynamics.PROPERTIES == ("trap", "slippery", "sticky", "fliplr", "flipud", "magic")
    assert dynamics.COVERAGE == {
        "trap": 0.05,
        "slippery": 0.15,
        "magic": 0.15,
        "sticky": 0.30,
        "fliplr": 0.30,
        "flipud": 0.30,
    }
    assert dynamics.SPARSE_PROPERTIES == {"trap", "slippery", "magic"}
    assert PROPERTY_WORDS == {
        "trap": "traps",
        "slippery": "slippery",
        "sticky": "sticky",
        "fliplr": "mirrored",
        "flipud": "reversed",
        "magic": "magic",
    }
    assert PROPERTY_BIT == {"trap": 1, "slippery": 2, "sticky": 4, "fliplr": 8, "flipud": 16, "magic": 32}
    assert dynamics.DIFFICULTY_PROPERTIES["Hard"] == dynamics.PROPERTIES
    assert set(BY_NAME) == set(dynamics.PROPERTIES) and all(BY_NAME[p.name] is p for p in TILE_PROPERTIES)


def test_masks_round_trip_in_the_order_of_effect():
    for mask in range(2 ** len(TILE_PROPERTIES)):
        names = names_of_mask(mask)
        assert property_mask(names) == mask
        assert list(names) == sorted(names, key=dynamics.PROPERTIES.index)


def test_sentences_name_properties_in_the_order_of_effect():
    assert sentence("grey", ("magic", "trap")) == "grey floors are traps and magic."
    assert sentence("blue", ("flipud", "fliplr")) == "blue floors are mirrored and reversed."


def test_the_batched_engine_reads_the_declared_bits():
    env = quiet_make("BabyAIPP/GoToLocal-Hard-Test-v0")
    env.reset(seed=3)
    base = env.unwrapped
    props = encode_env(env, Geometry(base.width, base.height))["props"]
    for colour, names in base.dynamics.items():
        assert props[COLOR_TO_IDX[colour]] == sum(PROPERTY_BIT[n] for n in names)
        assert names_of_mask(int(props[COLOR_TO_IDX[colour]])) == tuple(sorted(names, key=dynamics.PROPERTIES.index))


def test_every_word_keeps_todays_token_id():
    assert VOCABULARY[: len(PINNED_VOCABULARY)] == PINNED_VOCABULARY
    assert WORDS == PINNED_VOCABULARY  # nothing appended yet: the vocabulary is exactly the pinned list
    assert all(WORD_TO_ID[w] == i for i, w in enumerate(PINNED_VOCABULARY))
    assert tokenize("blue floors are traps", 4).tolist() == [10, 16, 7, 45]


def test_new_words_are_appended_without_moving_any_id():
    grown = build_vocabulary(VOCABULARY, ("windy", "traps", "very windy"))
    assert grown[: len(VOCABULARY)] == VOCABULARY
    assert grown[len(VOCABULARY) :] == ("windy", "very")
    # The sorted vocabulary this replaced would have moved every id after "very"/"windy".
    assert sorted(grown[2:]) != list(grown[2:])


def test_declaring_a_property_appends_its_word_and_bit(tmp_path):
    """A seventh property, declared in a fresh interpreter: next bit, next token id, no id moved."""
    code = """
import importlib.abc, importlib.machinery, importlib.util, json, pathlib, sys

class DeclareWindy(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # Declare the property in the table's source (one line) as the module is first imported.
    def find_spec(self, name, path, target=None):
        if name != "babyaipp.envs.properties":
            return None
        origin = importlib.machinery.PathFinder.find_spec(name, path).origin
        return importlib.util.spec_from_loader(name, self, origin=origin)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = pathlib.Path(module.__spec__.origin).read_text()
        end = source.index("\\n)\\n", source.index("TILE_PROPERTIES: tuple"))
        source = source[:end] + '\\n    TileProperty("windy", "windy", 0.15, True),' + source[end:]
        module.__file__ = module.__spec__.origin
        exec(compile(source, module.__file__, "exec"), module.__dict__)

sys.meta_path.insert(0, DeclareWindy())
import babyaipp.envs.dynamics as D
import babyaipp.envs.properties as P
import babyaipp.envs.text as T
print(json.dumps({
    "vocabulary": list(T.VOCABULARY),
    "properties": list(D.PROPERTIES),
    "coverage": D.COVERAGE["windy"],
    "sparse": "windy" in D.SPARSE_PROPERTIES,
    "sentence": T.sentence("blue", ("windy", "trap")),
    "tokens": T.tokenize(T.sentence("blue", ("windy", "trap")), 6).tolist(),
    "mask": P.property_mask(("windy", "trap")),
}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    n = len(PINNED_VOCABULARY)
    assert got["vocabulary"][:n] == list(PINNED_VOCABULARY) and got["vocabulary"][n:] == ["windy"]
    assert got["properties"][-1] == "windy" and got["coverage"] == 0.15 and got["sparse"]
    assert got["sentence"] == "blue floors are traps and windy."
    assert got["tokens"] == [10, 16, 7, 45, 6, n]
    assert got["mask"] == 1 | 64


def test_a_level_or_mask_with_an_unknown_property_is_refused_in_one_line():
    env = quiet_make("BabyAIPP/GoToRedBall-Easy-Train-v0")
    env.reset(seed=0)
    data = Level.from_env(env).to_dict()
    colour = next(iter(data["dynamics"]))
    data["dynamics"][colour] = ["windy"]
    with pytest.raises(InvalidChoiceError, match="floor property.*'windy'.*trap"):
        Level.from_dict(data)
    with pytest.raises(InvalidChoiceError, match="floor property.*'windy'"):
        property_mask(("trap", "windy"))
