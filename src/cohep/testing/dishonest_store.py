"""A member's store server that misbehaves on purpose: the one dishonest server of the deadline tests
(a proposal's URI pointed at it) and of the member-attack drills (a :class:`~cohep.testing.localnet.
DishonestNode`'s store), so both meet the same request handling.

It serves a folder under the blob server's names (``cohep.wire.server.BlobServer``: ``/<hex>.safetensors``
and the signed ballots' ``/ballots/...json``), GET and HEAD, in one of these ``mode``s, which may change
while it runs:

* ``honest``: as the blob server does;
* ``drip``: every blob at one byte every ``drip_s`` seconds (never slow enough for one read to time out);
* ``first``: each blob to its first ``serve_first`` GET requests, 404 to every later one (a server that
  chooses which voters get its blob, here by the order they come in, as it could by their addresses);
* ``alternate``: 404 to the 1st, 3rd, 5th... GET of each blob (a flaky server a retry gets past);
* ``withhold``: 404 to every blob.

``requests`` logs (time, name, status) of each GET.
"""
from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODES = ("honest", "drip", "first", "alternate", "withhold")

_NAME = re.compile(r"^/([0-9a-f]{64}\.safetensors|ballots/0x[0-9a-f]{40}/[0-9]{1,20}/0x[0-9a-f]{40}\.json)$")


class DishonestStore:
    """``DishonestStore(folder, mode="drip").start()`` serves ``folder`` at ``.url`` until ``stop()``
    (``port`` 0: any free port); also a context manager."""

    def __init__(self, folder: str | Path, port: int = 0, *, mode: str = "honest", drip_s: float = 1.0,
                 serve_first: int = 2):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        self.folder, self.port, self.mode = Path(folder), port, mode
        self.drip_s, self.serve_first = drip_s, serve_first
        self.requests: list[tuple[float, str, int]] = []
        self._served: dict[str, int] = {}  # blob name -> GET requests for it so far
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> DishonestStore:
        store = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # the base class's signature; quiet
                pass

            def do_HEAD(self):  # noqa: N802 - the standard library's name
                store._answer(self, body=False)

            def do_GET(self):  # noqa: N802
                store._answer(self, body=True)

        self.folder.mkdir(parents=True, exist_ok=True)
        self._halt.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                         name=f"dishonest-store:{self._server.server_address[1]}").start()
        return self

    def stop(self) -> None:
        self._halt.set()  # a drip in progress ends
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> DishonestStore:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _refused(self, path: Path | None, blob: bool, body: bool) -> bool:
        if path is None or not path.is_file():
            return True
        if not blob:
            return False
        if self.mode == "withhold":
            return True
        if body and self.mode in ("first", "alternate"):
            with self._lock:
                n = self._served[path.name] = self._served.get(path.name, 0) + 1
            return n > self.serve_first if self.mode == "first" else n % 2 == 1
        return False

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        match = _NAME.match(h.path)
        path = self.folder / match.group(1) if match else None
        blob = bool(match) and match.group(1).endswith(".safetensors")
        refuse = self._refused(path, blob, body)
        if body:
            with self._lock:
                self.requests.append((time.time(), match.group(1) if match else h.path, 404 if refuse else 200))
        if refuse or path is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = path.read_bytes()
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if not body:
            return
        try:
            if blob and self.mode == "drip":
                for k in range(len(data)):
                    if self._halt.wait(self.drip_s):
                        return
                    h.wfile.write(data[k:k + 1])
                    h.wfile.flush()
            else:
                h.wfile.write(data)
        except OSError:  # the reader gave up: what a voter with a deadline does
            pass
