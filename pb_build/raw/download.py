"""HTTP(S) downloads into a local cache, with the standard library only.

Two modes:

* :func:`download` fetches a whole file into ``dest``: it resumes a ``.part`` file with a ``Range`` request,
  checks an optional sha256 and renames the finished file into place atomically.
* :func:`download_prefix` reads only the start of a line-oriented file (ndjson), ``chunk_bytes`` at a time,
  until a caller's predicate says the lines so far are enough. ``dest`` then holds complete lines only; a
  trailing partial line waits in ``<dest>.part`` and the progress in the sidecar ``<dest>.json``, so a later
  call that needs more lines resumes where the last one stopped.

Every failure is a one-line :class:`DownloadError` (a :class:`~pb_build.errors.PbBuildError`) naming the URL.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from pb_build import __version__
from pb_build.errors import PbBuildError

CACHE_ENV = "PB_BUILD_CACHE"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_CHUNK_BYTES = 1 << 20
DEFAULT_RETRIES = 3
RETRY_DELAY_S = 1.0
MAX_RETRY_DELAY_S = 30.0
READ_BLOCK = 1 << 16
USER_AGENT = f"pb-build/{__version__}"
RETRIABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
_NO_NETWORK = frozenset({errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTUNREACH})

Enough = Callable[[bytes], bool]
"""Prefix predicate: fed every complete line exactly once, in file order, a block of lines per call
(cached lines first, then newly fetched ones); returns True once the lines seen so far are enough."""


class DownloadError(PbBuildError):
    """A failed download; ``retriable`` marks transient causes (dropped connection, timeout, HTTP 5xx)."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


def cache_root(override: str | Path | None = None) -> Path:
    """The cache folder: ``override`` if given, else ``$PB_BUILD_CACHE``, else ``~/.cache/pb-build``."""
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "pb-build"


def part_path(dest: Path) -> Path:
    """Where the unfinished bytes of ``dest`` live."""
    return dest.with_name(dest.name + ".part")


def state_path(dest: Path) -> Path:
    """The sidecar JSON recording how far a prefix download of ``dest`` got."""
    return dest.with_name(dest.name + ".json")


# --------------------------------------------------------------------------------------------- HTTP layer


@dataclass
class _Reply:
    """An open HTTP response, reduced to what resuming needs."""

    status: int
    start: int  # offset of the body's first byte in the remote file
    total: int | None  # remote file size, when the server said
    length: int | None  # body length (Content-Length)
    body: HTTPResponse | None

    def close(self) -> None:
        if self.body is not None:
            self.body.close()


