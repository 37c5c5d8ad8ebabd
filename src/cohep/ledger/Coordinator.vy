# pragma version ~=0.4.3
# pragma evm-version cancun
# pragma optimize codesize
"""
@title cohep Coordinator (v5)
@notice Decides every round of a collaborative-learning experiment: who proposes,
        who may vote, how many approvals are needed, and which proposed
        weights are accepted. Off-chain code only reads outcomes from here; it
        never decides them itself.
@dev    No owner and no admin functions: the member set, threshold, windows,
        round shape and suspension rule are fixed at deployment so no party can
        change the rules mid-experiment. Windows are counted in blocks. Evm
        version pinned to cancun so the same artifact runs on the embedded
        py-evm chain and on common dev nodes.

        Round shape: each round has `proposers` slots (k, fixed at deployment),
        each held by a distinct member. With combine "each" (vote_on_average
        false) every voter approves or rejects each slot (a bitmap, one
        transaction) and each slot is accepted on its own; with "average"
        (true) every voter judges the average of all proposed slots and one
        approval bit accepts all of them. The members adopt the average of the
        accepted slots in slot order (computed off chain, audited); with k = 1
        this is today's single-proposer round.

        Proposer draw: the rounds' slots are laid end to end, q = r * k + j for
        slot j of round r, and grouped in epochs of n = len(members) positions.
        Epoch e is a permutation of the member indices, a four-round Feistel bijection keyed by
        keccak256(seed, e, round, half) and cycle-walked into 0..n-1, so one position costs O(1)
        (no shuffle of n indices a round); position q goes to perm[q % n] of epoch q // n,
        or to the next member after it in that permutation (cyclically) that is
        active and holds no earlier slot of the round. The draw reads nothing a
        member can influence (no digest, vote or block data), so nobody can
        steer who proposes next, the sequence is reproducible from the draw
        seed, and with k = 1 every member proposes once per epoch while all
        are active. The draw seed is not the deployer's seed: start(), callable
        by anyone from the block after deployment, fixes draw_seed =
        keccak256(seed, blockhash(deployed_block)), a hash nobody knew when the
        deployment was signed, and only then starts round 0.

        Sealed votes (sealed, fixed at deployment): a vote is first committed,
        keccak256(domain separator, round, voter, approvals, scores_hash, salt),
        within the vote window, and revealed in a reveal phase that opens once
        every voter has committed or the vote window has passed, and lasts
        reveal_window blocks. A reveal is counted exactly as vote() counts a
        vote (the same Voted event), so nobody reads a vote before every vote
        is fixed; a commitment without its reveal is a missed vote.

        Member status is a bitmap (bit i = members[i] is active). Each round
        stores the bitmap as it was when the round started: who may vote, how
        many votes finalize waits for and how many approvals are required are
        therefore fixed for the whole round. Suspension (at finalize) and
        rejoin() change the live bitmap, which the next round snapshots.

        AggregateCoordinator.vy imports this contract as a module: the same rules, storage and
        events, with one-transaction aggregated posts of a phase's ballots instead of vote() and
        submit_ballots (docs/contract.md, Aggregated ballots).
"""

MAX_MEMBERS: constant(uint256) = 256
# Slots a round has (proposers) and scores a ballot carries: at most 64.
MAX_SLOTS: constant(uint256) = 64
# Entries of a submit_ballots, submit_commits or submit_reveals batch: the EVM copies a batch's bound
# into memory (a reveal or ballot carries MAX_SLOTS scores), and 256 entries cost ~0.6 M gas of memory
# in every batch, a one-reveal batch too; more members send several batches.
MAX_BATCH: constant(uint256) = 64
URI_MAX: constant(uint256) = 256
# Threshold denominators up to 10**6 express any practical fraction exactly (2/3, 0.25...).
MAX_DENOMINATOR: constant(uint256) = 10**6
# Windows beyond ~5 months of 12 s blocks are mistakes; bounding them also keeps
# start_block + window far from overflow.
MAX_WINDOW: constant(uint256) = 10**6
# |score| <= 1e9 in natural units, in parts per million (what the client's to_ppm clamps to).
MAX_SCORE_PPM: constant(int256) = 10**15

# Member counters are bit-sliced: plane b of counter c is one word whose bit i is bit b of members[i]'s
# count, so adding 1 to every member of a bitmap is a ripple carry over the planes (about two words
# written a round, whatever the members), not a write per member. Counter c's planes: _planes[c][b].
PLANES: constant(uint256) = 64
C_PROPOSED: constant(uint256) = 0
C_ACCEPTED: constant(uint256) = 1
C_VOTES: constant(uint256) = 2
C_MAJORITY: constant(uint256) = 3
C_MISSED: constant(uint256) = 4  # + kind - 1: proposals, votes, reveals missed


# ballot[r][voter] = VOTED | approval bitmap; 0 means "has not voted".
VOTED: constant(uint256) = 1 << 255

# Round states, one slot instead of four booleans (each round writes it twice at most).
OPEN: constant(uint8) = 0
PROPOSED: constant(uint8) = 1  # at least one slot proposed
ACCEPTED: constant(uint8) = 2  # at least one slot accepted
REJECTED: constant(uint8) = 3
VOID: constant(uint8) = 4

# EIP-712 signed ballots (submit_ballots): many members' votes in one transaction. A signed
# ballot carries exactly what vote() carries: the approval bitmap over the slots and one score
# per slot (or the average's); EIP-712 hashes the int256[] as keccak256 of its 32-byte words.
EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
EIP712_NAME_HASH: constant(bytes32) = keccak256("cohep Coordinator")
EIP712_VERSION_HASH: constant(bytes32) = keccak256("5")
BALLOT_TYPEHASH: constant(bytes32) = keccak256("Ballot(uint256 round,uint256 approvals,int256[] scores_ppm)")
# A sealed vote's commitment, signed for submit_commits (the commitment itself binds voter and content).
COMMIT_TYPEHASH: constant(bytes32) = keccak256("Commit(uint256 round,bytes32 commitment)")



struct RoundData:
    start_block: uint256
    # Active members when the round started (bit i = members[i]); includes the proposers
    # unless every member was suspended (then it is 0 and nobody can propose or vote).
    active: uint256
    state: uint8
    slots: uint256  # slots this round has: min(proposers, active members), at least 1
    # Its voters (active, less a one-slot round's proposer): counted once at the start, since the
    # reveal phase, every commitment and round_info compare against it (each count was two popcounts).
    eligible: uint256
    # Block at which the last slot was proposed (all proposed: voting may close early).
    proposed_block: uint256
    proposed_mask: uint256  # bit j: slot j proposed
    accepted_mask: uint256  # bit j: slot j accepted (set by finalize)
    # bit i: members[i] voted; approved_mask bit i: and approved slot 0 (or the average), so that
    # finalize judges a one-verdict round's voters from these two words, not from a ballot each.
    voted_mask: uint256
    approved_mask: uint256
    votes: uint256
    # combine "average": approvals of the average (slot approvals stay 0).
    approvals: uint256
    # sealed: commitments so far, who committed (bit i), and the block the last voter's came in.
    commits: uint256
    committed_mask: uint256
    commit_block: uint256


