"""A voter's cheap guards, as pure functions: the patch probe against backdoors (``vote.probe``) and,
in rounds of several proposals, the update-norm bound against boosted updates (``vote.norm_bound``),
the peer margin against proposals that score far below the round's others (``vote.peer_margin``) and
the direction floor against reversed or re-drawn updates (``vote.direction_floor`` with
``vote.direction_share``). cohep.protocol.judge applies them to a round.

The vote compares accuracy on clean vote images, so a backdoor that keeps clean accuracy (BadNets:
a small trigger patch mapped to one class) passes it. A backdoored model is, by construction, very
sensitive to a small bright patch where its trigger sits; an honest model of digits or detector
images barely notices a few pixels in a corner, where there is no ink or charge. So before it
approves, a voter stamps a ``size`` x ``size`` patch of its vote images' brightest value in each
corner of its vote images, and rejects a proposal whose accuracy falls, in some corner, more than
``probe`` below its clean accuracy beyond the drop the current weights show in that corner.

Cost: 8 extra passes over the vote set (proposal and current weights, four corners), only for a
proposal the vote would approve. What it does not stop: a trigger away from the corners, a blended
or semantic trigger, a patch of another size or value than probed (see docs/attacks.md). It is the
cheapest guard we found that separates a backdoored model that keeps clean accuracy from an honest
one (tests/test_attacks.py); the norm bound does not separate them (a backdoor trained on poisoned
data moves the weights about as far as honest training: 1.96 against 1.77 in L2 on MNIST): it is
for boosted, noisy or re-initialised updates.
"""
from __future__ import annotations

from collections.abc import Collection

import numpy as np

from cohep.frameworks.learner import Weights

CORNERS = ("bottom-right", "top-left", "top-right", "bottom-left")


def stamp(images, corner: str, size: int, value: float):
    """A copy of ``images`` [N, C, H, W] (torch) with a ``size`` x ``size`` patch of ``value`` in ``corner``."""
    out = images.clone()
    rows = slice(-size, None) if corner.startswith("bottom") else slice(0, size)
    cols = slice(-size, None) if corner.endswith("right") else slice(0, size)
    out[..., rows, cols] = value
    return out


def apply_trigger(images, *, size: int = 4, value: float = 1.0):
    """A copy of ``images`` ``[N, C, H, W]`` (numpy or torch) with the trigger: a ``size`` x ``size``
    square of ``value`` in the bottom-right corner of every channel (BadNets' pixel pattern)."""
    out = images.clone() if hasattr(images, "clone") else np.array(images, copy=True)
    if out.ndim != 4 or out.shape[-1] < size or out.shape[-2] < size:
        raise ValueError(f"apply_trigger needs images [N, C, H, W] of at least {size}x{size}, got {tuple(out.shape)}")
    out[..., -size:, -size:] = value
    return out


def _accuracies(learner, weights: Weights, x, y, size: int, value: float) -> tuple[float, list[float]]:
    """Clean accuracy and the accuracy with the patch in each corner, of ``weights`` on (x, y)."""
    from torch.utils.data import TensorDataset

    learner.load_live(weights)

    def accuracy(images) -> float:
        probs, labels = learner.predict(TensorDataset(images, y))
        return float((probs.argmax(1) == labels).mean())

    return accuracy(x), [accuracy(stamp(x, c, size, value)) for c in CORNERS]


def patch_probe(learner, proposal: Weights, current: Weights, *, probe: float, size: int) -> str | None:
    """Why ``proposal`` looks backdoored to this voter, or None. ``learner.vote_set`` is the probe set."""
    from cohep.frameworks.batches import as_tensors

    x, y = as_tensors(learner.vote_set)
    if len(y) == 0 or x.ndim != 4 or x.shape[-1] < size or x.shape[-2] < size:
        return None  # nothing to probe with: the vote alone decides
    value = float(x.max())
    clean_new, new = _accuracies(learner, proposal, x, y, size, value)
    clean_old, old = _accuracies(learner, current, x, y, size, value)
    extra = np.array([(clean_new - a) - max(0.0, clean_old - b) for a, b in zip(new, old)])
    worst = int(extra.argmax())
    if extra[worst] > probe:
        return (f"patch probe: a {size}x{size} patch in the {CORNERS[worst]} corner costs the proposal "
                f"{clean_new - new[worst]:.3f} accuracy on the vote set (current weights "
                f"{clean_old - old[worst]:.3f}), more than vote.probe = {probe}")
    return None


