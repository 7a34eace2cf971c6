"""log P(r_t | r_<t, c) of target tokens under the generator: the quantity both the CE loss and
the CORAL loss (paper eq. 2: -R3 * sum_t log P) are built from."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from coral_cli.generator.batch import IGNORE, Seq2SeqBatch


def token_logprobs(model: PreTrainedModel, batch: Seq2SeqBatch) -> torch.Tensor:
    """(B, T) log-probabilities of each label token; 0 where the label is IGNORE."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   decoder_input_ids=batch.decoder_input_ids, use_cache=False).logits  # (B, T, V)
    valid = batch.labels.ne(IGNORE)
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, batch.labels.clamp(min=0)[..., None]).squeeze(-1)
    return logp * valid

