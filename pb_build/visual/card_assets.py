"""Dataset-card assets: one small contact sheet per source and the statistics table, as Markdown.

``write_card_assets(release)`` writes ``<release>/previews/<source>.png`` and returns the Markdown that embeds
them (relative links, which the Hub renders) followed by the statistics table. It writes files into the release,
so a build calls it before the checksums are written.
"""

from __future__ import annotations

from pathlib import Path

from pb_build.visual import episodes, sheet, stats

PREVIEW_DIR = "previews"
CARD_LAYOUT = sheet.Layout(tile=96, max_states=8, text_width=440, size=13)


def write_card_assets(release_dir: Path, episodes_per_source: int = 3, folder: str = PREVIEW_DIR,
                      progress: bool = False) -> str:
    """Write one preview PNG per source under ``release_dir/folder``; return the card section (Markdown)."""
    release_dir = Path(release_dir)
    all_stats, images = [], []
    for ref in episodes.release_sources(release_dir):
        dataset = episodes.load(release_dir, ref.name)
        source_stats, _ = stats.collect(ref, dataset, progress)
        all_stats.append(source_stats)
        shown = dataset.items[:episodes_per_source]
        if not shown:
            continue
        title = f"{ref.name} ({ref.official_name}): {len(shown)} of {len(dataset.items)} episodes"
        rel = f"{folder}/{ref.name}.png"
        sheet.save_png(sheet.render(shown, title, CARD_LAYOUT), release_dir / rel, palette=True)
        images.append(f"### {ref.name} ({ref.official_name})\n\n![{ref.name} episodes]({rel})\n")
    legend = ("Each row is one episode: its frames in state order (blue border: the first state shown, orange: the "
              "states a perfect proactive model visits, green: the state where the answer is visible), the "
              "question, the options (✓ a valid proactive suggestion, ✗ the abstain option) and the categories "
              "with the answer in brackets.")
    parts = ["## What the data looks like", "", legend, "", *images, "## Statistics", "",
             stats.markdown_table(all_stats), "",
             "Steps to reference: proactive suggestions a perfect model makes before the answer is visible."]
    return "\n".join(parts) + "\n"
