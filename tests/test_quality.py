"""Data-set quality: the measures over recorded rounds, degraded learners, and Shapley by retraining."""
import json
import math

import numpy as np
import pytest

from cohep.config import experiment as config
from cohep.studies import quality
from cohep.cli import main
from cohep.research.degrade import DegradeSection
from cohep.core.errors import ConfigError, DataError
from cohep.protocol.records import RoundRecord
from cohep.run.local import run_experiment
from cohep.run.tasks import prepare
from cohep.testing.synthetic import synthetic_digits, write_mnist_idx


def rec(rnd, learner, proposer, vote, accepted, score, current, void=False):
    return RoundRecord(round=rnd, learner=learner, proposer=proposer, is_proposer=learner == proposer, vote=vote,
                       accepted=accepted, void=void, vote_score=score, current_vote_score=current,
                       proposal_test_accuracy=math.nan, test_accuracy=0.5, test_loss=1.0, digest="ab")


def test_wilson_interval_matches_the_formula():
    p, lo, hi = quality.wilson(0, 4)
    assert p == 0 and lo == 0 and hi == pytest.approx(0.4899, abs=1e-4)
    p, lo, hi = quality.wilson(7, 10)
    assert p == 0.7 and lo == pytest.approx(0.3968, abs=1e-4) and hi == pytest.approx(0.8922, abs=1e-4)
    assert all(math.isnan(x) for x in quality.wilson(0, 0))


def test_measures_from_hand_made_records():
    """Three learners, three rounds; every number below is worked out by hand."""
    rows = [rec(0, i, -1, "", False, math.nan, 0.1) for i in range(3)]
    # round 1: learner 0 proposes, accepted; 1 sees +0.2, 2 sees +0.1; 2's score is 0.1 below 1's
    rows += [rec(1, 0, 0, "", True, math.nan, 0.1), rec(1, 1, 0, "approve", True, 0.4, 0.2),
             rec(1, 2, 0, "approve", True, 0.3, 0.2)]
    # round 2: learner 2 proposes, rejected (1 rejects, 0 approves); deltas -0.1 (0) and -0.3 (1)
    rows += [rec(2, 0, 2, "approve", False, 0.3, 0.4), rec(2, 1, 2, "reject", False, 0.1, 0.4),
             rec(2, 2, 2, "", False, math.nan, 0.3)]
    # round 3: void
    rows += [rec(3, i, 1, "", False, math.nan, 0.4, void=True) for i in range(3)]
    rep = quality.from_records(rows)
    q = {x.learner: x for x in rep.learners}
    assert (q[0].proposals, q[0].accepted, q[2].proposals, q[2].accepted, q[1].proposals) == (1, 1, 1, 0, 0)
    assert q[0].gain == pytest.approx(0.15) and q[0].delta == pytest.approx(0.15)
    assert math.isnan(q[2].gain) and q[2].delta == pytest.approx(-0.2)
    assert (q[0].votes, q[0].agreed, q[1].votes, q[1].agreed, q[2].agreed) == (1, 0, 2, 2, 1)
    assert q[1].offset == pytest.approx((0.1 + -0.2) / 2) and q[2].offset == pytest.approx(-0.1)
    assert q[0].offset == pytest.approx(0.2)
    assert rep.notes == ["1 void round(s) left out"]
    assert [x.learner for x in rep.ranked()][0] == 2  # worst: rejected proposal and low scores
    # with the loss metric a lower score is better: the signs flip, the counts do not
    lossy = {x.learner: x for x in quality.from_records(rows, metric="loss").learners}
    assert lossy[0].delta == pytest.approx(-0.15) and lossy[2].offset == pytest.approx(0.1)


