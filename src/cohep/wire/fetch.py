"""Reading another member's blob by the URI it announced: within its proposer's store, bounded, checked.

The URI is untrusted, so it must name ``<digest>.safetensors`` directly inside one of the stores its
proposer may write (``Place``, ``parse_place``); the blob is read in chunks, hashed as it arrives and
abandoned past a size cap or a deadline, then checked (``checks.check_stream``). Any failure is
``ProposalRejected(reason)``; one that another try may cure is ``Unavailable`` (``timeout: ...``,
``unavailable: ...``). An accepted blob is content-addressed, so ``Fetcher.fetch_any`` takes it from
whichever member's store holds a copy that verifies.

Stores are read from local folders (plain paths or ``file://`` URLs), ``http://`` / ``https://``
(with the standard library's http.client: a timeout per read cut to what is left of the deadline, no
redirects, so a server cannot send the fetcher elsewhere), and any other fsspec URL (``memory://``,
``s3://``... when the backend is installed; their reads are bounded by the backend's own timeouts).
"""
from __future__ import annotations

import base64
import ipaddress
import os
import re
import ssl
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit
from urllib.request import url2pathname

import fsspec
import numpy as np

from cohep.core.errors import CohepError
from cohep.wire import weights as wts
from cohep.wire.checks import BadBlob, ProposalRejected, Unavailable, check_stream, rejecting, size_text

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


def _connection(place: Place, timeout: float) -> tuple[HTTPConnection, str, dict[str, str]]:
    """A connection for ``place``, the request target and any proxy header: direct for this machine,
    else through the proxy the environment names (``http_proxy``/``https_proxy``/``no_proxy``, as
    urllib reads them)."""
    name, port = place.host.rsplit(":", 1)
    name = name.strip("[]")
    path = "/" + "/".join(quote(p, safe="") for p in place.parts)
    https = place.scheme == "https"
    proxy = None if is_loopback(place.host) or urllib.request.proxy_bypass(name) else \
        urllib.request.getproxies().get(place.scheme)
    if not proxy:
        conn = HTTPSConnection(name, int(port), timeout=timeout, context=ssl.create_default_context()) if https \
            else HTTPConnection(name, int(port), timeout=timeout)
        return conn, path, {}
    via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    headers = {}
    if via.username:
        secret = f"{unquote(via.username)}:{unquote(via.password or '')}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(secret).decode()
    if https:  # CONNECT through the proxy, TLS to the store itself
        conn = HTTPSConnection(via.hostname or "", via.port or 80, timeout=timeout, context=ssl.create_default_context())
        conn.set_tunnel(name, int(port), headers=headers)
        return conn, path, {}
    return HTTPConnection(via.hostname or "", via.port or 80, timeout=timeout), place.url(), headers


#: What an opener gives: (announced length or None, the chunks, how to close the transport).
_Opened = tuple[int | None, Iterator[bytes], Callable[[], None]]
#: Seconds between tries of a blob that did not arrive, while a per-call deadline leaves time.
RETRY_GAP_S = 1.0
#: Seconds ``fetch_any`` gives one store before it tries the next (within any deadline set).
PER_SOURCE_S = 20.0


