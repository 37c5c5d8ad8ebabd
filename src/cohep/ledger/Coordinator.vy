# pragma version ~=0.4.3
# pragma evm-version cancun
"""
@title cohep Coordinator (v2)
@notice Decides every round of a collaborative-learning experiment: who proposes,
        who may vote, how many approvals are needed, and whether the proposed
        weights are accepted. Off-chain code only reads outcomes from here; it
        never decides them itself.
@dev    No owner and no admin functions: the member set, threshold, windows and
        suspension rule are fixed at deployment so no party can change the rules
        mid-experiment. Windows are counted in blocks. Evm version pinned to
        cancun so the same artifact runs on the embedded py-evm chain and on
        common dev nodes.

        Proposer draw: rounds are grouped in epochs of n = len(members) rounds.
        Epoch e is a Fisher-Yates permutation of the member indices driven by
        keccak256(seed, e, i); round r goes to perm[r % n], or to the next
        active member after it in the permutation (cyclically) if that member
        is suspended. The draw reads nothing a member can influence (no digest,
        vote or block data), so nobody can steer who proposes next, the
        sequence is reproducible from the seed, and every member proposes once
        per epoch while all are active.

        Member status is a bitmap (bit i = members[i] is active). Each round
        stores the bitmap as it was when the round started: who may vote, how
        many votes finalize waits for and how many approvals are required are
        therefore fixed for the whole round. Suspension (at finalize) and
        rejoin() change the live bitmap, which the next round snapshots.
"""

MAX_MEMBERS: constant(uint256) = 64
URI_MAX: constant(uint256) = 256
# Threshold denominators up to 10**6 express any practical fraction exactly (2/3, 0.25...).
MAX_DENOMINATOR: constant(uint256) = 10**6
# Windows beyond ~5 months of 12 s blocks are mistakes; bounding them also keeps
# start_block + window far from overflow.
MAX_WINDOW: constant(uint256) = 10**6
# |score| <= 1e9 in natural units, in parts per million (what the client's to_ppm clamps to).
MAX_SCORE_PPM: constant(int256) = 10**15

IN_A_ROW: constant(uint256) = 2**128 - 1  # low half of Counters.misses

# Ballot values stored per (round, voter); 0 means "has not voted".
NO_VOTE: constant(uint8) = 0
APPROVE: constant(uint8) = 1
REJECT: constant(uint8) = 2

# Round states, one slot instead of four booleans (each round writes it twice at most).
OPEN: constant(uint8) = 0
PROPOSED: constant(uint8) = 1
ACCEPTED: constant(uint8) = 2
REJECTED: constant(uint8) = 3
VOID: constant(uint8) = 4

# EIP-712 signed ballots (submit_ballots): many members' votes in one transaction.
EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
EIP712_NAME_HASH: constant(bytes32) = keccak256("cohep Coordinator")
EIP712_VERSION_HASH: constant(bytes32) = keccak256("2")
# approvals is a bitmap (bit 0: the round's one proposal) so that k proposal slots need no new type.
BALLOT_TYPEHASH: constant(bytes32) = keccak256("Ballot(uint256 round,uint256 approvals,int256 score_ppm)")


struct RoundData:
    proposer: address
    start_block: uint256
    # Active members when the round started (bit i = members[i]); includes the proposer
    # unless every member was suspended (then it is 0 and nobody can propose or vote).
    active: uint256
    state: uint8
    proposed_block: uint256
    digest: bytes32
    uri: String[URI_MAX]
    approvals: uint256
    votes: uint256


# What round_info returns: the stored round, expanded for readers.
struct RoundInfo:
    proposer: address
    start_block: uint256
    # Bit i set iff members[i] was active when the round started.
    active: uint256
    eligible: uint256
    required: uint256
    proposed: bool
    proposed_block: uint256
    digest: bytes32
    uri: String[URI_MAX]
    approvals: uint256
    votes: uint256
    finalized: bool
    accepted: bool
    void: bool


