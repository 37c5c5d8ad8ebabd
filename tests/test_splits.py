"""How the pooled data is dealt out to learners (cohep.datasets.splits.assign): IID and Dirichlet."""
import numpy as np
import pytest

from cohep.datasets.splits import assign
from cohep.core.errors import ConfigError

#: 1,000 items, 100 per class, in a shuffled order; the last 200 are held out.
LABELS = np.random.default_rng(3).permutation(np.repeat(np.arange(10), 100))
HOLDOUT = np.arange(800, 1000)


def shares(parts):
    """Each learner's whole share (train + vote), as sorted index arrays."""
    return [np.sort(np.concatenate([p.train, p.vote])) for p in parts]


def assert_partition(parts, n_pool, holdout):
    """Train and vote sets are disjoint, nobody shares an item, and together they are the pool."""
    for p in parts:
        assert len(p.train) >= 1 and len(p.vote) >= 1
        assert np.intersect1d(p.train, p.vote).size == 0
        assert np.array_equal(p.train, np.sort(p.train)) and np.array_equal(p.vote, np.sort(p.vote))
    everything = np.concatenate(shares(parts))
    assert len(everything) == len(np.unique(everything)) == n_pool
    assert np.array_equal(np.sort(everything), np.setdiff1d(np.arange(n_pool + len(holdout)), holdout))
    tests = np.concatenate([p.test for p in parts])
    assert np.array_equal(np.sort(tests), np.sort(holdout))


def class_skew(parts, labels):
    """Mean total-variation distance of the learners' class histograms from the pool's one."""
    pool = np.concatenate(shares(parts))
    overall = np.bincount(labels[pool], minlength=10) / len(pool)
    tv = []
    for share in shares(parts):
        h = np.bincount(labels[share], minlength=10) / len(share)
        tv.append(0.5 * np.abs(h - overall).sum())
    return float(np.mean(tv))


def test_iid_split_partitions_everything():
    parts = assign(LABELS, 5, holdout=HOLDOUT, seed=1)
    assert_partition(parts, 800, HOLDOUT)
    assert [len(s) for s in shares(parts)] == [160] * 5
    assert [len(p.vote) for p in parts] == [32] * 5  # vote_fraction 0.2
    assert [len(p.test) for p in parts] == [40] * 5
    again = assign(LABELS, 5, holdout=HOLDOUT, seed=1)
    assert all(np.array_equal(a.train, b.train) and np.array_equal(a.vote, b.vote) for a, b in zip(parts, again))
    assert class_skew(parts, LABELS) < 0.15


@pytest.mark.parametrize("alpha", [0.1, 1.0, 100.0])
def test_dirichlet_split_partitions_the_pool(alpha):
    parts = assign(LABELS, 5, holdout=HOLDOUT, method="dirichlet", alpha=alpha, seed=4)
    assert_partition(parts, 800, HOLDOUT)
    # the vote set is the vote fraction of each learner's own share
    for share, p in zip(shares(parts), parts):
        assert len(p.vote) == max(1, round(0.2 * len(share)))


def test_dirichlet_split_is_seeded():
    kw = {"holdout": HOLDOUT, "method": "dirichlet", "alpha": 0.3}
    a, b = assign(LABELS, 4, seed=11, **kw), assign(LABELS, 4, seed=11, **kw)
    for x, y in zip(a, b):
        assert np.array_equal(x.train, y.train) and np.array_equal(x.vote, y.vote)
        assert np.array_equal(x.test, y.test)
    other = assign(LABELS, 4, seed=12, **kw)
    assert any(not np.array_equal(x.train, y.train) for x, y in zip(a, other))


def test_small_alpha_skews_classes_more_than_large_alpha():
    skew = {alpha: np.mean([class_skew(assign(LABELS, 5, holdout=HOLDOUT, method="dirichlet",
                                                  alpha=alpha, seed=seed), LABELS) for seed in range(5)])
            for alpha in (0.1, 1.0, 100.0)}
    iid = np.mean([class_skew(assign(LABELS, 5, holdout=HOLDOUT, seed=seed), LABELS) for seed in range(5)])
    assert skew[0.1] > 0.45  # most of a learner's data from a few classes
    assert skew[100.0] < 0.08 and skew[100.0] < iid + 0.02  # as balanced as an IID split
    assert skew[0.1] > skew[1.0] > skew[100.0]
    assert skew[0.1] > 5 * skew[100.0]


def test_dirichlet_needs_positive_alpha():
    with pytest.raises(ConfigError, match="data.alpha must be > 0"):
        assign(LABELS, 3, holdout=HOLDOUT, method="dirichlet", alpha=0.0)


def test_unknown_split_and_bad_vote_fraction():
    with pytest.raises(ConfigError, match="data.split must be one of iid, dirichlet"):
        assign(LABELS, 3, holdout=HOLDOUT, method="by-class")
    with pytest.raises(ConfigError, match="data.vote_fraction"):
        assign(LABELS, 3, holdout=HOLDOUT, vote_fraction=1.0)


def test_too_many_learners():
    with pytest.raises(ConfigError, match=r"more learners \(\d+\) than the data can serve"):
        assign(np.zeros(5, dtype=int), 4, holdout=np.arange(0))
