# pragma version ~=0.4.3
# pragma evm-version cancun
# pragma optimize codesize
"""
@title cohep AggregateCoordinator (v5)
@notice The Coordinator's rounds with aggregated ballots: a phase's ballots reach the chain as one
        post whose cost does not grow with the members (docs/contract.md, Aggregated ballots).
@dev    Imports Coordinator.vy as a module: the same members, draw, windows, sealed votes, counting,
        suspension, events and views, in the same storage. What differs:

        * post_commits: one member (the relayer) posts the round's signed commitments as one
          bundle, the abi-encoded SignedCommit[] carried in its calldata (so every node of the chain
          keeps it), with the voters it names; the contract stores keccak256 of the bundle and the
          voters, O(1). For challenge_window blocks any member can prove the post wrong with the
          bundle (open_commits: signatures checked only then); otherwise the reveals post (or
          anything after it) counts the voters as committed.
        * post_reveals: the relayer posts the reveals (HashedReveal[]: voter, approvals, scores
          hash, salt) as one bundle and the tally it claims; challenge_reveals proves it wrong within
          challenge_window blocks (each reveal checked against its voter's commitment, which
          open_commits stores from the commitments' bundle); finalize counts a standing claim.
        * A proven fault discards the post and suspends its relayer (relay_faults counts it). A
          voter a post left out commits (commit_vote) or reveals (submit_reveals) directly; a voter
          a post named cannot commit again, so nobody changes its vote after the reveals are out.

        One verdict a round (one slot, or combine "average"): a claim is two bitmaps (who revealed,
        who approved). finalize counts it in O(1): the members' counters are Coordinator's bit
        planes, added a bitmap at a time, so no step of a round loops over its voters.
"""

import Coordinator as core

initializes: core

exports: (
    core.start,
    core.propose,
    core.rejoin,
    core.domain_separator,
    core.members,
    core.round_info,
    core.slot_info,
    core.member_stats,
    core.threshold_num,
    core.threshold_den,
    core.proposal_window,
    core.vote_window,
    core.max_missed,
    core.seed,
    core.initial_digest,
    core.model_digest,
    core.deployed_block,
    core.proposers,
    core.vote_on_average,
    core.sealed,
    core.reveal_window,
    core.draw_seed,
    core.round,
    core.accepted_digest,
    core.accepted_round,
    core.ballot,
    core.commitment,
)

MAX_MEMBERS: constant(uint256) = 256
# A post's bundle in calldata: the abi encoding of 256 signed commits (5 words each), 256 hashed reveals (4).
COMMITS_BYTES: constant(uint256) = 64 + 160 * MAX_MEMBERS
REVEALS_BYTES: constant(uint256) = 64 + 128 * MAX_MEMBERS
MAX_WINDOW: constant(uint256) = 10**6


# A reveal in a bundle: the scores enter as their hash (what the commitment binds).
struct HashedReveal:
    voter: address
    approvals: uint256
    scores_hash: bytes32
    salt: bytes32


# A round's posts. commit_mask: the voters the commitments post names (once settled: those it
# counted, direct commitments made before taking precedence); a discarded post keeps its relayer
# (one post a phase) and clears its root. voted, approved: the reveals post's claim, as Coordinator's
# voted_mask and approved_mask (bit i: members[i] revealed; and approved).
struct Aggregate:
    commit_root: bytes32
    commit_mask: uint256
    commit_block: uint256
    commit_relayer: address
    settled: bool
    unpacked: bool
    reveal_root: bytes32
    voted: uint256
    approved: uint256
    reveal_block: uint256
    reveal_relayer: address


event CommitsPosted:
    round: indexed(uint256)
    relayer: indexed(address)
    voters: uint256
    root: bytes32

event RevealsPosted:
    round: indexed(uint256)
    relayer: indexed(address)
    voted: uint256
    approved: uint256
    root: bytes32

# A challenge proved the relayer's post of `phase` ("commits" or "reveals") wrong: discarded.
event RelayFault:
    round: indexed(uint256)
    relayer: indexed(address)
    phase: String[8]


