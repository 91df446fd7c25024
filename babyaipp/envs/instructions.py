"""BabyAI instruction trees, walked in one place: node kinds, leaves, and the verifier's order.

Every instruction BabyAI's grammar makes is a leaf (go to / pick up / open / put next), an ``And``
of two leaves, or a ``Before``/``After`` of two such groups. Level capture (serialisation), the
batched verifier's slots, the oracle's subgoal queue and level generation (the objects the
instruction names) all read instructions through these functions, so they agree on the order in
which minigrid's verifier completes the leaves: ``Before(a, b)`` does ``a`` then ``b``,
``After(a, b)`` does ``b`` then ``a``, and ``And(a, b)`` both, in either order.
"""

from __future__ import annotations

from minigrid.envs.babyai.core.verifier import (
    AfterInstr,
    AndInstr,
    BeforeInstr,
    GoToInstr,
    Instr,
    ObjDesc,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
)

from babyaipp.errors import ConfigError

#: Leaf kinds and their minigrid classes.
LEAF_CLASSES: dict[str, type[Instr]] = {
    "goto": GoToInstr,
    "pickup": PickupInstr,
    "open": OpenInstr,
    "putnext": PutNextInstr,
}
#: Sequencing kinds and their minigrid classes.
SEQ_CLASSES: dict[str, type[Instr]] = {"and": AndInstr, "before": BeforeInstr, "after": AfterInstr}
LEAF_KINDS: tuple[str, ...] = tuple(LEAF_CLASSES)
SEQ_KINDS: tuple[str, ...] = tuple(SEQ_CLASSES)


def node_kind(instr: Instr) -> str:
    """The kind of one node (``"goto"`` ... ``"after"``), or a one-line error for anything else."""
    for kind, cls in SEQ_CLASSES.items():
        if type(instr) is cls:
            return kind
    for kind, cls in LEAF_CLASSES.items():
        if isinstance(instr, cls):
            return kind
    raise ConfigError(
        f"unsupported instruction of type {type(instr).__name__}; valid kinds: {', '.join(LEAF_KINDS + SEQ_KINDS)}"
    )


def descriptions(leaf: Instr) -> tuple[ObjDesc, ...]:
    """The object descriptions a leaf names: ``(desc,)``, or ``(desc_move, desc_fixed)`` for put-next."""
    if node_kind(leaf) == "putnext":
        return (leaf.desc_move, leaf.desc_fixed)  # type: ignore[attr-defined]
    return (leaf.desc,)  # type: ignore[attr-defined]


def verification_groups(instr: Instr) -> list[list[Instr]]:
    """The leaves grouped as minigrid's verifier completes them: one group, or two in sequence.

    A group is a leaf or an ``And``'s two leaves; the second group (``Before``'s second part,
    ``After``'s first) is verified once the first is done.
    """

    def group(node: Instr) -> list[Instr]:
        kind = node_kind(node)
        if kind == "and":
            children = [node.instr_a, node.instr_b]  # type: ignore[attr-defined]
            if any(node_kind(child) in SEQ_CLASSES for child in children):
                raise ConfigError("sequenced instructions nest at most one level deep in BabyAI")
            return children
        if kind in SEQ_CLASSES:
            raise ConfigError("sequenced instructions nest at most one level deep in BabyAI")
        return [node]

    kind = node_kind(instr)
    if kind == "before":
        return [group(instr.instr_a), group(instr.instr_b)]  # type: ignore[attr-defined]
    if kind == "after":
        return [group(instr.instr_b), group(instr.instr_a)]  # type: ignore[attr-defined]
    return [group(instr)]


def leaves_in_order(instr: Instr) -> list[Instr]:
    """Every leaf, in the order the verifier can complete them (the oracle's subgoal order)."""
    return [leaf for group in verification_groups(instr) for leaf in group]
