"""A local OpenAI-compatible chat-completions server for the tests (127.0.0.1, a thread, no network).

It answers with ``answer(model, prompt)``; ``script`` holds one-off behaviours consumed one per request before
normal answers: an HTTP status (429, 500, 400), ``"slow"`` (sleeps past the client's timeout), ``"garbage"``
(malformed JSON) or ``"empty"`` (valid JSON without choices). ``always`` applies one behaviour to every request.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPTION = re.compile(r"^([A-Z])\. ", re.M)


def letter_answer(model: str, prompt: str) -> str:
    """Model 'first' answers the first lettered option, any other model the last one."""
    letters = OPTION.findall(prompt)
    if not letters:
        return "I would move the camera."
    return f"{letters[0] if model == 'first' else letters[-1]}."


class ApiServer:
    def __init__(self, answer: Callable[[str, str], str] = letter_answer, slow: float = 1.0) -> None:
        self.answer, self.slow = answer, slow
        self.script: list[Any] = []
        self.always: Any = None
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization", ""))
                    action = server.script.pop(0) if server.script else server.always
                if action == "slow":
                    time.sleep(server.slow)
                    action = None
                if isinstance(action, int):
                    self._send(action, b'{"error": {"message": "try later; Authorization was echoed: '
                               + self.headers.get("Authorization", "").encode() + b'"}}')
                    return
                if action == "garbage":
                    self._send(200, b"<html>not json")
                    return
                if action == "empty":
                    self._send(200, b'{"choices": []}')
                    return
                content = body["messages"][0]["content"]
                assert content[0]["type"] == "image_url" and content[0]["image_url"]["url"].startswith("data:image/")
                text = server.answer(body["model"], content[1]["text"])
                reply = {"id": "x", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 100, "completion_tokens": 2, "total_tokens": 102}}
                self._send(200, json.dumps(reply).encode())

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
