"""How long a voter has: the round's voting deadline (a block number) in seconds, at the chain's pace.

A proposal's fetch, checks and scoring must end in time for the vote to be mined by the vote
window's last block (sealed votes: the commitment, whose window is the same), whatever the proposer
does. The node turns that block into a wall-clock time: the blocks left, times the seconds a block
takes, less a margin for sending the vote (``MARGIN_BLOCKS`` blocks and ``MARGIN_S`` seconds) and the
time the member's own scoring takes. A node that follows its chain never waits on one member past that.

The block time is measured from the timestamps of the chain's recent blocks (``SPAN_BLOCKS`` of them,
at least ``MIN_BLOCKS``: timestamps are whole seconds, so 64 blocks of 0.25 s measure within 6 %) and
from the blocks this node saw pass on its own clock; the shorter of the two counts, so an error costs
margin rather than the vote. With neither (a chain younger than ``MIN_BLOCKS`` blocks, one timestamp
for all) it is the stated ``DEFAULT_BLOCK_S``.
"""
from __future__ import annotations

import time

#: seconds per block when the chain's timestamps do not say (fewer than 2 blocks, or all in one second)
DEFAULT_BLOCK_S = 1.0
#: how many recent blocks the block time is measured over (timestamps are whole seconds)
SPAN_BLOCKS = 64
#: the fewest blocks either measure needs
MIN_BLOCKS = 16
#: the vote is sent this many blocks before the deadline block (one to be mined in, one to spare)...
MARGIN_BLOCKS = 2
#: ...and this many seconds earlier still (signing, sending, a slow RPC node)
MARGIN_S = 1.0
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

    def seconds_left(self, deadline_block: int, block: int, scoring_s: float = 0.0) -> float:
        """Seconds from now a voter at ``block`` may spend fetching and checking, to have its vote
        mined by ``deadline_block`` (0 if none)."""
        block_s = self.block_seconds()
        left = (deadline_block - block - MARGIN_BLOCKS) * block_s - MARGIN_S - scoring_s
        return max(0.0, left)

    def stop(self, deadline_block: int, block: int, scoring_s: float = 0.0) -> float:
        """``seconds_left`` as a ``time.monotonic()`` value (what ``Fetcher.until`` takes)."""
        return time.monotonic() + self.seconds_left(deadline_block, block, scoring_s)
