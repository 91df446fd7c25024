"""The description of an episode's dynamics, its four text modes, and the closed token vocabulary.

``description`` has one sentence per colour on the floor, from a fixed template per property
("green floors are traps. blue floors are slippery."), in an order shuffled by ``np_random``.
The vocabulary is built from the templates and BabyAI's instruction grammar, never from observed
data, so token ids are the same on every machine and every run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
from minigrid.core.constants import COLOR_NAMES

from babyaipp.envs.dynamics import PROPERTIES

TEXT_MODES: tuple[str, ...] = ("full", "partial", "lorem", "none")

#: The word (or words) a sentence uses for each property: "<colour> floors are <w1> and <w2>."
PROPERTY_WORDS: dict[str, str] = {
    "trap": "traps",
    "slippery": "slippery",
    "sticky": "sticky",
    "fliplr": "mirrored",
    "flipud": "reversed",
    "magic": "magic",
}
#: Words of the ``lorem`` control: same sentence shape, no information about the dynamics.
LOREM_WORDS: tuple[str, ...] = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")

#: BabyAI's instruction grammar (minigrid.envs.babyai.core.verifier surface forms).
MISSION_WORDS: tuple[str, ...] = (
    "go", "to", "the", "a", "pick", "up", "put", "next", "open", "and", "then", "after", "you",
    "in", "front", "of", "behind", "on", "your", "left", "right",
    "object", "box", "ball", "key", "door",
)  # fmt: skip
DESCRIPTION_WORDS: tuple[str, ...] = ("floors", "are")

PAD, UNK = "<pad>", "<unk>"


def _build_vocabulary() -> tuple[str, ...]:
    words = set(MISSION_WORDS) | set(DESCRIPTION_WORDS) | set(PROPERTY_WORDS.values())
    words |= set(LOREM_WORDS) | set(COLOR_NAMES)
    return (PAD, UNK, *sorted(words))


#: Token id of every word; 0 is padding, 1 an unknown word (never produced by this package's text).
VOCABULARY: tuple[str, ...] = _build_vocabulary()
WORD_TO_ID: dict[str, int] = {w: i for i, w in enumerate(VOCABULARY)}
_WORD_RE = re.compile(r"[a-z]+")


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
