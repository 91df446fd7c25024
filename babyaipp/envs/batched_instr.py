"""BabyAI's instruction verifier for N episodes, as minigrid's ``verifier.py`` does it.

Every instruction of the registered families is a leaf (go to / pick up / open / put next), an
``And`` of two leaves, or a ``Before``/``After`` of two such groups. It is flattened into four leaf
slots: slots 0-1 the group verified first, slots 2-3 the group verified once the first is done
(``After`` swaps its parts). minigrid's semantics carried over exactly:

* a leaf of a group is verified every step until it succeeds, then never again (``And`` keeps
  ``a_done``/``b_done``; ``Before``/``After`` stop calling a finished part);
* the second group is verified in the very step the first completes (``self.verify(action)``
  recursion) and every step after;
* ``preCarrying`` of pick-up and put-next leaves is what was carried the last time *that leaf* was
  verified;
* go-to targets and put-next's fixed objects are positions snapshotted at reset and refreshed only
  on a ``drop`` action (``update_objs_poss``), which keeps only objects still on the grid.
"""

from __future__ import annotations

import torch

from babyaipp.envs.batched_state import (
    DOOR_OPEN,
    ID_MASK,
    ID_SHIFT,
    K_GOTO,
    K_OPEN,
    K_PICKUP,
    K_PUTNEXT,
    STATE_SHIFT,
    T_DOOR,
    TYPE_BITS,
)
from babyaipp.envs.physics import DROP, PICKUP, TOGGLE


def refreshed_positions(cells: torch.Tensor, obj_pos: torch.Tensor) -> torch.Tensor:
    """Current positions of the objects still on the grid (-1 for carried or removed ones)."""
    ids = torch.arange(obj_pos.shape[1], device=obj_pos.device)
    on_grid = (cells.gather(1, obj_pos.clamp(min=0)) >> ID_SHIFT) & ID_MASK == ids
    return torch.where(on_grid & (obj_pos >= 0) & (ids > 0), obj_pos, -1)


def leaf_results(
    state: dict[str, torch.Tensor], action: torch.Tensor, front: torch.Tensor, padded_height: int
) -> torch.Tensor:
    """``(N, 4)`` bool: would each slot's leaf report success if verified now (after the move)."""
    cells, snap, kind = state["cells"], state["snap"], state["kind"]
    track_a, track_b, pre = state["track_a"], state["track_b"], state["pre"]
    carried_id = (state["carried"] >> ID_SHIFT) & ID_MASK
    front_word = cells.gather(1, front.unsqueeze(1)).squeeze(1)
    front_id = (front_word >> ID_SHIFT) & ID_MASK

    at_front = (snap == front.unsqueeze(1)).unsqueeze(1)  # (N, 1, K)
    goto = (track_a & at_front).any(-1)

    pickup = (
        (action == PICKUP).unsqueeze(1)
        & (pre == 0)
        & track_a.gather(2, carried_id.view(-1, 1, 1).expand(-1, 4, 1)).squeeze(2)
    )

    open_door = ((front_word & TYPE_BITS) == T_DOOR) & (((front_word >> STATE_SHIFT) & 3) == DOOR_OPEN)
    tracked_front = track_a.gather(2, front_id.view(-1, 1, 1).expand(-1, 4, 1)).squeeze(2)
    opened = (action == TOGGLE).unsqueeze(1) & tracked_front & open_door.unsqueeze(1) & (front_id > 0).unsqueeze(1)

    moved_pos = state["obj_pos"].gather(1, pre)  # (N, 4): cur_pos of what the leaf saw carried
    diff = (snap.unsqueeze(1) - moved_pos.unsqueeze(2)).abs()  # (N, 4, K)
    adjacent = ((diff == 1) | (diff == padded_height)) & (snap >= 0).unsqueeze(1) & (moved_pos >= 0).unsqueeze(2)
    put = (action == DROP).unsqueeze(1) & (pre > 0) & track_a.gather(2, pre.unsqueeze(2)).squeeze(2)
    put &= (adjacent & track_b).any(-1)

    return torch.where(
        kind == K_GOTO,
        goto,
        torch.where(kind == K_PICKUP, pickup, torch.where(kind == K_OPEN, opened, (kind == K_PUTNEXT) & put)),
    )


def verify(state: dict[str, torch.Tensor], action: torch.Tensor, front: torch.Tensor, padded_height: int):
    """One verifier step of every episode: ``(success, done_slots, pre)`` after it.

    The caller keeps the new ``done_slots``/``pre`` only where the step was verified (minigrid never
    verifies the step that enters a trap).
    """
    exists = state["kind"] > 0
    done = state["done_slots"]
    result = leaf_results(state, action, front, padded_height)
    first_eval = exists[:, :2] & ~done[:, :2]
    first_done = (done[:, :2] | first_eval & result[:, :2] | ~exists[:, :2]).all(1)
    second_eval = exists[:, 2:] & ~done[:, 2:] & first_done.unsqueeze(1)
    evaluated = torch.cat([first_eval, second_eval], 1)
    new_done = done | evaluated & result
    success = (new_done | ~exists).all(1)
    carried_id = (state["carried"] >> ID_SHIFT) & ID_MASK
    return success, new_done, torch.where(evaluated, carried_id.unsqueeze(1), state["pre"])
