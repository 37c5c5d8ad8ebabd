"""``vote.strikes``: a member's record of the rounds in which it screened each proposer out, the one
state of a member the chain cannot rebuild (a node saves it as plain JSON)."""
from __future__ import annotations

import pytest

from cohep.core.errors import DataError
from cohep.protocol.strikes import Strikes


def test_a_round_strikes_once_and_a_retried_vote_does_not_count_itself():
    s = Strikes()
    s.record(1, ["0xab", "0xcd"])
    s.record(1, ["0xab"])  # the vote retried after a restart: the same round again
    s.record(3, ["0xab"])
    assert s.to_json() == {"0xab": [1, 3], "0xcd": [1]}
    assert s.before("0xab", 3) == 1  # round 3 itself is not an earlier strike
    assert s.before("0xab", 4) == 2 and s.before("0xcd", 2) == 1 and s.before("0xef", 2) == 0


def test_strikes_come_back_from_their_plain_data():
    s = Strikes()
    s.record(2, ["0xab"])
    s.record(0, ["0x01"])
    back = Strikes.from_json(s.to_json(), "strikes.json")
    assert back == s and list(back.to_json()) == ["0x01", "0xab"]  # sorted: the file does not churn
    assert Strikes.from_json({}, "strikes.json") == Strikes()


def test_a_nodes_strikes_file_is_checked():
    assert Strikes.from_json({"0xab": [3, 1], "0x01": []}, "strikes.json").to_json() == {"0x01": [], "0xab": [1, 3]}
    for bad in ([1, 2], {"0xab": [-1]}, {"0xab": ["1"]}, {"0xab": 1}, {"0xab": [True]}, {1: [2]}, None):
        with pytest.raises(DataError, match=r"^strikes\.json: expected \{member address: \[round, \.\.\.\]\} "
                                            r"with rounds >= 0$"):
            Strikes.from_json(bad, "strikes.json")