def test_events_give_acceptance_agreement_and_announced_offsets():
    a, b, c = "0xA", "0xB", "0xC"
    ev = [
        {"name": "Proposed", "args": {"round": 0, "proposer": a}},
        {"name": "Voted", "args": {"round": 0, "voter": b, "approve": True, "score_ppm": 600_000}},
        {"name": "Voted", "args": {"round": 0, "voter": c, "approve": False, "score_ppm": 200_000}},
        {"name": "Finalized", "args": {"round": 0, "proposer": a, "accepted": True}},
        {"name": "RoundVoided", "args": {"round": 1, "proposer": b}},
    ]
    rep = quality.from_events(ev, [a.lower(), b, c])
    q = {x.learner: x for x in rep.learners}
    assert (q[0].proposals, q[0].accepted, q[1].agreed, q[2].agreed, rep.rounds) == (1, 1, 1, 0, 2)
    assert q[1].offset == pytest.approx(0.4) and q[2].offset == pytest.approx(-0.4)
    assert rep.ranked()[0].learner == 2
    with pytest.raises(DataError, match="not a member"):
        quality.from_events(ev, [a, b])


def _k3_events():
    """Three members, every one holding a slot: round 0 in slot order A B C (C silent), round 1 in
    order B C A (all proposed), round 2 void."""
    a, b, c = "0xA", "0xB", "0xC"

    def voted(r, v, approvals, *scores):
        return {"name": "Voted", "args": {"round": r, "voter": v, "approvals": approvals, "scores_ppm": list(scores)}}

    def proposed(r, p, slot):
        return {"name": "Proposed", "args": {"round": r, "proposer": p, "slot": slot}}

    def finalized(r, first, proposed_slots, accepted_slots, approvals):
        return {"name": "Finalized", "args": {"round": r, "proposer": first, "accepted": accepted_slots != 0,
                                              "approvals": approvals, "proposed_slots": proposed_slots,
                                              "accepted_slots": accepted_slots}}

    never = 10 ** 15  # the contract's stand-in for a non-finite score: not a score
    return [a, b, c], [
        {"name": "RoundStarted", "args": {"round": 0, "proposer": a, "proposers": [a, b, c]}},
        proposed(0, a, 0), proposed(0, b, 1),
        # A judges B's slot (approves), B judges A's (approves), C approves A's and rejects B's
        voted(0, a, 0b010, 0, 500_000, 0), voted(0, b, 0b001, 400_000, 0, 0), voted(0, c, 0b001, 600_000, 300_000, 0),
        finalized(0, a, 0b011, 0b001, [2, 1, 0]),  # A's accepted, B's refused, slot 2 never proposed
        {"name": "RoundStarted", "args": {"round": 1, "proposer": b, "proposers": [b, c, a]}},
        proposed(1, b, 0), proposed(1, c, 1), proposed(1, a, 2),
        voted(1, a, 0b010, 100_000, 200_000, 0), voted(1, b, 0b110, 0, 300_000, never),
        voted(1, c, 0b100, 300_000, 0, 400_000),
        finalized(1, b, 0b111, 0b110, [0, 2, 2]),  # C's and A's accepted, B's refused
        {"name": "RoundVoided", "args": {"round": 2, "proposer": c}},
    ]


def test_events_of_rounds_of_three_slots_are_counted_slot_by_slot():
    members, ev = _k3_events()
    rep = quality.from_events(ev, members)
    q = {x.learner: x for x in rep.learners}
    assert rep.rounds == 3 and rep.notes[0] == "1 void round(s) left out"
    assert [(q[i].proposals, q[i].accepted) for i in range(3)] == [(2, 2), (2, 0), (1, 1)]
    # A: wrong on B's slot in round 0, right twice in round 1; B and C right on every slot they judged
    assert [(q[i].votes, q[i].agreed) for i in range(3)] == [(3, 2), (3, 3), (4, 4)]
    # per slot judged by two scores: A +0.2, -0.2, -0.1; B -0.2, +0.1; C +0.2, -0.2, +0.2 (B's
    # non-finite score of A's round-1 slot leaves that slot with one score: no offset)
    assert q[0].offset == pytest.approx(-0.1 / 3) and q[1].offset == pytest.approx(-0.05)
    assert q[2].offset == pytest.approx(0.2 / 3)
    assert all(math.isnan(x.delta) and math.isnan(x.gain) for x in rep.learners)  # no current scores
    current = {(r, i): cur for r, cur in ((0, 0.3), (1, 0.2)) for i in range(3)}
    q = {x.learner: x for x in quality.from_events(ev, members, current=current).learners}
    # per proposed slot, the mean over its judges of score - current: A 0.2 and 0.2, B 0.1 and 0.0, C 0.05
    assert (q[0].delta, q[0].gain) == (pytest.approx(0.2), pytest.approx(0.2))
    assert q[1].delta == pytest.approx(0.05) and math.isnan(q[1].gain)
    assert (q[2].delta, q[2].gain) == (pytest.approx(0.05), pytest.approx(0.05))


