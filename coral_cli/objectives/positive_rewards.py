"""f_R of each training pair's ground truth, kept after its first scoring (paper eq. 3's r+ term).

The reward model is frozen and scores in eval mode, so f_R(c, r+) of a training pair is the same
number every epoch. From the second epoch on, the r+ candidates (a share p+ of all, 0.8 in the
paper's recipes) then cost no reward pass: `CoralObjective` scores the other candidates only.
The selection happens on the host (which rows are r+, which pairs are known), so it adds no
read-back. The values travel in the run's checkpoints, so a resumed run reads what an
uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from coral_cli.generator.core.batch import Responses

POSITIVE = 0  # CandidateSet.kind of the ground truth


class PositiveRewardCache:
    """f_R per training pair (`values`, on the device) and whether it is known yet (`known`, host)."""

    def __init__(self, pairs: int, device: torch.device) -> None:
        self.values = torch.zeros(pairs, dtype=torch.float32, device=device)
        self.known = np.zeros(pairs, dtype=bool)

    def rewards(self, examples: np.ndarray, rows: np.ndarray, kinds: np.ndarray, cand: Responses,
                score: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """f_R (N,) of a candidate set: known r+ from the cache, the rest from `score(index)` (the
        reward on those candidates, `index` a device LongTensor of their positions); new r+ scores
        are kept. `examples` gives each batch row's training-pair index, `rows`/`kinds` each
        candidate's row and kind."""
        pair = np.where(kinds == POSITIVE, examples[rows], -1)
        hit = (pair >= 0) & self.known[np.maximum(pair, 0)]
        device = cand.ids.device
        f = torch.empty(len(rows), dtype=torch.float32, device=device)
        miss = torch.as_tensor(np.flatnonzero(~hit), device=device)
        if len(miss):
            f[miss] = score(miss)
        if hit.any():
            f[torch.as_tensor(np.flatnonzero(hit), device=device)] = self.values[torch.as_tensor(pair[hit], device=device)]
        new = (pair >= 0) & ~hit
        if new.any():
            self.values[torch.as_tensor(pair[new], device=device)] = f[torch.as_tensor(np.flatnonzero(new), device=device)]
            self.known[pair[new]] = True
        return f

    def tensors(self) -> dict[str, torch.Tensor]:
        """For the checkpoint's extra state."""
        return {"objective.positive_f": self.values.detach().cpu(),
                "objective.positive_known": torch.from_numpy(self.known.copy())}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take a checkpoint's values when it has them for as many pairs (else start empty)."""
        values, known = tensors.get("objective.positive_f"), tensors.get("objective.positive_known")
        if values is None or known is None or len(values) != len(self.values):
            return
        self.values = values.to(self.values.device, torch.float32)
        self.known = known.numpy().astype(bool).copy()