# -- the update-norm bound (vote.norm_bound), for rounds of several proposals ------------------------

#: fewer proposals than this give no median worth comparing with (two: one boosted slot is half of it)
NORM_MIN_SLOTS = 3


def update_norm(weights: Weights, current: Weights) -> float:
    """L2 norm of ``weights - current`` over the float tensors (float64; integer counters left out)."""
    total = 0.0
    for name, value in weights.items():
        value = np.asarray(value)
        if value.dtype.kind == "f":
            total += float(np.sum((value.astype(np.float64) - np.asarray(current[name], np.float64)) ** 2))
    return float(np.sqrt(total))


def norm_outliers(norms: dict[int, float], bound: float) -> dict[int, str]:
    """Slot -> why it is rejected: its update is more than ``bound`` times the median of the round's
    update norms. A boosted update (``scaled``: ten times an honest step in a good direction) can
    still raise vote accuracy early in training, so the vote alone approves it; next to honest slots
    of the same round its step stands out. With fewer than :data:`NORM_MIN_SLOTS` slots nothing is
    flagged; with a majority of boosted slots the median itself is boosted (a limit of any median)."""
    if len(norms) < NORM_MIN_SLOTS:
        return {}
    median = float(np.median(list(norms.values())))
    return {j: (f"update norm {n:.3g} is more than vote.norm_bound = {bound:g} times the round's median "
                f"update norm {median:.3g}")
            for j, n in norms.items() if n > bound * median}


# -- the direction floor (vote.direction_floor), for rounds of several proposals -----------------------

def flat_update(weights: Weights, current: Weights) -> np.ndarray:
    """``weights - current`` over the float tensors, flattened in the weights' order (float64)."""
    parts = [(np.asarray(v, np.float64) - np.asarray(current[k], np.float64)).ravel()
             for k, v in weights.items() if np.asarray(v).dtype.kind == "f"]
    return np.concatenate(parts) if parts else np.zeros(0)


def direction_cosines(updates: dict[int, np.ndarray]) -> dict[int, float]:
    """Slot -> the cosine between its update and the sum of the other slots' updates (0 for no update)."""
    total = sum(updates.values())
    out = {}
    for j, u in updates.items():
        rest = total - u
        denominator = float(np.linalg.norm(u) * np.linalg.norm(rest))
        out[j] = float(u @ rest) / denominator if denominator > 0 else 0.0
    return out


