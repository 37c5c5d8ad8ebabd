"""Fetching from members that are slow, partial or gone: every fetch ends by its deadline, a proposal
names its proposer's own store, and an accepted blob comes from whichever member holds a copy.

Every server is real (cohep.wire.server.BlobServer, or cohep.testing.dishonest_store.DishonestStore,
which drips or withholds on purpose) and listens on 127.0.0.1.
"""
import time

import numpy as np
import pytest

from cohep.ledger.anvil import free_port
from cohep.testing.dishonest_store import DishonestStore
from cohep.wire import weights as wts
from cohep.wire.checks import BadBlob, ProposalRejected, Unavailable, default_max_bytes
from cohep.wire.fetch import Fetcher
from cohep.wire.server import BlobServer
from cohep.wire.store import WeightStore

ALICE, BOB = "0x" + "a1" * 20, "0x" + "b2" * 20


def weights(seed=0, n=300):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=n).astype(np.float32), "b": np.zeros(3, np.float32)}


def put(folder, w, url):
    folder.mkdir(exist_ok=True)
    return WeightStore(str(folder), public_url=url).put(w)


@pytest.mark.parametrize("drip_s", [1.0, 20.0])
def test_a_drip_is_cut_at_the_deadline_not_at_a_read_timeout(tmp_path, drip_s):
    """1 byte/s (each read within any read timeout) and 1 byte/20 s (one read longer than the whole
    window): both end at the deadline with a timeout reason, whatever the 30 s read timeout says."""
    w = weights()
    with DishonestStore(tmp_path / "s", mode="drip", drip_s=drip_s) as slow:
        d, uri = put(tmp_path / "s", w, slow.url)
        fetcher = Fetcher([slow.url], default_max_bytes(w), owners={ALICE: [slow.url]})
        start = time.monotonic()
        with fetcher.until(start + 2.0), pytest.raises(Unavailable, match=r"^timeout: \d+ bytes of 1.42 kB in 2.\d s$"):
            fetcher.fetch(uri, d, proposer=ALICE)
        took = time.monotonic() - start
    assert 1.9 < took < 2.5, took


def test_a_store_that_serves_some_readers_only_is_retried_until_the_deadline(tmp_path):
    w = weights()
    with DishonestStore(tmp_path / "s", mode="withhold") as withheld:  # 404 to everyone
        d, uri = put(tmp_path / "s", w, withheld.url)
        fetcher = Fetcher([withheld.url], default_max_bytes(w))
        start = time.monotonic()
        with fetcher.until(start + 3.0), pytest.raises(Unavailable, match="^unavailable: HTTP 404 Not Found$"):
            fetcher.fetch(uri, d)
        assert time.monotonic() - start < 3.0 and len(withheld.requests) >= 2  # tried again, gave up in time
    with DishonestStore(tmp_path / "s", mode="alternate") as some:  # the 1st, 3rd... reader gets a 404
        fetcher = Fetcher([some.url], default_max_bytes(w))
        uri = f"{some.url}/{d.hex()}.safetensors"
        with fetcher.until(time.monotonic() + 5.0):
            assert wts.equal(fetcher.fetch(uri, d), w)  # the second try got it
        with pytest.raises(Unavailable, match="404"):  # without a deadline: one try, no retry
            Fetcher([some.url], default_max_bytes(w)).fetch(uri, d)


def test_a_refused_connection_is_unavailable_and_never_outlasts_the_deadline(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    d = b"\x11" * 32
    fetcher = Fetcher([url], 10**6)
    start = time.monotonic()
    with fetcher.until(start + 2.5), pytest.raises(Unavailable, match="^unavailable: connection refused$"):
        fetcher.fetch(f"{url}/{d.hex()}.safetensors", d)
    assert time.monotonic() - start < 2.5
    with fetcher.until(time.monotonic() - 1), pytest.raises(Unavailable, match="^timeout: no time left"):
        fetcher.fetch(f"{url}/{d.hex()}.safetensors", d)


def test_a_proposal_must_name_its_proposers_own_store(tmp_path):
    """A URI into another member's store (or the shared store for a member with a store of its own
    only) is refused before anything is fetched."""
    w = weights()
    with BlobServer(tmp_path / "a") as a, BlobServer(tmp_path / "b") as b, DishonestStore(tmp_path / "c") as c:
        d, uri_a = put(tmp_path / "a", w, a.url)
        put(tmp_path / "b", w, b.url)
        owners = {ALICE: [a.url, str(tmp_path / "shared")], BOB: [b.url, str(tmp_path / "shared")]}
        fetcher = Fetcher([a.url, b.url, c.url, str(tmp_path / "shared")], default_max_bytes(w), owners=owners)
        assert wts.equal(fetcher.fetch(uri_a, d, proposer=ALICE), w)
        with pytest.raises(ProposalRejected, match="is in another member's store, not its proposer's"):
            fetcher.fetch(uri_a, d, proposer=BOB)  # Bob names Alice's file
        with pytest.raises(ProposalRejected, match="is in another member's store"):
            fetcher.fetch(f"{c.url}/{d.hex()}.safetensors", d, proposer=BOB)
        assert c.requests == []  # nothing was fetched
        with pytest.raises(ProposalRejected, match="outside the allowed stores"):
            fetcher.fetch(f"http://127.0.0.1:{free_port()}/{d.hex()}.safetensors", d, proposer=BOB)
        with pytest.raises(ProposalRejected, match="another member's store"):  # not a member: no store of its own
            fetcher.fetch(uri_a, d, proposer="0x" + "cc" * 20)


def test_an_accepted_blob_comes_from_any_member_that_kept_it(tmp_path):
    """Alice proposes; Bob verifies her blob and keeps it in his store; Alice's server goes away. A
    restarted member reading the accepted digest gets it from Bob; a wrong copy in Carol's store is
    skipped with its reason, never used."""
    w = weights()
    a_dir, b_dir, c_dir = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    with BlobServer(b_dir) as b, BlobServer(c_dir) as c:
        a = BlobServer(a_dir).start()
        d, uri = put(a_dir, w, a.url)
        b_store = WeightStore(str(b_dir), public_url=b.url)
        put(c_dir, weights(1), c.url)
        (c_dir / f"{d.hex()}.safetensors").write_bytes(wts.encode(weights(2)))  # a bad copy under the name
        stores = [a.url, c.url, b.url]
        bob = Fetcher(stores, default_max_bytes(w), reference=w, keep=b_store.keep)
        assert wts.equal(bob.fetch(uri, d), w) and b_store.has(d)  # verified, so kept
        a.stop()
        later = Fetcher(stores, default_max_bytes(w), reference=w)
        with pytest.raises(Unavailable, match="connection refused"):
            later.fetch(uri, d)
        assert wts.equal(later.fetch_any(uri, d), w)
        b_store.fs.rm(b_store._path(d.hex()))
        with pytest.raises(Unavailable) as gone:
            later.fetch_any(uri, d)
        why = gone.value.reason
        assert why.startswith("unavailable from 3 stores") and "connection refused" in why \
            and "digest mismatch" in why and "404" in why


def test_a_bad_blob_is_permanent_wherever_it_comes_from(tmp_path):
    w = weights()
    bad = dict(w, w=np.full(300, np.nan, np.float32))
    with BlobServer(tmp_path / "a") as a:
        d, uri = put(tmp_path / "a", bad, a.url)
        with pytest.raises(BadBlob, match="non-finite"):
            Fetcher([a.url], default_max_bytes(w), reference=w).fetch_any(uri, d)