struct SlotData:
    proposer: address
    digest: bytes32
    uri: String[URI_MAX]
    approvals: uint256


# What round_info returns: the stored round, expanded for readers (proposer, digest, uri
# and approvals are slot 0's; slot_info has every slot).
struct RoundInfo:
    proposer: address
    start_block: uint256
    # Bit i set iff members[i] was active when the round started.
    active: uint256
    eligible: uint256  # the round's voters
    required: uint256  # approvals each slot (or the average) needs
    proposed: bool  # voting is open: every slot proposed, or some and the proposal window passed
    proposed_block: uint256  # the block voting opened at (0 until it does)
    digest: bytes32
    uri: String[URI_MAX]
    approvals: uint256
    votes: uint256
    finalized: bool
    accepted: bool  # at least one slot accepted
    void: bool
    slots: uint256
    proposed_slots: uint256  # bitmap
    accepted_slots: uint256  # bitmap
    # sealed: commitments so far (votes counts the reveals), and the block the reveal phase opened
    # at (0 until it does).
    commits: uint256
    reveal_block: uint256


struct SlotInfo:
    proposer: address
    proposed: bool
    digest: bytes32
    uri: String[URI_MAX]
    approvals: uint256
    accepted: bool


# A member's EIP-712 Ballot(round, approvals, scores_ppm) and its signature (v, r, s).
struct SignedBallot:
    round: uint256
    approvals: uint256
    scores_ppm: DynArray[int256, MAX_SLOTS]
    v: uint8
    r: bytes32
    s: bytes32


# A sealed vote's commitment, signed by its voter (EIP-712 Commit(round, commitment)).
struct SignedCommit:
    round: uint256
    commitment: bytes32
    v: uint8
    r: bytes32
    s: bytes32


# A sealed vote revealed: needs no signature, the voter's commitment binds it.
struct Reveal:
    voter: address
    approvals: uint256
    scores_ppm: DynArray[int256, MAX_SLOTS]
    salt: bytes32


struct MemberStats:
    proposed: uint256
    accepted: uint256
    votes_cast: uint256
    votes_with_majority: uint256
    # Duties missed in total: proposals not made in their window, and votes not
    # cast (sealed: not revealed) on a proposal before finalize; then by kind.
    missed: uint256
    missed_in_a_row: uint256
    suspended: bool
    missed_proposals: uint256
    missed_votes: uint256  # no vote (sealed: no commitment)
    missed_reveals: uint256  # sealed: committed, never revealed


# proposer is slot 0's holder; proposers lists every slot's, in slot order.
event RoundStarted:
    round: indexed(uint256)
    proposer: indexed(address)
    start_block: uint256
    eligible: uint256
    required: uint256
    proposers: DynArray[address, MAX_SLOTS]

event Proposed:
    round: indexed(uint256)
    proposer: indexed(address)
    digest: bytes32
    uri: String[URI_MAX]
    slot: uint256

# approvals: bit j approves slot j (combine "average": bit 0 approves the average);
# scores_ppm: the voter's score of each slot (its own slot: 0), or of the average.
event Voted:
    round: indexed(uint256)
    voter: indexed(address)
    approvals: uint256
    scores_ppm: DynArray[int256, MAX_SLOTS]

# A ballot of a submit_ballots batch that was not counted (index in the batch, why); the rest were.
# signer is the recovered address (zero for a signature that recovers to nobody).
event BallotSkipped:
    round: indexed(uint256)
    signer: indexed(address)
    index: uint256
    reason: String[32]

# Emitted for every round that had a proposal. digest: accepted_digest's new value if
# any slot was accepted, else the same combination of the proposed slots; approvals
# per slot (combine "average": one entry, the average's).
event Finalized:
    round: indexed(uint256)
    proposer: indexed(address)
    accepted: bool
    digest: bytes32
    approvals: DynArray[uint256, MAX_SLOTS]
    votes: uint256
    required: uint256
    proposed_slots: uint256
    accepted_slots: uint256

# Emitted instead of Finalized when no slot was proposed within the proposal window.
event RoundVoided:
    round: indexed(uint256)
    proposer: indexed(address)

# The member missed its max_missed-th duty in a row in `round`; inactive from round + 1. reason:
# the duty missed last ("missed proposal", "missed vote", "committed but did not reveal").
event Suspended:
    member: indexed(address)
    round: uint256
    reason: String[32]

# sealed: a voter's commitment to its vote (what it voted stays hidden until Voted at the reveal).
event Committed:
    round: indexed(uint256)
    voter: indexed(address)
    commitment: bytes32

# start(): the draw's seed is fixed (from the deployer's seed and seed_block's hash); round 0 starts.
event Started:
    draw_seed: bytes32
    seed_block: uint256

# The member called rejoin(); active again from `round` (the round after the call).
event Rejoined:
    member: indexed(address)
    round: uint256


# threshold and max_missed: read a few times a round; storage, so the immutables' words fit EIP-170.
threshold_num: public(uint256)
threshold_den: public(uint256)
proposal_window: public(immutable(uint256))
vote_window: public(immutable(uint256))
max_missed: public(uint256)
# Read once (start) or never on chain: storage, not immutables, whose words count against EIP-170.
seed: public(bytes32)
initial_digest: public(bytes32)
model_digest: public(bytes32)
deployed_block: public(uint256)
# Slots per round (k): distinct proposers, 1..len(members).
proposers: public(immutable(uint256))
# combine "average": voters judge the average of all proposed slots, not each slot.
vote_on_average: public(immutable(bool))
# Votes are committed, then revealed within reveal_window blocks (see the header).
sealed: public(immutable(bool))
reveal_window: public(immutable(uint256))
# The proposer draw's seed, fixed by start(); empty until then (no round has started).
draw_seed: public(bytes32)

# The member list, in storage: as an immutable it would reserve 64 words of code and the contract
# would pass EIP-170's code size limit; its length is immutable (loops read no storage for it).
_members: DynArray[address, MAX_MEMBERS]
N: immutable(uint256)
# members[i] -> i + 1; 0 for non-members (one lookup gives membership and the status bit).
_slot: HashMap[address, uint256]
# Live status bitmap: bit i set iff members[i] is active.
_active: uint256

round: public(uint256)
# The adopted weights' on-chain identity: the accepted slot's digest, or with several
# accepted slots sha256 chained over their digests in slot order (see _combination).
accepted_digest: public(bytes32)
# Round whose proposals set accepted_digest; max_value(uint256) while still initial.
accepted_round: public(uint256)

