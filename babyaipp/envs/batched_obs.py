"""The 7x7 egocentric observation of N episodes: one gather, seven row lookups, one decode lookup.

minigrid's ``Grid.process_vis`` sweeps the rotated view from the agent's row (j = 6) up to j = 0;
within a row, which cells end up visible, and which cells of the row above it opens, depend only
on the row's incoming visibility bits and its see-behind bits. So a table over those 14 bits
(``2**14`` entries) replaces the sweep exactly, and the whole mask costs seven lookups.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from babyaipp.envs.batched_state import CODE_MASK, FLOOR_FIELD, ID_SHIFT, PAD, VIEW
from babyaipp.envs.view import egocentric_offsets

AGENT_CELL = (VIEW // 2) * VIEW + (VIEW - 1)  # flat index of view cell (i=3, j=6)


@cache
def row_visibility_table() -> np.ndarray:
    """``table[in_bits | see_behind << 7] = row_mask | up_bits << 7`` (one row of ``process_vis``)."""
    out = np.zeros(1 << (2 * VIEW), dtype=np.int64)
    for index in range(1 << (2 * VIEW)):
        mask = [bool(index >> i & 1) for i in range(VIEW)]
        see = [bool(index >> (VIEW + i) & 1) for i in range(VIEW)]
        up = [False] * VIEW
        for i in range(VIEW - 1):
            if mask[i] and see[i]:
                mask[i + 1] = up[i + 1] = up[i] = True
        for i in reversed(range(1, VIEW)):
            if mask[i] and see[i]:
                mask[i - 1] = up[i - 1] = up[i] = True
        out[index] = sum(1 << i for i in range(VIEW) if mask[i]) | sum(1 << (VIEW + i) for i in range(VIEW) if up[i])
    return out


def view_offsets(padded_height: int) -> np.ndarray:
    """``(4, 49)`` flat offsets from the agent's cell of every view cell ``i * 7 + j``, per direction."""
    dx, dy = egocentric_offsets(VIEW)
    return (dx * padded_height + dy).reshape(4, VIEW * VIEW)


class Observer:
    """Holds the lookup tables on the engine's device and builds image observations."""

    def __init__(self, padded_height: int, see_behind: np.ndarray, decode: np.ndarray, device: torch.device):
        self.offsets = torch.as_tensor(view_offsets(padded_height), device=device)
        self.row_table = torch.as_tensor(row_visibility_table(), device=device)
        self.see_behind = torch.as_tensor(see_behind, device=device)
        self.decode = torch.as_tensor(decode, device=device)
        self.bit_weights = torch.as_tensor(1 << (VIEW + np.arange(VIEW)), device=device).view(1, VIEW, 1)
        self.bit_index = torch.arange(VIEW, device=device).view(1, VIEW, 1)
        assert PAD >= VIEW - 1

    def image(self, cells: torch.Tensor, agent_pos: torch.Tensor, agent_dir: torch.Tensor, carried: torch.Tensor):
        """``(N, 7, 7, 3)`` uint8 images, exactly minigrid's ``gen_obs`` plus the floor overlay."""
        n = cells.shape[0]
        index = agent_pos.unsqueeze(1) + self.offsets[agent_dir]
        words = cells.gather(1, index)  # (N, 49) in view order i * 7 + j
        see = self.see_behind[words & CODE_MASK].view(n, VIEW, VIEW).long()
        see_bits = (see * self.bit_weights).sum(1)  # (N, 7): row j's see-behind bits at 7..13
        incoming = torch.full((n,), 1 << (VIEW // 2), dtype=torch.long, device=cells.device)
        rows = []
        for j in reversed(range(VIEW)):
            out = self.row_table[incoming | see_bits[:, j]]
            rows.append(out & ((1 << VIEW) - 1))
            incoming = out >> VIEW
        row_masks = torch.stack(rows[::-1], 1)  # (N, 7) indexed by j
        visible = (row_masks.unsqueeze(1) >> self.bit_index) & 1  # (N, 7 [i], 7 [j])
        index = (words & (CODE_MASK | FLOOR_FIELD)) | (visible.reshape(n, VIEW * VIEW) << ID_SHIFT)
        index[:, AGENT_CELL] = (carried & CODE_MASK) | FLOOR_FIELD | (1 << ID_SHIFT)
        return self.decode[index].view(n, VIEW, VIEW, 3)
