# pragma version ~=0.4.3
# pragma evm-version cancun
"""
@title cohep Competition
@notice Records a model competition: which member entered which trained model, and every other
        member's score of it on its private vote set. The leaderboard is computed from here, so
        no party (the organiser included) can add, drop or change a score.
@dev    No owner and no admin functions. Members are fixed at deployment. Entries close when the
        first score is cast, so every member scores the same field. A member never scores its own
        entry (judged impartially by all the others); each scores each other entry once.
"""

MAX_MEMBERS: constant(uint256) = 64
MAX_ENTRIES: constant(uint256) = 32
URI_MAX: constant(uint256) = 256
# |score| <= 1e9 in natural units, in parts per million (the client's to_ppm clamps to it).
MAX_SCORE_PPM: constant(int256) = 10**15


struct Entry:
    owner: address
    spec_digest: bytes32
    weights_digest: bytes32
    uri: String[URI_MAX]
    scores: uint256
    total_ppm: int256


event Entered:
    entry: indexed(uint256)
    owner: indexed(address)
    spec_digest: bytes32
    weights_digest: bytes32
    uri: String[URI_MAX]

event Scored:
    entry: indexed(uint256)
    member: indexed(address)
    score_ppm: int256


task_digest: public(immutable(bytes32))
deployed_block: public(immutable(uint256))
MEMBERS: immutable(DynArray[address, MAX_MEMBERS])
is_member: public(HashMap[address, bool])

n_entries: public(uint256)
scoring_started: public(bool)
_entries: HashMap[uint256, Entry]
score_of: public(HashMap[uint256, HashMap[address, int256]])
has_scored: public(HashMap[uint256, HashMap[address, bool]])


@deploy
def __init__(members: DynArray[address, MAX_MEMBERS], task_digest_: bytes32):
    """
    @param members The fixed member list (2..64 distinct non-zero addresses).
    @param task_digest_ Digest of what the entries compete on (data kind, shapes, classes, budget).
    """
    assert len(members) >= 2, "need at least 2 members"
    for m: address in members:
        assert m != empty(address), "zero address member"
        assert not self.is_member[m], "duplicate member"
        self.is_member[m] = True
    MEMBERS = members
    task_digest = task_digest_
    deployed_block = block.number


@external
def enter(spec_digest: bytes32, weights_digest: bytes32, uri: String[URI_MAX]) -> uint256:
    """@notice A member enters a trained model (its spec digest and its weights' digest and URI)."""
    assert self.is_member[msg.sender], "not a member"
    assert not self.scoring_started, "entries closed: scoring started"
    assert self.n_entries < MAX_ENTRIES, "too many entries"
    assert spec_digest != empty(bytes32) and weights_digest != empty(bytes32), "empty digest"
    i: uint256 = self.n_entries
    self._entries[i] = Entry(owner=msg.sender, spec_digest=spec_digest, weights_digest=weights_digest,
                             uri=uri, scores=0, total_ppm=0)
    self.n_entries = i + 1
    log Entered(entry=i, owner=msg.sender, spec_digest=spec_digest, weights_digest=weights_digest, uri=uri)
    return i


@external
def score(entry: uint256, score_ppm: int256):
    """@notice A member records its score of another member's entry, once."""
    assert self.is_member[msg.sender], "not a member"
    assert entry < self.n_entries, "no such entry"
    assert self._entries[entry].owner != msg.sender, "owner cannot score its own entry"
    assert not self.has_scored[entry][msg.sender], "already scored"
    assert score_ppm >= -MAX_SCORE_PPM and score_ppm <= MAX_SCORE_PPM, "score out of range"
    self.scoring_started = True
    self.has_scored[entry][msg.sender] = True
    self.score_of[entry][msg.sender] = score_ppm
    self._entries[entry].scores += 1
    self._entries[entry].total_ppm += score_ppm
    log Scored(entry=entry, member=msg.sender, score_ppm=score_ppm)


@view
@external
def members() -> DynArray[address, MAX_MEMBERS]:
    return MEMBERS


@view
@external
def entry(i: uint256) -> Entry:
    assert i < self.n_entries, "no such entry"
    return self._entries[i]