def direction_outliers(updates: dict[int, np.ndarray], floor: float, share: float = 0.0,
                       strict: Collection[int] = ()) -> dict[int, str]:
    """Slot -> why it is rejected: the cosine between its update and the sum of the other slots' updates
    is below ``floor``.

    Why: a sign-flipped update (``w0 - (w - w0)``) has an honest update's norm, so the norm bound
    passes it, and late in training it costs only a few points on a vote set, so the peer margin
    passes it too; averaged in, it cancels an honest update (measured: 4 of 20 got into screened
    averages on class-skewed MNIST, 2 points lost). Honest updates of one round, even from
    class-skewed groups, share most of their direction (what every class needs); a negated one points
    against their sum. With fewer than :data:`NORM_MIN_SLOTS` slots nothing is flagged (two slots: each
    is the other's whole reference). The slots in ``strict`` (members struck out, ``vote.strikes``) are
    held to a floor of at least 0.

    One at a time, the farthest below its floor first: a named slot leaves the others' reference
    before they are compared again. A reversed update is in every other slot's reference sum, so with
    three slots it cancels most of an honest slot's partner (``u1 - u2`` with ``u1 ~ u2``): the honest
    slot's cosine fell to about 0 and it was named with the attacker. The floor's rise (``share``) is
    set once, from every slot's cosine, so taking an outlier out never raises the bar for the rest."""
    if len(updates) < NORM_MIN_SLOTS:
        return {}
    cosines = direction_cosines(updates)
    # ``share``: the floor rises with the round's agreement (median over every slot compared, this one
    # included; it stays honest while honest slots are a majority of them)
    median = float(np.median(list(cosines.values())))
    raise_by = share * max(median, 0.0)
    bases = {j: max(floor, 0.0) if j in strict else floor for j in updates}
    out: dict[int, str] = {}
    left = dict(updates)
    while len(left) >= NORM_MIN_SLOTS:
        if out:
            cosines = direction_cosines(left)
        shortfall = {j: bases[j] + raise_by - c for j, c in cosines.items()}
        j = max(shortfall, key=lambda k: (shortfall[k], -k))
        if shortfall[j] <= 0:
            break
        base = bases[j]
        why = f"vote.direction_floor {floor:g}" if base != floor or raise_by else f"vote.direction_floor = {floor:g}"
        if base != floor:
            why += " held at 0 for a struck member (vote.strikes)"
        if raise_by:
            why += f" + vote.direction_share {share:g} x the round's median cosine {median:.3g}"
        out[j] = f"update direction: cosine {cosines[j]:.3g} with the other slots' summed update is below {why}"
        del left[j]
    return out


# -- both, as one voter applies them to a round --------------------------------------------------

def update_outliers(checked: dict[int, Weights], current: Weights, *, norm_bound: float | None,
                    direction_floor: float | None, direction_share: float = 0.0,
                    struck: Collection[int] = ()) -> dict[int, str]:
    """Slot -> why it is rejected, for the slots whose weights passed their checks (``checked``): its
    update from ``current`` against the round's others, first its norm against their median
    (``norm_bound``), then its direction against the sum of the others that are not norm outliers (a
    re-initialised slot's update is so long that it would set the direction for everyone). None: that
    screen is off. ``struck``: the slots held to a direction floor of at least 0 (``vote.strikes``)."""
    out: dict[int, str] = {}
    if norm_bound is not None:
        out.update(norm_outliers({j: update_norm(w, current) for j, w in checked.items()}, norm_bound))
    if direction_floor is not None:  # among the rest: a huge random update would swamp the sum
        rest = {j: flat_update(w, current) for j, w in checked.items() if j not in out}
        out.update(direction_outliers(rest, direction_floor, direction_share, struck))
    return out


# -- the peer margin (vote.peer_margin), for rounds of several proposals voted on one by one ------

def score_outliers(scores: dict[int, float], margin: float, *, lower_is_better: bool = False) -> dict[int, str]:
    """Slot -> why it is rejected: its score on this voter's vote set is more than ``margin`` worse than
    the median score of the round's slots on that set (the voter's own proposal included).

    Why: at the random start the current weights score at chance, so "better than the current weights"
    is a coin toss for any junk proposal (random re-initialised weights got 4 of 5 approvals in round 0
    of a 6-proposer MNIST run, and their update is not long enough for the norm bound). Honest
    proposals of the same round score far above chance; next to them the junk stands out. Honest
    proposals of one round differ by about 0.12 in accuracy in the first round of IID MNIST and the junk
sits about 0.6 below them, hence 0.3 in the docs; class-skewed groups need a wider margin. With
    fewer than :data:`NORM_MIN_SLOTS` slots nothing is flagged, and the median stays honest while
    honest slots are a majority of those judged."""
    if len(scores) < NORM_MIN_SLOTS:
        return {}
    median = float(np.median(list(scores.values())))
    worse = (lambda v: v > median + margin) if lower_is_better else (lambda v: v < median - margin)
    return {j: (f"vote-set score {v:.4g} is more than vote.peer_margin = {margin:g} worse than the median "
                f"{median:.4g} of the round's proposals")
            for j, v in scores.items() if worse(v)}
