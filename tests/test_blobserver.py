"""The read-only blob server, and fetching through HTTP from it and from servers that misbehave.

Every server here listens on 127.0.0.1 with an ephemeral port: nothing leaves the machine.
"""
import hashlib
import socket
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from cohep.wire import weights as wts
from cohep.wire.checks import ProposalRejected, default_max_bytes
from cohep.wire.fetch import CHUNK_BYTES, Fetcher
from cohep.wire.server import BlobServer
from cohep.wire.store import WeightStore


def weights(seed=0, n=1000):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=n).astype(np.float32), "b": rng.normal(size=3).astype(np.float64)}


@pytest.fixture
def served(tmp_path):
    """(server, store announcing URIs under it, folder); the server stops after the test."""
    folder = tmp_path / "store"
    folder.mkdir()
    with BlobServer(folder) as server:
        yield server, WeightStore(str(folder), public_url=server.url), folder


def raw(server: BlobServer, request: bytes) -> tuple[int, dict, bytes]:
    """Send ``request`` byte for byte (no client normalising the path); (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_get_and_head(served):
    server, store, folder = served
    w = weights()
    d, uri = store.put(w)
    assert uri == f"{server.url}/{d.hex()}.safetensors" and server.url == f"http://127.0.0.1:{server.port}"
    blob = (folder / f"{d.hex()}.safetensors").read_bytes()
    status, headers, body = raw(server, f"GET /{d.hex()}.safetensors HTTP/1.0\r\n\r\n".encode())
    assert status == 200 and body == blob and hashlib.sha256(body).digest() == d
    assert headers["Content-Length"] == str(len(blob)) and headers["Content-Type"] == "application/octet-stream"
    status, headers, body = raw(server, f"HEAD /{d.hex()}.safetensors HTTP/1.0\r\n\r\n".encode())
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(blob))


@pytest.mark.parametrize("target", [
    "/", "/index.html", "/store", "/" + "cd" * 32 + ".safetensors",  # listing, other names, absent blob
    "/{hex}.safetensors/", "//{hex}.safetensors", "/{HEX}.safetensors", "/{hex}.safetensors?x=1",
    "/{hex}.safetensors.part", "/{hex}", "/../secret", "/../{hex}.safetensors", "/%2e%2e/secret",
    "/%2E%2E%2Fsecret", "/..%2fsecret", "/./{hex}.safetensors", "/etc/passwd", "//etc/passwd",
    "http://127.0.0.1/{hex}.safetensors", "/{hex}%2esafetensors", "/{hex}.safetensors%00",
])
def test_only_blob_names_are_served(served, target):
    server, store, folder = served
    d, _ = store.put(weights())
    (folder.parent / "secret").write_bytes(b"TOP SECRET")
    (folder / f"{d.hex()}.safetensors.part").write_bytes(b"half written")
    path = target.format(hex=d.hex(), HEX=d.hex().upper())
    for method in ("GET", "HEAD"):
        status, headers, body = raw(server, f"{method} {path} HTTP/1.0\r\n\r\n".encode())
        assert (status, body, headers["Content-Length"]) == (404, b"", "0"), (method, path)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "BREW"])
def test_other_methods_are_405(served, method):
    server, store, folder = served
    d, _ = store.put(weights())
    status, headers, body = raw(server, f"{method} /{d.hex()}.safetensors HTTP/1.0\r\n"
                                        f"Content-Length: 5\r\n\r\nhello".encode())
    assert (status, headers["Allow"], body) == (405, "GET, HEAD", b"")
    assert [p.name for p in folder.iterdir()] == [f"{d.hex()}.safetensors"]  # nothing written


def test_server_is_quiet_and_stops(tmp_path, capfd):
    server = BlobServer(tmp_path).start()
    port = server.port
    raw(server, b"GET /nothing HTTP/1.0\r\n\r\n")
    raw(server, b"BREW / HTTP/1.0\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # not HTTP at all: a 400
        sock.sendall(b"garbage\r\n\r\n")
        assert b"400" in sock.recv(65536)
    server.stop()
    assert capfd.readouterr().err == ""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(RuntimeError, match="once the server is started"):
        _ = server.url


def test_fetch_over_http_and_concurrently(served):
    server, store, _ = served
    ws = [weights(seed, n=50_000) for seed in range(4)]
    announced = [store.put(w) for w in ws]
    fetcher = Fetcher([server.url], default_max_bytes(ws[0]), reference=ws[0], chunk_bytes=64 * 1024)
    assert wts.equal(fetcher.fetch(announced[0][1], announced[0][0]), ws[0])

    def get(i):
        d, uri = announced[i % 4]
        return i % 4, fetcher.fetch(uri, d)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(get, range(24)))
    assert all(wts.equal(out, ws[i]) for i, out in results)
    assert fetcher.bytes == 25 * len(wts.encode(ws[0]))


def test_fetch_over_http_rejections(served):
    server, store, folder = served
    w = weights()
    d, uri = store.put(w)
    fetcher = Fetcher([server.url], default_max_bytes(w), reference=w)
    with pytest.raises(ProposalRejected, match="^unavailable: HTTP 404 Not Found$"):
        fetcher.fetch(f"{server.url}/{'cd' * 32}.safetensors", b"\xcd" * 32)
    # another blob stored under the announced digest's name: the bytes decide
    (folder / f"{'ef' * 32}.safetensors").write_bytes((folder / f"{d.hex()}.safetensors").read_bytes())
    with pytest.raises(ProposalRejected, match="^digest mismatch: "):
        fetcher.fetch(uri.replace(d.hex(), "ef" * 32), b"\xef" * 32)
    with pytest.raises(ProposalRejected, match=r"^blob is 4.\d+ kB, over the 100 bytes cap$"):
        Fetcher([server.url], 100).fetch(uri, d)
    bigger = {"w": np.zeros(5000, np.float32), "b": np.zeros(3)}
    with pytest.raises(ProposalRejected, match="^w has shape \\[1000\\], the model expects \\[5000\\]$"):
        Fetcher([server.url], 10**6).fetch(uri, d, bigger)
    port = server.port
    server.stop()
    with pytest.raises(ProposalRejected, match="^unavailable: connection refused$"):
        Fetcher([f"http://127.0.0.1:{port}"], 10**6, timeout=5).fetch(uri, d)


class _Misbehaving(BaseHTTPRequestHandler):
    """Answers as ``server.mode`` says: a redirect, a short body, a stall, two lengths."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode = self.server.mode
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://evil.example/x")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "short":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(self.server.blob[:500])
        elif mode == "stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.server.blob)))
            self.end_headers()
            self.wfile.write(self.server.blob[:10])
            self.wfile.flush()
            self.server.release.wait(10)
        elif mode == "drip":  # a byte at a time, each within the read timeout: only the deadline stops it
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.server.blob)))
            self.end_headers()
            for i in range(len(self.server.blob)):
                if self.server.release.wait(0.05):
                    return
                self.wfile.write(self.server.blob[i : i + 1])
                self.wfile.flush()
        elif mode == "two-lengths":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.server.blob)))
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(self.server.blob)
        elif mode == "chunked-huge":  # no length, more than the cap: the reader stops at the cap
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            piece = b"\0" * 65536
            try:
                for _ in range(1000):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.server.sent += len(piece)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass


