"""Content-addressed weight store over fsspec URLs.

Blobs live under ``<root>/<sha256 hex>.safetensors``. A proposer puts weights and announces the digest
on chain; every other learner gets them by digest and the store re-hashes the bytes before decoding,
so a tampered or corrupted blob is rejected whatever the transport (local folder, s3://, http://).
"""
from __future__ import annotations

import time
from urllib.parse import urlparse
from urllib.request import url2pathname

import fsspec

from . import weights as wts
from .errors import CohepError, IntegrityError
from .learner import Weights


class WeightStore:
    """put(weights) -> (digest, uri); get(digest) -> weights, verified."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        target = self.url
        if target.startswith("file://"):  # a file URL is percent-encoded: file:///a%20b is the folder "a b"
            target = url2pathname(urlparse(target).path)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(target)
        except (ValueError, ImportError) as exc:
            raise CohepError(f"unusable weight store URL {url!r}: {exc}") from None
        self.fs.makedirs(self.root, exist_ok=True)
        self.seconds = 0.0  # wall time spent here; the runner reports it per round

    def _path(self, hexdigest: str) -> str:
        return f"{self.root}/{hexdigest}.safetensors"

    def uri(self, digest: bytes) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        path = self._path(digest.hex())
        return path if protocol in ("file", "local") else f"{protocol}://{path}"

    def put(self, weights: Weights) -> tuple[bytes, str]:
        """Store weights; returns (32-byte digest, URI). Idempotent: same weights, same blob."""
        start = time.perf_counter()
        blob = wts.encode(weights)
        d = wts.digest_bytes(blob)
        path = self._path(d.hex())
        if not self.fs.exists(path):
            tmp = f"{path}.part"
            with self.fs.open(tmp, "wb") as fh:
                fh.write(blob)
            self.fs.mv(tmp, path)
        self.seconds += time.perf_counter() - start
        return d, self.uri(d)

    def get(self, digest: bytes) -> dict:
        """Fetch by digest, re-hash, decode. Raises IntegrityError on any mismatch."""
        start = time.perf_counter()
        path = self._path(digest.hex())
        try:
            with self.fs.open(path, "rb") as fh:
                blob = fh.read()
        except FileNotFoundError:
            raise IntegrityError(f"no weights with digest {digest.hex()} in store {self.url}") from None
        wts.verify(blob, digest)
        out = wts.decode(blob)
        self.seconds += time.perf_counter() - start
        return out