def test_events_of_an_averaged_round_share_one_verdict():
    """combine = "average": one approval and one score per ballot; every proposed slot has its outcome."""
    a, b, c = "0xA", "0xB", "0xC"
    ev = [{"name": "RoundStarted", "args": {"round": 0, "proposer": a, "proposers": [a, b, c]}},
          {"name": "Proposed", "args": {"round": 0, "proposer": a, "slot": 0}},
          {"name": "Proposed", "args": {"round": 0, "proposer": b, "slot": 1}}]
    ev += [{"name": "Voted", "args": {"round": 0, "voter": v, "approvals": ok, "scores_ppm": [s]}}
           for v, ok, s in ((a, 1, 500_000), (b, 0, 300_000), (c, 1, 400_000))]
    ev.append({"name": "Finalized", "args": {"round": 0, "proposer": a, "accepted": True, "approvals": [2],
                                             "proposed_slots": 0b011, "accepted_slots": 0b011}})
    q = {x.learner: x for x in quality.from_events(ev, [a, b, c], current={(0, i): 0.1 for i in range(3)}).learners}
    assert [(q[i].proposals, q[i].accepted, q[i].votes, q[i].agreed) for i in range(3)] == \
        [(1, 1, 1, 1), (1, 1, 1, 0), (0, 0, 1, 1)]
    assert [q[i].offset for i in range(3)] == pytest.approx([0.15, -0.15, 0.0])
    assert all(math.isnan(q[i].delta) for i in range(3))  # the score is the average's, no one proposal's


# -- degrading one learner's data -----------------------------------------------------------------


def _cfg(mnist_dir, learners=3, rounds=3, seed=0, protocol="paper", **degrade):
    """One-proposer rounds unless ``protocol`` says otherwise (None: the default protocol)."""
    experiment = {"learners": learners, "rounds": rounds, "seed": seed} | ({"protocol": protocol} if protocol else {})
    return config.load(None, {
        "experiment": experiment,
        "data": {"kind": "mnist", "path": str(mnist_dir), "limit": 900, "holdout": 150},
        "model": {"name": "mnist_cnn"},
        "train": {"epochs": 1.0, "batch_size": 32},
        "degrade": degrade,
    })


def test_degrade_settings_fail_with_one_line_naming_the_field(mnist_dir):
    with pytest.raises(ConfigError, match=r"degrade\.learner is required"):
        DegradeSection(label_flip=0.5)
    with pytest.raises(ConfigError, match=r"degrade\.keep must be > 0"):
        DegradeSection(learner=0, keep=0)
    with pytest.raises(ConfigError, match=r"degrade\.label_flip must be <= 1"):
        DegradeSection(learner=0, label_flip=1.5)
    with pytest.raises(ConfigError, match=r"degrade\.learner \(3\) must be below experiment\.learners \(3\)"):
        prepare(_cfg(mnist_dir, learner=3, keep=0.5))


def test_degrade_flips_and_thins_only_that_learner(mnist_dir):
    _, clean, parts0, _ = prepare(_cfg(mnist_dir))
    _, data, parts, _ = prepare(_cfg(mnist_dir, learner=1, label_flip=1.0, keep=0.1))
    assert len(parts[1].train) == round(0.1 * len(parts0[1].train))
    assert len(parts[1].vote) == max(1, round(0.1 * len(parts0[1].vote)))
    assert set(parts[1].train) <= set(parts0[1].train)
    for i in (0, 2):
        assert np.array_equal(parts[i].train, parts0[i].train) and np.array_equal(parts[i].vote, parts0[i].vote)
        _, y = data.subset(parts[i].train).tensors
        assert np.array_equal(y.numpy(), clean.labels[parts[i].train])
    _, y = data.subset(parts[1].train).tensors
    assert np.all(y.numpy() != clean.labels[parts[1].train])  # share 1: no label keeps its class
    _, y = data.subset(parts[1].test).tensors  # the common held-out set is untouched
    assert np.array_equal(y.numpy(), clean.labels[parts[1].test])
    _, half, p2, _ = prepare(_cfg(mnist_dir, learner=1, label_flip=0.5))
    idx = np.concatenate([p2[1].train, p2[1].vote])
    assert np.mean(half.labels[idx] != clean.labels[idx]) == pytest.approx(0.5, abs=0.01)


