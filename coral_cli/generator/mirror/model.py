"""Mirror (Li, Kiseleva and de Rijke, SIGIR 2021, "Improving Response Quality with Backward
Reasoning in Open-domain Dialogue Systems"): the CVAE (Shen et al. 2017; Zhao et al. 2017) that the
CORAL paper's Table 1 compares against, an LSTM encoder-decoder model.

Notation (Mirror's): c = the dialogue context before the query, x = the query (the pre-final
utterance, the context's last turn), y = the response, z = a latent variable. Mirror maximises the
ELBO of the joint log p(x, y | c):

    log p(x, y | c) >= E_q(z|c,x,y) [ log p(x, y | c, z) ] - KL( q(z | c, x, y) || p(z | c) )

with log p(x, y | c, z) taken as the mean of its two factorisations, forward and backward:

    1/2 [ log p(y | c, x, z) + log p(x | c, z) ] + 1/2 [ log p(x | c, y, z) + log p(y | c, z) ]

so four decoders are trained, and p(x | c, y, z) is the backward-reasoning step (infer the query
from the response). The loss itself is `coral_cli.objectives.mirror`. At decoding time only the
forward decoder p(y | c, x, z) runs, with z drawn from the prior p(z | c).

Only the Mirror paper's abstract and introduction were available to us, so its equations are
written out above rather than cited by number; where the paper and the authors' code could differ,
this follows the code. Architecture, as the authors' code (github.com/cszmli/mirror-sigir, onmt/Models.py `MirrorModel`)
builds it: one embedding table shared by everything; an utterance LSTM encoder shared by x and y
and a separate context LSTM encoder; each encoder's final (h, c) states -> a ReLU layer (the
authors' `EncoderStateFix`; here one layer over [h; c], theirs one per half); recognition network
q(z | c, x, y) and prior network p(z | c), each an MLP to (mu, log sigma^2) (`EncoderState2Z`);
decoder initial states from [c; x], [c; y] and c through ReLU layers (`BuildDecoderState`, the
c one shared by both c-only decoders); each decoder an LSTM with Luong "general" attention and
input feeding whose input at every step is [embedding; previous attentional output; z]
(`Input_Z_FeedRNNDecoder`), attending over x (forward), y (backward) or c (the c-only ones), with
its own output layer. Our choices: c is every turn before x (within the context budget; the
authors keep one utterance), an empty c or x is read as one padding token, z is reparameterised
with N(0, I) noise (the authors' code draws uniform noise, `torch.rand`), and the recurrent parts
run in fp32 even under bf16 autocast.

One more difference, kept on purpose: x and y share one summary layer (the ReLU layer of the shared
utterance encoder, `self.utterance.summary`), where the authors have two, `encoder_state_fix_x` and
`encoder_state_fix_y`, over the outputs of the one LSTM they too share. x and y are the same kind of
input (one utterance, read by the same LSTM), so one layer serves both with fewer parameters; and the
layer's weights are part of every saved Mirror checkpoint under `utterance.summary.*`, so splitting it
now would make those checkpoints unloadable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from coral_cli.config.schema import MirrorConfig

INIT_RANGE = 0.08  # the authors' -param_init: every weight ~ U(-0.08, 0.08)


@dataclass
class Segment:
    """Padded token ids (B, S) of one utterance slot (c, x or y) and their mask (B, S)."""

    ids: torch.Tensor
    mask: torch.Tensor


@dataclass
class DecoderState:
    """One decoder's recurrent state for N rows; `select` reorders rows (beam search)."""

    h: torch.Tensor  # (layers, N, H)
    c: torch.Tensor  # (layers, N, H)
    feed: torch.Tensor  # (N, H) the previous step's attentional output (input feeding)
    memory: torch.Tensor  # (N, S, H) encoder outputs attended over
    memory_mask: torch.Tensor  # (N, S)
    z: torch.Tensor  # (N, Z)

    def select(self, index: torch.Tensor) -> DecoderState:
        return DecoderState(self.h[:, index], self.c[:, index], self.feed[index], self.memory[index],
                            self.memory_mask[index], self.z[index])


@dataclass
class MirrorOutput:
    """Teacher-forced logits of the four decoders and both Gaussians over z. Logits are (B, T, V),
    or (M, V) at the M scored positions when `forward` was given where to score."""

    y_given_cxz: torch.Tensor  # (B, Ty, V) forward generation p(y | c, x, z)
    x_given_cyz: torch.Tensor  # (B, Tx, V) backward reasoning p(x | c, y, z)
    x_given_cz: torch.Tensor  # (B, Tx, V) p(x | c, z)
    y_given_cz: torch.Tensor  # (B, Ty, V) p(y | c, z)
    mu_q: torch.Tensor  # (B, Z) recognition network q(z | c, x, y)
    logvar_q: torch.Tensor
    mu_p: torch.Tensor  # (B, Z) prior network p(z | c)
    logvar_p: torch.Tensor


