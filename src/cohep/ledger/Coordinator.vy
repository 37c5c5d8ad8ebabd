# pragma version ~=0.4.3
# pragma evm-version cancun
"""
@title cohep Coordinator
@notice Decides every round of a collaborative-learning experiment: who proposes,
        who may vote, and whether the proposed weights are accepted. Off-chain
        code only reads outcomes from here; it never decides them itself.
@dev    No owner and no admin functions: the member set, threshold and windows
        are fixed at deployment so no party can change the rules mid-experiment.
        Windows are counted in blocks. Evm version pinned to cancun so the same
        artifact runs on the embedded py-evm chain and on common dev nodes.
"""

MAX_MEMBERS: constant(uint256) = 64
BPS: constant(uint256) = 10000
URI_MAX: constant(uint256) = 256

# Ballot values stored per (round, voter); 0 means "has not voted".
NO_VOTE: constant(uint8) = 0
APPROVE: constant(uint8) = 1
REJECT: constant(uint8) = 2


struct RoundInfo:
    proposer: address
    start_block: uint256
    proposed: bool
    proposed_block: uint256
    digest: bytes32
    uri: String[URI_MAX]
    approvals: uint256
    votes: uint256
    finalized: bool
    accepted: bool
    void: bool


struct MemberStats:
    proposed: uint256
    accepted: uint256
    votes_cast: uint256
    votes_with_majority: uint256
    missed: uint256


event RoundStarted:
    round: indexed(uint256)
    proposer: indexed(address)
    start_block: uint256

event Proposed:
    round: indexed(uint256)
    proposer: indexed(address)
    digest: bytes32
    uri: String[URI_MAX]

event Voted:
    round: indexed(uint256)
    voter: indexed(address)
    approve: bool
    score_ppm: int256

# Emitted for every round that had a proposal (accepted or rejected).
event Finalized:
    round: indexed(uint256)
    proposer: indexed(address)
    accepted: bool
    digest: bytes32
    approvals: uint256
    votes: uint256

# Emitted instead of Finalized when the proposer let its window pass.
event RoundVoided:
    round: indexed(uint256)
    proposer: indexed(address)


threshold_bps: public(immutable(uint256))
required_approvals: public(immutable(uint256))
proposal_window: public(immutable(uint256))
vote_window: public(immutable(uint256))
seed: public(immutable(bytes32))
initial_digest: public(immutable(bytes32))
model_digest: public(immutable(bytes32))
deployed_block: public(immutable(uint256))

# Immutable: read from code, not storage, which makes the per-member loop in finalize cheap.
MEMBERS: immutable(DynArray[address, MAX_MEMBERS])
is_member: public(HashMap[address, bool])

round: public(uint256)
accepted_digest: public(bytes32)
# Round whose proposal set accepted_digest; max_value(uint256) while still initial.
accepted_round: public(uint256)

_rounds: HashMap[uint256, RoundInfo]
# ballot[r][voter]: NO_VOTE, APPROVE or REJECT; public so a restarted node can resume.
ballot: public(HashMap[uint256, HashMap[address, uint8]])
_stats: HashMap[address, MemberStats]


@deploy
def __init__(
    members: DynArray[address, MAX_MEMBERS],
    threshold_bps_: uint256,
    proposal_window_: uint256,
    vote_window_: uint256,
    seed_: bytes32,
    initial_digest_: bytes32,
    model_digest_: bytes32,
):
    n: uint256 = len(members)
    assert n >= 2, "need at least 2 members"
    assert threshold_bps_ <= BPS, "threshold above 10000 bps"
    assert proposal_window_ > 0, "proposal window must be > 0"
    assert vote_window_ > 0, "vote window must be > 0"
    assert initial_digest_ != empty(bytes32), "empty initial digest"
    for m: address in members:
        assert m != empty(address), "zero address member"
        assert not self.is_member[m], "duplicate member"
        self.is_member[m] = True
    MEMBERS = members

    threshold_bps = threshold_bps_
    # ceil(threshold * (n - 1) / 10000): every member but the proposer votes.
    required_approvals = (threshold_bps_ * (n - 1) + BPS - 1) // BPS
    proposal_window = proposal_window_
    vote_window = vote_window_
    seed = seed_
    initial_digest = initial_digest_
    model_digest = model_digest_
    deployed_block = block.number

    self.accepted_digest = initial_digest_
    self.accepted_round = max_value(uint256)
    self._start_round(0)