# A member's EIP-712 Ballot(round, approvals, score_ppm) and its signature (v, r, s).
struct SignedBallot:
    round: uint256
    approvals: uint256
    score_ppm: int256
    v: uint8
    r: bytes32
    s: bytes32


struct Counters:
    proposed: uint256
    accepted: uint256
    votes_cast: uint256
    votes_with_majority: uint256
    # missed << 128 | missed_in_a_row: one slot, so a miss is one storage write (a round in
    # which 63 members all miss their first vote stays well inside a transaction's gas).
    misses: uint256


struct MemberStats:
    proposed: uint256
    accepted: uint256
    votes_cast: uint256
    votes_with_majority: uint256
    # Duties missed in total: proposals not made in their window, and votes not
    # cast on a proposal before finalize.
    missed: uint256
    missed_in_a_row: uint256
    suspended: bool


event RoundStarted:
    round: indexed(uint256)
    proposer: indexed(address)
    start_block: uint256
    eligible: uint256
    required: uint256

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

# A ballot of a submit_ballots batch that was not counted (index in the batch, why); the rest were.
# signer is the recovered address (zero for a signature that recovers to nobody).
event BallotSkipped:
    round: indexed(uint256)
    signer: indexed(address)
    index: uint256
    reason: String[32]

# Emitted for every round that had a proposal (accepted or rejected).
event Finalized:
    round: indexed(uint256)
    proposer: indexed(address)
    accepted: bool
    digest: bytes32
    approvals: uint256
    votes: uint256
    required: uint256

# Emitted instead of Finalized when no proposal came within the proposal window.
event RoundVoided:
    round: indexed(uint256)
    proposer: indexed(address)

# The member missed its max_missed-th duty in a row in `round`; inactive from round + 1.
event Suspended:
    member: indexed(address)
    round: uint256

# The member called rejoin(); active again from `round` (the round after the call).
event Rejoined:
    member: indexed(address)
    round: uint256


threshold_num: public(immutable(uint256))
threshold_den: public(immutable(uint256))
proposal_window: public(immutable(uint256))
vote_window: public(immutable(uint256))
max_missed: public(immutable(uint256))
seed: public(immutable(bytes32))
initial_digest: public(immutable(bytes32))
model_digest: public(immutable(bytes32))
deployed_block: public(immutable(uint256))

# Immutable: read from code, not storage, which makes the per-member loops cheap.
MEMBERS: immutable(DynArray[address, MAX_MEMBERS])
# members[i] -> i + 1; 0 for non-members (one lookup gives membership and the status bit).
_slot: HashMap[address, uint256]
# Live status bitmap: bit i set iff members[i] is active.
_active: uint256

round: public(uint256)
accepted_digest: public(bytes32)
# Round whose proposal set accepted_digest; max_value(uint256) while still initial.
accepted_round: public(uint256)

_rounds: HashMap[uint256, RoundData]
# ballot[r][voter]: NO_VOTE, APPROVE or REJECT; public so a restarted node can resume.
ballot: public(HashMap[uint256, HashMap[address, uint8]])
_counters: HashMap[address, Counters]


