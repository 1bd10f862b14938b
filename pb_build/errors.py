"""One error hierarchy: every user-facing failure is a one-line message naming the file and the cause."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``), so a message naming a file stays one line."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


class PbBuildError(Exception):
    """A failure caused by the user's input or environment; the CLI prints it as one line."""


@dataclass
class BadRecord(PbBuildError):
    """One raw record (or file) that cannot be used; skippable with ``--skip-bad``."""

    path: str | Path
    cause: str
    line: int | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    @property
    def location(self) -> str:
        path = printable(str(self.path))
        return f"{path}:{self.line}" if self.line is not None else path

    def __str__(self) -> str:
        return f"{self.location}: {self.cause}"

    def __reduce__(self) -> tuple:
        # Exceptions pickle as cls(*args); keep all fields so a BadRecord crosses worker processes intact.
        return (type(self), (self.path, self.cause, self.line))

    def as_dict(self) -> dict:
        return {"path": str(self.path), "line": self.line, "cause": self.cause}


@dataclass
class Ineligible(PbBuildError):
    """A valid raw item that the source's documented eligibility rules exclude (e.g. an MVP-N set with no
    informative view). Not a corrupt input: the build counts it per ``reason`` and goes on (``--strict`` makes it
    an error). ``reason`` is short and stable (the manifest counts by it); ``detail`` says more about this item."""

    key: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}" + (f" ({self.detail})" if self.detail else "")

    def __reduce__(self) -> tuple:
        return (type(self), (self.key, self.reason, self.detail))

    def as_dict(self) -> dict:
        return {"key": self.key, "reason": self.reason, "detail": self.detail}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so a build cleans up exactly as on Ctrl-C."""


class InvalidEpisode(PbBuildError):
    """An episode that breaks the state-machine or official-string rules (a builder bug or bad data)."""


def handle_bad(bad: BadRecord, on_bad: Callable[[BadRecord], None] | None) -> None:
    """Hand ``bad`` to ``on_bad`` (the ``--skip-bad`` path), or raise it when there is none."""
    if on_bad is None:
        raise bad
    on_bad(bad)
