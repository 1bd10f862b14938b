"""Dataset-card assets: one small contact sheet per source and the statistics table, as Markdown.

``write_card_assets(release)`` writes ``<release>/previews/<source>.png`` and ``previews/card.md`` (the Markdown
that embeds them, with relative links the Hub renders, followed by the statistics table) and returns that
Markdown. It writes files into the release, so a build calls it before the checksums are written. Rows are read
one at a time, so a source of any size costs the memory of its per-episode numbers, not of its frames.
"""

from __future__ import annotations

from pathlib import Path

from pb_build.eval.data import Item
from pb_build.eval.sources import alias
from pb_build.manifests import manifest as manifests
from pb_build.visual import episodes, sheet, stats
from pb_build.writers.card import PREVIEW_MARKDOWN
from pb_build.writers.native import from_row, head_rows, read_rows

PREVIEW_DIR = "previews"
CARD_LAYOUT = sheet.Layout(tile=96, max_states=8, text_width=440, size=13)
LEGEND = ("Each row is one episode: its frames in state order (blue border: the first state shown, orange: the "
          "states a perfect proactive model visits, green: the state where the answer is visible), the question, the "
          "options (✓ a valid proactive suggestion, ✗ the abstain option) and the categories with the answer in "
          "brackets.")


def write_card_assets(release_dir: Path, entries: list[manifests.SourceEntry] | None = None,
                      tallies: dict[str, stats.Tally] | None = None, episodes_per_source: int = 3,
                      folder: str = PREVIEW_DIR) -> str:
    """Write one preview PNG per source and ``previews/card.md`` under ``release_dir``; return the card section.

    ``entries`` are the release's sources (read from its manifest when not given, e.g. before it is written).
    ``tallies`` are their statistics by source name when known (a build merges its shards'); a source without
    one is read through to count its episodes.
    """
    release_dir = Path(release_dir)
    entries = manifests.read(release_dir).sources if entries is None else entries
    all_stats, images = [], []
    for entry in entries:
        ref = episodes.SourceRef(entry.source, entry.official_name, alias(entry.official_name), entry.counts.samples)
        source_stats = stats.SourceStats(ref)
        known = (tallies or {}).get(entry.source)
        if known is not None:
            source_stats.merge(known)
        shown: list[Item] = []
        shards = [release_dir / p for p in entry.files.native]
        rows = read_rows(shards) if known is None else head_rows(shards, episodes_per_source)
        for row in rows:
            ep = from_row(row)
            if len(shown) < episodes_per_source:
                shown.append(Item(row["id"], ep))
            if known is None:
                source_stats.add(row["id"], ep, episodes.facts(row["id"], ep))
        all_stats.append(source_stats)
        if not shown:
            continue
        title = f"{ref.name} ({ref.official_name}): {len(shown)} of {source_stats.samples} episodes"
        rel = f"{folder}/{ref.name}.png"
        sheet.save_png(sheet.render(shown, title, CARD_LAYOUT), release_dir / rel, palette=True)
        images.append(f"### {ref.name} ({ref.official_name})\n\n![{ref.name} episodes]({rel})\n")
    parts = ["## What the data looks like", "", LEGEND, "", *images, "## Statistics", "",
             stats.markdown_table(all_stats), "",
             "Steps to reference: proactive suggestions a perfect model makes before the answer is visible."]
    text = "\n".join(parts) + "\n"
    (release_dir / PREVIEW_MARKDOWN).parent.mkdir(parents=True, exist_ok=True)
    (release_dir / PREVIEW_MARKDOWN).write_text(text, encoding="utf-8", newline="\n")
    return text
