"""The AdaLabel baseline (Wang et al., ACL 2021; CORAL paper §4.3, Table 1): the paper's BART
trained on the ground truth against an adaptive soft target instead of the one-hot one.

One step: teacher-force the ground truth through the generator -> its logits and the encoder's
output -> the bi-directional auxiliary decoder's logits on the same response
(`coral_cli.generator.bart.aux_decoder`) -> `adalabel_loss` (the soft target q' = eps * v +
(1 - eps) * q and KL(q' || p), plus the auxiliary decoder's cross-entropy).

Building the objective gives the generator its auxiliary decoder (a submodule, so the trainer
optimises, clips, saves and resumes it with the generator); generation never uses it.
"""

from __future__ import annotations

from typing import Any

import torch

from coral_cli.config.schema import AdaLabelConfig
from coral_cli.errors import ConfigError
from coral_cli.generator.bart.aux_decoder import attach_aux_decoder, aux_decoder, aux_logits
from coral_cli.generator.core.batch import IGNORE, TrainBatch
from coral_cli.generator.core.policy import Policy, Seq2SeqPolicy
from coral_cli.generator.core.scored_head import head_only_at
from coral_cli.objectives.adalabel_loss import adalabel_loss


class AdaLabel:
    """L = (1/N) sum_t [KL(q'_t || p_t) + CE(aux_t, y_t)] over the ground truth's N target tokens."""

    def __init__(self, policy: Policy, cfg: AdaLabelConfig, init: str = "") -> None:
        """Attach the auxiliary decoder to `policy.model` (from `init`'s checkpoint if it has one)."""
        if type(policy) is not Seq2SeqPolicy:
            raise ConfigError("--loss adalabel trains the paper's encoder-decoder (it adds an auxiliary "
                              "decoder to its BART), not a pretrained LM",
                              "drop --pretrained / generator.pretrained, or use --loss ce")
        self.policy, self.cfg = policy, cfg
        if aux_decoder(policy.model) is None:
            attach_aux_decoder(policy.model, init or None)

    def __call__(self, model: Any, train_batch: TrainBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        b = train_batch.teacher
        keep = b.labels.ne(IGNORE)  # (B, T): the response tokens and the end token
        with head_only_at(model, keep) as restricted:  # the LM head skips padding
            out = model(input_ids=b.input_ids, attention_mask=b.attention_mask,
                        decoder_input_ids=b.decoder_input_ids, use_cache=False)
        logits = out.logits if restricted else out.logits[keep]  # (N, V)
        aux = aux_logits(model, b.decoder_input_ids, self.policy.pad_id, out.encoder_last_hidden_state,
                         b.attention_mask, keep)  # (N, V)
        loss, stats = adalabel_loss(logits, aux, b.labels[keep], self.cfg, self.policy.pad_id)
        return loss, {**stats, "tokens": b.tokens}
