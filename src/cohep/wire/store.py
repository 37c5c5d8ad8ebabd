"""Where a member writes what it proposes: a content-addressed store, so a blob's URI names its digest.

Blobs live under ``<root>/<sha256 hex>.safetensors`` on any fsspec file system: local folders (plain
paths or ``file://`` URLs), ``memory://``, ``s3://``... when the backend is installed. A proposer puts
weights in its own ``WeightStore`` and announces (digest, URI) on chain; the other members read it
with a ``fetch.Fetcher``. Files appear whole: written under a temporary name, then renamed.
"""
from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import fsspec
from fsspec import AbstractFileSystem

from cohep.core.errors import CohepError, IntegrityError
from cohep.wire import weights as wts
from cohep.wire.weights import Declared, Weights


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec file system and root path of a store URL (a trailing slash is dropped)."""
    target = url.rstrip("/")
    if target.startswith("file://"):  # a file URL is percent-encoded: file:///a%20b is the folder "a b"
        target = url2pathname(urlsplit(target).path)
    return fsspec.core.url_to_fs(target)


def scheme(fs: AbstractFileSystem) -> str:
    """The file system's own scheme name ('file', 'memory', 's3'...)."""
    names: Any = fs.protocol
    return names if isinstance(names, str) else names[0]


def is_local(fs: AbstractFileSystem) -> bool:
    return scheme(fs) in ("file", "local")


def write_whole(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` at ``path`` so that a reader never sees half of it: temporary name, then rename.
    The temporary name ends in ``.part``, so it is never a name a server or reader looks for."""
    tmp = f"{path}.{uuid.uuid4().hex}.part"
    with fs.open(tmp, "wb") as fh:
        fh.write(data)
    fs.mv(tmp, path)


class WeightStore:
    """put(weights) -> (digest, uri); get(digest) -> weights, verified.

    ``public_url``: where other members read this store, when that differs from where this node
    writes (a local folder served by ``BlobServer``): URIs are then ``<public_url>/<hex>.safetensors``.
    """

    def __init__(self, url: str, public_url: str | None = None):
        self.url = url.rstrip("/")
        self.public_url = public_url.rstrip("/") if public_url else None
        try:
            self.fs, self.root = filesystem(self.url)
        except (ValueError, ImportError) as exc:
            raise CohepError(f"unusable weight store URL {url!r}: {exc}") from None
        self.fs.makedirs(self.root, exist_ok=True)
        self.seconds = 0.0  # wall time spent here; the runner reports it per round

    def _path(self, hexdigest: str) -> str:
        return f"{self.root}/{hexdigest}.safetensors"

    @property
    def base_uri(self) -> str:
        """The prefix of every URI this store announces: what other members list as an allowed store."""
        if self.public_url:
            return self.public_url
        if is_local(self.fs):
            return self.root
        return f"{scheme(self.fs)}://{self.root}"

    def uri(self, digest: bytes) -> str:
        return f"{self.base_uri}/{digest.hex()}.safetensors"

    def put(self, weights: Weights, examples: int | None = None) -> tuple[bytes, str]:
        """Store weights (with the example count their proposer declares, if any); returns (32-byte
        digest, URI). Idempotent: same weights and declaration, same blob."""
        start = time.perf_counter()
        blob = wts.encode(weights, examples)
        d = wts.digest_bytes(blob)
        path = self._path(d.hex())
        if scheme(self.fs) in ("http", "https"):
            raise CohepError(f"store {self.url}: an HTTP store is read-only; write into the folder it serves "
                             f"(--store DIR --public-url {self.url})")
        if not self.fs.exists(path):
            write_whole(self.fs, path, blob)
        self.seconds += time.perf_counter() - start
        return d, self.uri(d)

    def has(self, digest: bytes) -> bool:
        return bool(self.fs.exists(self._path(digest.hex())))

    def keep(self, digest: bytes, blob: bytes | bytearray) -> None:
        """Keep a copy of another member's blob, already verified against ``digest`` (a ``Fetcher``'s
        ``keep``): a node serves every blob it adopted, so the weights outlive their proposer. The
        bytes are written as they arrived, since any copy is checked against the digest on chain."""
        path = self._path(digest.hex())
        if not self.fs.exists(path):
            start = time.perf_counter()
            write_whole(self.fs, path, bytes(blob))
            self.seconds += time.perf_counter() - start

    def get(self, digest: bytes) -> Declared:
        """Fetch by digest from this store, re-hash, decode. Raises IntegrityError on any mismatch."""
        start = time.perf_counter()
        path = self._path(digest.hex())
        try:
            with self.fs.open(path, "rb") as fh:
                blob = fh.read()
        except FileNotFoundError:
            raise IntegrityError(f"no weights with digest {digest.hex()} in store {self.url}") from None
        wts.check_digest(wts.digest_bytes(blob), digest)
        out = wts.decode(blob)
        self.seconds += time.perf_counter() - start
        return out
