"""AdaLabel's light-weight bi-directional auxiliary decoder (Wang et al., ACL 2021).

It gives the adaptive soft target its distribution over the non-target words, v (see
`coral_cli.objectives.adalabel_loss`): one transformer decoder layer that reads the encoder's
output (cross-attention) and the whole teacher-forced response, past *and* future, except the
token it predicts. With decoder inputs "[CLS] r_1 ... r_L", position t predicts r_{t+1}, which
is input t + 1: the self-attention mask blocks exactly that column (and the padding), so the
prediction of r_{t+1} sees r_<=t and r_>t+1. This is the authors' mask ('target' mask in
lemon234071/AdaLabel, onmt/decoders/transformer.py).

As in the authors' code, it shares the generator's token embeddings, has its own learned
positions, final layer norm and output projection (with bias), and is trained with the hard
target's cross-entropy, whose gradient also reaches the encoder and the shared embeddings.

It lives on the generator as the submodule `adalabel_aux` while training, so the optimizer,
gradient clipping, train/eval and DDP see it; checkpoints keep the plain BART files (which
generate, evaluate and chat load as for any other loss) and store it beside them in
`adalabel_aux.safetensors`. Its sizes follow the generator's config, so nothing else is saved.
Choice: the layer is torch's pre-norm `TransformerDecoderLayer` with GELU, not a copy of BART's
post-norm layer (the authors' OpenNMT layer is pre-norm too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from coral_cli.errors import AssetError
from coral_cli.generator.core.checkpoint import load_exactly

ATTR = "adalabel_aux"  # the submodule's name on the generator
PREFIX = ATTR + "."
AUX_FILE = "adalabel_aux.safetensors"


class AuxDecoder(nn.Module):
    """Logits (B, T, V) for every response position from the response minus that position's target."""

    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float, max_positions: int,
                 vocab_size: int) -> None:
        super().__init__()
        self.positions = nn.Embedding(max_positions, d_model)
        self.layer = nn.TransformerDecoderLayer(d_model, heads, ffn_dim, dropout, activation="gelu",
                                                batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)

    def forward(self, embeds: torch.Tensor, pad: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """embeds (B, T, C): the decoder inputs' token embeddings; pad (B, T) True at padding;
        memory (B, S, C): the encoder's output; memory_pad (B, S) True at padding -> logits
        (B, T, V), or (N, V) at the N positions where the mask `rows` (B, T) is True."""
        t = embeds.shape[1]
        x = embeds + self.positions(torch.arange(t, device=embeds.device))[None]
        h = self.layer(x, memory, tgt_mask=target_mask(t, embeds.device), tgt_key_padding_mask=pad,
                       memory_key_padding_mask=memory_pad)
        return self.out(self.norm(h if rows is None else h[rows]))


def target_mask(t: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(T, T) True where query i may not look: key i + 1, the token position i predicts."""
    i = torch.arange(t, device=device)
    return i[None, :] == i[:, None] + 1


def attach_aux_decoder(model: Any, init: str | Path | None = None) -> AuxDecoder:
    """Give a BART generator a freshly initialised auxiliary decoder (on its device), or its
    checkpoint's one when `init` holds `adalabel_aux.safetensors`; returns it."""
    c = model.config
    aux = AuxDecoder(c.d_model, c.decoder_attention_heads, c.decoder_ffn_dim, c.dropout,
                     c.max_position_embeddings, c.vocab_size)
    model.add_module(ATTR, aux.to(next(model.parameters()).device))
    if init and (Path(init) / AUX_FILE).is_file():
        load_aux_weights(model, init)
    return aux


def aux_decoder(model: Any) -> AuxDecoder | None:
    """The auxiliary decoder of a generator (or of its DDP wrapper), None if it has none."""
    return getattr(getattr(model, "module", model), ATTR, None)


def aux_logits(model: Any, decoder_input_ids: torch.Tensor, pad_id: int, encoder_out: torch.Tensor,
               attention_mask: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Auxiliary logits for teacher-forced decoder inputs (B, T), given the encoder's output
    (B, S, C) for the prompts and their mask (B, S): (B, T, V), or (N, V) at the `rows` (B, T)."""
    inner = getattr(model, "module", model)
    embeds = inner.get_decoder().embed_tokens(decoder_input_ids)  # shared, BART's scaling included
    pad = decoder_input_ids.eq(pad_id)
    return aux_decoder(inner)(embeds, pad, encoder_out, ~attention_mask.bool(), rows)


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A generator's state dict -> (the plain BART tensors, the auxiliary decoder's, unprefixed)."""
    main = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    aux = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    return main, aux


def save_aux_weights(model: Any, folder: str | Path) -> None:
    """Write the auxiliary decoder (if the model has one) to `folder/adalabel_aux.safetensors`."""
    from safetensors.torch import save_file

    aux = aux_decoder(model)
    if aux is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in aux.state_dict().items()},
                  str(Path(folder) / AUX_FILE), metadata={"format": "coral-adalabel-aux"})


def load_aux_weights(model: Any, folder: str | Path) -> None:
    """Load `folder/adalabel_aux.safetensors` into the model's auxiliary decoder; a missing,
    damaged, misshapen or non-finite file is an `AssetError`."""
    folder, aux = Path(folder), aux_decoder(model)
    path = folder / AUX_FILE
    if not path.is_file():
        raise AssetError(f"{folder} has no {AUX_FILE} (the AdaLabel auxiliary decoder)",
                         "resume an AdaLabel run from its own checkpoint, or start it again without --resume")
    load_exactly(aux, path, what="this model's auxiliary decoder")