def test_degrade_own_file_replaces_the_learners_share(mnist_dir, tmp_path):
    x, y = synthetic_digits(200, seed=7, noise=0.3)
    own = write_mnist_idx(tmp_path / "own", x, y)
    _, data, parts, _ = prepare(_cfg(mnist_dir, learner=2, path=str(own)))
    assert len(parts[2].train) + len(parts[2].vote) == 200 and len(parts[2].vote) == 40
    xt, yt = data.subset(parts[2].train).tensors
    assert np.array_equal(yt.numpy(), y[parts[2].train - 900]) and len(data) == 1100
    mixed = data.subset(np.concatenate([parts[0].train[:3], parts[2].vote[:2]]))
    assert len(mixed) == 5
    x2, _ = synthetic_digits(50, seed=1)
    bad = write_mnist_idx(tmp_path / "bad", x2[:, :20, :20].copy(), y[:50])
    with pytest.raises(ConfigError, match=r"degrade\.path .* must match"):
        prepare(_cfg(mnist_dir, learner=2, path=str(bad)))


@pytest.fixture(scope="module")
def flipped_run(tmp_path_factory, mnist_dir, one_torch_thread_module):
    """3 learners, 9 one-proposer rounds, learner 1 with every train and vote label flipped to another class.

    Nine rounds give each learner three proposals, the fewest the ranking calls supported: with two
    (six rounds) whether an honest learner's pair of proposals happened to score worse depended on the
    draw (it changes with the contract's bytecode, which the draw seed's block hash covers)."""
    out = tmp_path_factory.mktemp("q") / "run"
    run_experiment(_cfg(mnist_dir, rounds=9, seed=0, learner=1, label_flip=1.0), out, figure=False)
    return out


@pytest.fixture(scope="module")
def guarded_run(tmp_path_factory, mnist_dir, one_torch_thread_module):
    """3 learners, 2 rounds of the default protocol: every learner proposes every round."""
    out = tmp_path_factory.mktemp("q") / "guarded"
    run_experiment(_cfg(mnist_dir, rounds=2, seed=0, protocol=None), out, figure=False)
    return out


def test_a_default_run_counts_every_learners_slots_and_votes(guarded_run, capsys):
    from cohep.outputs import rundir

    rep = quality.from_run(guarded_run)
    assert rep.sample() == {"proposals": [2, 2, 2], "votes": [4, 4, 4]}, rep.text()  # a slot each, two judges a slot
    accepted = sum(bin(e["args"]["accepted_slots"]).count("1") for e in rundir.read_events(guarded_run)
                   if e["name"] == "Finalized")
    assert sum(q.accepted for q in rep.learners) == accepted and rep.rounds == 2
    assert all(math.isfinite(q.offset) and math.isfinite(q.delta) for q in rep.learners)
    with pytest.raises(DataError, match="rounds of several proposers"):
        quality.from_records(rundir.read_records(guarded_run))
    assert main(["quality", str(guarded_run)]) == 0
    assert "sample size: 2 proposal(s) and 4 vote(s) per learner" in capsys.readouterr().out


def test_flipped_labels_learner_is_ranked_last(flipped_run):
    rep = quality.from_run(flipped_run)
    q = {x.learner: x for x in rep.learners}
    assert rep.ranked()[0].learner == 1, rep.text()
    assert q[1].proposals >= 1 and q[1].votes >= 3  # it was judged and it judged
    assert q[1].offset < min(q[0].offset, q[2].offset)
    assert q[1].delta < min(q[0].delta, q[2].delta)