@pytest.fixture
def misbehaving():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    server.daemon_threads = True
    server.release, server.sent = threading.Event(), 0
    server.blob = wts.encode(weights())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("mode, options, reason", [
    ("redirect", {}, "^unavailable: HTTP 302 redirect \\(redirects are not followed\\)$"),
    ("short", {}, "^unavailable: the transfer ended after 500 of 1,000 bytes$"),
    ("stall", {"timeout": 0.5}, "^unavailable: no answer within 0.5 s$"),
    ("drip", {"timeout": 5, "deadline": 0.5}, "^timeout: [0-9]+ bytes of 4.23 kB in 0.[5-9] s$"),
    ("two-lengths", {}, "^unavailable: the server sent an invalid Content-Length$"),
    ("chunked-huge", {}, "^blob is over the 100 kB cap \\(stopped reading at "),
])
def test_misbehaving_servers(misbehaving, mode, options, reason):
    misbehaving.mode = mode
    blob = misbehaving.blob
    d = hashlib.sha256(blob).digest()
    url = f"http://127.0.0.1:{misbehaving.server_address[1]}"
    fetcher = Fetcher([url], 100_000, chunk_bytes=16 * 1024, **options)
    start = time.monotonic()
    with pytest.raises(ProposalRejected, match=reason):
        fetcher.fetch(f"{url}/{d.hex()}.safetensors", d)
    assert time.monotonic() - start < 5
    assert fetcher.bytes <= 100_000 + 16 * 1024


def test_streaming_memory_stays_blob_plus_chunks(tmp_path):
    """A ~20 MB blob through the server and the fetcher: peak Python memory is the blob + O(chunk).

    Reading whole (``resp.read()``) and then decoding into copies would peak at 2-3x the blob.
    """
    folder = tmp_path / "store"
    folder.mkdir()
    w = {"big": np.random.default_rng(0).normal(size=5_000_000).astype(np.float32),
         "bias": np.zeros(10, np.float32)}
    with BlobServer(folder) as server:
        d, uri = WeightStore(str(folder), public_url=server.url).put(w)
        size = (folder / f"{d.hex()}.safetensors").stat().st_size
        reference = {name: np.empty(v.shape, v.dtype) for name, v in w.items()}
        fetcher = Fetcher([server.url], default_max_bytes(w), reference=reference)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            out = fetcher.fetch(uri, d)
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert size > 20_000_000 and wts.equal(out, w)
    growth = peak - before
    print(f"blob {size:,} bytes, peak growth {growth:,} bytes (+{(growth - size) / CHUNK_BYTES:.2f} chunks)")
    assert size <= growth <= size + 4 * CHUNK_BYTES, (size, growth)
    assert current - before <= size + CHUNK_BYTES  # what stays is the one buffer the arrays view
