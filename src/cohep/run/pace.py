"""How long a voter has: the round's voting deadline (a block number) in seconds, at the chain's pace.

A proposal's fetch, checks and scoring must end in time for the vote to be mined by the vote
window's last block (sealed votes: the commitment, whose window is the same), whatever the proposer
does. The node turns that block into a wall-clock time: the blocks left, times the seconds a block
takes, counted from when it read the block number. The fetch must stop a margin before that
(``vote_margin``): ``MARGIN_BLOCKS`` blocks for the vote to be mined in, plus the voter's own work
after a fetch (scoring, signing and sending the vote), taken from what that work cost in its last
``WORK_ROUNDS`` rounds on this machine (the slowest, ``WORK_FACTOR`` times over), at least one
scoring per judged proposal and never under ``WORK_FLOOR_S``. A loaded machine thus stops fetching
earlier, by what it has measured itself needing. A voter whose fetches end with less than
``judge_margin`` left (the same work, unpadded) rejects for ``timeout`` at once instead of scoring.
A node that follows its chain never waits on one member past that.

The block time is measured from the timestamps of the chain's recent blocks (``SPAN_BLOCKS`` of them,
at least ``MIN_BLOCKS``: timestamps are whole seconds, so 64 blocks of 0.25 s measure within 6 %) and
from the blocks this node saw pass on its own clock; the shorter of the two counts, so an error costs
margin rather than the vote. With neither (a chain younger than ``MIN_BLOCKS`` blocks, one timestamp
for all) it is the stated ``DEFAULT_BLOCK_S``.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

#: seconds per block when the chain's timestamps do not say (fewer than 2 blocks, or all in one second)
DEFAULT_BLOCK_S = 1.0
#: how many recent blocks the block time is measured over (timestamps are whole seconds)
SPAN_BLOCKS = 64
#: the fewest blocks either measure needs
MIN_BLOCKS = 16
#: the vote is sent this many blocks before the deadline block (one to be mined in, one to spare)...
MARGIN_BLOCKS = 2
#: ...and earlier still by the voter's own work after its fetch (scoring, signing, sending, a slow RPC
#: node): never less than this many seconds...
WORK_FLOOR_S = 1.5
#: ...nor than the slowest of its last this many rounds' work...
WORK_ROUNDS = 5
#: ...taken this many times over (a machine that just got busier is slower still next round)
WORK_FACTOR = 1.5
#: seconds between measurements of the block time
REMEASURE_S = 30.0


class Pace:
    """The chain's block time, measured now and then, and the voting deadlines it gives."""

    def __init__(self, chain, *, default_s: float = DEFAULT_BLOCK_S, span: int = SPAN_BLOCKS):
        self.chain, self.default_s, self.span = chain, default_s, span
        self._block_s: float | None = None
        self._measured = -float("inf")
        self._seen: tuple[int, float] | None = None  # (block, time.monotonic()) when first observed
        self.measured_from = "default"  #: "timestamps" or "clock" once either said

    def block_seconds(self) -> float:
        """Seconds per block over the last ``span`` blocks (re-measured every ``REMEASURE_S``)."""
        now = time.monotonic()
        if self._block_s is None or now - self._measured > REMEASURE_S:
            self._measured = now
            found = [(m, how) for m, how in ((self._measure(), "timestamps"), (self._clock(), "clock")) if m]
            if found:
                self._block_s, self.measured_from = min(found)
            elif self._block_s is None:
                self._block_s = self.default_s
        return self._block_s

    def observe(self, block: int) -> None:
        """Note a block number just read: the blocks seen passing on this node's clock are a measure."""
        now = time.monotonic()
        if self._seen is None or block < self._seen[0]:
            self._seen = (block, now)
        elif block - self._seen[0] >= MIN_BLOCKS and self.measured_from == "default":
            self._measured = -float("inf")  # enough seen: measure at the next ask

    def _clock(self) -> float | None:
        if self._seen is None:
            return None
        try:
            head, now = self.chain.block_number(), time.monotonic()
        except Exception:  # noqa: BLE001 - any RPC failure: no measure this time
            return None
        blocks = head - self._seen[0]
        return (now - self._seen[1]) / blocks if blocks >= MIN_BLOCKS else None

    def _measure(self) -> float | None:
        try:
            head = self.chain.block_number()
            first = max(0, head - self.span)
            if head - first < MIN_BLOCKS:
                return None
            t1 = int(self.chain.w3.eth.get_block(head)["timestamp"])
            t0 = int(self.chain.w3.eth.get_block(first)["timestamp"])
        except Exception:  # noqa: BLE001 - any RPC failure: keep the last measure (or the default)
            return None
        if t1 <= t0:
            return None
        return (t1 - t0) / (head - first)

    def seconds_left(self, deadline_block: int, block: int, work_s: Sequence[float] = (),
                     scoring_s: float = 0.0, judged: int = 1) -> float:
        """Seconds from when ``block`` was read that a voter may spend fetching and checking, to have
        its vote mined by ``deadline_block`` (0 if none): ``vote_margin`` of its recent ``work_s``."""
        block_s = self.block_seconds()
        left = (deadline_block - block) * block_s - vote_margin(work_s, block_s, scoring_s, judged)
        return max(0.0, left)

    def stop(self, deadline_block: int, block: int, work_s: Sequence[float] = (), scoring_s: float = 0.0,
             judged: int = 1, read_at: float | None = None) -> float:
        """``seconds_left`` as a ``time.monotonic()`` value (what ``Fetcher.until`` takes), counted from
        ``read_at``, when ``block`` was read (default: now). A node that took a while since then (a busy
        machine, a slow RPC node) has that much less left, not the whole window again."""
        start = time.monotonic() if read_at is None else read_at
        return start + self.seconds_left(deadline_block, block, work_s, scoring_s, judged)

    def deadline_at(self, deadline_block: int, block: int, read_at: float | None = None) -> float:
        """When ``deadline_block`` comes, as a ``time.monotonic()`` value, for a ``block`` read at
        ``read_at`` (default: now)."""
        start = time.monotonic() if read_at is None else read_at
        return start + (deadline_block - block) * self.block_seconds()