class Fetcher:
    """Fetch proposals by URI from untrusted members, within allowed stores, a size cap and a deadline.

    ``allowed``: the store URLs (``base_uri`` of each member's store) a URI may point into.
    ``owners``: member address -> the stores that member's own proposals may name (its own and the
    shared one); with it, a proposal whose URI points into another member's store is refused.
    ``max_bytes``: the size cap (``checks.default_max_bytes(reference)``).
    ``timeout``: seconds for connecting and for each read; ``deadline``: seconds for a whole fetch;
    ``until(t)`` sets a deadline per call (a voter's: the vote window's end), which cuts a transfer
    however slowly its bytes arrive. ``keep``: called with (digest, bytes) of every blob that passed
    every check (a node keeps it in its own store, so it serves what it adopted).
    """

    def __init__(self, allowed: Sequence[str], max_bytes: int, *, reference: Mapping[str, Any] | None = None,
                 owners: Mapping[str, Sequence[str]] | None = None,
                 keep: Callable[[bytes, bytearray], None] | None = None,
                 timeout: float = 30.0, deadline: float = 600.0, chunk_bytes: int = CHUNK_BYTES):
        if isinstance(allowed, str):
            allowed = [allowed]
        self.allowed = [self._store(url) for url in allowed]
        self.owners = None if owners is None else \
            {a.lower(): [self._store(u) for u in urls] for a, urls in owners.items()}
        self.max_bytes, self.reference, self._keeper = int(max_bytes), reference, keep
        self.keep_failed = ""  #: why the last copy could not be kept (the fetch itself still counts)
        self.timeout, self.deadline, self.chunk_bytes = timeout, deadline, chunk_bytes
        self.seconds = 0.0  # wall time spent fetching and checking
        self.bytes = 0  # bytes received
        self._stop: float | None = None  # time.monotonic() past which no fetch goes on (``until``)

    def _keep(self, digest: bytes, blob: bytearray) -> None:
        """Hand a verified blob to ``keep``; a copy that cannot be kept (a full disk) never fails the fetch."""
        try:
            self._keeper(digest, blob)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - any store's write error
            self.keep_failed = f"{type(exc).__name__}: {exc}"[:200]

    @staticmethod
    def _store(url: str) -> Place:
        try:
            return parse_place(url.rstrip("/") or url, strict=False)
        except ValueError as exc:
            raise CohepError(f"unusable allowed store {url!r}: {exc}") from None

    @contextmanager
    def until(self, stop: float | None) -> Iterator[None]:
        """Within it, every fetch ends by ``stop`` (a ``time.monotonic()`` value; None: no deadline)."""
        before, self._stop = self._stop, stop
        try:
            yield
        finally:
            self._stop = before

    # -- where a URI may point ---------------------------------------------------------------------
    def place(self, uri: str, digest: bytes, proposer: str | None = None) -> Place:
        """Where ``uri`` points, if it names ``<digest>.safetensors`` inside an allowed store (the
        proposer's own, when ``owners`` and ``proposer`` are known)."""
        with rejecting():
            expected = wts.announced(digest)
        if not isinstance(uri, str):
            raise ProposalRejected("the announced URI is not a string")
        try:
            place = parse_place(uri, strict=True)
        except ValueError as exc:
            raise ProposalRejected(f"URI {_shown(uri)} is outside the allowed stores ({exc})") from None
        name = f"{expected.hex()}.safetensors"
        own = self.allowed if proposer is None or self.owners is None else self.owners.get(proposer.lower(), [])
        for store in own:
            if _inside(place, store):
                if place.parts[-1] != name:
                    raise ProposalRejected(f"URI {_shown(uri)} does not name the announced digest "
                                           f"({name[:16]}...)")
                return place
        if any(_inside(place, store) for store in self.allowed):
            raise ProposalRejected(f"URI {_shown(uri)} is in another member's store, not its proposer's "
                                   "(nothing fetched)")
        raise ProposalRejected(f"URI {_shown(uri)} is outside the allowed stores")

    # -- fetching --------------------------------------------------------------------------------
    def fetch(self, uri: str, digest: bytes, reference: Mapping[str, Any] | None = None, *,
              proposer: str | None = None) -> dict[str, np.ndarray]:
        """The checked weights behind (uri, digest), or ProposalRejected(reason). Under ``until`` a
        blob that did not arrive is tried again while the deadline leaves time (``RETRY_GAP_S``)."""
        place = self.place(uri, digest, proposer)
        stop = self._stop_from(time.monotonic())
        while True:
            try:
                return self._fetch_at(place, digest, reference, stop)
            except Unavailable as exc:
                if self._stop is None or exc.reason.startswith("timeout:") or \
                        stop - time.monotonic() < 2 * RETRY_GAP_S:
                    raise
            time.sleep(RETRY_GAP_S)

    def fetch_any(self, uri: str, digest: bytes, reference: Mapping[str, Any] | None = None, *,
                  per_source: float = PER_SOURCE_S) -> dict[str, np.ndarray]:
        """An accepted (or the initial) blob from whoever holds it: the announced URI, then
        ``<store>/<digest>.safetensors`` in every allowed store, each given ``per_source`` seconds.
        Any copy that passes the checks is the blob (content-addressed); a bad copy is skipped with
        its reason. Raises BadBlob when the blob itself fails a check (permanent), Unavailable when
        no store gave it (transient), ProposalRejected when every copy found was wrong."""
        try:
            places = [self.place(uri, digest)]
        except ProposalRejected as exc:
            places, why = [], [f"{_shown(uri)}: {exc.reason}"]
        else:
            why = []
        name = f"{bytes(digest).hex()}.safetensors"
        places += [p for p in (Place(s.scheme, s.host, (*s.parts, name)) for s in self.allowed) if p not in places]
        transient = False
        for place in places:
            stop = min(self._stop_from(time.monotonic()), time.monotonic() + per_source)
            try:
                return self._fetch_at(place, digest, reference, stop)
            except BadBlob:
                raise
            except ProposalRejected as exc:
                transient = transient or isinstance(exc, Unavailable)
                why.append(f"{Place(place.scheme, place.host, place.parts[:-1]).url()}: {exc.reason[:80]}")
        kind = Unavailable if transient else ProposalRejected
        raise kind(f"{'unavailable' if transient else 'no good copy'} from {len(places)} stores "
                   f"({'; '.join(why)})")

    def _stop_from(self, start: float) -> float:
        stop = start + self.deadline
        return stop if self._stop is None else min(stop, self._stop)

    def _fetch_at(self, place: Place, digest: bytes, reference: Mapping[str, Any] | None,
                  stop: float) -> dict[str, np.ndarray]:
        start = time.monotonic()
        reference = reference if reference is not None else self.reference
        if stop <= start:
            raise Unavailable("timeout: no time left in the window to fetch it")
        opener = {"file": self._open_file, "http": self._open_http, "https": self._open_http}
        received = [0]
        try:
            length, chunks, close = opener.get(place.scheme, self._open_fsspec)(place, stop)
            try:
                return check_stream(self._timed(chunks, stop, received, start, length), digest, reference,
                                    max_bytes=self.max_bytes, length=length,
                                    keep=self._keep if self._keeper is not None else None)
            finally:
                close()
        finally:
            self.seconds += time.monotonic() - start

    def _timed(self, chunks: Iterator[bytes], stop: float, received: list[int], start: float,
               length: int | None) -> Iterator[bytes]:
        """Chunks, with transport errors turned into reasons and the deadline ``stop`` kept."""
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except ProposalRejected:
                raise
            except Exception as exc:  # noqa: BLE001 - any backend's transport error (fsspec backends raise their own)
                if isinstance(exc, TimeoutError) and time.monotonic() >= stop - 0.05:
                    raise self._late(received[0], length, start) from None
                raise Unavailable(f"unavailable: {_describe(exc, self.timeout)}") from None
            self.bytes += len(chunk)
            received[0] += len(chunk)
            yield chunk
            if time.monotonic() > stop:
                raise self._late(received[0], length, start)

    @staticmethod
    def _late(received: int, length: int | None, start: float) -> Unavailable:
        of = f" of {size_text(length)}" if length is not None else ""
        return Unavailable(f"timeout: {size_text(received)}{of} in {time.monotonic() - start:.1f} s")

    def _unavailable(self, exc: BaseException) -> Unavailable:
        return Unavailable(f"unavailable: {_describe(exc, self.timeout)}")

    def _open_file(self, place: Place, stop: float) -> _Opened:
        try:
            fh = open_regular(place.url())
        except OSError as exc:
            raise self._unavailable(exc) from None
        if fh is None:
            raise Unavailable("unavailable: not a regular file")
        size = os.fstat(fh.fileno()).st_size

        def chunks() -> Iterator[bytes]:
            while chunk := fh.read(self.chunk_bytes):
                yield chunk

        return size, chunks(), fh.close

    def _open_http(self, place: Place, stop: float) -> _Opened:
        """GET with http.client: the socket's timeout is set before every read to what is left of the
        deadline (and at most ``timeout``), so neither a silent server nor a drip outlasts it."""
        def left() -> float:
            remaining = stop - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            return min(self.timeout, remaining)

        opened = time.monotonic()
        conn, target, headers = _connection(place, self.timeout)
        try:
            conn.timeout = left()
            conn.request("GET", target, headers={"Accept-Encoding": "identity", "User-Agent": "cohep-fetcher",
                                                 **headers})
            response = conn.getresponse()
        except (OSError, HTTPException, ValueError) as exc:
            conn.close()
            if isinstance(exc, TimeoutError) and time.monotonic() >= stop - 0.05:
                raise self._late(0, None, opened) from None
            raise self._unavailable(exc) from None
        try:
            if 300 <= response.status < 400:
                raise Unavailable(f"unavailable: HTTP {response.status} redirect (redirects are not followed)")
            if response.status != 200:
                raise Unavailable(f"unavailable: HTTP {response.status} {response.reason}")
            lengths = set(response.headers.get_all("Content-Length") or [])
            if len(lengths) > 1 or (lengths and not next(iter(lengths)).strip().isdigit()):
                raise Unavailable("unavailable: the server sent an invalid Content-Length")
            length = int(next(iter(lengths))) if lengths else None
        except BaseException:
            conn.close()
            raise

        def chunks() -> Iterator[bytes]:
            while True:
                if conn.sock is not None:
                    conn.sock.settimeout(left())
                chunk = response.read1(self.chunk_bytes)  # one recv at a time: the deadline holds
                if not chunk:
                    return
                yield chunk

        return length, chunks(), conn.close

    def _open_fsspec(self, place: Place, stop: float) -> _Opened:
        try:
            fs, path = fsspec.core.url_to_fs(place.url())
            info = fs.info(path)
            if info.get("type") not in ("file", None):
                raise Unavailable("unavailable: not a file")
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


def _inside(place: Place, store: Place) -> bool:
    """``place`` names a file directly inside ``store``."""
    n = len(store.parts)
    return (place.scheme, place.host) == (store.scheme, store.host) and len(place.parts) == n + 1 \
        and place.parts[:n] == store.parts


def fetch(uri: str, digest: bytes, *, allowed: Sequence[str], max_bytes: int,
          reference: Mapping[str, Any] | None = None, timeout: float = 30.0) -> dict[str, np.ndarray]:
    """One-off ``Fetcher(allowed, max_bytes, timeout=timeout).fetch(uri, digest, reference)``."""
    return Fetcher(allowed, max_bytes, timeout=timeout).fetch(uri, digest, reference)