@deploy
def __init__(
    members: DynArray[address, MAX_MEMBERS],
    threshold_num_: uint256,
    threshold_den_: uint256,
    proposal_window_: uint256,
    vote_window_: uint256,
    max_missed_: uint256,
    seed_: bytes32,
    initial_digest_: bytes32,
    model_digest_: bytes32,
):
    """
    @param members The fixed member list (2..64 distinct non-zero addresses); its order
           is part of the draw.
    @param threshold_num_ Numerator of the approval threshold (<= denominator).
    @param threshold_den_ Denominator of the approval threshold (1..10**6).
    @param proposal_window_ Blocks after a round starts during which its proposer may propose.
    @param vote_window_ Blocks after a proposal during which the eligible members may vote.
    @param max_missed_ Duties missed in a row after which a member is suspended (>= 1).
    @param seed_ Fixed seed of the proposer draw.
    @param initial_digest_ Digest of the weights every member starts from.
    @param model_digest_ Digest of the model specification (recorded only).
    """
    n: uint256 = len(members)
    assert n >= 2, "need at least 2 members"
    assert threshold_den_ >= 1 and threshold_den_ <= MAX_DENOMINATOR, "threshold denominator out of range"
    assert threshold_num_ <= threshold_den_, "threshold above 1"
    assert proposal_window_ >= 1 and proposal_window_ <= MAX_WINDOW, "proposal window out of range"
    assert vote_window_ >= 1 and vote_window_ <= MAX_WINDOW, "vote window out of range"
    assert max_missed_ >= 1, "max_missed must be >= 1"
    assert initial_digest_ != empty(bytes32), "empty initial digest"
    i: uint256 = 0
    for m: address in members:
        assert m != empty(address), "zero address member"
        assert self._slot[m] == 0, "duplicate member"
        i += 1
        self._slot[m] = i
    MEMBERS = members

    threshold_num = threshold_num_
    threshold_den = threshold_den_
    proposal_window = proposal_window_
    vote_window = vote_window_
    max_missed = max_missed_
    seed = seed_
    initial_digest = initial_digest_
    model_digest = model_digest_
    deployed_block = block.number

    self._active = (1 << n) - 1
    self.accepted_digest = initial_digest_
    self.accepted_round = max_value(uint256)
    self._start_round(0)


# -- internals -------------------------------------------------------------------------------


@internal
@view
def _permutation(epoch: uint256) -> DynArray[uint256, MAX_MEMBERS]:
    """Forward Fisher-Yates over 0..n-1: step i swaps i with i + keccak256(seed, epoch, i) % (n - i)."""
    n: uint256 = len(MEMBERS)
    perm: DynArray[uint256, MAX_MEMBERS] = []
    for i: uint256 in range(n, bound=MAX_MEMBERS):
        perm.append(i)
    for i: uint256 in range(n - 1, bound=MAX_MEMBERS):
        h: uint256 = convert(keccak256(concat(seed, convert(epoch, bytes32), convert(i, bytes32))), uint256)
        j: uint256 = i + h % (n - i)
        t: uint256 = perm[i]
        perm[i] = perm[j]
        perm[j] = t
    return perm


