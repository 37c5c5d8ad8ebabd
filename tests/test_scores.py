"""Per-event scores files, the selection curves and the binomial intervals against known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from cohep.central.scores import EventScores, read
from cohep.central.selection import binned, select_class
from cohep.core.errors import DataError
from cohep.core.intervals import proportion, wilson

NAMES = ["NC", "numu_CC", "nue_CC"]


def _scores(n=200, seed=0) -> EventScores:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = {"nu_energy": rng.uniform(200, 5000, n).astype(np.float32), "mode": rng.integers(0, 4, n).astype(np.int8),
             "lepton_energy": rng.uniform(0, 3000, n).astype(np.float32), "label": np.arange(n, dtype=np.int32)}
    return EventScores(NAMES, probs, rng.integers(0, 3, n), truth, {"nu_energy": "MeV", "lepton_energy": "MeV"},
                       {"model": {"name": "compact"}, "weights_sha256": "ab" * 32})


@pytest.mark.parametrize("suffix", [".parquet", ".h5"])
def test_scores_round_trip_with_truth_columns(tmp_path, suffix):
    s = _scores()
    path = s.write(tmp_path / f"scores{suffix}")
    back = read(path)
    assert back.class_names == NAMES and np.array_equal(back.labels, s.labels)
    assert np.array_equal(back.scores, s.scores) and np.array_equal(back.predicted, s.scores.argmax(1))
    assert set(back.truth) == set(s.truth)
    for name, values in s.truth.items():
        assert np.array_equal(back.truth[name], values) and back.truth[name].dtype == values.dtype
    assert back.units["nu_energy"] == "MeV" and back.info["weights_sha256"] == "ab" * 32
    # a truth field named like a fixed column is written beside it, not over it
    assert "truth_label" in s.columns() and np.array_equal(s.columns()["label"], s.labels)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        assert table.column_names[:6] == ["event", "label", "predicted", "score_NC", "score_numu_CC", "score_nue_CC"]
        assert table.schema.field("nu_energy").metadata == {b"unit": b"MeV"}


def test_a_file_that_is_not_a_scores_file_is_one_line(tmp_path):
    bad = tmp_path / "x.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="x.parquet"):
        read(bad)
    with pytest.raises(DataError, match="ends in"):
        _scores().write(tmp_path / "x.csv")


@pytest.mark.parametrize("d", [0.5, 1.0, 2.0])
def test_roc_auc_of_two_gaussians_matches_phi_of_d_over_sqrt2(d):
    """Signal ~ N(d, 1), background ~ N(0, 1) on the class score: AUC = Phi(d / sqrt 2)."""
    rng = np.random.default_rng(int(d * 10))
    n = 20000
    x = np.concatenate([rng.normal(d, 1, n), rng.normal(0, 1, n)])
    labels = np.concatenate([np.zeros(n, int), np.ones(n, int)])
    score0 = 1 / (1 + np.exp(-x))  # any monotone map of x gives the same ROC
    scores = np.stack([score0, 1 - score0], axis=1)
    s = select_class(scores, labels, 0, "signal")
    expected = norm.cdf(d / math.sqrt(2))
    # the AUC estimate's standard error is below 0.004 at this size (Hanley-McNeil)
    assert s.auc == pytest.approx(expected, abs=0.012)
    assert s.n_signal == n and s.fpr[0] == 0 and s.tpr[-1] == 1
    # the best cut maximises efficiency x purity over the scan, and its values are the scan's
    best = int(np.argmax(s.efficiency * s.purity))
    assert s.best_cut == s.cuts[best] and s.best_efficiency[0] == pytest.approx(s.efficiency[best])
    assert s.best_purity[0] == pytest.approx(s.purity[best])
    assert s.best_efficiency[1] < s.best_efficiency[0] < s.best_efficiency[2]


def test_a_class_without_events_has_no_auc():
    s = select_class(np.full((4, 2), 0.5), np.zeros(4, int), 1, "absent")
    assert math.isnan(s.auc) and len(s.cuts) == 0


@pytest.mark.parametrize("method,lowest", [("wilson", 0.93), ("clopper-pearson", 0.95)])
@pytest.mark.parametrize("p_true", [0.05, 0.3, 0.5, 0.9])
def test_interval_coverage_on_simulated_binomial_counts(method, lowest, p_true):
    """Over 4000 simulated counts the 95 % interval holds the true proportion about 95 % of the time:
    Wilson close to it on average (a little below at some p), Clopper-Pearson never below."""
    rng = np.random.default_rng(7)
    n = 60
    k = rng.binomial(n, p_true, size=4000)
    p, lo, hi = proportion(k, n, method=method)
    coverage = float(np.mean((lo <= p_true) & (p_true <= hi)))
    assert lowest - 0.01 <= coverage <= 0.995, coverage
    assert np.all(lo <= p) and np.all(p <= hi)


def test_intervals_at_the_edges_and_the_scalar_wilson_agree():
    p, lo, hi = proportion([0, 5, 10, 0], [10, 10, 10, 0], method="clopper-pearson")
    assert lo[0] == 0 and hi[2] == 1 and math.isnan(p[3]) and math.isnan(lo[3])
    assert hi[0] == pytest.approx(1 - 0.025 ** (1 / 10))  # the exact upper bound at k = 0
    for k, n in ((0, 5), (3, 7), (7, 7)):
        a = proportion(k, n, method="wilson")
        assert [float(v) for v in a] == pytest.approx(list(wilson(k, n)), abs=1e-6)
    with pytest.raises(ValueError):
        proportion(3, 2)


def test_efficiency_and_purity_binned_in_truth():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    predicted = np.array([0, 0, 1, 0, 1, 1, 0, 1])
    energy = np.array([100, 150, 900, 950, 120, 130, 920, 940.0])
    b = binned(energy, labels, predicted, ["a", "b"], variable="nu_energy", unit="MeV", bins=[0, 500, 1000])
    eff0, pur0 = b.efficiency(0), b.purity(0)
    assert b.n_true[0].tolist() == [2, 2] and eff0[0].tolist() == [1.0, 0.5]
    assert b.n_selected[0].tolist() == [2, 2] and pur0[0].tolist() == [1.0, 0.5]
    assert np.all(eff0[1] <= eff0[0]) and np.all(eff0[0] <= eff0[2])
    d = b.to_dict()
    assert d["classes"]["b"]["efficiency"] == [1.0, 0.5] and d["unit"] == "MeV"
    # an integer variable with few values gets one bin per value
    modes = binned(np.array([0, 1, 1, 3, 3, 3, 0, 1]), labels, predicted, ["a", "b"], variable="mode")
    assert modes.edges.tolist() == [-0.5, 0.5, 1.5, 2.5, 3.5]


def test_the_classifier_figures_draw_from_scores(tmp_path):
    from cohep.central.selection import select_all
    from cohep.outputs.plots import classifier

    s = _scores()
    sel = select_all(s.scores, s.labels, NAMES)
    b = binned(s.truth["nu_energy"], s.labels, s.predicted, NAMES, variable="nu_energy", unit="MeV")
    for path in (classifier.roc_figure(sel, tmp_path / "roc.png"),
                 classifier.score_figure(s.scores, s.labels, NAMES, tmp_path / "s.pdf", log=True),
                 classifier.efficiency_purity_figure(sel, tmp_path / "ep.png"),
                 classifier.binned_figure(b, tmp_path / "e.svg")):
        assert path.stat().st_size > 0
    assert len(b.edges) == 11 and sum(b.n_true[0]) == int((s.labels == 0).sum())
