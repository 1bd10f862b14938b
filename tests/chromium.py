"""Open local pages in headless Chromium (Debian's ``chromium``) through the DevTools protocol.

``Browser.open(url)`` navigates, waits for the load event and returns the DOM and every console error,
uncaught exception and failed resource load the page produced. Tests skip with a reason when Chromium or the
websocket client is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-port=0")


def chromium_or_skip() -> str:
    """The Chromium binary, or skip the test saying how to install it."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            break
    else:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e '.[test]')")
    return path


@dataclass
class Page:
    """What a page showed and what went wrong while it loaded."""

    url: str
    dom: str
    errors: list[str] = field(default_factory=list)


class Browser:
    """One headless Chromium with a fresh profile; use as a context manager."""

    def __init__(self, binary: str, timeout: float = 60.0):
        self.binary, self.timeout = binary, timeout
        self.profile = Path(tempfile.mkdtemp(prefix="pb-chromium-"))
        self.proc: subprocess.Popen | None = None
        self.ws = None
        self._id = 0

    def __enter__(self) -> Browser:
        import websocket

        self.proc = subprocess.Popen([self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as resp:
            targets = json.load(resp)
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=self.timeout,
                                             suppress_origin=True)
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            self._call(method)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _send(self, method: str, params: dict | None = None) -> int:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        return self._id

    def _call(self, method: str, params: dict | None = None, events: list | None = None) -> dict:
        wanted = self._send(method, params)
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if events is not None and "method" in msg:
                events.append(msg)

    def open(self, url: str, settle: float = 0.2) -> Page:
        """Navigate to ``url``; return its DOM and the errors seen until load (plus ``settle`` seconds)."""
        events: list[dict] = []
        self._call("Page.navigate", {"url": url}, events)
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == "Page.loadEventFired" for e in events):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}: no load event within {self.timeout}s")
            events.append(json.loads(self.ws.recv()))
        self.ws.settimeout(settle)
        try:
            while True:
                events.append(json.loads(self.ws.recv()))
        except Exception:  # the settle timeout: no more events
            pass
        finally:
            self.ws.settimeout(self.timeout)
        dom = self._call("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                              "returnByValue": True}, events)["result"]["value"]
        return Page(url, dom, [e for e in map(_error, events) if e])


def _error(event: dict) -> str | None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
    if method == "Runtime.exceptionThrown":
        return "exception: " + params.get("exceptionDetails", {}).get("text", "")
    if method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        entry = params["entry"]
        return f"log: {entry.get('text', '')} {entry.get('url', '')}".strip()
    return None
