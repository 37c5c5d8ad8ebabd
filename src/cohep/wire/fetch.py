"""Reading another member's blob by the URI it announced: within the allowed stores, bounded, checked.

The URI is untrusted, so it must name ``<digest>.safetensors`` directly inside one of the stores the
member allows (``Place``, ``parse_place``); the blob is read in chunks, hashed as it arrives and
abandoned past a size cap, then checked (``checks.check_stream``). Any failure is
``ProposalRejected(reason)``.

Stores are read from local folders (plain paths or ``file://`` URLs), ``http://`` / ``https://``
(with the standard library: timeouts, no redirects, so a server cannot send the fetcher elsewhere),
and any other fsspec URL (``memory://``, ``s3://``... when the backend is installed).
"""
from __future__ import annotations

import ipaddress
import os
import re
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit
from urllib.request import url2pathname

import fsspec
import numpy as np

from cohep.core.errors import CohepError
from cohep.wire import weights as wts
from cohep.wire.checks import ProposalRejected, check_stream, rejecting

#: Transfer chunk: memory while fetching is the blob plus about one of these.
CHUNK_BYTES = 1 << 20
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SHOWN_URI_CHARS = 200


# -- where a URI points ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A store URL or blob URI, normalised: scheme, host[:port] (http only), decoded path segments."""

    scheme: str
    host: str
    parts: tuple[str, ...]

    def url(self) -> str:
        """The URL to read, rebuilt from the checked parts: what was checked is what is fetched."""
        if self.scheme == "file":
            return "/" + "/".join(self.parts)
        if self.scheme in ("http", "https"):
            return f"{self.scheme}://{self.host}/" + "/".join(quote(p, safe="") for p in self.parts)
        return f"{self.scheme}://" + "/".join(self.parts)


def _shown(uri: str) -> str:
    text = repr(uri[:_SHOWN_URI_CHARS])
    return text + ("..." if len(uri) > _SHOWN_URI_CHARS else "")


def _segments(path: str, *, decode: bool, strict: bool) -> tuple[str, ...]:
    """Path segments; '.', '..' (also percent-encoded, once or twice) and, if strict, '' refused."""
    parts = []
    for raw in path.split("/"):
        seg = unquote(raw, errors="strict") if decode else raw
        if seg == "" and not strict:
            continue
        again = unquote(seg, errors="replace")  # a server that decodes twice would see this
        if seg == "":
            raise ValueError("it has an empty segment")
        if seg in (".", "..") or again in (".", ".."):
            raise ValueError(f"it has a {again!r} segment")
        if "/" in seg or "\\" in seg or "\0" in seg:
            raise ValueError("a segment holds an encoded separator")
        parts.append(seg)
    return tuple(parts)


def _local_parts(path: str, *, strict: bool) -> tuple[str, ...]:
    if not os.path.isabs(path):
        if strict:
            raise ValueError("a local path must be absolute")
        path = os.path.abspath(path)
    _segments(path[1:], decode=False, strict=False)  # refuses '.' and '..' before resolving links
    return tuple(p for p in os.path.realpath(path).split("/") if p)