_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` from a Content-Range header; None where absent or unknown."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None, None
    first, _, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def _int_header(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


def _request(url: str, start: int, end: int | None, timeout: float) -> _Reply:
    """GET ``url`` from byte ``start`` (to ``end`` inclusive, if given); a 416 comes back as a reply."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start > 0 or end is not None:
        headers["Range"] = f"bytes={start}-{'' if end is None else end}"
    try:
        resp: HTTPResponse = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        exc.close()
        if exc.code == 416:
            return _Reply(416, start, _parse_content_range(exc.headers.get("Content-Range"))[1], 0, None)
        raise _http_error(url, exc) from None
    except (OSError, HTTPException) as exc:
        raise _network_error(url, exc, timeout) from None
    length = _int_header(resp.headers.get("Content-Length"))
    if resp.status == 206:
        first, total = _parse_content_range(resp.headers.get("Content-Range"))
        if first is None:
            resp.close()
            raise DownloadError(f"{url}: HTTP 206 without a usable Content-Range header")
        return _Reply(206, first, total, length, resp)
    if resp.status != 200:
        resp.close()
        raise DownloadError(f"{url}: unexpected HTTP {resp.status} {resp.reason}")
    return _Reply(200, 0, length, length, resp)


def _http_error(url: str, exc: HTTPError) -> DownloadError:
    if exc.code == 404:
        return DownloadError(f"{url}: not found (HTTP 404)")
    return DownloadError(f"{url}: HTTP {exc.code} {exc.reason}", retriable=exc.code in RETRIABLE_HTTP)


def _network_error(url: str, exc: BaseException, timeout: float) -> DownloadError:
    """A one-line message for a failure below HTTP (refused, no DNS, timeout, reset)."""
    cause = exc.reason if isinstance(exc, URLError) else exc
    if isinstance(cause, ConnectionRefusedError):
        return DownloadError(f"{url}: connection refused (is the server up?)")
    if isinstance(cause, socket.gaierror):
        return DownloadError(f"{url}: cannot resolve the host (no network?): {cause.strerror or cause}")
    if isinstance(cause, TimeoutError):
        return DownloadError(f"{url}: timed out after {timeout:g} s", retriable=True)
    if isinstance(cause, ConnectionError | HTTPException):
        return DownloadError(f"{url}: connection dropped ({type(cause).__name__})", retriable=True)
    if isinstance(cause, OSError) and cause.errno in _NO_NETWORK:
        return DownloadError(f"{url}: network unreachable (no network?): {cause.strerror}")
    return DownloadError(f"{url}: network error: {cause}")


def _blocks(reply: _Reply, url: str, timeout: float) -> Iterator[bytes]:
    """The body in blocks; a body cut short of its Content-Length raises a retriable DownloadError."""
    assert reply.body is not None
    got = 0
    while True:
        try:
            block = reply.body.read(READ_BLOCK)
        except (OSError, HTTPException) as exc:
            raise _network_error(url, exc, timeout) from None
        if not block:
            break
        got += len(block)
        yield block
    # http.client returns b"" instead of raising when the peer closes early, so check the length here.
    if reply.length is not None and got < reply.length:
        raise DownloadError(f"{url}: connection dropped after {got} of {reply.length} bytes", retriable=True)


def _with_retries(action: Callable[[], None], retries: int) -> None:
    """Run ``action``, again up to ``retries`` times after a transient failure (it resumes, so it's cheap)."""
    for attempt in range(retries + 1):
        try:
            action()
            return
        except DownloadError as exc:
            if not exc.retriable or attempt == retries:
                raise
            time.sleep(min(RETRY_DELAY_S * 2 ** attempt, MAX_RETRY_DELAY_S))  # exponential backoff


def _progress(desc: str, total: int | None, initial: int, enabled: bool) -> tqdm:
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not enabled, leave=False)


# ---------------------------------------------------------------------------------------- whole files


def download(url: str, dest: str | Path, *, sha256: str | None = None, progress: bool = True,
             timeout: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES) -> Path:
    """Download ``url`` to ``dest`` unless it is already there; resumes ``<dest>.part``; returns ``dest``.

    With ``sha256`` the finished bytes are checked before ``dest`` appears; a mismatch deletes them and
    raises :class:`DownloadError`.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    _with_retries(lambda: _download_part(url, part, timeout, progress), retries)
    if sha256 is not None:
        _check_sha256(url, part, sha256, dest.name)
    os.replace(part, dest)
    return dest


def _download_part(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Fill ``part`` with the whole remote file, continuing from its current size."""
    have = part.stat().st_size if part.exists() else 0
    reply = _request(url, have, None, timeout)
    if reply.status == 416:
        if reply.total == have:
            return  # the part already holds the whole file
        part.unlink()  # the part is longer than the remote file: start over
        _download_part(url, part, timeout, progress)
        return
    if reply.status == 206 and reply.start != have:
        reply.close()
        raise DownloadError(f"{url}: asked for bytes from {have}, the server sent from {reply.start}")
    offset = have if reply.status == 206 else 0  # a 200 ignores Range: restart from zero
    try:
        with open(part, "ab" if offset else "wb") as out, \
                _progress(part.name[: -len(".part")], reply.total, offset, progress) as bar:
            for block in _blocks(reply, url, timeout):
                out.write(block)
                bar.update(len(block))
    finally:
        reply.close()


def _check_sha256(url: str, path: Path, expected: str, name: str) -> None:
    """Delete ``path`` and raise unless its sha256 is ``expected``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(READ_BLOCK * 16):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != expected.lower():
        path.unlink()
        raise DownloadError(f"{url}: sha256 mismatch for {name}: expected {expected.lower()}, got {actual}"
                            " (the download was deleted)")


# ------------------------------------------------------------------------------------- prefix downloads


@dataclass
class PrefixState:
    """What the sidecar JSON of a prefix download records."""

    url: str
    fetched: int = 0  # bytes read from the remote file: those in dest plus those in the .part tail
    total: int | None = None  # remote size, once known
    complete: bool = False  # dest holds the whole remote file


def read_state(dest: Path) -> PrefixState | None:
    """The recorded state of a prefix download of ``dest``, or None if there is none (or it is unreadable)."""
    try:
        raw = json.loads(state_path(dest).read_text(encoding="utf-8"))
        state = PrefixState(url=raw["url"], fetched=raw["fetched"], total=raw["total"],
                            complete=raw["complete"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok_total = state.total is None or isinstance(state.total, int)
    ok = isinstance(state.url, str) and isinstance(state.fetched, int) and isinstance(state.complete, bool)
    return state if ok and ok_total else None


class _PrefixCache:
    """One prefix download on disk: complete lines in ``dest``, the partial last line in ``.part``."""

    def __init__(self, url: str, dest: Path) -> None:
        self.url, self.dest = url, dest
        self.part, self.sidecar = part_path(dest), state_path(dest)
        self.state, self.tail = PrefixState(url), b""
        loaded = read_state(dest)
        if loaded is not None and loaded.url == url and self._consistent(loaded):
            self.state = loaded
            self.tail = self.part.read_bytes() if self.part.exists() else b""
        else:
            self.reset()

    def _consistent(self, state: PrefixState) -> bool:
        """Files and sidecar agree (they may not after a crash mid-update)."""
        size = self.dest.stat().st_size if self.dest.exists() else 0
        tail = self.part.stat().st_size if self.part.exists() else 0
        return size + tail == state.fetched and not (state.complete and tail)

    def reset(self) -> None:
        """Forget everything cached; files reappear with the first fetched bytes (none is left by a 404)."""
        for path in (self.dest, self.part, self.sidecar):
            path.unlink(missing_ok=True)
        self.state, self.tail = PrefixState(self.url), b""

    def _save(self) -> None:
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self.state)), encoding="utf-8")
        os.replace(tmp, self.sidecar)

    def append(self, data: bytes) -> bytes:
        """Add fetched bytes; returns the lines they completed (already written to ``dest``)."""
        buf = self.tail + data
        cut = buf.rfind(b"\n") + 1
        lines, self.tail = buf[:cut], buf[cut:]
        with open(self.dest, "ab") as out:  # also creates dest before its first complete line
            out.write(lines)
        self.part.write_bytes(self.tail)
        self.state.fetched += len(data)
        self._save()
        return lines

    def finish(self) -> bytes:
        """The remote file ended: its last line is complete even without a newline; returns that line."""
        last, self.tail = self.tail, b""
        with open(self.dest, "ab") as out:
            out.write(last)
        self.part.unlink(missing_ok=True)
        self.state.complete = True
        self.state.total = self.state.fetched
        self._save()
        return last


def download_prefix(url: str, dest: str | Path, enough: Enough, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                    progress: bool = True, timeout: float = DEFAULT_TIMEOUT_S,
                    retries: int = DEFAULT_RETRIES) -> Path:
    """Make ``dest`` hold a prefix of the line file at ``url`` that satisfies ``enough`` (or the whole file).

    Cached lines are fed to ``enough`` first; only if they fall short is more fetched, with ``Range``
    requests of ``chunk_bytes`` from where the cache stopped. ``dest`` only ever holds complete lines.
    """
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cache = _PrefixCache(url, dest)
    if _replay(dest, enough, chunk_bytes) or cache.state.complete:
        return dest
    _with_retries(lambda: _fetch_more(cache, enough, chunk_bytes, timeout, progress), retries)
    return dest


def _replay(dest: Path, enough: Enough, chunk_bytes: int) -> bool:
    """Feed the cached lines of ``dest`` to ``enough``; True once it is satisfied."""
    carry = b""
    if not dest.exists():
        return False
    with open(dest, "rb") as handle:
        while block := handle.read(chunk_bytes):
            buf = carry + block
            cut = buf.rfind(b"\n") + 1
            lines, carry = buf[:cut], buf[cut:]
            if lines and enough(lines):
                return True
    return bool(carry) and enough(carry)  # a complete file's last line may lack its newline


def _fetch_more(cache: _PrefixCache, enough: Enough, chunk_bytes: int, timeout: float,
                progress: bool) -> None:
    """Fetch chunk after chunk until ``enough`` is satisfied or the remote file ends."""
    state = cache.state
    with _progress(cache.dest.name, state.total, state.fetched, progress) as bar:
        while not state.complete:
            if state.total is not None and state.fetched >= state.total:
                _finish(cache, enough)
                return
            if _fetch_chunk(cache, enough, chunk_bytes, timeout, bar):
                return


def _fetch_chunk(cache: _PrefixCache, enough: Enough, chunk_bytes: int, timeout: float, bar: tqdm) -> bool:
    """One Range request from the cached offset; True once ``enough`` is satisfied."""
    state = cache.state
    start = state.fetched
    reply = _request(cache.url, start, start + chunk_bytes - 1, timeout)
    try:
        if reply.status == 416:
            if reply.total is not None and reply.total != start:
                _remote_changed(cache, reply.total)
            _finish(cache, enough)  # nothing left past our offset
            return True
        if reply.status == 206 and reply.start != start:
            raise DownloadError(f"{cache.url}: asked for bytes from {start}, got from {reply.start}")
        if reply.total is not None:
            state.total = reply.total
            bar.total = reply.total
            bar.refresh()
        # A 200 means the server ignored Range and restarted from zero: skip the bytes we already hold.
        skip = start if reply.status == 200 else 0
        received, satisfied = 0, False
        for block in _blocks(reply, cache.url, timeout):
            if skip:
                dropped = min(skip, len(block))
                block, skip = block[dropped:], skip - dropped
                if not block:
                    continue
            received += len(block)
            bar.update(len(block))
            lines = cache.append(block)
            satisfied = satisfied or bool(lines) and enough(lines)
            if satisfied and reply.status == 200:
                return True  # an open-ended body: stop reading now
        # A satisfied 206 was still read to its end: those bytes were asked for and are worth keeping.
        if skip:
            _remote_changed(cache, start - skip)
        if reply.status == 200 or received < chunk_bytes and state.total is None:
            last = cache.finish()  # the body ran to the end of the remote file
            if last and not satisfied:
                enough(last)
            return True
        if received == 0:
            raise DownloadError(f"{cache.url}: empty reply for bytes from {start}", retriable=True)
        return satisfied
    finally:
        reply.close()


def _finish(cache: _PrefixCache, enough: Enough) -> None:
    """Mark the cache complete and feed its last line, if it lacked a newline, to ``enough``."""
    last = cache.finish()
    if last:
        enough(last)


def _remote_changed(cache: _PrefixCache, remote_size: int) -> None:
    """The remote file is shorter than our cached prefix: it changed, so the cache is void."""
    cached = cache.state.fetched
    cache.reset()
    raise DownloadError(f"{cache.url}: the remote file changed (now {remote_size} bytes, {cached} cached);"
                        f" the cache of {cache.dest.name} was cleared, run again")


# ------------------------------------------------------------------------------------------- Hugging Face Hub


def hub_download(repo_id: str, filename: str, cache_dir: Path, *, endpoint: str | None = None,
                 revision: str = "main", progress: bool = True, retries: int = DEFAULT_RETRIES) -> Path:
    """One file of a Hub dataset repo through ``huggingface_hub.hf_hub_download`` (its resume, cache and
    integrity checks), retried with backoff on connection errors and 5xx; failures are one-line
    :class:`DownloadError`\\s naming the file's URL."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None  # read now: huggingface_hub reads it at import
    base = (endpoint or "https://huggingface.co").rstrip("/")
    url = f"{base}/datasets/{repo_id}/resolve/{revision}/{filename}"
    result: list[Path] = []

    def attempt() -> None:
        try:
            result.append(Path(hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision,
                                               cache_dir=cache_dir, endpoint=endpoint)))
        except EntryNotFoundError:
            raise DownloadError(f"{url}: HTTP 404 (no such file in {repo_id}@{revision})") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            raise DownloadError(f"{url}: HTTP {status}: {_first_line(exc)}",
                                retriable=status is None or status in RETRIABLE_HTTP) from None
        except LocalEntryNotFoundError as exc:  # connection refused or timed out, nothing cached
            raise DownloadError(f"{url}: cannot connect ({_first_line(exc)})", retriable=True) from None
        except OSError as exc:
            raise DownloadError(f"{url}: {exc.strerror or exc}", retriable=True) from None

    if not progress:
        disable_progress_bars()
    try:
        _with_retries(attempt, retries)
    finally:
        if not progress:
            enable_progress_bars()
    return result[0]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
