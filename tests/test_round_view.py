"""What a member reads of the chain once per step (``RoundView``) and how the contract closed a round
(``Decided``), on canned round states."""
from __future__ import annotations

import hashlib

from cohep.ledger.coordinator import Outcome, RoundState, SlotState
from cohep.protocol.combine import combination
from cohep.protocol.view import Decided, RoundView

D = [hashlib.sha256(bytes([i])).digest() for i in range(3)]


def state(*, proposed=(True, True, True), accepted=(False, False, False), open_=True, vote_deadline=40) -> RoundState:
    slots = tuple(SlotState(j, f"0x{j}", p, D[j] if p else b"\0" * 32, f"/s/{j}" if p else "", 0, a)
                  for j, (p, a) in enumerate(zip(proposed, accepted)))
    return RoundState(round=4, proposer="0x0", start_block=10, voters=("0x0", "0x1", "0x2", "0x3"), eligible=4,
                      required=2, proposed=open_, proposed_block=20 if open_ else None, digest=slots[0].digest,
                      uri=slots[0].uri, approvals=0, votes=0, finalized=False, accepted=any(accepted),
                      void=not any(proposed), proposal_deadline=30, vote_deadline=vote_deadline if open_ else None,
                      slots=slots)


def test_the_view_says_which_window_the_block_is_in():
    assert RoundView(state(), 30).proposals_open() and not RoundView(state(), 31).proposals_open()
    assert RoundView(state(), 40).voting_open() and not RoundView(state(), 41).voting_open()
    assert not RoundView(state(open_=False), 25).voting_open()  # the proposals are not in yet
    assert RoundView(state(), 12).round == 4


def test_a_decided_round_names_the_accepted_slots_combination():
    got = Decided.from_state(state(accepted=(True, False, True)))
    assert got == Decided(4, True, False, combination([D[0], D[2]]), "0x0")


def test_a_rejected_round_names_its_proposed_slots_and_an_empty_one_its_own_digest():
    rejected = Decided.from_state(state(proposed=(True, False, True)))
    assert not rejected.accepted and rejected.digest == combination([D[0], D[2]])
    one = Decided.from_state(state(proposed=(True, False, False)))
    assert one.digest == D[0]  # a single digest is itself
    empty = Decided.from_state(state(proposed=(False, False, False)))
    assert empty.void and empty.digest == b"\0" * 32


def test_a_finalize_outcome_decides_the_same_way():
    outcome = Outcome(4, True, False, combination([D[0], D[2]]), 3, 4, "0x0", 2, 0b111, 0b101, (3, 1, 3))
    assert Decided.of(outcome) == Decided.from_state(state(accepted=(True, False, True)))
