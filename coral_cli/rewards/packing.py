"""Turn right-padded id tensors into encoder inputs on the device, without Python loops.

Contexts and responses travel as separate (B, T) id tensors with boolean masks; a
cross-encoder needs "[CLS] c [SEP] r [SEP]" with the context cut from the left to fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu",
            multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad lists of ids -> (ids (B, T) long, mask (B, T) bool); T >= 1, rounded up to a
    multiple of `multiple` (a few static widths instead of one per batch)."""
    sizes = [len(s) for s in seqs]
    lengths = torch.tensor(sizes, dtype=torch.long)
    width = max([1, *sizes])  # from the lists, not the tensor: no read back in a training step
    width = -(-width // multiple) * multiple
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    if torch.device(device).type == "cuda":  # from pinned memory the copies really run asynchronously
        ids, lengths = ids.pin_memory(), lengths.pin_memory()
    ids = ids.to(device, non_blocking=True)
    return ids, lengths_mask(lengths.to(device, non_blocking=True), width)


def lengths_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B,) lengths -> (B, width) bool mask of the first `length` positions."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def trims_padding(device: torch.device) -> bool:
    """Whether to cut padding to lengths read back from the tensors: on a CPU a read back costs
    nothing and every padded column is work; an accelerator keeps static shapes, sync-free."""
    return device.type == "cpu"


def trim_on_cpu(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) right-padded -> cut after the longest row where `trims_padding` (a sampled candidate
    set is as wide as the decoding budget); unchanged on an accelerator."""
    if not trims_padding(ids.device) or not ids.shape[1]:
        return ids, mask
    width = max(1, int(mask.sum(1).max()))
    return ids[:, :width], mask[:, :width]


def wrap_single(ids: torch.Tensor, mask: torch.Tensor, cls_id: int, sep_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) right-padded -> "[CLS] x [SEP]" (B, T + 2) and its mask."""
    b, t = ids.shape
    lengths = mask.sum(1)
    out = torch.full((b, t + 2), pad_id, dtype=ids.dtype, device=ids.device)
    out[:, 0] = cls_id
    out[:, 1 : t + 1] = torch.where(mask, ids, torch.full_like(ids, pad_id))
    out.scatter_(1, (lengths + 1)[:, None], sep_id)
    return out, lengths_mask(lengths + 2, t + 2)


def pack_cross_pair(
    ctx: torch.Tensor, ctx_mask: torch.Tensor, resp: torch.Tensor, resp_mask: torch.Tensor,
    cls_id: int, sep_id: int, pad_id: int, max_length: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """"[CLS] c [SEP] r [SEP]" -> (ids, token_type_ids, mask), each (B, L) with L <= max_length.

    The response is kept whole (up to max_length - 3); the context loses its oldest tokens.
    """
    b, tc = ctx.shape
    tr = resp.shape[1]
    lr = resp_mask.sum(1).clamp(max=max_length - 3)
    lc_full = ctx_mask.sum(1)
    lc = torch.minimum(lc_full, max_length - 3 - lr)
    drop = lc_full - lc  # oldest context tokens that do not fit
    total = lc + lr + 3
    width = int(min(max_length, tc + tr + 3))  # static on an accelerator: no read back
    if trims_padding(ctx.device) and b:  # on a CPU the longest pair
        width = int(total.max())
    out = torch.full((b, width + 1), pad_id, dtype=ctx.dtype, device=ctx.device)  # last column: sink
    sink = width
    j = torch.arange(tc, device=ctx.device)[None, :]
    keep_c = ctx_mask & (j >= drop[:, None])
    pos_c = torch.where(keep_c, 1 + j - drop[:, None], torch.full_like(j, sink))
    out.scatter_(1, pos_c, torch.where(keep_c, ctx, torch.full_like(ctx, pad_id)))
    k = torch.arange(tr, device=ctx.device)[None, :]
    keep_r = resp_mask & (k < lr[:, None])
    pos_r = torch.where(keep_r, 2 + lc[:, None] + k, torch.full_like(k, sink))
    out.scatter_(1, pos_r, torch.where(keep_r, resp, torch.full_like(resp, pad_id)))
    out[:, 0] = cls_id
    out.scatter_(1, (1 + lc)[:, None], sep_id)
    out.scatter_(1, (2 + lc + lr)[:, None], sep_id)
    out = out[:, :width]
    mask = lengths_mask(total, width)
    types = (torch.arange(width, device=ctx.device)[None, :] >= (2 + lc)[:, None]) & mask
    return out, types.long(), mask
