"""Contact sheets: one row per episode, its states' frames in state order beside the question and options.

Each tile is one state: its frame, ``s<state> · f<frame>`` and a coloured border (blue: the initial state,
green: the state that shows the reference frame and accepts the answer, orange: a state on the oracle path).
A state that does not accept the answer is labelled ``no answer``. Long sequences are summarised by evenly
spaced states (always including the initial state and the end of the path) and a count. When no state shows the
reference frame (it is used only in reference mode, e.g. the uncropped photo), it is added as a last tile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw
from tqdm import tqdm

from pb_build.errors import PbBuildError
from pb_build.eval.data import Item
from pb_build.visual import episodes
from pb_build.visual.fonts import font, wrap
from pb_build.visual.thumbs import decode, fit

BLUE, GREEN, ORANGE, RED, GREY, INK = "#1f6fd1", "#1b9e3a", "#f08a00", "#c62828", "#9e9e9e", "#1a1a1a"
MARKS = {"valid": ("✓", GREEN), "abstain": ("✗", RED), "never valid": ("·", GREY)}


@dataclass(frozen=True)
class Layout:
    """Sizes of a sheet, in pixels."""

    tile: int = 120
    max_states: int = 16
    text_width: int = 520
    pad: int = 14
    gap: int = 8
    size: int = 15  # body font size

    @property
    def line(self) -> int:
        return self.size + 5


@dataclass(frozen=True)
class _Tile:
    frame: int
    label: str
    tag: str
    colour: str


def _tiles(item: Item, fx: episodes.Facts, layout: Layout) -> tuple[list[_Tile], str]:
    ep = item.episode
    shown = episodes.pick_states(ep, fx, layout.max_states)
    on_path, goal = set(fx.path), fx.path[-1] if fx.solved else None
    tiles = []
    for s in shown:
        st = ep.states[s]
        colour = BLUE if s == ep.initial_state else GREEN if s == goal else ORANGE if s in on_path else "#d0d0d0"
        tag = ", ".join(t for t, on in (("initial", s == ep.initial_state), ("answerable", s == goal)) if on)
        if not st.answer_valid:
            tag = (tag + ", " if tag else "") + "no answer"
        tiles.append(_Tile(st.frame, f"s{s} · f{st.frame}", tag, colour))
    if not fx.reference_states:
        tiles.append(_Tile(ep.reference_frame, f"f{ep.reference_frame}", "reference mode", GREEN))
    count = "" if len(shown) == len(ep.states) else f"{len(shown)} of {len(ep.states)} states shown"
    return tiles, count


def _text_lines(item: Item, fx: episodes.Facts, layout: Layout) -> list[tuple[str, str, bool]]:
    """(text, colour, bold) lines of the left panel, wrapped to its width."""
    ep, width = item.episode, layout.text_width
    body, bold = font(layout.size), font(layout.size, bold=True)
    out: list[tuple[str, str, bool]] = []

    def add(text: str, colour: str = INK, strong: bool = False, indent: str = "") -> None:
        fnt = bold if strong else body
        for k, line in enumerate(wrap(text, fnt, width - int(fnt.getlength(indent)))):
            out.append(((indent if k else "") + line, colour, strong))

    add(f"Q: {ep.prompt}", strong=True)
    for i, option in enumerate(ep.options):
        kind = episodes.option_mark(ep, fx, i)
        mark, colour = MARKS[kind]
        note = f"valid in {fx.option_valid_in[i]}/{len(ep.states)} states" if kind == "valid" else kind
        add(f"{mark} {option}  ({note})", colour, indent="   ")
    cats = "  ".join(f"[{c}]" if c == ep.answer else c for c in ep.categories)
    add(f"Categories: {cats}", indent="   ")
    add(f"Answer: {ep.answer}", GREEN, strong=True)
    where = f"state {', '.join(f's{s}' for s in fx.reference_states)}" if fx.reference_states else "reference mode"
    add(f"Reference: frame f{ep.reference_frame} ({where}); initial state s{ep.initial_state}; "
        f"max {ep.max_steps} turns")
    if fx.solved and not fx.steps:
        add("Answerable in the initial state: no proactive step is needed.", RED, strong=True)
    if fx.solved:
        route = " → ".join(f"s{s}" for s in fx.path)
        add(f"Path: {route}: {fx.steps} step(s)" + (f": {episodes.compress_moves(fx.moves)}" if fx.moves else ""),
            ORANGE, indent="   ")
    else:
        add("The oracle does not reach the answer!", RED, strong=True)
    return out


def _row_height(lines: int, layout: Layout) -> int:
    tiles = layout.tile + 2 * layout.line + 6
    return layout.line + 6 + max(lines * layout.line, tiles) + layout.pad


def render(items: list[Item], title: str, layout: Layout | None = None, progress: bool = False) -> Image.Image:
    """The contact sheet of ``items``: a title and legend, then one row per episode."""
    layout = layout or Layout()
    if not items:
        raise PbBuildError("no episodes to preview")
    rows = []
    for item in tqdm(items, desc="preview", unit="ep", disable=not progress):
        fx = episodes.facts(item.sample_id, item.episode)
        rows.append((item, fx, *_tiles(item, fx, layout), _text_lines(item, fx, layout)))
    cell = layout.tile + layout.gap
    width = 2 * layout.pad + layout.text_width + layout.gap + max(len(r[2]) for r in rows) * cell
    head = 2 * layout.line + 2 * layout.pad
    height = head + sum(_row_height(len(r[4]), layout) for r in rows)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    body, bold = font(layout.size), font(layout.size + 3, bold=True)
    draw.text((layout.pad, layout.pad), title, fill=INK, font=bold)
    legend = [("initial state", BLUE), ("answerable on the reference frame", GREEN), ("oracle path", ORANGE)]
    x = layout.pad
    for text, colour in legend:
        y = layout.pad + layout.line + 6
        draw.rectangle((x, y + 2, x + 14, y + 14), outline=colour, width=3)
        draw.text((x + 20, y), text, fill=INK, font=body)
        x += 40 + int(body.getlength(text))
    draw.text((x, layout.pad + layout.line + 6), "✓ valid move   ✗ abstain   · never valid   [answer]", fill=INK,
              font=body)
    y = head
    for item, fx, tiles, count, lines in rows:
        y = _draw_row(sheet, draw, y, item, fx, tiles, count, lines, layout, width)
    return sheet


def _draw_row(sheet: Image.Image, draw: ImageDraw.ImageDraw, y: int, item: Item, fx: episodes.Facts,
              tiles: list[_Tile], count: str, lines: list[tuple[str, str, bool]], layout: Layout, width: int) -> int:
    ep, pad = item.episode, layout.pad
    body, bold, small = font(layout.size), font(layout.size, bold=True), font(layout.size - 3)
    draw.line((pad, y, width - pad, y), fill="#bdbdbd", width=1)
    summary = (f"#{item.sample_id}  {ep.key}   ·   {len(ep.frames)} frames, {len(ep.states)} states, "
               f"{fx.steps} step(s) to the reference" + (f"   ·   {count}" if count else ""))
    draw.text((pad, y + 4), summary, fill=INK, font=bold)
    top = y + layout.line + 6
    for k, (text, colour, strong) in enumerate(lines):
        draw.text((pad, top + k * layout.line), text, fill=colour, font=bold if strong else body)
    x = pad + layout.text_width + layout.gap
    for tile in tiles:
        img = fit(decode(ep.frames[tile.frame]), layout.tile - 8, layout.tile - 8)
        draw.rectangle((x, top, x + layout.tile - 1, top + layout.tile - 1), fill="#f4f4f4", outline=tile.colour,
                       width=4 if tile.colour != "#d0d0d0" else 1)
        sheet.paste(img, (x + (layout.tile - img.width) // 2, top + (layout.tile - img.height) // 2))
        draw.text((x + 2, top + layout.tile + 2), tile.label, fill=INK, font=body)
        if tile.tag:
            draw.text((x + 2, top + layout.tile + 2 + layout.line), tile.tag,
                      fill=RED if "no answer" in tile.tag else tile.colour, font=small)
        x += layout.tile + layout.gap
    return y + _row_height(len(lines), layout)


def save_png(img: Image.Image, out: Path, palette: bool = False) -> Path:
    """Write ``img`` as PNG through a temporary file renamed into place (nothing half-written); ``palette``
    reduces it to 256 colours, about a third of the size, for pages that must load fast."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if palette:
        img = img.quantize(256, method=Image.Quantize.FASTOCTREE)
    # zlib's default level: optimize=True (level 9) took 4x as long (0.08 s per card sheet) for 3% fewer bytes
    img.save(tmp, format="PNG")
    os.replace(tmp, out)
    return out


def write_preview(release: Path, source: str, out: Path, *, ids: list[int] | None = None, n: int = 6,
                  layout: Layout | None = None, progress: bool = False) -> tuple[Path, list[int]]:
    """Render the contact sheet of ``source`` (the episodes ``ids``, or the first ``n``) to ``out``; returns the
    path and the sample ids shown, in row order."""
    dataset = episodes.load(release, source, ids=ids, limit=None if ids else n)
    if not dataset.items:
        raise PbBuildError(f"{release}: no {dataset.source} episodes to preview")
    title = f"{release.name}: {dataset.source} ({dataset.official_name}), {len(dataset.items)} episode(s)"
    if dataset.dropped.get("strong_occlusions_false"):
        title += (f"; {dataset.dropped['strong_occlusions_false']} row(s) with strong_occlusions=false left out, "
                  "as the official loader drops them")
    return save_png(render(dataset.items, title, layout, progress), out), [i.sample_id for i in dataset.items]
