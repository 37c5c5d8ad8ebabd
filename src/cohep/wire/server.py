"""A read-only HTTP server over a node's local store folder: how other members reach what it proposes.

A node runs it over its own ``WeightStore`` folder so the other members can fetch its blobs
(``WeightStore(folder, public_url=server.url)`` announces URIs under it). It serves exactly
``GET``/``HEAD /<64 lowercase hex>.safetensors`` (and the signed ballots of ``ballotbox.py``,
``/ballots/<contract>/<round>/<voter>.json``) from that folder: the request path is matched
against that pattern before anything touches the file system, so there is no traversal, no listing
and no other file to reach (404); every other method is 405. Files go out with ``sendfile`` in
bounded pieces, so memory stays flat whatever the blob size; each connection gets a daemon thread
and a socket timeout, so a stalled client holds one thread for a bounded time.
"""
from __future__ import annotations

import os
import re
import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_BLOB_PATH = re.compile(r"^/([0-9a-f]{64})\.safetensors$")
#: signed ballots (ballotbox.py): ballots/<contract>/<round>/<voter>.json (sealed votes: <voter>.commit.json,
#: <voter>.reveal.json), addresses lower-case hex
_BALLOT_PATH = re.compile(r"^/(ballots/0x[0-9a-f]{40}/[0-9]{1,20}/0x[0-9a-f]{40}(?:\.commit|\.reveal)?\.json)$")
#: Seconds a connection may sit idle (reading the request or waiting to send) before it is dropped.
SOCKET_TIMEOUT = 60.0
#: sendfile pieces: the kernel copies file to socket; Python never holds more than this.
SEND_CHUNK = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    server_version = "cohep-blobserver"
    sys_version = ""
    timeout = SOCKET_TIMEOUT
    disable_nagle_algorithm = True  # headers then sendfile: Nagle + delayed ACK would add 40 ms a blob
    folder: Path  # set on the subclass BlobServer builds

    def log_message(self, format, *args):  # the base class's signature
        """Quiet: one line per request on stderr would drown a node's own output."""

    def do_GET(self):
        self._serve(body=True)

    def do_HEAD(self):
        self._serve(body=False)

    def __getattr__(self, name: str):
        """Every other method (POST, PUT, DELETE, made-up ones) is 405, not the base class's 501."""
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self):
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _not_found(self):
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, body: bool):
        # The raw request target, not self.path: the base class rewrites a leading '//' into '/'.
        words = self.requestline.split()
        match = _BLOB_PATH.match(words[1]) if len(words) == 3 else None
        ballot = _BALLOT_PATH.match(words[1]) if len(words) == 3 and match is None else None
        if match is not None:
            name = f"{match.group(1)}.safetensors"
        elif ballot is not None:
            name = ballot.group(1)
        else:
            return self._not_found()
        try:
            fd = os.open(self.folder / name, os.O_RDONLY | os.O_NONBLOCK | (os.O_NOFOLLOW if ballot else 0))
        except OSError:
            return self._not_found()
        with os.fdopen(fd, "rb", buffering=0) as fh:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return self._not_found()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(info.st_size))
            if match:
                self.send_header("ETag", f'"{match.group(1)}"')
                self.send_header("Cache-Control", "public, max-age=31536000, immutable")  # content-addressed
            else:
                self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if body:
                self.wfile.flush()
                try:
                    sent = 0
                    while sent < info.st_size:
                        n = self.connection.sendfile(fh, sent, min(SEND_CHUNK, info.st_size - sent))
                        if n == 0:
                            break
                        sent += n
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    self.close_connection = True  # the client left; nothing to tell anyone


class _ThreadingHTTPServer6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class BlobServer:
    """``BlobServer(folder).start()`` serves ``folder`` at ``.url`` until ``stop()`` (or as a context)."""

    def __init__(self, folder: str | os.PathLike, host: str = "127.0.0.1", port: int = 0):
        self.folder = Path(folder).resolve()
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port``: the public URL of the store, once started."""
        if self._server is None:
            raise RuntimeError("BlobServer.url is known once the server is started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> BlobServer:
        if self._server is not None:
            return self
        handler = type("BlobHandler", (_Handler,), {"folder": self.folder})
        server_class = _ThreadingHTTPServer6 if ":" in self.host else ThreadingHTTPServer
        self._server = server_class((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"blobserver:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> BlobServer:  # noqa: PYI034 - final class, self is the server
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
