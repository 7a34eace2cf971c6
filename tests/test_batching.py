"""Token-budget batches (training/batching.py): every example once, the budget kept, the same
batches for the same (seed, epoch), and less decoder padding when responses are grouped too."""

import numpy as np
import pytest

from coral_cli.training.batching import token_budget_batches


def _lengths(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Context and response lengths that vary independently, as in dialogue data."""
    rng = np.random.default_rng(seed)
    return rng.integers(4, 64, n), rng.integers(2, 32, n)


@pytest.mark.parametrize("grouped", [False, True])
def test_every_example_once_within_the_budget_and_reproducible(grouped):
    ctx, resp = _lengths()
    lengths = ctx + resp + 3
    kw = {"response_lengths": resp} if grouped else {}
    batches = token_budget_batches(lengths, 1024, 64, seed=7, epoch=2, **kw)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert all(len(b) <= 64 and (len(b) * lengths[b].max() <= 1024 or len(b) == 1) for b in batches)
    again = token_budget_batches(lengths, 1024, 64, seed=7, epoch=2, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again)) and len(batches) == len(again)
    other = token_budget_batches(lengths, 1024, 64, seed=7, epoch=3, **kw)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def test_grouping_by_response_length_cuts_the_decoder_padding():
    """An encoder-decoder pads contexts and responses apart: with response lengths the padded
    decoder positions fall, while the encoder's grow less and the batches stay near the budget."""
    ctx, resp = _lengths()
    lengths = ctx + resp + 3

    def padded(batches: list[np.ndarray], side: np.ndarray) -> int:
        return sum(len(b) * side[b].max() for b in batches)

    plain = token_budget_batches(lengths, 1024, 64, seed=0)
    grouped = token_budget_batches(lengths, 1024, 64, seed=0, response_lengths=resp)
    assert padded(grouped, resp) < 0.85 * padded(plain, resp)
    both = lambda batches: padded(batches, ctx) + padded(batches, resp)  # noqa: E731
    assert both(grouped) < both(plain)
    assert len(grouped) < 1.1 * len(plain)


def test_a_bucket_too_small_to_split_stays_whole():
    """Grouping a handful of examples would only cut the batches smaller: with fewer than a few
    batches' worth per group the batches are the ungrouped ones."""
    ctx, resp = _lengths(40)
    lengths = ctx + resp + 3
    plain = token_budget_batches(lengths, 4096, 64, seed=3)
    grouped = token_budget_batches(lengths, 4096, 64, seed=3, response_lengths=resp)
    assert len(plain) == 1 and [b.tolist() for b in grouped] == [b.tolist() for b in plain]
