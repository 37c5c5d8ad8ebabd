"""How signed ballots travel between nodes: each member's own store, under a fixed name.

With ``[chain] ballots = "signed"`` a node does not send ``vote()``: it signs its EIP-712 ballot
(``ledger/ballots.py``) and writes it into its own store as
``ballots/<contract>/<round>/<voter>.json`` (addresses lower-case hex), temp name then rename, so a
reader never sees half a file. Any node can then read every member's ballot from that member's store
(the stores the experiment lists; ``server.py`` serves these names too) and submit them in one
``submit_ballots`` transaction.

Sealed votes: a voter first posts its signed commitment as ``<voter>.commit.json`` (submitted with
``submit_commits``) and, only once the chain's reveal phase has opened, its reveal as
``<voter>.reveal.json`` (``submit_reveals``): a reveal in a store before every commitment is on chain
would show the vote to whoever reads it.

A ballot file is untrusted input. Only the voter's own ballot file in a store is read, capped in
size, parsed strictly, and kept only if it is for this round and its EIP-712 signature recovers to
that voter under this contract's domain; anything else is dropped here, and a ballot that got
through anyway (a race, another node's batch) is skipped by the contract, never counted.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from http.client import HTTPException
from urllib.parse import urlsplit

from cohep.core.errors import IntegrityError
from cohep.ledger import ballots as B
from cohep.wire.fetch import is_loopback, open_regular
from cohep.wire.store import filesystem, is_local, write_whole

#: seconds to wait for one ballot file from another member's store
READ_TIMEOUT_S = 5.0


def ballot_name(contract: str, r: int, voter: str, kind: str = "") -> str:
    """The ballot's path inside a store (what ``server`` also serves); kind "commit" or "reveal" for
    a sealed vote's two halves."""
    suffix = f".{kind}" if kind else ""
    return f"ballots/{contract.lower()}/{int(r)}/{voter.lower()}{suffix}.json"


def _kind(item) -> str:
    return "commit" if isinstance(item, B.SignedCommit) else "reveal" if isinstance(item, B.Reveal) else ""


class BallotBox:
    """Post this member's ballots to its own store; collect every member's from theirs.

    ``own``: this member's store URL (where it writes); ``stores``: ``voter -> store URL`` where each
    member's ballots are read (the experiment's ``store_of`` each member, as its URIs are announced).
    """

    def __init__(self, own: str, stores: dict[str, str], domain: B.Domain, *, timeout: float = READ_TIMEOUT_S):
        self.own = own
        self.stores = {v.lower(): url.rstrip("/") for v, url in stores.items()}
        self.domain = domain
        self.timeout = timeout
        self.seconds = 0.0
        self.dropped: list[str] = []  #: why ballot files were not kept (one line each)

    def post(self, ballot: B.SignedBallot | B.SignedCommit | B.Reveal) -> None:
        """Write this member's ballot, signed commitment or reveal into its own store."""
        start = time.perf_counter()
        try:
            fs, root = filesystem(self.own)
            path = f"{root}/{ballot_name(self.domain.contract, ballot.round, ballot.voter, _kind(ballot))}"
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            write_whole(fs, path, ballot.to_json().encode())
        finally:
            self.seconds += time.perf_counter() - start

    def collect(self, r: int, voters: Sequence[str]) -> list[B.SignedBallot]:
        """The valid ballots of ``voters`` for round ``r`` that their stores hold now."""
        return self._collect(r, voters, "", lambda text, voter: self.check(B.from_json(text), r, voter))

    def collect_commits(self, r: int, voters: Sequence[str]) -> list[B.SignedCommit]:
        """The valid signed commitments of ``voters`` for round ``r`` that their stores hold now."""
        return self._collect(r, voters, "commit",
                             lambda text, voter: self.check_commit(B.commit_from_json(text), r, voter))

    def collect_reveals(self, r: int, voters: Sequence[str]) -> list[B.Reveal]:
        """The well-formed reveals of ``voters`` for round ``r`` (the contract checks each against its
        voter's commitment; the relay drops one that does not match first)."""
        return self._collect(r, voters, "reveal",
                             lambda text, voter: self.check_reveal(B.reveal_from_json(text), r, voter))

    def _collect(self, r: int, voters: Sequence[str], kind: str, parse) -> list:
        start = time.perf_counter()
        out = []
        try:
            for voter in voters:
                url = self.stores.get(voter.lower())
                if url is None:
                    continue
                try:
                    text = self._read(url, ballot_name(self.domain.contract, r, voter, kind))
                except FileNotFoundError:
                    continue  # not voted yet, or its store is away: the vote window decides
                try:
                    ballot = parse(text, voter)
                except IntegrityError as exc:
                    self.dropped.append(f"{voter} round {r}: {exc}")
                    continue
                out.append(ballot)
        finally:
            self.seconds += time.perf_counter() - start
        return out

    def check(self, ballot: B.SignedBallot, r: int, voter: str) -> B.SignedBallot:
        """The ballot, if it is ``voter``'s signed ballot for round ``r`` under this domain."""
        return self._verified(ballot, r, voter, "ballot", signed=True)

    def check_commit(self, commit: B.SignedCommit, r: int, voter: str) -> B.SignedCommit:
        """The commitment, if it is ``voter``'s, signed, for round ``r`` under this domain."""
        return self._verified(commit, r, voter, "commitment", signed=True)

    def check_reveal(self, reveal: B.Reveal, r: int, voter: str) -> B.Reveal:
        """The reveal, if it names ``voter`` and round ``r`` (it carries no signature: the contract
        checks it against the voter's commitment)."""
        return self._verified(reveal, r, voter, "reveal", signed=False)

    def _verified(self, item, r: int, voter: str, what: str, *, signed: bool):
        """``item`` if it names ``voter`` and round ``r`` and, if ``signed``, its EIP-712 signature
        recovers to that voter under this domain; else IntegrityError saying which ``what`` failed how."""
        if item.voter.lower() != voter.lower():
            raise IntegrityError(f"{what} names voter {item.voter}")
        if item.round != r:
            raise IntegrityError(f"{what} is for round {item.round}")
        if signed:
            signer = item.signer(self.domain)
            if signer is None or signer.lower() != voter.lower():
                raise IntegrityError(f"{what} signature does not recover to its voter")
        return item

    def _read(self, url: str, name: str) -> bytes:
        """At most ``MAX_JSON_BYTES + 1`` bytes of one file; FileNotFoundError if it is not there."""
        cap = B.MAX_JSON_BYTES + 1
        scheme = urlsplit(url).scheme
        if scheme in ("http", "https"):
            request = urllib.request.Request(f"{url}/{name}", headers={"User-Agent": "cohep-ballots"})
            direct = is_loopback(urlsplit(url).hostname or "")
            opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if direct else []))
            try:
                with opener.open(request, timeout=self.timeout) as resp:
                    return resp.read(cap)
            except (urllib.error.URLError, OSError, ValueError, HTTPException):
                raise FileNotFoundError(name) from None
        fs, root = filesystem(url)
        path = f"{root}/{name}"
        if is_local(fs):
            # as the Fetcher: a FIFO under the name must not hang us, a planted link is not followed
            try:
                local = open_regular(path)
            except OSError:
                raise FileNotFoundError(name) from None
            if local is None:
                raise FileNotFoundError(name)
            with local:
                return local.read(cap)
        try:
            with fs.open(path, "rb") as fh:
                return fh.read(cap)
        except Exception:  # noqa: BLE001 - any backend's error: the file is not to be had now
            raise FileNotFoundError(name) from None