_rounds: HashMap[uint256, RoundData]
_slots: HashMap[uint256, HashMap[uint256, SlotData]]
# ballot[r][voter]: 0 (not voted) or VOTED | approval bitmap; public so a restarted node can resume.
ballot: public(HashMap[uint256, HashMap[address, uint256]])
# sealed: commitment[r][voter], empty until it commits.
commitment: public(HashMap[uint256, HashMap[address, bytes32]])
# _planes[c][b]: plane b of counter c (see PLANES); _heights: 8 bits a counter, the planes it uses.
_planes: HashMap[uint256, HashMap[uint256, uint256]]
_heights: uint256
# The missed-in-a-row counts, bit-sliced as the counters: _streak[b] is plane b (b below max_missed's
# bit length), reset where a member did its duty.
_streak: HashMap[uint256, uint256]
# Half the bits of the draw's Feistel domain: the least h with 4**h >= n.
HALF: immutable(uint256)


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
    proposers_: uint256,
    vote_on_average_: bool,
    sealed_: bool,
    reveal_window_: uint256,
):
    """
    @param members The fixed member list (2..256 distinct non-zero addresses); its order
           is part of the draw.
    @param threshold_num_ Numerator of the approval threshold (<= denominator).
    @param threshold_den_ Denominator of the approval threshold (1..10**6).
    @param proposal_window_ Blocks after a round starts during which its proposers may propose.
    @param vote_window_ Blocks after voting opens during which the voters may vote.
    @param max_missed_ Duties missed in a row after which a member is suspended (>= 1).
    @param seed_ The deployer's part of the draw's seed (start() mixes in a block hash).
    @param initial_digest_ Digest of the weights every member starts from.
    @param model_digest_ Digest of the model specification (recorded only).
    @param proposers_ Slots (distinct proposers) per round, 1..len(members).
    @param vote_on_average_ Vote once on the average of the proposed slots instead of on each.
    @param sealed_ Votes are committed, then revealed (vote() and submit_ballots() refused).
    @param reveal_window_ Blocks the reveal phase lasts (sealed; ignored otherwise, but bounded).
    """
    n: uint256 = len(members)
    assert n >= 2, "need at least 2 members"
    assert threshold_den_ >= 1 and threshold_den_ <= MAX_DENOMINATOR, "threshold denominator out of range"
    assert threshold_num_ <= threshold_den_, "threshold above 1"
    assert proposal_window_ >= 1 and proposal_window_ <= MAX_WINDOW, "proposal window out of range"
    assert vote_window_ >= 1 and vote_window_ <= MAX_WINDOW, "vote window out of range"
    assert max_missed_ >= 1, "max_missed must be >= 1"
    assert initial_digest_ != empty(bytes32), "empty initial digest"
    assert proposers_ >= 1 and proposers_ <= min(n, MAX_SLOTS), "proposers out of range"
    assert reveal_window_ >= 1 and reveal_window_ <= MAX_WINDOW, "reveal window out of range"
    i: uint256 = 0
    for m: address in members:
        assert m != empty(address), "zero address member"
        assert self._slot[m] == 0, "duplicate member"
        i += 1
        self._slot[m] = i
    self._members = members
    N = n
    h: uint256 = 1
    for _: uint256 in range(4):
        if 1 << (2 * h) >= n:
            break
        h += 1
    HALF = h

    self.threshold_num = threshold_num_
    self.threshold_den = threshold_den_
    proposal_window = proposal_window_
    vote_window = vote_window_
    self.max_missed = max_missed_
    self.seed = seed_
    self.initial_digest = initial_digest_
    self.model_digest = model_digest_
    self.deployed_block = block.number
    proposers = proposers_
    vote_on_average = vote_on_average_
    sealed = sealed_
    reveal_window = reveal_window_

    self._active = max_value(uint256) >> (256 - n)
    self.accepted_digest = initial_digest_
    self.accepted_round = max_value(uint256)


# -- internals -------------------------------------------------------------------------------


@internal
@view
def _perm_at(ds: bytes32, epoch: uint256, pos: uint256) -> uint256:
    """Position pos of epoch's permutation of 0..n-1, in O(1): a four-round Feistel bijection of
    2 * HALF-bit numbers keyed by keccak256(draw_seed, epoch, round, half), applied again until it
    lands below n (cycle walking: still a bijection of 0..n-1; at most four tries expected)."""
    h: uint256 = HALF
    low: uint256 = (1 << h) - 1
    x: uint256 = pos
    for _: uint256 in range(4 * MAX_MEMBERS):
        left: uint256 = x >> h
        right: uint256 = x & low
        for i: uint256 in range(4):
            f: uint256 = convert(keccak256(concat(ds, convert(epoch, bytes32), convert(i, bytes32),
                                                  convert(right, bytes32))), uint256) & low
            t: uint256 = left ^ f
            left = right
            right = t
        x = (left << h) | right
        if x < N:
            break
    return x