def test_cli_quality_writes_table_json_and_plot(flipped_run, tmp_path, capsys):
    assert main(["quality", str(flipped_run), "--json", str(tmp_path / "q.json"),
                 "--plot", str(tmp_path / "q.png")]) == 0
    out = capsys.readouterr().out
    assert "worst first" in out and "offset" in out
    doc = json.loads((tmp_path / "q.json").read_text())
    assert doc["learners"][0]["learner"] == 1 and doc["learners"][0]["rank"] == 1
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_quality_errors_are_one_line(tmp_path, capsys):
    assert main(["quality", str(tmp_path)]) == 2
    assert main(["quality"]) == 2
    assert main(["quality", "--experiment", str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cohep: error: " + f"{tmp_path} is not a run directory (no manifest.json)",
                   "cohep: error: give a run directory, or --experiment FILE with --rpc URL",
                   "cohep: error: --experiment needs --rpc"]


# -- Shapley -------------------------------------------------------------------------------------


def toy(coalition) -> float:
    """A 3-player game with synergy between 0 and 1 and a useless player 2."""
    s = frozenset(coalition)
    v = {frozenset(): 0.0, frozenset({0}): 0.2, frozenset({1}): 0.1, frozenset({2}): 0.0,
         frozenset({0, 1}): 0.6, frozenset({0, 2}): 0.2, frozenset({1, 2}): 0.1, frozenset({0, 1, 2}): 0.6}
    return v[s]


def test_exact_shapley_equals_the_hand_computed_values():
    # phi_0 = 1/3 (0.2) + 1/6 (0.5) + 1/6 (0.2) + 1/3 (0.5) = 0.35; phi_1 = 0.25; phi_2 = 0
    assert quality.shapley_exact(toy, 3) == pytest.approx([0.35, 0.25, 0.0])
    assert quality.leave_one_out(toy, 3) == pytest.approx([0.5, 0.4, 0.0])
    c = quality.contributions(toy, 3)
    assert c.values["shapley_exact"] == pytest.approx([0.35, 0.25, 0.0])
    assert c.cost["shapley_exact"]["trainings"] == 7 and c.cost["leave_one_out"]["trainings"] == 4


def test_monte_carlo_shapley_converges_and_truncation_saves_evaluations():
    err = [np.abs(np.array(quality.shapley_monte_carlo(toy, 3, k, seed=1)) - [0.35, 0.25, 0.0]).max()
           for k in (1, 3000)]
    assert err[0] > 0.1 and err[1] < 0.01  # one permutation never gives this game's values
    # any permutation's marginals sum to u(N): the efficiency property holds for every sample size
    assert sum(quality.shapley_monte_carlo(toy, 3, 5, seed=2)) == pytest.approx(0.6)

    def additive(s):  # u(S) = |S| / 6 for 6 players: each player is worth 1/6
        return len(frozenset(s)) / 6

    u = quality.Utility(additive, 6)  # truncated once 4 of 6 are in: size-5 coalitions never trained
    assert quality.shapley_monte_carlo(u, 6, 10, seed=0, tolerance=0.4) != pytest.approx([1 / 6] * 6)
    truncated = u.calls
    full = quality.Utility(additive, 6)
    assert quality.shapley_monte_carlo(full, 6, 10, seed=0) == pytest.approx([1 / 6] * 6)
    assert truncated < full.calls


def test_shapley_by_retraining_a_small_run(flipped_run, one_torch_thread):
    c = quality.contributions_of_run(flipped_run)
    exact = c.values["shapley_exact"]
    assert len(exact) == 3 and c.cost["shapley_exact"]["trainings"] == 7
    assert exact[1] < min(exact[0], exact[2])  # flipped labels hurt the coalitions they join
    assert c.cost["shapley_exact"]["seconds"] > 0


def test_cli_shapley_by_monte_carlo(flipped_run, tmp_path, capsys, one_torch_thread):
    assert main(["quality", str(flipped_run), "--shapley", "--permutations", "4", "--json", str(tmp_path / "c.json")]) == 0
    doc = json.loads((tmp_path / "c.json").read_text())["contributions"]
    assert set(doc["values"]) == {"leave_one_out", "shapley_mc4"}
    assert 1 <= doc["cost"]["shapley_mc4"]["trainings"] <= 7 and "shapley_mc4" in capsys.readouterr().out
    assert main(["quality", "--experiment", "e.json", "--rpc", "http://x", "--shapley"]) == 2


def _rotating_rounds(rounds, quality_of, voter_bias, seed=0):
    """Canned records: proposers take turns among 3 learners; each voter scores the proposal at its
    quality (+ its own bias and a little noise) against a current score of 0.5."""
    rng = np.random.default_rng(seed)
    rows = [rec(0, i, -1, "", False, math.nan, 0.5) for i in range(3)]
    for r in range(1, rounds + 1):
        p = (r - 1) % 3
        scores = {i: 0.5 + quality_of[p] + voter_bias[i] + rng.normal(0, 0.01) for i in range(3) if i != p}
        accepted = sum(s > 0.5 for s in scores.values()) >= 1
        rows += [rec(r, i, p, "" if i == p else ("approve" if scores[i] > 0.5 else "reject"), accepted,
                     scores.get(i, math.nan), 0.5) for i in range(3)]
    return rows


def test_a_ranking_from_one_proposal_each_is_marked_unsupported():
    rep = quality.from_records(_rotating_rounds(3, [0.1, 0.1, -0.3], [0, 0, -0.2]))
    assert rep.sample() == {"proposals": [1, 1, 1], "votes": [2, 2, 2]}
    assert rep.ranked()[0].learner == 2  # a rank still comes out ...
    assert rep.doubt() == "a learner has only 1 proposal(s) (fewer than 3)"  # ... but it is not claimed
    text = rep.text()
    assert "sample size: 1 proposal(s) and 2 vote(s) per learner" in text
    assert "ranking not supported by the data: a learner has only 1 proposal(s)" in text
    doc = rep.to_dict()
    assert doc["ranking_supported"] is False and doc["ranking_doubt"] == rep.doubt() and doc["sample"]["votes"] == [2, 2, 2]


def test_a_clear_worst_learner_with_enough_proposals_is_supported():
    rep = quality.from_records(_rotating_rounds(12, [0.1, 0.1, -0.3], [0, 0, -0.2]))
    assert rep.sample()["proposals"] == [4, 4, 4] and rep.ranked()[0].learner == 2
    assert rep.doubt() is None and rep.to_dict()["ranking_supported"] is True
    assert "worst learner 2: separated from the next" in rep.text()


def test_alike_learners_overlap_and_no_worst_is_claimed(tmp_path):
    rep = quality.from_records(_rotating_rounds(12, [0.05, 0.05, 0.05], [0, 0, 0], seed=3))
    assert min(rep.sample()["proposals"]) == 4
    worst, nxt = rep.ranked()[:2]
    assert rep.doubt() == (f"the intervals of learner {worst.learner} (worst) and learner {nxt.learner} (next) "
                           "overlap or are undefined on every one of delta, offset")
    assert quality.plot(rep, tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"


def test_ranking_doubt_edge_cases():
    assert quality.ranking_doubt([quality.LearnerQuality(0, proposals=5)]) == "fewer than two learners to compare"
    assert quality.ranking_doubt([quality.LearnerQuality(0, proposals=5), quality.LearnerQuality(1, proposals=5)]) \
        == "no learner has a combined score"


def test_cli_quality_states_the_sample_size_of_a_short_run(guarded_run, flipped_run, tmp_path, capsys):
    """2 rounds of 3 proposers: 2 proposals each, too few to name a worst learner, and the output says
    so; 9 one-proposer rounds of 3 learners: 3 each, no longer too few (the intervals still decide)."""
    assert main(["quality", str(guarded_run), "--json", str(tmp_path / "q.json")]) == 0
    out = capsys.readouterr().out
    assert "sample size: 2 proposal(s) and 4 vote(s) per learner" in out
    assert "ranking not supported by the data: a learner has only 2 proposal(s)" in out
    doc = json.loads((tmp_path / "q.json").read_text())
    assert doc["ranking_supported"] is False and doc["sample"] == {"proposals": [2, 2, 2], "votes": [4, 4, 4]}
    assert main(["quality", str(flipped_run), "--json", str(tmp_path / "f.json")]) == 0
    assert "a learner has only" not in capsys.readouterr().out
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["sample"] == {"proposals": [3, 3, 3], "votes": [6, 6, 6]}
