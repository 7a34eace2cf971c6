import numpy as np
import pytest

from coral_cli.rewards.metrics import accuracy, mrr, ranks, recall_at_k, roc_auc
from coral_cli.rewards.negatives import sample_distinct_negatives, sample_negatives


def test_recall_and_mrr_on_a_hand_made_matrix():
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3],  # true first: rank 1
        [0.5, 0.7, 0.1, 0.2],  # one higher: rank 2
        [0.1, 0.2, 0.3, 0.4],  # last: rank 4
        [0.6, 0.6, 0.1, 0.1],  # tie counts against: rank 2
    ])
    labels = np.array([0, 0, 0, 0])
    assert ranks(scores, labels).tolist() == [1, 2, 4, 2]
    assert recall_at_k(scores, labels, 1) == 0.25
    assert recall_at_k(scores, labels, 2) == 0.75
    assert recall_at_k(scores, labels, 4) == 1.0
    assert mrr(scores, labels) == pytest.approx((1 + 0.5 + 0.25 + 0.5) / 4)
    assert ranks(scores, np.array([1, 1, 3, 0])).tolist() == [4, 1, 1, 2]


def test_constant_scorer_is_not_perfect():
    assert recall_at_k(np.full((5, 10), 0.5), np.zeros(5, dtype=int), 1) == 0.0


def test_auc_and_accuracy_by_hand():
    pos, neg = np.array([0.9, 0.4, 0.6]), np.array([0.3, 0.6, 0.1])
    # pos > neg pairs: 0.9 beats all 3; 0.4 beats 0.3 and 0.1; 0.6 beats 0.3, 0.1 and ties 0.6 (half)
    assert roc_auc(pos, neg) == pytest.approx((3 + 2 + 2.5) / 9)
    assert accuracy(pos, neg) == pytest.approx(4 / 6)


def test_negatives_never_equal_the_positive():
    rng = np.random.default_rng(0)
    positives = np.array([0, 1, 2, 3, -1] * 200)
    negs = sample_negatives(rng, 4, positives, 5)
    assert negs.shape == (1000, 5)
    assert not (negs == positives[:, None]).any()
    distinct = sample_distinct_negatives(rng, 10, np.array([3, 0, 9, -1]), 9)
    for row, pos in zip(distinct, [3, 0, 9, -1]):
        assert len(set(row)) == 9 and pos not in row and row.max() < 10