challenge_window: public(immutable(uint256))
aggregate: public(HashMap[uint256, Aggregate])
relay_faults: public(HashMap[address, uint256])


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
    reveal_window_: uint256,
    challenge_window_: uint256,
):
    """
    @notice Coordinator's parameters (votes always sealed) and challenge_window_: blocks after a post
            in which it can be challenged; a post leaves two of them in its window (to challenge it,
            then to commit or reveal directly).
    """
    core.__init__(members, threshold_num_, threshold_den_, proposal_window_, vote_window_, max_missed_, seed_,
                  initial_digest_, model_digest_, proposers_, vote_on_average_, True, reveal_window_)
    # two blocks at least: a reveals challenge is two transactions (open_commits, challenge_reveals)
    assert challenge_window_ >= 2 and 2 * challenge_window_ < min(vote_window_, reveal_window_), \
        "challenge window out of range"
    assert proposers_ == 1 or vote_on_average_, "aggregated ballots need one verdict a round"
    challenge_window = challenge_window_


@internal
def _fault(r: uint256, relayer: address, phase: String[8]):
    """A proven fault of relayer's post: counted, and the relayer suspended from the next round."""
    self.relay_faults[relayer] += 1
    bit: uint256 = 1 << (core._slot[relayer] - 1)
    if core._active & bit != 0:
        core._active &= ~bit
        log core.Suspended(member=relayer, round=r, reason="faulty relay")
    log RelayFault(round=r, relayer=relayer, phase=phase)


@internal
def _settle(r: uint256):
    """Count a commitments post past its challenge window (once): its voters that did not commit
    directly before it are committed."""
    # field by field: a struct read loads all eleven words, and this runs in every reveal and finalize
    if self.aggregate[r].settled or self.aggregate[r].commit_root == empty(bytes32):
        return
    assert block.number > self.aggregate[r].commit_block + challenge_window, "challenge window open"
    committed: uint256 = core._rounds[r].committed_mask
    add: uint256 = self.aggregate[r].commit_mask & ~committed
    self.aggregate[r].commit_mask = add
    self.aggregate[r].settled = True
    core._add_commits(r, committed | add, core._popcount(add))


@internal
@view
def _member(a: address):
    assert core._slot[a] != 0, "not a member"


@external
def commit_vote(r: uint256, commitment: bytes32):
    """
    @notice A voter commits directly (as Coordinator.commit_vote), e.g. one a post left out; a voter
            a standing commitments post names cannot.
    """
    s: uint256 = core._slot[msg.sender]
    assert s != 0, "not a member"
    problem: String[32] = core._commit_round_problem(r)
    assert len(problem) == 0, problem
    bit: uint256 = 1 << (s - 1)
    a: Aggregate = self.aggregate[r]
    assert a.settled or a.commit_mask & bit == 0, "already committed"
    active: uint256 = core._rounds[r].active
    committed: uint256 = core._rounds[r].committed_mask
    problem = core._commit_problem(msg.sender, bit, r, commitment, active,
                                   core._voters(active, core._slots[r][0].proposer), committed)
    assert len(problem) == 0, problem
    core._count_commit(msg.sender, bit, r, commitment)
    core._add_commits(r, committed | bit, 1)


@external
def post_commits(r: uint256, voters_mask: uint256, bundle: Bytes[COMMITS_BYTES]):
    """
    @notice Any member posts round r's signed commitments as one bundle (abi-encoded SignedCommit[])
            naming voters_mask (bit i: members[i]), once a round, none of them committed already, at
            least 2 * challenge_window blocks before the vote window closes.
    """
    self._member(msg.sender)
    problem: String[32] = core._commit_round_problem(r)
    assert len(problem) == 0, problem
    assert block.number + 2 * challenge_window <= core._vote_opened(r) + core.vote_window, "too late to post"
    assert self.aggregate[r].commit_relayer == empty(address), "already posted"
    assert voters_mask != 0 and voters_mask & ~core._voters(core._rounds[r].active, core._slots[r][0].proposer) == 0, \
        "not the voters"
    assert voters_mask & core._rounds[r].committed_mask == 0, "already committed"
    root: bytes32 = keccak256(bundle)
    self.aggregate[r].commit_root = root
    self.aggregate[r].commit_mask = voters_mask
    self.aggregate[r].commit_block = block.number
    self.aggregate[r].commit_relayer = msg.sender
    log CommitsPosted(round=r, relayer=msg.sender, voters=voters_mask, root=root)


