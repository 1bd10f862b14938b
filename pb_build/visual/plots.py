"""Small matplotlib figures as PNG bytes (the ``visual`` extra); headless, deterministic metadata."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

from pb_build.errors import PbBuildError


def pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend, or a clear error when the extra is missing."""
    try:
        import matplotlib
    except ImportError as exc:
        raise PbBuildError("plots need matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def to_png(fig: Any) -> bytes:
    """Encode and close a figure (no creation date, so the same figure gives the same bytes)."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def counts_bar(counts: Counter, title: str, xlabel: str, size: tuple[float, float] = (3.4, 2.2)) -> bytes:
    """A bar per distinct integer value of a {value: samples} histogram, or a 20-bin histogram when there are
    many values."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size, dpi=90)
    if len(counts) <= 25:
        keys = sorted(counts)
        ax.bar([str(k) for k in keys], [counts[k] for k in keys], color="#4c72b0")
        if len(keys) > 12:
            ax.tick_params(axis="x", labelsize=6, rotation=90)
    else:
        keys = sorted(counts)
        ax.hist(keys, bins=20, weights=[counts[k] for k in keys], color="#4c72b0")
    _label(ax, title, xlabel, "samples")
    return to_png(fig)


def top_bar(counts: Counter, title: str, top: int = 15, size: tuple[float, float] = (3.4, 2.6)) -> bytes:
    """Horizontal bars of the ``top`` most frequent labels."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size, dpi=90)
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top][::-1]
    ax.barh([k[:28] for k, _ in items], [v for _, v in items], color="#55a868")
    ax.tick_params(axis="y", labelsize=6)
    _label(ax, title, "samples", "")
    return to_png(fig)


def _label(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