class Encoder(nn.Module):
    """Embedded tokens (B, S, E) -> (outputs (B, S, H) to attend over, summary (B, H) of the final states)."""

    def __init__(self, emb: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(emb, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.summary = nn.Sequential(nn.Linear(2 * layers * hidden, hidden), nn.ReLU())

    def forward(self, emb: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, c) = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.shape[1])
        final = torch.cat([h, c], 0).transpose(0, 1).reshape(emb.shape[0], -1)  # (B, 2 * layers * H)
        return out, self.summary(final)


class Gaussian(nn.Module):
    """An MLP -> (mu, log sigma^2), each (B, Z): a diagonal Gaussian over z."""

    def __init__(self, inputs: int, z_dim: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(inputs, 2 * z_dim), nn.ReLU())
        self.mu, self.logvar = nn.Linear(2 * z_dim, z_dim), nn.Linear(2 * z_dim, z_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.hidden(h)
        return self.mu(a), self.logvar(a)


class InitState(nn.Module):
    """Encoder summaries (B, D) -> a decoder's initial (h, c), each (layers, B, H)."""

    def __init__(self, inputs: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.layers, self.hidden_size = layers, hidden
        self.h = nn.Sequential(nn.Linear(inputs, layers * hidden), nn.ReLU())
        self.c = nn.Sequential(nn.Linear(inputs, layers * hidden), nn.ReLU())

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (s.shape[0], self.layers, self.hidden_size)
        h, c = (f(s).view(shape).transpose(0, 1).contiguous() for f in (self.h, self.c))
        return h, c


class Decoder(nn.Module):
    """LSTM + Luong "general" attention + input feeding, z in every step's input:
    input_t = [emb(w_{t-1}); feed_{t-1}; z], feed_t = tanh(W_o [attn_t; h_t]), logits_t = W feed_t."""

    def __init__(self, emb: int, hidden: int, layers: int, z_dim: int, vocab: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(emb + hidden + z_dim, hidden, layers, batch_first=True,
                           dropout=dropout if layers > 1 else 0.0)
        self.attn_in = nn.Linear(hidden, hidden, bias=False)
        self.attn_out = nn.Linear(2 * hidden, hidden, bias=False)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab)

    def _feed(self, emb_t: torch.Tensor, st: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        inp = torch.cat([emb_t, st.feed, st.z], -1)[:, None]  # (N, 1, E + H + Z)
        o, (h, c) = self.rnn(inp, (st.h, st.c))
        q = o[:, 0]  # (N, H)
        scores = torch.einsum("nh,nsh->ns", self.attn_in(q), st.memory)
        scores = scores.masked_fill(~st.memory_mask, float("-inf"))
        attn = torch.einsum("ns,nsh->nh", scores.softmax(-1), st.memory)
        feed = self.drop(torch.tanh(self.attn_out(torch.cat([attn, q], -1))))
        return feed, dataclasses.replace(st, h=h, c=c, feed=feed)

    def step(self, emb_t: torch.Tensor, st: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One token (N, E) -> (logits (N, V), the next state)."""
        feed, st = self._feed(emb_t, st)
        return self.out(feed), st

    def forward(self, emb: torch.Tensor, st: DecoderState, where: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: inputs (N, T, E) -> logits (N, T, V), or (M, V) at the True positions
        of `where` (N, T): the vocabulary projection, most of a step's work, skips padding."""
        feeds = []
        for t in range(emb.shape[1]):
            feed, st = self._feed(emb[:, t], st)
            feeds.append(feed)
        feeds = torch.stack(feeds, 1)
        return self.out(feeds if where is None else feeds[where])


class MirrorModel(nn.Module):
    """The four-decoder CVAE; `forward` is the training pass (z ~ q), `start`/`step` decode."""

    def __init__(self, cfg: MirrorConfig, vocab_size: int, pad_id: int) -> None:
        super().__init__()
        self.cfg, self.vocab_size, self.pad_id = cfg, vocab_size, pad_id
        e, h, n, z = cfg.embedding_dim, cfg.hidden, cfg.layers, cfg.z_dim
        self.embed = nn.Embedding(vocab_size, e, padding_idx=pad_id)
        self.drop = nn.Dropout(cfg.dropout)
        self.utterance = Encoder(e, h, n, cfg.dropout)  # x and y
        self.context = Encoder(e, h, n, cfg.dropout)  # c
        self.posterior = Gaussian(3 * h, z)  # q(z | c, x, y)
        self.prior = Gaussian(h, z)  # p(z | c)
        self.init_cx, self.init_cy, self.init_c = InitState(2 * h, h, n), InitState(2 * h, h, n), InitState(h, h, n)
        self.y_cxz, self.x_cyz, self.x_cz, self.y_cz = (Decoder(e, h, n, z, vocab_size, cfg.dropout) for _ in range(4))
        for p in self.parameters():
            nn.init.uniform_(p, -INIT_RANGE, INIT_RANGE)

    def _encode(self, encoder: Encoder, seg: Segment) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (outputs (B, S, H), summary (B, H), attention mask (B, S)); an empty row reads one pad."""
        lengths = seg.mask.sum(1).clamp(min=1)
        if seg.ids.shape[1] == 0:
            rows = seg.ids.shape[0]
            seg = Segment(seg.ids.new_full((rows, 1), self.pad_id), seg.mask.new_zeros((rows, 1)))
        out, summary = encoder(self.drop(self.embed(seg.ids)), lengths)
        mask = torch.arange(seg.ids.shape[1], device=lengths.device)[None, :] < lengths[:, None]
        return out, summary, mask

    def _state(self, init: tuple[torch.Tensor, torch.Tensor], memory: torch.Tensor, mask: torch.Tensor,
               z: torch.Tensor) -> DecoderState:
        feed = memory.new_zeros(memory.shape[0], self.cfg.hidden)
        return DecoderState(init[0], init[1], feed, memory, mask, z)

    def forward(self, c: Segment, x: Segment, y: Segment, x_in: torch.Tensor, y_in: torch.Tensor,
                x_where: torch.Tensor | None = None, y_where: torch.Tensor | None = None) -> MirrorOutput:
        """Teacher forcing of all four decoders, z = mu_q + sigma_q * eps (reparameterised).
        `x_in` / `y_in` (B, T) are the decoder inputs: the start token, then x / y; with
        `x_where` / `y_where` (B, T) the x and y decoders give logits at those positions only."""
        with _fp32(x_in.device):
            mc, sc, kc = self._encode(self.context, c)
            mx, sx, kx = self._encode(self.utterance, x)
            my, sy, ky = self._encode(self.utterance, y)
            mu_q, logvar_q = self.posterior(torch.cat([sc, sx, sy], -1))
            mu_p, logvar_p = self.prior(sc)
            z = mu_q + torch.exp(0.5 * logvar_q) * torch.randn_like(mu_q)
            ey, ex = self.drop(self.embed(y_in)), self.drop(self.embed(x_in))
            init_c = self.init_c(sc)
            return MirrorOutput(
                self.y_cxz(ey, self._state(self.init_cx(torch.cat([sc, sx], -1)), mx, kx, z), y_where),
                self.x_cyz(ex, self._state(self.init_cy(torch.cat([sc, sy], -1)), my, ky, z), x_where),
                self.x_cz(ex, self._state(init_c, mc, kc, z), x_where),
                self.y_cz(ey, self._state(init_c, mc, kc, z), y_where),
                mu_q, logvar_q, mu_p, logvar_p)

    def start(self, c: Segment, x: Segment, sample: bool = True) -> DecoderState:
        """The forward decoder's state for generation: z ~ p(z | c) (`sample`), else z = its mean."""
        with _fp32(x.ids.device):
            _, sc, _ = self._encode(self.context, c)
            mx, sx, kx = self._encode(self.utterance, x)
            mu, logvar = self.prior(sc)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
            return self._state(self.init_cx(torch.cat([sc, sx], -1)), mx, kx, z)

    def step(self, st: DecoderState, tokens: torch.Tensor) -> tuple[torch.Tensor, DecoderState]:
        """Previous tokens (N,) -> (forward-decoder logits (N, V), the next state)."""
        with _fp32(tokens.device):
            return self.y_cxz.step(self.drop(self.embed(tokens)), st)

    def response_logits(self, c: Segment, x: Segment, y_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced forward-decoder logits (B, T, V) at z = the prior mean: the deterministic
        score of a response (validation loss, log-probs of generated replies)."""
        st = self.start(c, x, sample=False)
        with _fp32(y_in.device):
            return self.y_cxz(self.drop(self.embed(y_in)), st)


@contextmanager
def _fp32(device: torch.device) -> Iterator[None]:
    """Recurrent layers and the KL run in fp32 under the trainer's bf16 autocast."""
    with torch.autocast(device.type, enabled=False):
        yield
