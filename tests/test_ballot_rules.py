"""How a voter's verdicts become its ballot, on canned verdicts: the screens' last word on each slot,
what a row keeps of a member's own slot once it has voted, and the scores a row shows."""
from __future__ import annotations

import math

from cohep.frameworks.learner import Score, Scores
from cohep.protocol.ballot import mean_scores, settled
from cohep.protocol.duty import Duty
from cohep.protocol.judge import Verdict

S = Scores(Score(0.8, 0.5), Score(0.7, 0.6))
YES, NO = Verdict(True, "", S, b"y" * 32), Verdict(False, "", S, b"n" * 32)
OUT = {2: "update norm 9 is more than vote.norm_bound = 3 times the round's median update norm 1"}


def test_an_outlier_is_never_approved_and_says_why():
    assert settled(2, YES, OUT, None) == Verdict(False, OUT[2], S, YES.digest)
    assert settled(1, YES, OUT, None) == YES  # not an outlier: its own verdict stands
    assert settled(2, Verdict(False, "digest mismatch", None), OUT, None).reason == "digest mismatch"


def test_a_screened_in_slot_takes_its_averages_verdict():
    assert settled(0, NO, {}, ({0, 1}, Verdict(True))).approve
    lost = settled(0, YES, {}, ({0, 1}, Verdict(False)))
    assert not lost.approve and lost.reason == "the average of the screened slots does not beat the current weights"
    assert settled(0, YES, {}, ({0, 1}, Verdict(False, "patch probe: ..."))).reason == "patch probe: ..."
    assert settled(0, YES, {}, ({0}, Verdict(True))).scores == S  # its own scores stay on its verdict


def test_a_screened_out_slot_is_rejected_with_the_first_reason_there_is():
    average = ({0, 1}, Verdict(True))
    assert settled(2, YES, OUT, average).reason == OUT[2]
    assert settled(2, Verdict(False, "non-finite accuracy on the vote set", S), {}, average).reason == \
        "non-finite accuracy on the vote set"
    assert settled(2, YES, {}, average) == Verdict(False, "screened out", S, YES.digest)


def test_a_vote_keeps_what_the_member_did_with_its_own_slot():
    own = Duty(3, proposed=True, digest=b"o" * 32, scores=S)
    cast = Duty(3, approve=True, digest=b"a" * 32, reason="slot 2: screened out", verdicts="-/approve/reject")
    after = own.after_vote(cast)
    assert (after.round, after.proposed, after.voted, after.approve, after.digest) == (3, True, True, True, b"o" * 32)
    assert after.scores is None and after.verdicts == "-/approve/reject"  # the row shows what it judged
    declined = Duty(3, declined=True, reason="training diverged").after_vote(cast)
    assert declined.declined and declined.digest == b"a" * 32
    assert declined.reason == "training diverged; slot 2: screened out"
    assert Duty(3).after_vote(cast).reason == cast.reason


def test_a_rows_scores_over_several_slots_are_their_mean():
    other = Scores(Score(0.6, 0.7), Score(0.5, 0.8))
    got = mean_scores([S, other])
    assert math.isclose(got.vote.accuracy, 0.7) and math.isclose(got.test.loss, 0.7)
    assert math.isnan(mean_scores([]).vote.accuracy)
