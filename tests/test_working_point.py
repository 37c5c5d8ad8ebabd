"""cohep.central.working_point: the NC-logit offset that equalises NC and numu CC efficiency (issue 28)."""
import numpy as np
import pytest

from cohep.central import working_point as wp
from cohep.core.errors import DataError

NC, NUMU, NUE = 0, 1, 2


def _confused(n=600, shift=0.9, seed=0):
    """Three-class logits where true NC events lean towards numu CC (the issue's confusion)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 3))
    x[np.arange(n), y] += 1.0
    x[y == NC, NUMU] += shift
    return x, y


def _gap(x, y, offset, a=NC, b=NUMU):
    p = wp.decide(x, offset, a, b)
    return wp.efficiency(p, y, a) - wp.efficiency(p, y, b)


def test_a_hand_made_set_is_balanced_at_the_offset_between_its_steps():
    # d = l_numu - l_nc: NC events at 0.5, 1.5 (both read as numu CC by the arg-max), numu CC events at
    # -1, 2; one nue CC event the arg-max gives to nue, which no offset moves
    x = np.array([[0.0, 0.5, -5], [0.0, 1.5, -5], [0.0, -1.0, -5], [0.0, 2.0, -5], [0.0, 0.0, 3.0]])
    y = np.array([NC, NC, NUMU, NUMU, NUE])
    assert _gap(x, y, 0.0) == pytest.approx(0.0 - 0.5)  # arg-max: NC 0/2, numu CC 1/2
    p = wp.fit(x, y)
    # crossing 0.5 gives NC 1/2, numu 1/2: the step [0.5, 1.5) and its middle
    assert p.offset == 1.0 and p.eff_a == p.eff_b == 0.5 and (p.n_a, p.n_b) == (2, 2)
    assert wp.decide(x, p.offset).tolist() == [NC, NUMU, NC, NUMU, NUE]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shift", [-0.9, 0.0, 0.9])
def test_the_fit_equalises_the_two_efficiencies_within_half_a_step_and_no_offset_does_better(seed, shift):
    x, y = _confused(shift=shift, seed=seed)
    p = wp.fit(x, y)
    half_step = 1 / (2 * min(p.n_a, p.n_b))
    assert abs(p.gap) <= half_step + 1e-12
    assert p.gap == pytest.approx(_gap(x, y, p.offset))
    # every value where the decision changes, and either side of it: none is closer to equal
    d = np.unique(x[:, NUMU] - x[:, NC])
    trials = np.concatenate([d, np.nextafter(d, -np.inf), np.nextafter(d, np.inf), [0.0]])
    assert min(abs(_gap(x, y, o)) for o in trials) >= abs(p.gap) - 1e-12
    if shift > 0:  # NC read as numu CC: the offset favours NC
        assert p.offset > 0 and _gap(x, y, 0.0) < -half_step


def test_offset_zero_is_the_argmax_exactly_ties_included():
    x, y = _confused()
    assert np.array_equal(wp.decide(x, 0.0), x.argmax(1))
    ties = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [2.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    for a, b in ((NC, NUMU), (NUMU, NC), (NC, NUE)):
        assert np.array_equal(wp.decide(ties, 0.0, a, b), ties.argmax(1))
        assert np.array_equal(wp.decide(x, 0.0, a, b), x.argmax(1))


def test_an_already_balanced_argmax_keeps_offset_zero():
    x = np.array([[1.0, 0.0, -5], [0.0, 1.0, -5], [0.0, 2.0, -5], [2.0, 0.0, -5]])
    y = np.array([NC, NUMU, NC, NUMU])
    p = wp.fit(x, y)
    assert p.offset == 0.0 and p.eff_a == p.eff_b == 0.5


@pytest.mark.parametrize("offset", [-3.0, -0.4, 0.4, 3.0, 50.0])
def test_nue_predictions_are_the_argmaxs_and_nc_numu_only_swap_between_themselves(offset):
    x, _ = _confused(seed=3)
    base = x.argmax(1)
    pred = wp.decide(x, offset)
    assert np.array_equal(pred == NUE, base == NUE)  # nue CC: identical events, whatever the offset
    moved = pred != base
    assert moved.any() and set(base[moved]) | set(pred[moved]) <= {NC, NUMU}
    # a plain shift of the NC column then an arg-max would also take nue CC events: not done here
    if offset > 0:
        shifted = x.copy()
        shifted[:, NC] += offset
        assert ((shifted.argmax(1) == NC) & (base == NUE)).any()


def test_the_fit_reads_only_its_own_set_and_is_held_fixed_on_another():
    x, y = _confused(seed=4)
    p = wp.fit(x[:300], y[:300])
    assert wp.fit(x[:300], y[:300]) == p
    assert np.array_equal(wp.decide(x[300:], p.offset), wp.decide(x, p.offset)[300:])


def test_bad_input_is_refused():
    x, y = _confused(n=30)
    with pytest.raises(DataError, match="class 0"):
        wp.fit(x[y != NC], y[y != NC])
    with pytest.raises(ValueError, match="labels"):
        wp.fit(x, y[:-1])
    with pytest.raises(ValueError, match="distinct"):
        wp.decide(x, 0.0, NC, NC)
    with pytest.raises(ValueError, match="finite"):
        wp.decide(np.array([[-np.inf, 0.0, -np.inf]]), 0.0)
