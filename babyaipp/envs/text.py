"""The description of an episode's dynamics, its four text modes, and the closed token vocabulary.

``description`` has one sentence per colour on the floor, from a fixed template per property
("green floors are traps. blue floors are slippery."), in an order shuffled by ``np_random``.
The vocabulary is a written-out, append-only list of words (BabyAI's instruction grammar, the
templates, the colours and the property words), never built from observed data, so token ids are
the same on every machine and every run, and a word added later takes the next id without moving
any other (a saved model keeps reading the words it was trained on).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
from minigrid.core.constants import COLOR_NAMES

from babyaipp.envs.dynamics import PROPERTIES
from babyaipp.envs.properties import TILE_PROPERTIES

TEXT_MODES: tuple[str, ...] = ("full", "partial", "lorem", "none")

#: The word (or words) a sentence uses for each property: "<colour> floors are <w1> and <w2>."
PROPERTY_WORDS: dict[str, str] = {p.name: p.words for p in TILE_PROPERTIES}
#: Words of the ``lorem`` control: same sentence shape, no information about the dynamics.
LOREM_WORDS: tuple[str, ...] = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")

#: BabyAI's instruction grammar (minigrid.envs.babyai.core.verifier surface forms).
MISSION_WORDS: tuple[str, ...] = (
    "go",
    "to",
    "the",
    "a",
    "pick",
    "up",
    "put",
    "next",
    "open",
    "and",
    "then",
    "after",
    "you",
    "in",
    "front",
    "of",
    "behind",
    "on",
    "your",
    "left",
    "right",
    "object",
    "box",
    "ball",
    "key",
    "door",
)
DESCRIPTION_WORDS: tuple[str, ...] = ("floors", "are")

PAD, UNK = "<pad>", "<unk>"
_WORD_RE = re.compile(r"[a-z]+")

#: Every word with a fixed token id, id = position. Append only: never reorder, rename or remove a
#: word (a trained model's embedding rows are indexed by these ids). minigrid's colour names are
#: written out rather than imported so that a minigrid release cannot move them.
WORDS: tuple[str, ...] = (
    PAD,
    UNK,
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


def build_vocabulary(words: tuple[str, ...], new_words: tuple[str, ...]) -> tuple[str, ...]:
    """``words`` followed by the words of ``new_words`` it lacks, in their order (each once).

    A property declared with a word of its own (or a grammar word added later) thus gets the next
    free id, and no existing id moves.
    """
    out = list(words)
    for phrase in new_words:
        out.extend(w for w in _WORD_RE.findall(phrase) if w not in out)
    return tuple(out)


#: Token id of every word; 0 is padding, 1 an unknown word (never produced by this package's text).
#: Words the text can produce that :data:`WORDS` lacks (a new property's word) follow it.
VOCABULARY: tuple[str, ...] = build_vocabulary(
    WORDS, (*MISSION_WORDS, *DESCRIPTION_WORDS, *COLOR_NAMES, *LOREM_WORDS, *PROPERTY_WORDS.values())
)
WORD_TO_ID: dict[str, int] = {w: i for i, w in enumerate(VOCABULARY)}


def sentence(colour: str, properties: tuple[str, ...]) -> str:
    words = " and ".join(PROPERTY_WORDS[p] for p in sorted(properties, key=PROPERTIES.index))
    return f"{colour} floors are {words}."


def lorem_sentence(rng: np.random.Generator, n_properties: int) -> str:
    """A sentence shaped like :func:`sentence` whose content words carry no information."""
    colour, *props = (LOREM_WORDS[int(i)] for i in rng.integers(len(LOREM_WORDS), size=1 + n_properties))
    return f"{colour} floors are {' and '.join(props)}."


def describe(rng: np.random.Generator, floor_mapping: Mapping[str, tuple[str, ...]], mode: str) -> str:
    """The description of the colours on the floor in the given text mode.

    ``full``: every sentence; ``partial``: a random non-empty subset; ``lorem``: as many
    uninformative sentences of the same shape; ``none``: the empty string.
    """
    colours = list(floor_mapping)
    if mode == "none" or not colours:
        return ""
    order = [colours[int(i)] for i in rng.permutation(len(colours))]
    if mode == "partial":
        keep = int(rng.integers(1, len(order) + 1))
        order = order[:keep]
    if mode == "lorem":
        return " ".join(lorem_sentence(rng, len(floor_mapping[c])) for c in order)
    return " ".join(sentence(c, floor_mapping[c]) for c in order)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in text.split(".") if s.strip()]


def tokenize(text: str, length: int) -> np.ndarray:
    """Word ids of ``text`` padded (or cut) to ``length``."""
    ids = [WORD_TO_ID.get(w, 1) for w in _WORD_RE.findall(text.lower())][:length]
    out = np.zeros(length, dtype=np.int64)
    out[: len(ids)] = ids
    return out


def tokenize_description(text: str, max_sentences: int, sentence_length: int) -> np.ndarray:
    """One row of word ids per sentence, padded with all-zero rows to ``max_sentences``."""
    out = np.zeros((max_sentences, sentence_length), dtype=np.int64)
    for row, s in enumerate(split_sentences(text)[:max_sentences]):
        out[row] = tokenize(s, sentence_length)
    return out


def decode(ids: np.ndarray) -> str:
    """Inverse of :func:`tokenize` (padding dropped), for debugging and tests."""
    return " ".join(VOCABULARY[int(i)] for i in np.asarray(ids).ravel() if i != 0)
