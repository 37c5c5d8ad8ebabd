"""A member's store server that misbehaves on purpose: it drips, or serves only some readers.

Tests (and the liveness bench) point a proposal's URI at it to check that every voter still votes
in time. It serves the blobs of a folder like ``cohep.wire.server.BlobServer``, but ``drip_s`` > 0
sends one byte per ``drip_s`` seconds, and ``refuse_every`` = n answers 404 to every n-th request
(the first included), so some voters get the blob and others do not. ``requests`` counts what it saw.
"""
from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_BLOB = re.compile(r"^/([0-9a-f]{64})\.safetensors$")


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv: _Server = self.server  # type: ignore[assignment]
        with srv.lock:
            srv.requests += 1
            n = srv.requests
        match = _BLOB.match(self.path)
        path = srv.folder / f"{match.group(1)}.safetensors" if match else None
        refused = srv.refuse_every and (n - 1) % srv.refuse_every == 0
        if path is None or not path.is_file() or refused:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        blob = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(blob)))
        self.end_headers()
        if srv.drip_s <= 0:
            self.wfile.write(blob)
            return
        try:
            for i in range(len(blob)):
                if srv.stopping.wait(srv.drip_s):
                    return
                self.wfile.write(blob[i : i + 1])
                self.wfile.flush()
        except OSError:
            pass  # the reader gave up: what a voter with a deadline does


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    folder: Path
    drip_s: float
    refuse_every: int
    requests: int
    lock: threading.Lock
    stopping: threading.Event


class SlowStore:
    """``SlowStore(folder, drip_s=1.0).start()`` serves ``folder`` at ``.url`` until ``stop()``."""

    def __init__(self, folder: str | Path, *, drip_s: float = 0.0, refuse_every: int = 0):
        self.folder, self.drip_s, self.refuse_every = Path(folder), drip_s, refuse_every
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> int:
        return self._server.requests if self._server is not None else 0

    def start(self) -> SlowStore:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.folder, server.drip_s, server.refuse_every = self.folder, self.drip_s, self.refuse_every
        server.requests, server.lock, server.stopping = 0, threading.Lock(), threading.Event()
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stopping.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SlowStore:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
