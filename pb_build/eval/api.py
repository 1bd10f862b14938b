"""OpenAI-compatible chat-completions backend (OpenAI, vLLM, SGLang, any ``/v1/chat/completions`` server).

Each state is one request: a single user turn holding the frame as a base64 ``data:`` URL, then the prompt text,
the same conversation the transformers backend builds. Requests run on a bounded thread pool; 429, 5xx, timeouts
and dropped connections are retried with exponential backoff; a malformed answer (not JSON, no choices) is a
failure of that state only, recorded with its reason. Token usage is summed from the ``usage`` fields, and cost
from optional per-million-token prices. The key is read from an environment variable and sent only in the
``Authorization`` header; it is scrubbed from every error message and never written to the run. Uses the
standard library's ``urllib`` only.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pb_build.errors import PbBuildError
from pb_build.eval.runner import Answer, Query

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


class ApiError(RuntimeError):
    """A request that failed for good (after retries, or at once for a client error)."""


def image_mime(data: bytes) -> str:
    """The MIME type of encoded image bytes, from their magic number."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:3] == b"GIF":
        return "image/gif"
    raise ValueError("frame does not decode as an image (unknown format)")


def data_url(data: bytes) -> str:
    """``data:<mime>;base64,<bytes>`` for an encoded image."""
    return f"data:{image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"


def messages(image: bytes, prompt: str, context: tuple[tuple[bytes, str, str], ...] = ()) -> list[dict[str, Any]]:
    """The conversation: earlier (image, prompt, answer) turns if any, then the image and the text."""
    out: list[dict[str, Any]] = []
    for past_image, past_prompt, past_answer in context:
        out += messages(past_image, past_prompt)
        out.append({"role": "assistant", "content": past_answer})
    return out + [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(image)}},
                                               {"type": "text", "text": prompt}]}]


@dataclass
class Usage:
    """Tokens and requests summed over a run (thread-safe)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


@dataclass
class OpenAIBackend:
    """Answers batches of queries through an OpenAI-compatible server."""

    api_base: str
    model: str
    key_env: str = DEFAULT_KEY_ENV
    max_new_tokens: int = 50
    temperature: float | None = 0.0
    concurrency: int = 8
    retries: int = 5
    backoff: float = 1.0
    timeout: float = 60.0
    price_input: float | None = None  # per million prompt tokens
    price_output: float | None = None  # per million completion tokens
    usage_totals: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        self.api_base = self.api_base.rstrip("/")
        if not self.api_base.startswith(("http://", "https://")):
            raise PbBuildError(f"--api-base {self.api_base!r}: not an http(s) URL")

    @property
    def _key(self) -> str:
        return os.environ.get(self.key_env, "")

    def _scrub(self, text: str) -> str:
        key = self._key
        return text.replace(key, "***") if key else text

    def settings(self) -> dict[str, Any]:
        """What the run records (never the key, only the name of its variable)."""
        return {"model": self.model, "backend": "openai-compatible", "api_base": self.api_base,
                "api_key_env": self.key_env, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "generation": "greedy" if self.temperature == 0 else "sampled",
                "image_preparation": "none (data URL of the frame bytes)"}

    def usage(self) -> dict[str, Any]:
        """Token, request and cost totals so far."""
        u = self.usage_totals
        out: dict[str, Any] = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                               "requests": u.requests, "retries": u.retries, "failures": u.failures}
        if self.price_input is not None or self.price_output is not None:
            cost = (u.prompt_tokens * (self.price_input or 0) + u.completion_tokens * (self.price_output or 0)) / 1e6
            out["cost"] = round(cost, 6)
        return out

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(f"{self.api_base}/chat/completions", json.dumps(body).encode("utf-8"),
                                         headers, method="POST")
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                self.usage_totals.add(retries=1)
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self.usage_totals.add(requests=1)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code in RETRY_STATUS:
                    continue
                raise ApiError(self._scrub(f"{self.api_base}: {last}")) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
                continue
            try:
                return json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                last = f"malformed JSON answer ({raw[:60]!r})"
                continue
        raise ApiError(self._scrub(f"{self.api_base}: gave up after {self.retries + 1} attempts ({last})"))

    def complete(self, image: bytes, prompt: str, context: tuple[tuple[bytes, str, str], ...] = ()) -> str:
        """The answer text for one (frame bytes, prompt) state; raises ApiError or ValueError."""
        body: dict[str, Any] = {"model": self.model, "messages": messages(image, prompt, context),
                                "max_tokens": self.max_new_tokens}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        answer = self._post(body)
        usage = answer.get("usage") if isinstance(answer, dict) else None
        if isinstance(usage, dict):
            self.usage_totals.add(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                                  completion_tokens=int(usage.get("completion_tokens") or 0))
        try:
            text = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ApiError(f"{self.api_base}: answer has no choices[0].message.content") from None
        if not isinstance(text, str):
            raise ApiError(f"{self.api_base}: choices[0].message.content is not text")
        return text

    def _one(self, query: Query) -> Answer:
        try:
            return self.complete(query.episode.frames[query.frame], query.prompt, query.context)
        except (ApiError, ValueError) as exc:
            self.usage_totals.add(failures=1)
            return type(exc)(self._scrub(str(exc)))

    def __call__(self, queries: list[Query]) -> list[Answer]:
        """Answers in query order; a state that fails comes back as its exception."""
        if not queries:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(queries)))) as pool:
            return list(pool.map(self._one, queries))