@external
def open_commits(r: uint256, commits: DynArray[core.SignedCommit, MAX_MEMBERS]):
    """
    @notice Any member submits round r's commitments post's bundle. Within its challenge window it
            challenges the post: an entry that is not a voter's valid signed commitment (forged,
            another round, a voter twice, one committed already) or voters named without one prove
            it wrong; the post is discarded, its valid commitments counted as submit_commits counts
            them, and its relayer suspended ("no fault" reverts for a correct post). Once settled it
            stores the bundle's commitments (once), so that its voters can reveal directly and a
            reveals post can be challenged.
    """
    self._member(msg.sender)
    assert r == core.round, "wrong round"
    a: Aggregate = self.aggregate[r]
    assert a.commit_root != empty(bytes32) and not a.unpacked, "nothing to open"
    assert keccak256(abi_encode(commits)) == a.commit_root, "not the posted bundle"
    before: uint256 = core._rounds[r].committed_mask
    valid: uint256 = 0
    counted: uint256 = 0
    bad: bool = False
    if a.settled or block.number > a.commit_block + challenge_window:
        self._settle(r)
        valid, counted, bad = core._take_commits(r, commits, before & ~self.aggregate[r].commit_mask, True)
        self.aggregate[r].unpacked = True
        return
    valid, counted, bad = core._take_commits(r, commits, before, True)  # a correct post: all undone
    assert bad or valid != before | a.commit_mask, "no fault"
    self.aggregate[r].commit_root = empty(bytes32)
    self.aggregate[r].commit_mask = 0
    if counted != 0:
        core._add_commits(r, valid, counted)
    self._fault(r, a.commit_relayer, "commits")


@external
def post_reveals(r: uint256, voted: uint256, approved: uint256, bundle: Bytes[REVEALS_BYTES]):
    """
    @notice Any member posts round r's reveals as one bundle (abi-encoded HashedReveal[]) and the
            tally it claims, voted: bit i members[i] revealed, approved: bit i it approved; once a round,
            at least 2 * challenge_window blocks before the reveal window closes. Settles the
            commitments post first. Counted at finalize unless a challenge proves it wrong.
    """
    self._member(msg.sender)
    self._settle(r)
    problem: String[32] = core._reveal_round_problem(r)
    assert len(problem) == 0, problem
    assert block.number + 2 * challenge_window <= core._reveal_opened(r) + core.reveal_window, "too late to post"
    assert self.aggregate[r].reveal_relayer == empty(address), "already posted"
    assert voted & ~core._rounds[r].committed_mask == 0 and approved & ~voted == 0, "not committed"
    assert voted & core._rounds[r].voted_mask == 0, "already voted"
    root: bytes32 = keccak256(bundle)
    self.aggregate[r].reveal_root = root
    self.aggregate[r].voted = voted
    self.aggregate[r].approved = approved
    self.aggregate[r].reveal_block = block.number
    self.aggregate[r].reveal_relayer = msg.sender
    log RevealsPosted(round=r, relayer=msg.sender, voted=voted, approved=approved, root=root)


