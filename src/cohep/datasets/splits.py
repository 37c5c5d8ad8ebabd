"""How a pooled data set is dealt out to learners: IID, or class-skewed by a Dirichlet(alpha).

Each learner's share is then cut into its private train and vote sets. All splits are seeded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cohep.core.errors import ConfigError

SPLITS = ("iid", "dirichlet")


@dataclass(frozen=True)
class LearnerIndices:
    """Indices into the pooled data: one learner's private train, vote and test sets."""

    train: np.ndarray
    vote: np.ndarray
    test: np.ndarray


def split_iid(n_items: int, n_learners: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n_items)
    return [np.sort(part) for part in np.array_split(order, n_learners)]


def split_dirichlet(
    labels: np.ndarray, n_learners: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per class, shares drawn from Dirichlet(alpha): small alpha, strong class skew."""
    if not alpha > 0:
        raise ConfigError(f"data.alpha must be > 0 for a Dirichlet split, got {alpha!r}")
    parts: list[list[np.ndarray]] = [[] for _ in range(n_learners)]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        shares = rng.dirichlet(np.full(n_learners, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
        for i, chunk in enumerate(np.split(idx, cuts)):
            parts[i].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def assign(
    labels: np.ndarray,
    n_learners: int,
    *,
    holdout: np.ndarray,
    method: str = "iid",
    alpha: float = 0.5,
    vote_fraction: float = 0.2,
    seed: int = 0,
) -> list[LearnerIndices]:
    """Deal the non-held-out items to learners; the held-out items become their test sets.

    The held-out set is split evenly (IID) so each learner reports its own test curve and the mean
    over learners equals the accuracy on the whole held-out set.
    """
    if method not in SPLITS:
        raise ConfigError(f"data.split must be one of {', '.join(SPLITS)}, got {method!r}")
    if not 0.0 < vote_fraction < 1.0:
        raise ConfigError(f"data.vote_fraction must be within (0, 1), got {vote_fraction!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5117]))
    held = np.zeros(len(labels), dtype=bool)
    held[holdout] = True
    pool = np.flatnonzero(~held)
    if len(pool) < 2 * n_learners:
        raise ConfigError(
            f"more learners ({n_learners}) than the data can serve: {len(pool)} samples outside the held-out set, "
            f"and each learner needs at least one train and one vote sample"
        )
    if 0 < len(holdout) < n_learners:
        raise ConfigError(
            f"data.holdout: {len(holdout)} held-out samples for {n_learners} learners leaves a learner without "
            f"test samples (hold out at least {n_learners}, or use fewer learners)"
        )
    if method == "iid":
        shares = [pool[p] for p in split_iid(len(pool), n_learners, rng)]
    else:
        shares = [pool[p] for p in split_dirichlet(labels[pool], n_learners, alpha, rng)]
    tests = [holdout[p] for p in split_iid(len(holdout), n_learners, rng)] if len(holdout) else [
        np.zeros(0, dtype=np.int64)
    ] * n_learners
    out = []
    for i, share in enumerate(shares):
        share = rng.permutation(share)
        n_vote = max(1, int(round(vote_fraction * len(share))))
        if len(share) - n_vote < 1:
            raise ConfigError(f"learner {i} got {len(share)} samples: too few to train and vote "
                              "(lower data.alpha skew or learners)")
        out.append(LearnerIndices(np.sort(share[n_vote:]), np.sort(share[:n_vote]), np.sort(tests[i])))
    return out