def parse_place(url: str, *, strict: bool = True) -> Place:
    """Normalise ``url``; ValueError(why) if it cannot be a store location.

    ``strict`` (an announced URI): no relative paths and no empty segments. Not strict (the allowed
    stores from one's own configuration): relative folders resolve against the working directory and
    a trailing slash is dropped. Both refuse queries, fragments, user info, fsspec chains ('::') and
    control characters: none has a place in a content address, and each is a known way to make a
    prefix check and the actual request disagree.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("it holds control characters")
    if "::" in url:
        raise ValueError("chained fsspec URLs are not accepted")
    match = _SCHEME.match(url)
    if match is None:
        if "://" in url or "?" in url or "#" in url:
            raise ValueError("it is neither a URL nor a local path")
        return Place("file", "", _local_parts(url, strict=strict))
    if "?" in url or "#" in url:
        raise ValueError("it has a query or fragment")
    scheme = match.group(1).lower()
    split = urlsplit(url)
    if "@" in split.netloc:
        raise ValueError("it has user info ('@')")
    if scheme == "file":
        if split.netloc not in ("", "localhost"):
            raise ValueError("a file URL must name this machine")
        return Place("file", "", _local_parts(url2pathname(split.path), strict=strict))
    if scheme in ("http", "https"):
        if not url.isascii() or any(c.isspace() or c == "\\" for c in url):
            raise ValueError("an http URL must be printable ASCII without spaces or backslashes")
        hostname = split.hostname
        if not hostname:
            raise ValueError("it has no host")
        port = split.port or (443 if scheme == "https" else 80)  # ValueError for a bad port
        host = f"[{hostname}]" if ":" in hostname else hostname
        path = split.path.rstrip("/") if not strict else split.path
        return Place(scheme, f"{host}:{port}", _segments(path[1:], decode=True, strict=strict) if path else ())
    location = split.netloc + split.path
    return Place(scheme, "", _segments(location, decode=False, strict=False))


# -- fetching from untrusted members -------------------------------------------------------------


def _describe(exc: BaseException, timeout: float) -> str:
    """One line for a transport failure, without the stack of wrappers urllib adds."""
    if isinstance(exc, urllib.error.HTTPError):
        if 300 <= exc.code < 400:
            return f"HTTP {exc.code} redirect (redirects are not followed)"
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would lead outside the allowed stores: refuse it (urllib raises HTTPError 3xx)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``name[:port]``) is this machine: reached directly, never through a proxy."""
    name = host.rsplit(":", 1)[0].strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def open_regular(path: str) -> BinaryIO | None:
    """``path`` opened for reading if it is a regular file (None if it is not); OSError if it cannot be.

    O_NONBLOCK: a FIFO planted under the name must not hang the open; O_NOFOLLOW: the path was
    resolved when checked, a link swapped in since is refused.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb", buffering=0)


#: What an opener gives: (announced length or None, the chunks, how to close the transport).
_Opened = tuple[int | None, Iterator[bytes], Callable[[], None]]


class Fetcher:
    """Fetch proposals by URI from untrusted members, within allowed stores and a size cap.

    ``allowed``: the store URLs (``base_uri`` of each member's store) a URI may point into.
    ``max_bytes``: the size cap (``checks.default_max_bytes(reference)``).
    ``timeout``: seconds for connecting and for each read; ``deadline``: seconds for a whole fetch.
    """

    def __init__(self, allowed: Sequence[str], max_bytes: int, *, reference: Mapping[str, Any] | None = None,
                 timeout: float = 30.0, deadline: float = 600.0, chunk_bytes: int = CHUNK_BYTES):
        if isinstance(allowed, str):
            allowed = [allowed]
        self.allowed: list[Place] = []
        for url in allowed:
            try:
                self.allowed.append(parse_place(url.rstrip("/") or url, strict=False))
            except ValueError as exc:
                raise CohepError(f"unusable allowed store {url!r}: {exc}") from None
        self.max_bytes, self.reference = int(max_bytes), reference
        self.timeout, self.deadline, self.chunk_bytes = timeout, deadline, chunk_bytes
        self.seconds = 0.0  # wall time spent fetching and checking
        self.bytes = 0  # bytes received
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._direct = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))

    def place(self, uri: str, digest: bytes) -> Place:
        """Where ``uri`` points, if it names ``<digest>.safetensors`` inside an allowed store."""
        with rejecting():
            expected = wts.announced(digest)
        if not isinstance(uri, str):
            raise ProposalRejected("the announced URI is not a string")
        try:
            place = parse_place(uri, strict=True)
        except ValueError as exc:
            raise ProposalRejected(f"URI {_shown(uri)} is outside the allowed stores ({exc})") from None
        name = f"{expected.hex()}.safetensors"
        for store in self.allowed:
            n = len(store.parts)
            if (place.scheme, place.host) == (store.scheme, store.host) and len(place.parts) == n + 1 \
                    and place.parts[:n] == store.parts:
                if place.parts[-1] != name:
                    raise ProposalRejected(f"URI {_shown(uri)} does not name the announced digest "
                                           f"({name[:16]}...)")
                return place
        raise ProposalRejected(f"URI {_shown(uri)} is outside the allowed stores")

    def fetch(self, uri: str, digest: bytes, reference: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The checked weights behind (uri, digest), or ProposalRejected(reason)."""
        start = time.perf_counter()
        try:
            place = self.place(uri, digest)
            reference = reference if reference is not None else self.reference
            opener = {"file": self._open_file, "http": self._open_http, "https": self._open_http}
            length, chunks, close = opener.get(place.scheme, self._open_fsspec)(place)
            try:
                return check_stream(self._timed(chunks), digest, reference, max_bytes=self.max_bytes,
                                    length=length)
            finally:
                close()
        finally:
            self.seconds += time.perf_counter() - start

    def _timed(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Chunks, with transport errors turned into reasons and the whole-fetch deadline kept."""
        stop = time.monotonic() + self.deadline
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except ProposalRejected:
                raise
            except Exception as exc:  # noqa: BLE001 - any backend's transport error (fsspec backends raise their own)
                raise ProposalRejected(f"blob not available: {_describe(exc, self.timeout)}") from None
            self.bytes += len(chunk)
            yield chunk
            if time.monotonic() > stop:
                raise ProposalRejected(f"blob not available: the transfer took over {self.deadline:g} s")

    def _unavailable(self, exc: BaseException) -> ProposalRejected:
        return ProposalRejected(f"blob not available: {_describe(exc, self.timeout)}")

    def _open_file(self, place: Place) -> _Opened:
        try:
            fh = open_regular(place.url())
        except OSError as exc:
            raise self._unavailable(exc) from None
        if fh is None:
            raise ProposalRejected("blob not available: not a regular file")
        size = os.fstat(fh.fileno()).st_size

        def chunks() -> Iterator[bytes]:
            while chunk := fh.read(self.chunk_bytes):
                yield chunk

        return size, chunks(), fh.close

    def _open_http(self, place: Place) -> _Opened:
        request = urllib.request.Request(place.url(), headers={"Accept-Encoding": "identity",
                                                                "User-Agent": "cohep-fetcher"})
        opener = self._direct if is_loopback(place.host) else self._opener
        try:
            response = opener.open(request, timeout=self.timeout)
        except (urllib.error.URLError, OSError, HTTPException, ValueError) as exc:
            raise self._unavailable(exc) from None
        try:
            if response.status != 200:
                raise ProposalRejected(f"blob not available: HTTP {response.status} (expected 200)")
            lengths = set(response.headers.get_all("Content-Length") or [])
            if len(lengths) > 1 or (lengths and not next(iter(lengths)).strip().isdigit()):
                raise ProposalRejected("blob not available: the server sent an invalid Content-Length")
            length = int(next(iter(lengths))) if lengths else None
        except BaseException:
            response.close()
            raise

        def chunks() -> Iterator[bytes]:
            while chunk := response.read1(self.chunk_bytes):  # one recv at a time: the deadline holds
                yield chunk

        return length, chunks(), response.close

    def _open_fsspec(self, place: Place) -> _Opened:
        try:
            fs, path = fsspec.core.url_to_fs(place.url())
            info = fs.info(path)
            if info.get("type") not in ("file", None):
                raise ProposalRejected("blob not available: not a file")
            size = info.get("size")
            length = int(size) if isinstance(size, int) and size >= 0 else None
            fh = fs.open(path, "rb")
        except ProposalRejected:
            raise
        except Exception as exc:  # noqa: BLE001 - backends raise their own types (FileNotFoundError, botocore...)
            raise self._unavailable(exc) from None

        def chunks() -> Iterator[bytes]:
            while chunk := fh.read(self.chunk_bytes):
                yield chunk

        return length, chunks(), fh.close


def fetch(uri: str, digest: bytes, *, allowed: Sequence[str], max_bytes: int,
          reference: Mapping[str, Any] | None = None, timeout: float = 30.0) -> dict[str, np.ndarray]:
    """One-off ``Fetcher(allowed, max_bytes, timeout=timeout).fetch(uri, digest, reference)``."""
    return Fetcher(allowed, max_bytes, timeout=timeout).fetch(uri, digest, reference)