@internal
@view
def _draw(r: uint256, active: uint256) -> uint256:
    """Index of round r's proposer: perm[r % n], or the next active member after it in perm."""
    n: uint256 = len(MEMBERS)
    perm: DynArray[uint256, MAX_MEMBERS] = self._permutation(r // n)
    pos: uint256 = r % n
    for k: uint256 in range(n, bound=MAX_MEMBERS):
        idx: uint256 = perm[(pos + k) % n]
        if active & (1 << idx) != 0:
            return idx
    return perm[pos]  # nobody active: the slot's owner holds the round, which can only void


@internal
@pure
def _popcount(x: uint256) -> uint256:
    c: uint256 = 0
    y: uint256 = x
    for _: uint256 in range(MAX_MEMBERS):
        if y == 0:
            break
        y &= y - 1
        c += 1
    return c


@internal
@pure
def _eligible(active: uint256) -> uint256:
    """Voters of a round started with this bitmap: the proposer is in it unless it is empty."""
    if active == 0:
        return 0
    return self._popcount(active) - 1


@internal
@view
def _required(eligible: uint256) -> uint256:
    """max(1, ceil(threshold_num * eligible / threshold_den)): exact, and never zero."""
    need: uint256 = (threshold_num * eligible + threshold_den - 1) // threshold_den
    return max(need, 1)


@internal
def _start_round(r: uint256):
    """Fix round r's proposer and voters now, from the seed, the members, r and who is active."""
    active: uint256 = self._active
    p: address = MEMBERS[self._draw(r, active)]
    self.round = r
    self._rounds[r].proposer = p
    self._rounds[r].start_block = block.number
    self._rounds[r].active = active
    eligible: uint256 = self._eligible(active)
    log RoundStarted(round=r, proposer=p, start_block=block.number, eligible=eligible,
                     required=self._required(eligible))


@internal
def _miss(m: address, r: uint256, bit: uint256, active: uint256) -> uint256:
    """Count a missed duty; suspend at max_missed in a row. Returns the updated bitmap."""
    misses: uint256 = self._counters[m].misses + (1 << 128) + 1
    self._counters[m].misses = misses
    if misses & IN_A_ROW >= max_missed:
        log Suspended(member=m, round=r)
        return active & ~bit
    return active


@internal
def _reset_in_a_row(m: address):
    """A duty done (or a rejoin) starts the count of consecutive misses over."""
    self._counters[m].misses &= ~IN_A_ROW


@internal
def _record_vote(r: uint256, voter: address, approve: bool, score_ppm: int256):
    """Count one checked vote, cast directly (vote) or signed (submit_ballots)."""
    if approve:
        self.ballot[r][voter] = APPROVE
        self._rounds[r].approvals += 1
    else:
        self.ballot[r][voter] = REJECT
    self._rounds[r].votes += 1
    self._counters[voter].votes_cast += 1
    self._reset_in_a_row(voter)
    log Voted(round=r, voter=voter, approve=approve, score_ppm=score_ppm)


@internal
@view
def _domain_separator() -> bytes32:
    """EIP-712 domain: this contract on this chain, so a ballot cannot be replayed elsewhere."""
    return keccak256(abi_encode(EIP712_DOMAIN_TYPEHASH, EIP712_NAME_HASH, EIP712_VERSION_HASH,
                                chain.id, self))


# -- transactions ----------------------------------------------------------------------------


@external
def propose(r: uint256, digest: bytes32, uri: String[URI_MAX]):
    """
    @notice The round's proposer announces the digest of its new weights and where they are.
    @dev Only the drawn proposer, once, within proposal_window blocks of the round's start.
    """
    assert self._slot[msg.sender] != 0, "not a member"
    assert r == self.round, "wrong round"
    assert msg.sender == self._rounds[r].proposer, "not the proposer"
    assert self._rounds[r].active != 0, "suspended"
    assert self._rounds[r].state == OPEN, "already proposed"
    assert block.number <= self._rounds[r].start_block + proposal_window, "proposal window closed"
    assert digest != empty(bytes32), "empty digest"

    self._rounds[r].state = PROPOSED
    self._rounds[r].proposed_block = block.number
    self._rounds[r].digest = digest
    self._rounds[r].uri = uri
    self._counters[msg.sender].proposed += 1
    self._reset_in_a_row(msg.sender)
    log Proposed(round=r, proposer=msg.sender, digest=digest, uri=uri)


@external
def vote(r: uint256, approve: bool, score_ppm: int256):
    """
    @notice An eligible member judges round r's proposal; score_ppm is its score, recorded only.
    @dev Eligible: active when the round started and not the proposer. Once, within
         vote_window blocks of the proposal.
    """
    s: uint256 = self._slot[msg.sender]
    assert s != 0, "not a member"
    assert r == self.round, "wrong round"
    assert self._rounds[r].state == PROPOSED, "no proposal"
    assert msg.sender != self._rounds[r].proposer, "proposer cannot vote"
    assert self._rounds[r].active & (1 << (s - 1)) != 0, "suspended"
    assert self.ballot[r][msg.sender] == NO_VOTE, "already voted"
    assert block.number <= self._rounds[r].proposed_block + vote_window, "vote window closed"
    assert score_ppm >= -MAX_SCORE_PPM and score_ppm <= MAX_SCORE_PPM, "score out of range"
    self._record_vote(r, msg.sender, approve, score_ppm)


@external
def submit_ballots(r: uint256, ballots: DynArray[SignedBallot, MAX_MEMBERS]) -> uint256:
    """
    @notice Any member submits other members' EIP-712 signed ballots for round r in one
            transaction; each counts exactly as if its signer had called vote(). Returns
            how many were counted.
    @dev The batch as a whole must be for the current round, with a proposal, within the
         vote window. Each ballot is checked on its own: one that recovers to no member,
         names another round, comes from the proposer or a suspended member, repeats a
         vote already counted, or is out of range is skipped with BallotSkipped and never
         counted; the others still are.
    """
    assert self._slot[msg.sender] != 0, "not a member"
    assert r == self.round, "wrong round"
    assert self._rounds[r].state == PROPOSED, "no proposal"
    assert block.number <= self._rounds[r].proposed_block + vote_window, "vote window closed"
    proposer: address = self._rounds[r].proposer
    active: uint256 = self._rounds[r].active
    domain: bytes32 = self._domain_separator()
    counted: uint256 = 0
    i: uint256 = 0
    for b: SignedBallot in ballots:
        h: bytes32 = keccak256(abi_encode(BALLOT_TYPEHASH, b.round, b.approvals, b.score_ppm))
        signer: address = ecrecover(keccak256(concat(x"1901", domain, h)), b.v, b.r, b.s)
        s: uint256 = self._slot[signer]
        reason: String[32] = ""
        if signer == empty(address) or s == 0:
            reason = "not a member's signature"
        elif b.round != r:
            reason = "wrong round"
        elif signer == proposer:
            reason = "proposer cannot vote"
        elif active & (1 << (s - 1)) == 0:
            reason = "suspended"
        elif self.ballot[r][signer] != NO_VOTE:
            reason = "already voted"
        elif b.approvals > 1:
            reason = "approvals out of range"
        elif b.score_ppm < -MAX_SCORE_PPM or b.score_ppm > MAX_SCORE_PPM:
            reason = "score out of range"
        if len(reason) == 0:
            self._record_vote(r, signer, b.approvals == 1, b.score_ppm)
            counted += 1
        else:
            log BallotSkipped(round=r, signer=signer, index=i, reason=reason)
        i += 1
    return counted


@external
def finalize(r: uint256):
    """
    @notice Anyone closes round r once its outcome can no longer change, and starts round r + 1.
    @dev Without a proposal: after the proposal window, the round is void and the proposer
         missed a duty. With one: once every eligible member voted or the vote window
         passed; accepted iff approvals >= required; eligible members who did not vote
         missed a duty.
    """
    assert r == self.round, "wrong round"
    # Field by field: copying the whole struct would also read the URI's nine slots.
    proposer: address = self._rounds[r].proposer
    round_active: uint256 = self._rounds[r].active
    active: uint256 = self._active

    if self._rounds[r].state == OPEN:
        assert block.number > self._rounds[r].start_block + proposal_window, "too early to finalize"
        self._rounds[r].state = VOID
        log RoundVoided(round=r, proposer=proposer)
        if round_active != 0:  # a suspended proposer (everyone suspended) had no duty
            bit: uint256 = 1 << (self._slot[proposer] - 1)
            self._active = self._miss(proposer, r, bit, active)
        self._start_round(r + 1)
        return

    eligible: uint256 = self._eligible(round_active)
    votes: uint256 = self._rounds[r].votes
    assert votes == eligible or block.number > self._rounds[r].proposed_block + vote_window, "too early to finalize"

    required: uint256 = self._required(eligible)
    approvals: uint256 = self._rounds[r].approvals
    digest: bytes32 = self._rounds[r].digest
    accepted: bool = approvals >= required
    agree: uint8 = REJECT
    if accepted:
        agree = APPROVE
        self._rounds[r].state = ACCEPTED
        self.accepted_digest = digest
        self.accepted_round = r
        self._counters[proposer].accepted += 1
    else:
        self._rounds[r].state = REJECTED
    log Finalized(
        round=r,
        proposer=proposer,
        accepted=accepted,
        digest=digest,
        approvals=approvals,
        votes=votes,
        required=required,
    )

    # Credit voters who agreed with the outcome; charge eligible members who did not vote.
    before: uint256 = active
    for i: uint256 in range(len(MEMBERS), bound=MAX_MEMBERS):
        bit: uint256 = 1 << i
        m: address = MEMBERS[i]
        if round_active & bit == 0 or m == proposer:
            continue
        b: uint8 = self.ballot[r][m]
        if b == NO_VOTE:
            active = self._miss(m, r, bit, active)
        elif b == agree:
            self._counters[m].votes_with_majority += 1
    if active != before:
        self._active = active
    self._start_round(r + 1)


@external
def rejoin():
    """
    @notice A suspended member (a recovered key, a restarted node) becomes active again
            from the next round; its missed-in-a-row count starts over.
    """
    s: uint256 = self._slot[msg.sender]
    assert s != 0, "not a member"
    bit: uint256 = 1 << (s - 1)
    assert self._active & bit == 0, "not suspended"
    self._active |= bit
    self._reset_in_a_row(msg.sender)
    log Rejoined(member=msg.sender, round=self.round + 1)


# -- views -----------------------------------------------------------------------------------


@view
@external
def domain_separator() -> bytes32:
    """The EIP-712 domain separator ballots are signed under (name "cohep Coordinator", version "2")."""
    return self._domain_separator()


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
def is_member(a: address) -> bool:
    return self._slot[a] != 0


@view
@external
def proposer(r: uint256) -> address:
    """Proposer of a started round; later rounds also depend on future suspensions (see draw)."""
    assert r <= self.round, "round not started"
    return self._rounds[r].proposer


@view
@external
def draw(r: uint256) -> address:
    """
    @notice The member the draw names for round r given who is active now: round r's
            proposer if nobody is suspended or rejoins before it starts.
    """
    return MEMBERS[self._draw(r, self._active)]


@view
@external
def permutation(epoch: uint256) -> DynArray[uint256, MAX_MEMBERS]:
    """Member indices in proposing order for rounds epoch * n .. epoch * n + n - 1."""
    return self._permutation(epoch)


@view
@external
def required_for(eligible: uint256) -> uint256:
    """Approvals a round with `eligible` voters requires: max(1, ceil(num * eligible / den))."""
    assert eligible < MAX_MEMBERS, "eligible out of range"
    return self._required(eligible)


@view
@external
def is_eligible(r: uint256, m: address) -> bool:
    """True iff m may vote in round r (active when it started, not its proposer)."""
    assert r <= self.round, "round not started"
    s: uint256 = self._slot[m]
    if s == 0 or m == self._rounds[r].proposer:
        return False
    return self._rounds[r].active & (1 << (s - 1)) != 0


@view
@external
def round_info(r: uint256) -> RoundInfo:
    assert r <= self.round, "round not started"
    d: RoundData = self._rounds[r]
    eligible: uint256 = self._eligible(d.active)
    return RoundInfo(
        proposer=d.proposer,
        start_block=d.start_block,
        active=d.active,
        eligible=eligible,
        required=self._required(eligible),
        proposed=d.state != OPEN and d.state != VOID,
        proposed_block=d.proposed_block,
        digest=d.digest,
        uri=d.uri,
        approvals=d.approvals,
        votes=d.votes,
        finalized=d.state >= ACCEPTED,
        accepted=d.state == ACCEPTED,
        void=d.state == VOID,
    )


@view
@external
def member_stats(m: address) -> MemberStats:
    s: uint256 = self._slot[m]
    assert s != 0, "not a member"
    c: Counters = self._counters[m]
    return MemberStats(
        proposed=c.proposed,
        accepted=c.accepted,
        votes_cast=c.votes_cast,
        votes_with_majority=c.votes_with_majority,
        missed=c.misses >> 128,
        missed_in_a_row=c.misses & IN_A_ROW,
        suspended=self._active & (1 << (s - 1)) == 0,
    )