@external
def challenge_reveals(r: uint256, reveals: DynArray[HashedReveal, MAX_MEMBERS]):
    """
    @notice Within challenge_window blocks of round r's reveals post, any member proves it wrong with
            its bundle: an entry that does not match its voter's stored commitment (unpack_commits
            first), a vote twice, an approval other than bit 0, or a claim other than the entries'.
            Voters that revealed directly since are left out of both. The post is discarded (its
            voters reveal directly) and its relayer suspended; reverts "no fault" for a correct post.
    """
    self._member(msg.sender)
    assert r == core.round, "wrong round"
    a: Aggregate = self.aggregate[r]
    assert a.reveal_root != empty(bytes32), "nothing to challenge"
    assert block.number <= a.reveal_block + challenge_window, "challenge window closed"
    assert a.commit_root == empty(bytes32) or a.unpacked, "open the commitments first"
    assert keccak256(abi_encode(reveals)) == a.reveal_root, "not the posted bundle"
    direct: uint256 = core._rounds[r].voted_mask
    domain: bytes32 = core._domain_separator()
    marks: uint256 = 0
    yes: uint256 = 0
    bad: bool = False
    for rv: HashedReveal in reveals:
        s: uint256 = core._slot[rv.voter]
        if s == 0:
            bad = True
            continue
        bit: uint256 = 1 << (s - 1)
        if direct & bit != 0:
            continue
        c: bytes32 = core.commitment[r][rv.voter]
        if marks & bit != 0 or rv.approvals > 1 or c == empty(bytes32) or \
                c != keccak256(abi_encode(domain, r, rv.voter, rv.approvals, rv.scores_hash, rv.salt)):
            bad = True
            continue
        marks |= bit
        yes |= rv.approvals * bit
    assert bad or marks != a.voted & ~direct or yes != a.approved & ~direct, "no fault"
    self.aggregate[r].reveal_root = empty(bytes32)
    self.aggregate[r].voted = 0
    self.aggregate[r].approved = 0
    self._fault(r, a.reveal_relayer, "reveals")


@external
def reveal_vote(r: uint256, approve: uint256, score_ppm: int256, salt: bytes32):
    """
    @notice A voter reveals its own committed vote directly (one verdict: approve 0 or 1, one score),
            counted as Coordinator.submit_reveals counts one, e.g. one a post left out (its commitment
            stored: committed directly, or open_commits) or after a discarded post.
    """
    s: uint256 = core._slot[msg.sender]
    assert s != 0, "not a member"
    self._settle(r)
    problem: String[32] = core._reveal_round_problem(r)
    assert len(problem) == 0, problem
    bit: uint256 = 1 << (s - 1)
    voted: uint256 = core._rounds[r].voted_mask
    assert (voted | self.aggregate[r].voted) & bit == 0, "already voted"
    c: bytes32 = core.commitment[r][msg.sender]
    assert c != empty(bytes32), "no commitment"
    assert c == keccak256(abi_encode(core._domain_separator(), r, msg.sender, approve,
                                     keccak256(abi_encode(score_ppm)), salt)), "does not match the commitment"
    assert approve <= 1, "approvals outside the slots"
    assert score_ppm >= -core.MAX_SCORE_PPM and score_ppm <= core.MAX_SCORE_PPM, "score out of range"
    core._rounds[r].voted_mask = voted | core._count_vote(msg.sender, bit, r, approve, [score_ppm])
    core._rounds[r].votes += 1


@external
def finalize(r: uint256):
    """
    @notice Coordinator.finalize, after counting round r's standing reveals post once its challenge
            window has passed (its voters that revealed directly since count by their own reveal).
    """
    assert r == core.round, "wrong round"
    self._settle(r)
    voted: uint256 = self.aggregate[r].voted
    if voted != 0:
        assert block.number > self.aggregate[r].reveal_block + challenge_window, "too early to finalize"
        direct: uint256 = core._rounds[r].voted_mask
        claim: uint256 = voted & ~direct
        yes: uint256 = self.aggregate[r].approved & claim
        core._rounds[r].voted_mask = direct | claim
        if yes != 0:
            core._rounds[r].approved_mask |= yes
        core._rounds[r].votes += core._popcount(claim)
        if core.vote_on_average and core._rounds[r].slots > 1:
            core._rounds[r].approvals += core._popcount(yes)
        else:
            core._slots[r][0].approvals += core._popcount(yes)
        self.aggregate[r].voted = 0
    core._finalize(r)
