"""The downloader and the QuickDraw fetcher against a local HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from pb_build.errors import PbBuildError
from pb_build.raw import download as dl
from pb_build.raw.download import cache_root, download, download_prefix, read_state
from pb_build.raw.quickdraw import URL_ENV, category_url, fetch, read_drawings

CHUNK = 4096
RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class FileServer(ThreadingHTTPServer):
    """Serves files under ``root``; supports ``Range: bytes=N-[M]`` and records what it served."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.root = root
        self.requests: list[tuple[str, str | None]] = []  # (raw request path, Range header)
        self.bytes_served = 0
        self.ignore_range = False
        self.not_found = False
        self.drop_after: int | None = None  # one-shot: cut the next body after this many bytes
        self.stall_s = 0.0
        self.fail_5xx = 0  # the next this many requests answer 503
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def range_starts(self) -> list[int]:
        return [int(RANGE.match(r)[1]) if r else 0 for _, r in self.requests]


class RangeHandler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        range_header = self.headers.get("Range")
        with srv.lock:
            srv.requests.append((self.path, range_header))
        if srv.stall_s:
            time.sleep(srv.stall_s)
        with srv.lock:
            fail, srv.fail_5xx = srv.fail_5xx > 0, max(srv.fail_5xx - 1, 0)
        if fail:
            self.send_error(503)
            return
        file = srv.root / unquote(urlsplit(self.path).path).lstrip("/")
        if srv.not_found or not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        match = RANGE.fullmatch(range_header or "")
        if match and not srv.ignore_range:
            start = int(match[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
            body = data[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with srv.lock:
            drop, srv.drop_after = srv.drop_after, None
        self._send(body if drop is None else body[:drop])

    def _send(self, body: bytes) -> None:
        for i in range(0, len(body), 1024):
            try:
                self.wfile.write(body[i:i + 1024])
            except (BrokenPipeError, ConnectionResetError):
                return  # the client stopped reading
            with self.server.lock:
                self.server.bytes_served += len(body[i:i + 1024])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "www"
    root.mkdir()
    srv = FileServer(root)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def _no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "RETRY_DELAY_S", 0.0)


def make_ndjson(word: str, n: int, seed: int = 0, *, trailing_newline: bool = True) -> bytes:
    """``n`` drawings in the QuickDraw simplified format; every fourth one is not recognized."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        strokes = []
        for _ in range(rng.randint(1, 4)):
            points = rng.randint(2, 12)
            strokes.append([[rng.randint(0, 255) for _ in range(points)],
                            [rng.randint(0, 255) for _ in range(points)]])
        record = {"word": word, "countrycode": rng.choice(["US", "DE", "BR"]),
                  "timestamp": f"2017-03-01 10:{i % 60:02d}:00.12345 UTC", "recognized": i % 4 != 3,
                  "key_id": str(4_000_000_000_000_000 + i), "drawing": strokes}
        lines.append(json.dumps(record))
    text = "\n".join(lines) + ("\n" if trailing_newline else "")
    return text.encode()


def publish(srv: FileServer, name: str, data: bytes) -> Path:
    path = srv.root / "simplified" / f"{name}.ndjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def bytes_for_pool(data: bytes, pool: int) -> int:
    """Offset just past the line holding the ``pool``-th eligible drawing (recognized, 2+ strokes)."""
    offset = count = 0
    for line in data.splitlines(keepends=True):
        offset += len(line)
        record = json.loads(line)
        count += record["recognized"] and len(record["drawing"]) >= 2
        if count >= pool:
            return offset
    return len(data)


def recognized(path: Path) -> int:
    """Eligible drawings in a cached file, as the fetcher counts them."""
    return sum(d.recognized and d.n_strokes >= 2 for d in read_drawings(path))


@pytest.fixture
def cat_file(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> bytes:
    data = make_ndjson("cat", 400)
    publish(server, "cat", data)
    monkeypatch.setenv(URL_ENV, server.url)
    return data


def test_prefix_fetch_reads_only_what_the_pool_needs(server: FileServer, cat_file: bytes,
                                                      tmp_path: Path) -> None:
    folder = fetch(["cat"], 20, tmp_path / "cache", progress=False, chunk_bytes=CHUNK)
    cached = (folder / "cat.ndjson").read_bytes()
    assert folder == tmp_path / "cache" / "quickdraw" / "simplified"
    assert server.bytes_served < len(cat_file)
    assert server.bytes_served <= bytes_for_pool(cat_file, 20) + CHUNK
    assert all(r is not None for _, r in server.requests)
    assert cached.endswith(b"\n") and cat_file.startswith(cached)
    assert recognized(folder / "cat.ndjson") >= 20
    state = read_state(folder / "cat.ndjson")
    assert state is not None and not state.complete and state.total == len(cat_file)
    assert state.fetched == server.bytes_served


def test_bigger_pool_resumes_without_refetching_the_start(server: FileServer, cat_file: bytes,
                                                          tmp_path: Path) -> None:
    fetch(["cat"], 20, tmp_path, progress=False, chunk_bytes=CHUNK)
    first = server.bytes_served
    n_first = len(server.requests)
    folder = fetch(["cat"], 200, tmp_path, progress=False, chunk_bytes=CHUNK)
    assert server.range_starts()[n_first] == first
    assert server.bytes_served <= bytes_for_pool(cat_file, 200) + CHUNK
    assert recognized(folder / "cat.ndjson") >= 200
    assert cat_file.startswith((folder / "cat.ndjson").read_bytes())
    # Enough is cached now: a smaller pool asks the server nothing.
    n_requests = len(server.requests)
    fetch(["cat"], 50, tmp_path, progress=False, chunk_bytes=CHUNK)
    assert len(server.requests) == n_requests


def test_pool_larger_than_the_file_fetches_it_whole(server: FileServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_ndjson("dog", 40, seed=1, trailing_newline=False)
    publish(server, "dog", data)
    monkeypatch.setenv(URL_ENV, server.url)
    folder = fetch(["dog"], 1000, tmp_path, progress=False, chunk_bytes=CHUNK)
    assert (folder / "dog.ndjson").read_bytes() == data
    assert not (folder / "dog.ndjson.part").exists()
    state = read_state(folder / "dog.ndjson")
    assert state is not None and state.complete and state.fetched == state.total == len(data)
    n_requests = len(server.requests)
    fetch(["dog"], 1000, tmp_path, progress=False, chunk_bytes=CHUNK)
    assert len(server.requests) == n_requests


def test_lines_longer_than_a_chunk(server: FileServer, cat_file: bytes, tmp_path: Path) -> None:
    folder = fetch(["cat"], 5, tmp_path, progress=False, chunk_bytes=64)
    cached = (folder / "cat.ndjson").read_bytes()
    assert cached.endswith(b"\n") and cat_file.startswith(cached)
    assert recognized(folder / "cat.ndjson") == 5
    assert server.bytes_served <= bytes_for_pool(cat_file, 5) + 64


def test_dropped_connection_keeps_complete_lines_and_resumes(server: FileServer, cat_file: bytes,
                                                             tmp_path: Path) -> None:
    url = category_url("cat", server.url)
    dest = tmp_path / "cat.ndjson"
    server.drop_after = 1500
    with pytest.raises(PbBuildError, match=r"connection dropped after 1500 of \d+ bytes"):
        download_prefix(url, dest, lambda _: False, chunk_bytes=CHUNK, progress=False, retries=0)
    state = read_state(dest)
    assert state is not None and state.fetched == 1500
    cached = dest.read_bytes()
    assert cached.endswith(b"\n") and len(cached) < 1500 and cat_file.startswith(cached)
    download_prefix(url, dest, lambda _: False, chunk_bytes=CHUNK, progress=False, retries=0)
    assert server.range_starts()[1] == 1500
    assert dest.read_bytes() == cat_file
    assert server.bytes_served == len(cat_file)


def test_dropped_connection_is_retried_within_one_call(server: FileServer, cat_file: bytes,
                                                       tmp_path: Path) -> None:
    server.drop_after = 100
    folder = fetch(["cat"], 30, tmp_path, progress=False, chunk_bytes=CHUNK)
    assert server.range_starts()[:2] == [0, 100]
    assert recognized(folder / "cat.ndjson") >= 30


def test_server_ignoring_range(server: FileServer, cat_file: bytes, tmp_path: Path) -> None:
    server.ignore_range = True
    folder = fetch(["cat"], 20, tmp_path, progress=False, chunk_bytes=CHUNK)
    first = (folder / "cat.ndjson").read_bytes()
    assert first.endswith(b"\n") and cat_file.startswith(first)
    assert recognized(folder / "cat.ndjson") >= 20
    folder = fetch(["cat"], 200, tmp_path, progress=False, chunk_bytes=CHUNK)
    second = (folder / "cat.ndjson").read_bytes()
    assert second.endswith(b"\n") and cat_file.startswith(second) and len(second) > len(first)
    assert recognized(folder / "cat.ndjson") >= 200


def test_full_download_resumes_a_part_file(server: FileServer, tmp_path: Path) -> None:
    data = make_ndjson("cat", 100)
    publish(server, "cat", data)
    dest = tmp_path / "out" / "cat.ndjson"
    dest.parent.mkdir()
    dl.part_path(dest).write_bytes(data[:1000])
    sha = hashlib.sha256(data).hexdigest()
    assert download(f"{server.url}/simplified/cat.ndjson", dest, sha256=sha, progress=False) == dest
    assert server.requests[0][1] == "bytes=1000-"
    assert server.bytes_served == len(data) - 1000
    assert dest.read_bytes() == data and not dl.part_path(dest).exists()


def test_full_download_restarts_when_range_is_ignored(server: FileServer, tmp_path: Path) -> None:
    data = make_ndjson("cat", 100)
    publish(server, "cat", data)
    server.ignore_range = True
    dest = tmp_path / "cat.ndjson"
    dl.part_path(dest).write_bytes(b"stale bytes that must not survive")
    download(f"{server.url}/simplified/cat.ndjson", dest, progress=False)
    assert dest.read_bytes() == data


def test_full_download_drop_then_retry(server: FileServer, tmp_path: Path) -> None:
    data = make_ndjson("cat", 100)
    publish(server, "cat", data)
    url = f"{server.url}/simplified/cat.ndjson"
    dest = tmp_path / "cat.ndjson"
    server.drop_after = 2000
    with pytest.raises(PbBuildError, match="connection dropped"):
        download(url, dest, progress=False, retries=0)
    assert not dest.exists() and dl.part_path(dest).stat().st_size == 2000
    download(url, dest, progress=False, retries=0)
    assert dest.read_bytes() == data and server.requests[1][1] == "bytes=2000-"


def test_5xx_is_retried_with_exponential_backoff(server: FileServer, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_ndjson("cat", 20)
    publish(server, "cat", data)
    waits: list[float] = []
    monkeypatch.setattr(dl, "RETRY_DELAY_S", 1.0)
    monkeypatch.setattr(dl.time, "sleep", waits.append)
    server.fail_5xx = 3
    dest = download(f"{server.url}/simplified/cat.ndjson", tmp_path / "cat.ndjson", progress=False, retries=3)
    assert dest.read_bytes() == data and waits == [1.0, 2.0, 4.0]
    server.fail_5xx = 10
    with pytest.raises(PbBuildError, match=r"simplified/cat\.ndjson: .*503"):
        download(f"{server.url}/simplified/cat.ndjson", tmp_path / "again.ndjson", progress=False, retries=2)
    assert server.fail_5xx == 10 - 3


def test_sha256_mismatch(server: FileServer, tmp_path: Path) -> None:
    data = make_ndjson("cat", 10)
    publish(server, "cat", data)
    dest = tmp_path / "cat.ndjson"
    with pytest.raises(PbBuildError) as err:
        download(f"{server.url}/simplified/cat.ndjson", dest, sha256="ab" * 32, progress=False)
    message = str(err.value)
    assert "sha256 mismatch" in message and "cat.ndjson" in message and "\n" not in message
    assert "ab" * 32 in message and hashlib.sha256(data).hexdigest() in message
    assert not dest.exists() and not dl.part_path(dest).exists()


def test_404_is_a_clear_error(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL_ENV, server.url)
    with pytest.raises(PbBuildError, match=r"simplified/dog\.ndjson: not found \(HTTP 404\)"):
        fetch(["dog"], 10, tmp_path, progress=False)
    assert not any((tmp_path / "quickdraw" / "simplified").iterdir())  # no empty dog.ndjson left behind
    with pytest.raises(PbBuildError, match="not found"):
        download(f"{server.url}/nothing.bin", tmp_path / "nothing.bin", progress=False)


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.ndjson"
    with pytest.raises(PbBuildError, match=rf"{re.escape(url)}: connection refused"):
        download(url, tmp_path / "x.ndjson", progress=False)


def test_timeout(server: FileServer, tmp_path: Path) -> None:
    publish(server, "cat", make_ndjson("cat", 5))
    server.stall_s = 0.5
    with pytest.raises(PbBuildError, match=r"timed out after 0.1 s"):
        download(f"{server.url}/simplified/cat.ndjson", tmp_path / "c", progress=False, timeout=0.1,
                 retries=0)


def test_cache_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PB_BUILD_CACHE", raising=False)
    assert cache_root() == tmp_path / "home" / ".cache" / "pb-build"
    monkeypatch.setenv("PB_BUILD_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache_root(str(tmp_path / "s")) == tmp_path / "s"


def test_fetch_uses_pb_build_cache(server: FileServer, cat_file: bytes, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PB_BUILD_CACHE", str(tmp_path / "envcache"))
    folder = fetch(["cat"], 5, progress=False, chunk_bytes=CHUNK)
    assert folder == tmp_path / "envcache" / "quickdraw" / "simplified"
    assert (folder / "cat.ndjson").is_file()


def test_category_with_spaces_is_url_encoded(server: FileServer, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_ndjson("The Eiffel Tower", 30, seed=2)
    publish(server, "The Eiffel Tower", data)
    monkeypatch.setenv(URL_ENV, server.url)
    folder = fetch(["The Eiffel Tower"], 10, tmp_path, progress=False, chunk_bytes=CHUNK)
    assert server.requests[0][0] == "/simplified/The%20Eiffel%20Tower.ndjson"
    assert recognized(folder / "The Eiffel Tower.ndjson") >= 10


def test_unknown_category(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(PbBuildError, match=r"unknown QuickDraw category: 'catt'"):
        fetch(["cat", "catt"], 10, tmp_path, base_url=server.url, progress=False)
    assert server.requests == []


def test_inconsistent_cache_starts_over(server: FileServer, cat_file: bytes, tmp_path: Path) -> None:
    folder = fetch(["cat"], 20, tmp_path, progress=False, chunk_bytes=CHUNK)
    with open(folder / "cat.ndjson", "ab") as handle:
        handle.write(b'{"half a rec')
    n_requests = len(server.requests)
    fetch(["cat"], 20, tmp_path, progress=False, chunk_bytes=CHUNK)
    assert server.range_starts()[n_requests] == 0
    cached = (folder / "cat.ndjson").read_bytes()
    assert cat_file.startswith(cached) and recognized(folder / "cat.ndjson") >= 20


def test_empty_remote_file(server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(server, "dog", b"")
    monkeypatch.setenv(URL_ENV, server.url)
    folder = fetch(["dog"], 10, tmp_path, progress=False)
    assert (folder / "dog.ndjson").read_bytes() == b""
    state = read_state(folder / "dog.ndjson")
    assert state is not None and state.complete


def test_progress_bar_does_not_break_fetching(server: FileServer, cat_file: bytes, tmp_path: Path) -> None:
    folder = fetch(["cat"], 20, tmp_path, progress=True, chunk_bytes=CHUNK)
    assert recognized(folder / "cat.ndjson") >= 20


def test_cli_build_without_raw_fetches_into_the_cache(server: FileServer, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from pb_build.cli import main
    from pb_build.verify import verify_release

    monkeypatch.setenv(URL_ENV, server.url)
    big = publish(server, "cat", make_ndjson("cat", 3000)).stat().st_size
    big += publish(server, "The Eiffel Tower", make_ndjson("The Eiffel Tower", 3000, seed=1)).stat().st_size
    out = tmp_path / "rel"
    args = ["quickdraw", "--categories", "cat,The Eiffel Tower", "--per-class", "3", "--pool", "10",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet", "--workers", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "6 samples" in result.output
    assert server.bytes_served < big / 2  # only the prefixes the pools need
    assert (tmp_path / "cache" / "quickdraw" / "simplified" / "cat.ndjson").is_file()
    assert verify_release(out).problems == []