@internal
def _start_round(r: uint256):
    """Fix the proposer of round r now, from seed, accepted digest and r."""
    h: bytes32 = keccak256(concat(seed, self.accepted_digest, convert(r, bytes32)))
    p: address = MEMBERS[convert(h, uint256) % len(MEMBERS)]
    self.round = r
    self._rounds[r].proposer = p
    self._rounds[r].start_block = block.number
    log RoundStarted(round=r, proposer=p, start_block=block.number)


@external
def propose(r: uint256, digest: bytes32, uri: String[URI_MAX]):
    assert self.is_member[msg.sender], "not a member"
    assert r == self.round, "wrong round"
    info: RoundInfo = self._rounds[r]
    assert msg.sender == info.proposer, "not the proposer"
    assert not info.proposed, "already proposed"
    assert block.number <= info.start_block + proposal_window, "proposal window closed"
    assert digest != empty(bytes32), "empty digest"

    self._rounds[r].proposed = True
    self._rounds[r].proposed_block = block.number
    self._rounds[r].digest = digest
    self._rounds[r].uri = uri
    self._stats[msg.sender].proposed += 1
    log Proposed(round=r, proposer=msg.sender, digest=digest, uri=uri)


@external
def vote(r: uint256, approve: bool, score_ppm: int256):
    assert self.is_member[msg.sender], "not a member"
    assert r == self.round, "wrong round"
    assert self._rounds[r].proposed, "no proposal"
    assert msg.sender != self._rounds[r].proposer, "proposer cannot vote"
    assert self.ballot[r][msg.sender] == NO_VOTE, "already voted"
    assert block.number <= self._rounds[r].proposed_block + vote_window, "vote window closed"

    if approve:
        self.ballot[r][msg.sender] = APPROVE
        self._rounds[r].approvals += 1
    else:
        self.ballot[r][msg.sender] = REJECT
    self._rounds[r].votes += 1
    self._stats[msg.sender].votes_cast += 1
    log Voted(round=r, voter=msg.sender, approve=approve, score_ppm=score_ppm)


@external
def finalize(r: uint256):
    """Anyone may close a round once the outcome can no longer change."""
    assert r == self.round, "wrong round"
    info: RoundInfo = self._rounds[r]

    if not info.proposed:
        assert block.number > info.start_block + proposal_window, "too early to finalize"
        self._rounds[r].finalized = True
        self._rounds[r].void = True
        self._stats[info.proposer].missed += 1
        log RoundVoided(round=r, proposer=info.proposer)
        self._start_round(r + 1)
        return

    n_voters: uint256 = len(MEMBERS) - 1
    assert info.votes == n_voters or block.number > info.proposed_block + vote_window, "too early to finalize"

    accepted: bool = info.approvals >= required_approvals
    self._rounds[r].finalized = True
    self._rounds[r].accepted = accepted
    if accepted:
        self.accepted_digest = info.digest
        self.accepted_round = r
        self._stats[info.proposer].accepted += 1

    # Credit voters whose ballot agreed with the contract's outcome.
    agree: uint8 = REJECT
    if accepted:
        agree = APPROVE
    for m: address in MEMBERS:
        if self.ballot[r][m] == agree:
            self._stats[m].votes_with_majority += 1

    log Finalized(
        round=r,
        proposer=info.proposer,
        accepted=accepted,
        digest=info.digest,
        approvals=info.approvals,
        votes=info.votes,
    )
    self._start_round(r + 1)


@view
@external
def members() -> DynArray[address, MAX_MEMBERS]:
    return MEMBERS


@view
@external
def member_count() -> uint256:
    return len(MEMBERS)


@view
@external
def proposer(r: uint256) -> address:
    """Proposer of a started round; later rounds depend on future outcomes."""
    assert r <= self.round, "round not started"
    return self._rounds[r].proposer


@view
@external
def round_info(r: uint256) -> RoundInfo:
    assert r <= self.round, "round not started"
    return self._rounds[r]


@view
@external
def member_stats(m: address) -> MemberStats:
    assert self.is_member[m], "not a member"
    return self._stats[m]