def vote_margin(work_s: Sequence[float], block_s: float, scoring_s: float = 0.0, judged: int = 1) -> float:
    """Seconds before the vote deadline block's time at which a voter stops fetching: ``MARGIN_BLOCKS``
    blocks at ``block_s``, plus its work after a fetch: ``WORK_FACTOR`` times the slowest of its last
    ``WORK_ROUNDS`` ``work_s`` (seconds from a round's fetches ending to its vote sent), at least
    ``scoring_s`` per proposal it judges and one more (its current weights', should it have to score
    them again), and at least ``WORK_FLOOR_S``."""
    recent = max((max(0.0, w) for w in list(work_s)[-WORK_ROUNDS:]), default=0.0)
    work = max(WORK_FLOOR_S, scoring_s * (max(1, judged) + 1), WORK_FACTOR * recent)
    return MARGIN_BLOCKS * block_s + work


def judge_margin(work_s: Sequence[float], block_s: float, scoring_s: float = 0.0, judged: int = 1) -> float:
    """Seconds before the vote deadline block's time after which a voter whose fetches have ended
    rejects for ``timeout`` rather than start to score: ``MARGIN_BLOCKS`` blocks at ``block_s``, plus
    the slowest of its last ``WORK_ROUNDS`` ``work_s`` once, at least ``scoring_s`` per proposal it
    judges. This is ``vote_margin`` without its padding (``WORK_FACTOR``, ``WORK_FLOOR_S``), which
    is there for a fetch that ends a little past its stop, as a cut-off read does."""
    recent = max((max(0.0, w) for w in list(work_s)[-WORK_ROUNDS:]), default=0.0)
    return MARGIN_BLOCKS * block_s + max(scoring_s * max(1, judged), recent)