@internal
@pure
def _popcount(x: uint256) -> uint256:
    """Set bits of x, in constant work (SWAR: bit counts summed in ever wider fields). A loop over
    the set bits cost ~47 opcodes a bit, and every vote check and finalize counts 64-bit bitmaps."""
    # The masks alternate 1, 2, 4, 8-bit fields of ones (all // (2**w + 1)), computed here: as
    # 32-byte constants they would take 200 bytes of code (the contracts sit near EIP-170). The 16
    # 16-bit counts (each <= 16) are then summed by one multiplication into the top field (<= 256).
    all: uint256 = ~(x & 0) if x != 0 else 0
    m: uint256 = all // 3
    y: uint256 = x - ((x >> 1) & m)
    m = all // 5
    y = (y & m) + ((y >> 2) & m)
    y = (y + (y >> 4)) & (all // 17)
    m = all // 257
    y = (y & m) + ((y >> 8) & m)
    return unsafe_mul(y, all // 65535) >> 240


@internal
@view
def _slot_count(active: uint256) -> uint256:
    """Slots of a round started with this bitmap: k, or fewer if fewer are active (at least 1)."""
    if proposers == 1:  # one slot whoever is active: no count (five per finalize, issue 29)
        return 1
    return max(1, min(proposers, self._popcount(active)))


@internal
@view
def _draw(r: uint256, active: uint256) -> DynArray[uint256, MAX_SLOTS]:
    """Indices of round r's proposers in slot order (see the header: positions r * k + j); O(k)
    while the members are active, a bounded scan past suspended ones."""
    n: uint256 = N
    ds: bytes32 = self.draw_seed
    out: DynArray[uint256, MAX_SLOTS] = []
    taken: uint256 = 0
    for j: uint256 in range(self._slot_count(active), bound=MAX_SLOTS):
        q: uint256 = r * proposers + j
        epoch: uint256 = q // n
        pos: uint256 = q % n
        pick: uint256 = self._perm_at(ds, epoch, pos)  # nobody active: the slot's owner holds the round, which voids
        for s: uint256 in range(n, bound=MAX_MEMBERS):
            idx: uint256 = pick
            if s != 0:
                idx = self._perm_at(ds, epoch, (pos + s) % n)
            if active & (1 << idx) != 0 and taken & (1 << idx) == 0:
                pick = idx
                break
        taken |= 1 << pick
        out.append(pick)
    return out


@internal
@view
def _voters(active: uint256, first: address) -> uint256:
    """Bitmap of a round's voters: its active members, less the proposer of a one-slot round."""
    if self._slot_count(active) == 1 and active != 0:
        return active & ~(1 << (self._slot[first] - 1))
    return active


@internal
@view
def _required_of(active: uint256) -> uint256:
    """Approvals a slot (or, combine "average", the average) of a round with this bitmap needs.

    Each slot is judged by the active members other than its proposer; the average by every voter.
    """
    n: uint256 = self._popcount(active)
    if n == 0:
        return self._required(0)
    if vote_on_average and self._slot_count(active) > 1:
        return self._required(n)
    return self._required(n - 1)


@internal
@view
def _required_for(eligible: uint256, slots: uint256) -> uint256:
    """_required_of(active) from the round's voter count instead of a count of active: a one-slot
    round's voters are active less its proposer, a several-slot round's all active."""
    if slots == 1 or vote_on_average:
        return self._required(eligible)
    return self._required(eligible - 1)


@internal
@view
def _required(eligible: uint256) -> uint256:
    """max(1, ceil(threshold_num * eligible / threshold_den)): exact, and never zero."""
    den: uint256 = self.threshold_den
    need: uint256 = (self.threshold_num * eligible + den - 1) // den
    return max(need, 1)


@internal
@view
def _combination(r: uint256, mask: uint256, slots: uint256) -> bytes32:
    """The digests of the slots in mask, in slot order: one digest as is, several chained as
    h = d_first, then h = sha256(h || d) for each next one (what the client recomputes)."""
    h: bytes32 = empty(bytes32)
    first: bool = True
    for j: uint256 in range(slots, bound=MAX_SLOTS):
        if mask & (1 << j) == 0:
            continue
        d: bytes32 = self._slots[r][j].digest
        if first:
            h = d
            first = False
        else:
            h = sha256(concat(h, d))
    return h


@internal
def _start_round(r: uint256):
    """Fix round r's proposers and voters now, from the draw seed, the members, r and who is active."""
    active: uint256 = self._active
    picks: DynArray[uint256, MAX_SLOTS] = self._draw(r, active)
    who: DynArray[address, MAX_SLOTS] = []
    j: uint256 = 0
    for idx: uint256 in picks:
        p: address = self._members[idx]
        self._slots[r][j].proposer = p
        who.append(p)
        j += 1
    self.round = r
    eligible: uint256 = self._popcount(self._voters(active, who[0]))
    self._rounds[r].start_block = block.number
    self._rounds[r].active = active
    self._rounds[r].slots = j
    self._rounds[r].eligible = eligible
    log RoundStarted(round=r, proposer=who[0], start_block=block.number, eligible=eligible,
                     required=self._required_for(eligible, j), proposers=who)


@internal
def _add(c: uint256, x: uint256):
    """Add 1 to counter c of every member in bitmap x: a ripple carry through c's planes."""
    carry: uint256 = x
    top: uint256 = 0
    for b: uint256 in range(PLANES):
        if carry == 0:
            break
        p: uint256 = self._planes[c][b]
        self._planes[c][b] = p ^ carry
        carry &= p
        top = b + 1
    heights: uint256 = self._heights
    if top > (heights >> (8 * c)) & 255:
        self._heights = heights & ~(255 << (8 * c)) | (top << (8 * c))


@internal
@view
def _count(c: uint256, i: uint256) -> uint256:
    """members[i]'s counter c, read from c's planes."""
    n: uint256 = 0
    for b: uint256 in range((self._heights >> (8 * c)) & 255, bound=PLANES):
        n |= ((self._planes[c][b] >> i) & 1) << b
    return n


@internal
def _duties(r: uint256, missed: uint256, done: uint256, active: uint256, silent: uint256,
            unrevealed: uint256) -> uint256:
    """Round r's missed and done duties, a bitmap each (a member in both did one and missed another:
    one miss in a row): advance the missed-in-a-row counts (bit planes: log2(max_missed) words, written
    only where they change), count the misses by kind, and suspend who reaches max_missed, saying which duty it
    missed last. Returns the live bitmap less the suspended."""
    if missed != 0:
        self._add(C_MISSED, silent)
        self._add(C_MISSED + 1, missed & ~silent & ~unrevealed)
        self._add(C_MISSED + 2, unrevealed & ~silent)
    limit: uint256 = self.max_missed
    carry: uint256 = missed  # + 1 for who missed, after a reset to 0 for who did a duty
    out: uint256 = missed  # who reaches max_missed now: equal to it on every plane
    for b: uint256 in range(PLANES):
        if limit >> b == 0:
            break
        old: uint256 = self._streak[b]
        p: uint256 = old & ~done
        new: uint256 = p ^ carry
        carry &= p
        if new != old:
            self._streak[b] = new
        if (limit >> b) & 1 != 0:
            out &= new
        else:
            out &= ~new
    for i: uint256 in range(N, bound=MAX_MEMBERS):
        if out >> i == 0:
            break
        bit: uint256 = 1 << i
        if out & bit != 0:
            reason: String[32] = "missed vote"
            if silent & bit != 0:
                reason = "missed proposal"
            elif unrevealed & bit != 0:
                reason = "committed but did not reveal"
            log Suspended(member=self._members[i], round=r, reason=reason)
    return active & ~out


@internal
@view
def _vote_opened(r: uint256) -> uint256:
    """The block voting on round r opened at: its last proposal once every slot is proposed,
    else the end of the proposal window if some slot was; 0 while voting is not open."""
    mask: uint256 = self._rounds[r].proposed_mask  # only the fields it needs: a struct read loads all ten
    if mask == 0:
        return 0
    if mask == max_value(uint256) >> (256 - self._rounds[r].slots):
        return self._rounds[r].proposed_block
    start: uint256 = self._rounds[r].start_block
    if block.number > start + proposal_window:
        return start + proposal_window
    return 0


@internal
@view
def _reveal_opened(r: uint256) -> uint256:
    """sealed: the block round r's reveal phase opened at: the last voter's commitment (or the
    opening of voting, if the round has no voters) once every voter has committed, else the end of
    the vote window once it has passed; 0 while commitments are still open."""
    opened: uint256 = self._vote_opened(r)
    if opened == 0:
        return 0
    if self._rounds[r].commits == self._rounds[r].eligible:
        return max(opened, self._rounds[r].commit_block)
    if block.number > opened + vote_window:
        return opened + vote_window
    return 0


@internal
@view
def _vote_problem(voter: address, r: uint256, approvals: uint256,
                  scores_ppm: DynArray[int256, MAX_SLOTS]) -> String[32]:
    """Why voter's ballot on round r cannot be counted now ("" if it can): vote() reverts with
    the reason. The round's checks, then the ballot's own (_ballot_problem); submit_ballots makes
    the round's checks once for the batch and skips a ballot with _ballot_problem's reason."""
    s: uint256 = self._slot[voter]
    if s == 0:
        return "not a member"
    if r != self.round:
        return "wrong round"
    if self._rounds[r].state != PROPOSED:
        return "no proposal"
    opened: uint256 = self._vote_opened(r)
    if opened == 0:
        return "proposals still open"
    active: uint256 = self._rounds[r].active
    return self._ballot_problem(voter, 1 << (s - 1), r, approvals, scores_ppm, active,
                                self._voters(active, self._slots[r][0].proposer),
                                self._rounds[r].voted_mask, block.number > opened + vote_window)


@internal
@view
def _ballot_problem(voter: address, bit: uint256, r: uint256, approvals: uint256,
                    scores_ppm: DynArray[int256, MAX_SLOTS], active: uint256, voters: uint256,
                    voted: uint256, window_closed: bool) -> String[32]:
    """The checks of one member's ballot on round r once voting is open (bit: the member's;
    active, voters: the round's bitmaps; voted: who has voted so far, a batch's own included)."""
    if active & bit == 0:
        return "suspended"
    if voters & bit == 0:
        return "proposer cannot vote"
    if voted & bit != 0:
        return "already voted"
    if window_closed:
        return "vote window closed"
    for x: int256 in scores_ppm:
        if x < -MAX_SCORE_PPM or x > MAX_SCORE_PPM:
            return "score out of range"
    slots: uint256 = self._rounds[r].slots
    if vote_on_average and slots > 1:
        if len(scores_ppm) != 1:
            return "one score for the average"
        if approvals > 1:
            return "approvals outside the slots"
        return ""
    if len(scores_ppm) != slots:
        return "one score per slot"
    if approvals & ~self._rounds[r].proposed_mask != 0:
        return "approvals outside the slots"
    for j: uint256 in range(slots, bound=MAX_SLOTS):
        if approvals & (1 << j) != 0 and self._slots[r][j].proposer == voter:
            return "cannot approve own proposal"
    return ""


@internal
def _count_vote(voter: address, bit: uint256, r: uint256, approvals: uint256,
                scores_ppm: DynArray[int256, MAX_SLOTS]) -> uint256:
    """Count a ballot the checks found nothing wrong with: the approvals, the voter's ballot and
    Voted event, its approval of slot 0 (or the average) in approved_mask. Returns its bit for the
    round's voted_mask; the caller adds it and the vote count (finalize counts the voters' counters)."""
    if vote_on_average and self._rounds[r].slots > 1:
        if approvals == 1:
            self._rounds[r].approvals += 1
    else:
        for j: uint256 in range(self._rounds[r].slots, bound=MAX_SLOTS):
            if approvals & (1 << j) != 0:
                self._slots[r][j].approvals += 1
    self.ballot[r][voter] = VOTED | approvals
    if approvals & 1 != 0:
        self._rounds[r].approved_mask |= bit
    log Voted(round=r, voter=voter, approvals=approvals, scores_ppm=scores_ppm)
    return bit


@internal
def _record_vote(voter: address, r: uint256, approvals: uint256, scores_ppm: DynArray[int256, MAX_SLOTS]):
    """Check and count one voter's ballot on round r (vote() ends here; submit_ballots runs the
    same checks and the same counting, skipping instead of reverting)."""
    problem: String[32] = self._vote_problem(voter, r, approvals, scores_ppm)
    assert len(problem) == 0, problem
    marks: uint256 = self._count_vote(voter, 1 << (self._slot[voter] - 1), r, approvals, scores_ppm)
    self._rounds[r].voted_mask |= marks
    self._rounds[r].votes += 1


@internal
@view
def _domain_separator() -> bytes32:
    """EIP-712 domain: this contract on this chain, so a ballot cannot be replayed elsewhere."""
    return keccak256(abi_encode(EIP712_DOMAIN_TYPEHASH, EIP712_NAME_HASH, EIP712_VERSION_HASH,
                                chain.id, self))


@internal
@pure
def _ballot_hash(b: SignedBallot) -> bytes32:
    """EIP-712 hashStruct(Ballot): an int256[] is hashed as keccak256 of its words concatenated
    (the ABI encoding of the array less its offset and length words; one score: its word)."""
    scores_hash: bytes32 = self._scores_hash(b.scores_ppm)
    return keccak256(abi_encode(BALLOT_TYPEHASH, b.round, b.approvals, scores_hash))


@internal
@pure
def _scores_hash(scores_ppm: DynArray[int256, MAX_SLOTS]) -> bytes32:
    """keccak256 of the scores' 32-byte words concatenated (as EIP-712 hashes an int256[])."""
    if len(scores_ppm) == 1:
        return keccak256(abi_encode(scores_ppm[0]))
    words: Bytes[64 + 32 * MAX_SLOTS] = abi_encode(scores_ppm)
    return keccak256(slice(words, 64, 32 * len(scores_ppm)))


@internal
@view
def _commitment_of(r: uint256, voter: address, approvals: uint256, scores_ppm: DynArray[int256, MAX_SLOTS],
                   salt: bytes32) -> bytes32:
    """What a sealed vote commits to: this contract on this chain (the domain separator), the round,
    the voter, its approvals and scores, and a secret salt, so a commitment can be neither guessed nor
    copied (another voter's, replayed, reveals nothing that matches) nor replayed in another round."""
    return keccak256(abi_encode(self._domain_separator(), r, voter, approvals, self._scores_hash(scores_ppm), salt))


@internal
@view
def _commit_problem(voter: address, bit: uint256, r: uint256, commitment: bytes32, active: uint256,
                    voters: uint256, committed: uint256) -> String[32]:
    """The checks of one voter's commitment once the round's own checks passed ("" if it counts)."""
    if active & bit == 0:
        return "suspended"
    if voters & bit == 0:
        return "proposer cannot vote"
    if committed & bit != 0:
        return "already committed"
    if commitment == empty(bytes32):
        return "empty commitment"
    return ""


@internal
@view
def _commit_round_problem(r: uint256) -> String[32]:
    """Why round r takes no commitment now ("" if it does)."""
    if not sealed:
        return "votes are not sealed"
    if r != self.round:
        return "wrong round"
    if self._rounds[r].state != PROPOSED:
        return "no proposal"
    opened: uint256 = self._vote_opened(r)
    if opened == 0:
        return "proposals still open"
    if block.number > opened + vote_window:
        return "vote window closed"
    return ""


@internal
@view
def _reveal_round_problem(r: uint256) -> String[32]:
    """Why round r takes no reveal now ("" if it does)."""
    if not sealed:
        return "votes are not sealed"
    if r != self.round:
        return "wrong round"
    if self._rounds[r].state != PROPOSED:
        return "no proposal"
    opened: uint256 = self._reveal_opened(r)
    if opened == 0:
        return "commitments still open"
    if block.number > opened + reveal_window:
        return "reveal window closed"
    return ""


@internal
def _count_commit(voter: address, bit: uint256, r: uint256, commitment: bytes32):
    """Record a commitment its checks passed; the caller adds bit to committed_mask and the count."""
    self.commitment[r][voter] = commitment
    log Committed(round=r, voter=voter, commitment=commitment)


@internal
def _add_commits(r: uint256, committed: uint256, counted: uint256):
    """Write the round's committed bits and count once; the block the last voter's came in."""
    self._rounds[r].committed_mask = committed
    commits: uint256 = self._rounds[r].commits + counted
    self._rounds[r].commits = commits
    if commits == self._rounds[r].eligible:
        self._rounds[r].commit_block = block.number


@internal
@view
def _reveal_problem(rv: Reveal, r: uint256, active: uint256, voters: uint256, voted: uint256) -> String[32]:
    """The checks of one reveal once the round's own passed: its commitment, then the vote's own."""
    s: uint256 = self._slot[rv.voter]
    if s == 0:
        return "not a member"
    c: bytes32 = self.commitment[r][rv.voter]
    if c == empty(bytes32):
        return "no commitment"
    if voted & (1 << (s - 1)) != 0:
        return "already voted"
    if c != self._commitment_of(r, rv.voter, rv.approvals, rv.scores_ppm, rv.salt):
        return "does not match the commitment"
    return self._ballot_problem(rv.voter, 1 << (s - 1), r, rv.approvals, rv.scores_ppm, active, voters, voted, False)


# -- transactions ----------------------------------------------------------------------------


@external
def start():
    """
    @notice Anyone fixes the draw's seed and starts round 0, from the block after deployment on.
    @dev draw_seed = keccak256(seed, blockhash(deployed_block)): the hash of the block that holds
         the deployment, which nobody knew when the deployment was signed (its producer could choose
         among blocks; docs/contract.md says who can influence what). Past 256 blocks that hash is
         gone and the previous block's is used instead.
    """
    assert self.draw_seed == empty(bytes32), "already started"
    deployed: uint256 = self.deployed_block
    assert block.number > deployed, "start from the block after deployment"
    seed_block: uint256 = deployed
    if block.number - deployed > 256:
        seed_block = block.number - 1
    ds: bytes32 = keccak256(concat(self.seed, blockhash(seed_block)))
    if ds == empty(bytes32):  # never in practice; empty means "not started"
        ds = keccak256(ds)
    self.draw_seed = ds
    log Started(draw_seed=ds, seed_block=seed_block)
    self._start_round(0)


@external
def propose(r: uint256, slot: uint256, digest: bytes32, uri: String[URI_MAX]):
    """
    @notice A proposer of the round announces the digest of its new weights and where they are.
    @dev Only slot's drawn proposer, once, within proposal_window blocks of the round's start.
    """
    assert self._slot[msg.sender] != 0, "not a member"
    assert r == self.round, "wrong round"
    assert slot < self._rounds[r].slots, "no such slot"
    assert msg.sender == self._slots[r][slot].proposer, "not the proposer"
    assert self._rounds[r].active != 0, "suspended"
    mask: uint256 = self._rounds[r].proposed_mask
    assert mask & (1 << slot) == 0, "already proposed"
    assert block.number <= self._rounds[r].start_block + proposal_window, "proposal window closed"
    assert digest != empty(bytes32), "empty digest"

    self._rounds[r].state = PROPOSED
    self._rounds[r].proposed_block = block.number
    self._rounds[r].proposed_mask = mask | (1 << slot)
    self._slots[r][slot].digest = digest
    self._slots[r][slot].uri = uri
    log Proposed(round=r, proposer=msg.sender, digest=digest, uri=uri, slot=slot)


@external
def vote(r: uint256, approvals: uint256, scores_ppm: DynArray[int256, MAX_SLOTS]):
    """
    @notice A voter of round r judges its proposals in one transaction: bit j of approvals
            approves slot j (combine "average": bit 0 approves the average); scores_ppm are
            recorded only.
    @dev Voters: active when the round started, less the proposer of a one-slot round. Once,
         within vote_window blocks of voting opening (every slot proposed, or the proposal
         window over with at least one).
    """
    assert not sealed, "votes are sealed"
    self._record_vote(msg.sender, r, approvals, scores_ppm)


@external
def commit_vote(r: uint256, commitment: bytes32):
    """
    @notice sealed: a voter of round r commits to its vote (see _commitment_of), within the vote
            window; it reveals it with submit_reveals once the reveal phase opens.
    """
    s: uint256 = self._slot[msg.sender]
    assert s != 0, "not a member"
    problem: String[32] = self._commit_round_problem(r)
    assert len(problem) == 0, problem
    active: uint256 = self._rounds[r].active
    committed: uint256 = self._rounds[r].committed_mask
    bit: uint256 = 1 << (s - 1)
    problem = self._commit_problem(msg.sender, bit, r, commitment, active,
                                   self._voters(active, self._slots[r][0].proposer), committed)
    assert len(problem) == 0, problem
    self._count_commit(msg.sender, bit, r, commitment)
    self._add_commits(r, committed | bit, 1)


@external
def submit_commits(r: uint256, commits: DynArray[SignedCommit, MAX_BATCH]) -> uint256:
    """
    @notice sealed, signed ballots: any member submits other members' EIP-712 signed commitments
            for round r in one transaction; each counts as its signer's commit_vote. Returns how
            many were counted; a bad one (no member's signature, another round, not a voter,
            committed already, empty) is skipped with BallotSkipped.
    """
    assert self._slot[msg.sender] != 0, "not a member"
    problem: String[32] = self._commit_round_problem(r)
    assert len(problem) == 0, problem
    committed: uint256 = 0
    counted: uint256 = 0
    bad: bool = False
    committed, counted, bad = self._take_commits(r, commits, self._rounds[r].committed_mask, True)
    if counted != 0:
        self._add_commits(r, committed, counted)
    return counted


@internal
def _take_commits(r: uint256, commits: DynArray[SignedCommit, MAX_MEMBERS], committed: uint256,
                  store: bool) -> (uint256, uint256, bool):
    """Check signed commitments on top of `committed` (who committed before) and, if `store`, record
    the valid ones (a bad one is skipped with BallotSkipped). Returns who committed then, how many of
    the batch were valid, and whether any was not (AggregateCoordinator's challenge)."""
    domain: bytes32 = self._domain_separator()
    active: uint256 = self._rounds[r].active
    voters: uint256 = self._voters(active, self._slots[r][0].proposer)
    counted: uint256 = 0
    bad: bool = False
    i: uint256 = 0
    for c: SignedCommit in commits:
        digest: bytes32 = keccak256(concat(x"1901", domain, keccak256(abi_encode(COMMIT_TYPEHASH, c.round, c.commitment))))
        signer: address = ecrecover(digest, c.v, c.r, c.s)
        s: uint256 = self._slot[signer]
        reason: String[32] = ""
        if s == 0:
            reason = "not a member's signature"
        elif c.round != r:
            reason = "wrong round"
        else:
            reason = self._commit_problem(signer, 1 << (s - 1), r, c.commitment, active, voters, committed)
        if len(reason) == 0:
            if store:
                self._count_commit(signer, 1 << (s - 1), r, c.commitment)
            committed |= 1 << (s - 1)
            counted += 1
        else:
            bad = True
            if store:
                log BallotSkipped(round=r, signer=signer, index=i, reason=reason)
        i += 1
    return committed, counted, bad


@external
def submit_reveals(r: uint256, reveals: DynArray[Reveal, MAX_BATCH]) -> uint256:
    """
    @notice sealed: a voter reveals its vote, or any member submits other members' reveals, for
            round r in one transaction, within reveal_window blocks of the reveal phase opening. No
            signatures: each is checked against its voter's commitment, and counted exactly as vote()
            counts a vote (Voted). Returns how many were counted; a bad one (no or another commitment,
            revealed already, or failing vote()'s checks) is skipped with BallotSkipped (signer: the
            voter it names).
    """
    assert self._slot[msg.sender] != 0, "not a member"
    problem: String[32] = self._reveal_round_problem(r)
    assert len(problem) == 0, problem
    active: uint256 = self._rounds[r].active
    voters: uint256 = self._voters(active, self._slots[r][0].proposer)
    voted: uint256 = self._rounds[r].voted_mask
    counted: uint256 = 0
    i: uint256 = 0
    for rv: Reveal in reveals:
        reason: String[32] = self._reveal_problem(rv, r, active, voters, voted)
        if len(reason) == 0:
            voted |= self._count_vote(rv.voter, 1 << (self._slot[rv.voter] - 1), r, rv.approvals, rv.scores_ppm)
            counted += 1
        else:
            log BallotSkipped(round=r, signer=rv.voter, index=i, reason=reason)
        i += 1
    if counted != 0:
        self._rounds[r].voted_mask = voted
        self._rounds[r].votes += counted
    return counted


@external
def submit_ballots(r: uint256, ballots: DynArray[SignedBallot, MAX_BATCH]) -> uint256:
    """
    @notice Any member submits other members' EIP-712 signed ballots for round r in one
            transaction; each counts exactly as if its signer had called vote() with the same
            approvals and scores. Returns how many were counted.
    @dev The batch as a whole must be for the current round, with voting open, within the vote
         window. Each ballot is checked on its own: one that recovers to no member, names another
         round, or fails any of vote()'s checks (proposer of a one-slot round, suspended, already
         voted, scores out of range or of the wrong count, approvals outside the proposed slots
         or of the signer's own slot) is skipped with BallotSkipped and never counted; the
         others still are.
    """
    assert not sealed, "votes are sealed"
    assert self._slot[msg.sender] != 0, "not a member"
    assert r == self.round, "wrong round"
    assert self._rounds[r].state == PROPOSED, "no proposal"
    opened: uint256 = self._vote_opened(r)
    assert opened != 0, "proposals still open"
    assert block.number <= opened + vote_window, "vote window closed"
    # The round's side of vote()'s checks holds for the whole batch (asserted above), so each
    # ballot gets only its own checks; the round's voted marks and count are written once.
    domain: bytes32 = self._domain_separator()
    active: uint256 = self._rounds[r].active
    voters: uint256 = self._voters(active, self._slots[r][0].proposer)
    voted: uint256 = self._rounds[r].voted_mask
    counted: uint256 = 0
    i: uint256 = 0
    for b: SignedBallot in ballots:
        signer: address = ecrecover(keccak256(concat(x"1901", domain, self._ballot_hash(b))), b.v, b.r, b.s)
        s: uint256 = self._slot[signer]  # 0 for the zero address too: never a member
        reason: String[32] = ""
        if s == 0:
            reason = "not a member's signature"
        elif b.round != r:
            reason = "wrong round"
        else:
            reason = self._ballot_problem(signer, 1 << (s - 1), r, b.approvals, b.scores_ppm, active, voters,
                                          voted, False)
        if len(reason) == 0:
            voted |= self._count_vote(signer, 1 << (s - 1), r, b.approvals, b.scores_ppm)
            counted += 1
        else:
            log BallotSkipped(round=r, signer=signer, index=i, reason=reason)
        i += 1
    if counted != 0:
        self._rounds[r].voted_mask = voted
        self._rounds[r].votes += counted
    return counted


@external
def finalize(r: uint256):
    """
    @notice Anyone closes round r once its outcome can no longer change, and starts round r + 1.
    """
    self._finalize(r)


@internal
def _finalize(r: uint256):
    """
    @notice Close round r (finalize; AggregateCoordinator first counts a standing reveals post).
    @dev Without a proposal: after the proposal window, the round is void and its proposers
         missed a duty. With one: once every voter voted or the vote window passed; each slot
         (or the average) is accepted iff its approvals >= required; proposers who did not
         propose and voters who did not vote missed a duty (one miss per member per round).
    """
    assert self.draw_seed != empty(bytes32), "not started"
    assert r == self.round, "wrong round"
    round_active: uint256 = self._rounds[r].active
    slots: uint256 = self._rounds[r].slots
    proposed: uint256 = self._rounds[r].proposed_mask
    first: address = self._slots[r][0].proposer
    active: uint256 = self._active
    before: uint256 = active

    # Slot holders who did not propose missed a duty (none if nobody was active); holders: every
    # slot's (bit per member), proposers: those who proposed.
    silent: uint256 = 0
    holders: uint256 = 0
    for j: uint256 in range(slots, bound=MAX_SLOTS):
        bit: uint256 = 1 << (self._slot[self._slots[r][j].proposer] - 1)
        holders |= bit
        if proposed & (1 << j) == 0 and round_active != 0:
            silent |= bit
    did_propose: uint256 = holders & ~silent
    if round_active == 0:
        did_propose = 0

    if proposed == 0:
        assert block.number > self._rounds[r].start_block + proposal_window, "too early to finalize"
        self._rounds[r].state = VOID
        log RoundVoided(round=r, proposer=first)
        active = self._duties(r, silent, 0, active, silent, 0)
        if active != before:
            self._active = active
        self._start_round(r + 1)
        return

    voters: uint256 = self._voters(round_active, first)
    votes: uint256 = self._rounds[r].votes
    if sealed:
        # every committed vote revealed (every voter's, or the vote window over), or the reveal window over
        revealed: uint256 = self._reveal_opened(r)
        assert revealed != 0 and (votes == self._rounds[r].commits or block.number > revealed + reveal_window), \
            "too early to finalize"
    else:
        opened: uint256 = self._vote_opened(r)
        assert votes == self._popcount(voters) or (opened != 0 and block.number > opened + vote_window), \
            "too early to finalize"

    required: uint256 = self._required_of(round_active)
    average: bool = vote_on_average and slots > 1
    approvals: DynArray[uint256, MAX_SLOTS] = []
    accepted: uint256 = 0
    if average:
        approvals.append(self._rounds[r].approvals)
        if self._rounds[r].approvals >= required:
            accepted = proposed
    else:
        for j: uint256 in range(slots, bound=MAX_SLOTS):
            a: uint256 = self._slots[r][j].approvals
            approvals.append(a)
            if proposed & (1 << j) != 0 and a >= required:
                accepted |= 1 << j

    digest: bytes32 = empty(bytes32)
    if accepted != 0:
        digest = self._combination(r, accepted, slots)
        self._rounds[r].state = ACCEPTED
        self._rounds[r].accepted_mask = accepted
        self.accepted_digest = digest
        self.accepted_round = r
    else:
        digest = self._combination(r, proposed, slots)
        self._rounds[r].state = REJECTED
    log Finalized(
        round=r,
        proposer=first,
        accepted=accepted != 0,
        digest=digest,
        approvals=approvals,
        votes=votes,
        required=required,
        proposed_slots=proposed,
        accepted_slots=accepted,
    )

    # Count the round's duties as bitmaps (constant work in the members): who proposed and whose
    # proposal was accepted, who voted and with the outcome on every proposal it judged, who missed a
    # duty (silent proposers, voters who did not vote: one miss per member per round).
    # A one-verdict round (one slot, or the average) reads each voter's approval from approved_mask;
    # with several slots judged each, from its ballot, less its own slot.
    voted: uint256 = self._rounds[r].voted_mask
    missed: uint256 = silent | (voters & ~voted)
    unrevealed: uint256 = self._rounds[r].committed_mask & ~voted  # sealed: committed, never revealed
    majority: uint256 = 0
    if average or slots == 1:
        majority = voted & ~self._rounds[r].approved_mask
        if accepted != 0:
            majority = voted & self._rounds[r].approved_mask
    else:
        for i: uint256 in range(N, bound=MAX_MEMBERS):
            bit: uint256 = 1 << i
            if voted >> i == 0:
                break
            if voted & bit == 0:
                continue
            m: address = self._members[i]
            b: uint256 = self.ballot[r][m] & ~VOTED
            judged: uint256 = proposed
            if holders & bit != 0:
                for j: uint256 in range(slots, bound=MAX_SLOTS):
                    if self._slots[r][j].proposer == m:
                        judged &= ~(1 << j)
            if b & judged == accepted & judged:
                majority |= bit
    won: uint256 = 0
    for j: uint256 in range(slots, bound=MAX_SLOTS):
        if accepted & (1 << j) != 0:
            won |= 1 << (self._slot[self._slots[r][j].proposer] - 1)
    self._add(C_PROPOSED, did_propose)
    self._add(C_ACCEPTED, won)
    self._add(C_VOTES, voted)
    self._add(C_MAJORITY, majority)
    active = self._duties(r, missed, voted | did_propose, active, silent, unrevealed)
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
    limit: uint256 = self.max_missed
    for b: uint256 in range(PLANES):  # its missed-in-a-row count starts over
        if limit >> b == 0:
            break
        streak: uint256 = self._streak[b]
        if streak & bit != 0:
            self._streak[b] = streak & ~bit
    log Rejoined(member=msg.sender, round=self.round + 1)


# -- views -----------------------------------------------------------------------------------


@view
@external
def domain_separator() -> bytes32:
    """The EIP-712 domain separator ballots are signed under (name "cohep Coordinator", version "5")."""
    return self._domain_separator()


@view
@external
def members() -> DynArray[address, MAX_MEMBERS]:
    return self._members


@view
@external
def member_count() -> uint256:
    return N


@view
@external
def is_member(a: address) -> bool:
    return self._slot[a] != 0


@view
@external
def proposers_of(r: uint256) -> DynArray[address, MAX_SLOTS]:
    """Every slot's proposer of a started round, in slot order."""
    assert r <= self.round, "round not started"
    out: DynArray[address, MAX_SLOTS] = []
    for j: uint256 in range(self._rounds[r].slots, bound=MAX_SLOTS):
        out.append(self._slots[r][j].proposer)
    return out


@view
@external
def draw_slots(r: uint256) -> DynArray[uint256, MAX_SLOTS]:
    """Member indices the draw names for round r's slots given who is active now."""
    return self._draw(r, self._active)


@view
@external
def permutation(epoch: uint256) -> DynArray[uint256, MAX_MEMBERS]:
    """Member indices in proposing order for rounds epoch * n .. epoch * n + n - 1."""
    out: DynArray[uint256, MAX_MEMBERS] = []
    ds: bytes32 = self.draw_seed
    for pos: uint256 in range(N, bound=MAX_MEMBERS):
        out.append(self._perm_at(ds, epoch, pos))
    return out


@view
@external
def required_for(eligible: uint256) -> uint256:
    """Approvals a round with `eligible` voters requires: max(1, ceil(num * eligible / den))."""
    assert eligible < MAX_MEMBERS, "eligible out of range"
    return self._required(eligible)


@view
@external
def round_info(r: uint256) -> RoundInfo:
    assert r <= self.round, "round not started"
    d: RoundData = self._rounds[r]
    s0: SlotData = self._slots[r][0]
    approvals: uint256 = s0.approvals
    if vote_on_average and d.slots > 1:
        approvals = d.approvals
    return RoundInfo(
        proposer=s0.proposer,
        start_block=d.start_block,
        active=d.active,
        eligible=d.eligible,
        required=self._required_of(d.active),
        proposed=self._vote_opened(r) != 0,
        proposed_block=self._vote_opened(r),
        digest=s0.digest,
        uri=s0.uri,
        approvals=approvals,
        votes=d.votes,
        finalized=d.state >= ACCEPTED,
        accepted=d.state == ACCEPTED,
        void=d.state == VOID,
        slots=d.slots,
        proposed_slots=d.proposed_mask,
        accepted_slots=d.accepted_mask,
        commits=d.commits,
        reveal_block=self._reveal_opened(r) if sealed else 0,
    )


@view
@external
def slot_info(r: uint256, j: uint256) -> SlotInfo:
    assert r <= self.round, "round not started"
    assert j < self._rounds[r].slots, "no such slot"
    s: SlotData = self._slots[r][j]
    return SlotInfo(
        proposer=s.proposer,
        proposed=self._rounds[r].proposed_mask & (1 << j) != 0,
        digest=s.digest,
        uri=s.uri,
        approvals=s.approvals,
        accepted=self._rounds[r].accepted_mask & (1 << j) != 0,
    )


@view
@external
def member_stats(m: address) -> MemberStats:
    s: uint256 = self._slot[m]
    assert s != 0, "not a member"
    i: uint256 = s - 1
    proposals: uint256 = self._count(C_MISSED, i)
    votes: uint256 = self._count(C_MISSED + 1, i)
    reveals: uint256 = self._count(C_MISSED + 2, i)
    in_a_row: uint256 = 0
    for b: uint256 in range(PLANES):
        if self.max_missed >> b == 0:
            break
        in_a_row |= ((self._streak[b] >> i) & 1) << b
    return MemberStats(
        proposed=self._count(C_PROPOSED, i),
        accepted=self._count(C_ACCEPTED, i),
        votes_cast=self._count(C_VOTES, i),
        votes_with_majority=self._count(C_MAJORITY, i),
        missed=proposals + votes + reveals,
        missed_in_a_row=in_a_row,
        suspended=self._active & (1 << i) == 0,
        missed_proposals=proposals,
        missed_votes=votes,
        missed_reveals=reveals,
    )
