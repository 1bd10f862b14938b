"""A static HTML gallery of a release: opens from the file system, no server and no script.

``index.html`` lists the sources; ``<source>/index.html`` has the statistics with small plots and links to
``<source>/page-NNNN.html``, which show episodes: question, options (valid moves marked), categories, the oracle's
path through the state machine as thumbnails joined by the moves taken, and every state's frame, options,
moves and whether the answer is accepted. Thumbnails are generated (small WEBP/JPEG), never full frames; a
source with more than ``max_episodes`` episodes is sampled evenly for the pages (statistics cover all of them).
The site is built in a temporary folder beside ``out`` and renamed into place at the end.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pb_build.eval.data import Item
from pb_build.manifests import manifest as manifests
from pb_build.visual import episodes, plots, stats
from pb_build.visual.outdir import folder_bytes, fresh_folder
from pb_build.visual.thumbs import THUMB_FORMAT, thumbnail

CSS = """
body{font-family:system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:1.5em;color:#1a1a1a;max-width:1400px}
a{color:#1f6fd1} table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:14px} th{background:#f2f2f2} .plots img{margin:4px;border:1px solid #ddd}
.episode{border-top:2px solid #bbb;padding:.6em 0} .episode h3{margin:.2em 0;font-size:16px}
.q{font-weight:bold} .valid{color:#1b9e3a} .abstain{color:#c62828} .never{color:#777} .answer{color:#1b9e3a;
font-weight:bold} .path,.states{display:flex;flex-wrap:wrap;align-items:center;gap:6px}
figure{margin:0;text-align:center;font-size:12px} figure img{display:block;margin:auto;border:3px solid #ddd;
background:#f4f4f4} .initial img{border-color:#1f6fd1} .goal img{border-color:#1b9e3a}
.onpath img{border-color:#f08a00} .move{font-size:12px;color:#f08a00;max-width:110px;text-align:center}
.noanswer{color:#c62828} .pager a,.pager span{margin-right:.5em} .note{color:#555;font-size:13px}
"""
HEAD = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="{css}"></head><body>')
TAIL = "</body></html>\n"


@dataclass(frozen=True)
class GalleryOptions:
    """What the gallery shows, and how small it stays."""

    per_page: int = 20
    max_episodes: int = 200  # per source, 0 = all
    thumb: int = 96  # thumbnail side in pixels
    max_states: int = 16  # state thumbnails per episode (the path is always shown in full)
    sources: tuple[str, ...] = ()


def _e(text: object) -> str:
    return html.escape(str(text))


def _page(title: str, body: str, css: str) -> str:
    return HEAD.format(title=_e(title), css=css) + body + TAIL


def sample_evenly(items: list[Item], cap: int) -> list[Item]:
    """``cap`` items spread evenly over ``items`` (all when ``cap`` is 0 or not smaller)."""
    if cap <= 0 or len(items) <= cap:
        return items
    return [items[round(k * (len(items) - 1) / (cap - 1))] for k in range(cap)] if cap > 1 else items[:1]


def write_gallery(release: Path, out: Path, options: GalleryOptions | None = None, overwrite: bool = False,
                  progress: bool = False) -> dict[str, int]:
    """Write the gallery of ``release`` to ``out``; returns counts (sources, episodes shown, thumbnails, bytes)."""
    options = options or GalleryOptions()
    refs = episodes.pick_sources(release, list(options.sources))
    with fresh_folder(out, overwrite) as tmp:
        counts = _build(release, refs, tmp, options, progress)
    counts["bytes"] = folder_bytes(out)
    return counts


def _build(release: Path, refs: list[episodes.SourceRef], site: Path, options: GalleryOptions,
           progress: bool) -> dict[str, int]:
    (site / "style.css").write_text(CSS.lstrip(), encoding="utf-8")
    all_stats, shown_total, thumbs_total = [], 0, 0
    for ref in refs:
        dataset = episodes.load(release, ref.name)
        source_stats, facts = stats.collect(ref, dataset, progress)
        shown = sample_evenly(dataset.items, options.max_episodes)
        thumbs_total += _write_source(site / ref.name, source_stats, shown, facts, options, progress)
        all_stats.append(source_stats)
        shown_total += len(shown)
        del dataset, facts
    _write_index(release, site, all_stats, options)
    return {"sources": len(refs), "episodes": shown_total, "thumbnails": thumbs_total}


def _write_index(release: Path, site: Path, all_stats: list[stats.SourceStats], options: GalleryOptions) -> None:
    manifest = manifests.read(release)
    info = manifest.release or {}
    name = info.get("name") or release.name
    version = f" v{info['version']}" if info.get("version") else ""
    rows = "".join(
        f'<tr><td><a href="{_e(s.source.name)}/index.html">{_e(s.source.name)}</a></td>'
        + "".join(f"<td>{_e(c)}</td>" for c in stats.row(s)[1:]) + "</tr>" for s in all_stats)
    body = (f"<h1>{_e(name)}{_e(version)}</h1><p class=\"note\">pb-build {_e(manifest.pb_build_version)}"
            f" release at {_e(release)}; every source below has its statistics and paged episodes.</p>"
            f"<table><tr>{''.join(f'<th>{_e(h)}</th>' for h in stats.HEADER)}</tr>{rows}</table>"
            f"<p class=\"note\">Pages show at most {options.max_episodes or 'all'} episodes per source, sampled "
            "evenly; statistics cover every episode.</p>")
    (site / "index.html").write_text(_page(f"{name}{version}", body, "style.css"), encoding="utf-8")


def _write_source(folder: Path, s: stats.SourceStats, shown: list[Item], facts: dict[int, episodes.Facts],
                  options: GalleryOptions, progress: bool) -> int:
    (folder / "plots").mkdir(parents=True)
    (folder / "thumbs").mkdir()
    name = s.source.name
    figures = {
        "frames": plots.counts_bar(s.frames, "frames per sample", "frames"),
        "steps": plots.counts_bar(s.steps, "proactive steps to the reference", "steps"),
        "options": plots.counts_bar(s.options, "options per sample", "options"),
        "categories": plots.top_bar(s.answers, f"answers ({len(s.answers)} categories)"),
    }
    for key, png in figures.items():
        (folder / "plots" / f"{key}.png").write_bytes(png)
    pages = [shown[i:i + options.per_page] for i in range(0, len(shown), options.per_page)] or [[]]
    links = " ".join(f'<a href="page-{k + 1:04d}.html">{k + 1}</a>' for k in range(len(pages)))
    notes = []
    if s.dropped.get("strong_occlusions_false"):
        notes.append(f"{s.dropped['strong_occlusions_false']} row(s) with strong_occlusions=false are not counted "
                     "(the official loader drops them).")
    if s.load_failures:
        notes.append(f"{s.load_failures} row(s) could not be loaded.")
    if s.unsolved:
        notes.append(f"The oracle cannot answer {len(s.unsolved)} episode(s): ids {s.unsolved[:20]}.")
    if s.no_step:
        notes.append(f"{len(s.no_step)} episode(s) are answerable in their initial state (no proactive step "
                     f"needed): ids {s.no_step[:20]}.")
    table = (f"<table><tr>{''.join(f'<th>{_e(h)}</th>' for h in stats.HEADER)}</tr><tr>"
             + "".join(f"<td>{_e(c)}</td>" for c in stats.row(s)) + "</tr></table>")
    body = (f'<p><a href="../index.html">all sources</a></p><h1>{_e(name)} ({_e(s.source.official_name)}, '
            f'{_e(s.source.alias)})</h1>{table}'
            + "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
            + '<div class="plots">' + "".join(f'<img src="plots/{k}.png" alt="{_e(k)}">' for k in figures) + "</div>"
            + f"<h2>Episodes</h2><p>{len(shown)} of {s.samples} episodes on {len(pages)} page(s): "
            + f'<span class="pager">{links}</span></p>')
    (folder / "index.html").write_text(_page(name, body, "../style.css"), encoding="utf-8")
    written = 0
    bar = tqdm(total=len(shown), desc=f"{name}: pages", unit="ep", disable=not progress)
    for k, page in enumerate(pages):
        cards = []
        for item in page:
            card, n = _episode(folder, item, facts[item.sample_id], options)
            cards.append(card)
            written += n
            bar.update(1)
        pager = '<p class="pager"><a href="index.html">statistics</a> ' + " ".join(
            f"<span>{j + 1}</span>" if j == k else f'<a href="page-{j + 1:04d}.html">{j + 1}</a>'
            for j in range(len(pages))) + "</p>"
        body = f"<h1>{_e(name)}: page {k + 1} of {len(pages)}</h1>{pager}{''.join(cards)}{pager}"
        (folder / f"page-{k + 1:04d}.html").write_text(_page(f"{name} page {k + 1}", body, "../style.css"),
                                                       encoding="utf-8")
    bar.close()
    return written


def _episode(folder: Path, item: Item, fx: episodes.Facts, options: GalleryOptions) -> tuple[str, int]:
    ep, sid = item.episode, item.sample_id
    made: dict[int, str] = {}

    def thumb(frame: int) -> str:
        if frame not in made:
            made[frame] = f"thumbs/{sid}-f{frame}.{THUMB_FORMAT}"
            (folder / made[frame]).write_bytes(thumbnail(ep.frames[frame], options.thumb))
        return made[frame]

    def figure(state: int, extra: str = "") -> str:
        st = ep.states[state]
        cls = "initial" if state == ep.initial_state else "goal" if fx.solved and state == fx.path[-1] else \
            "onpath" if state in fx.path else ""
        tag = "" if st.answer_valid else '<br><span class="noanswer">no answer</span>'
        return (f'<figure class="{cls}"><img src="{thumb(st.frame)}" alt="state {state}" loading="lazy">'
                f"s{state} · f{st.frame}{extra}{tag}</figure>")

    opts = []
    for i, option in enumerate(ep.options):
        kind = episodes.option_mark(ep, fx, i)
        cls, mark = {"valid": ("valid", "✓"), "abstain": ("abstain", "✗"), "never valid": ("never", "·")}[kind]
        note = f"valid in {fx.option_valid_in[i]}/{len(ep.states)} states" if kind == "valid" else kind
        opts.append(f'<li class="{cls}">{mark} {_e(option)} <span class="note">({_e(note)})</span></li>')
    cats = ", ".join(f'<span class="answer">{_e(c)}</span>' if c == ep.answer else _e(c) for c in ep.categories)
    path = [figure(fx.path[0])]
    for move, state in zip(fx.moves, fx.path[1:], strict=False):
        path.append(f'<span class="move">→ {_e(move)} →</span>{figure(state)}')
    if not fx.solved:
        path.append('<span class="noanswer">the oracle does not reach the answer</span>')
    if not fx.reference_states:
        path.append(f'<figure class="goal"><img src="{thumb(ep.reference_frame)}" alt="reference" loading="lazy">'
                    f"f{ep.reference_frame} (reference mode)</figure>")
    picked = episodes.pick_states(ep, fx, options.max_states)
    count = "" if len(picked) == len(ep.states) else f" ({len(picked)} shown, evenly spaced)"
    letters = "ABCDEFGHIJ"
    rows = "".join(
        f"<tr><td>s{s}</td><td>f{st.frame}</td><td>{' '.join(letters[j] for j in st.shown)}</td>"
        f"<td>{_e(', '.join(f'{letters[v]}→s{t}' for v, t in zip(st.valid, st.targets, strict=True)) or '–')}</td>"
        f"<td>{'yes' if st.answer_valid else 'no'}</td></tr>" for s, st in enumerate(ep.states))
    steps = f"{fx.steps} step(s) to the reference" if fx.solved else "unsolved"
    if fx.solved and not fx.steps:
        steps = '<span class="noanswer">answerable in the initial state (0 steps)</span>'
    else:
        steps = _e(steps)
    card = (f'<section class="episode" id="ep-{sid}"><h3>#{sid} {_e(ep.key)}</h3>'
            f'<p class="note">{len(ep.frames)} frames · {len(ep.states)} states · initial s{ep.initial_state} · '
            f"reference frame f{ep.reference_frame} · {steps} · max {ep.max_steps} turns</p>"
            f'<p class="q">{_e(ep.prompt)}</p><ol type="A">{"".join(opts)}</ol><p>Categories: {cats}</p>'
            f'<div class="path">{"".join(path)}</div>'
            f"<details><summary>All {len(ep.states)} states{count}</summary>"
            f'<div class="states">{"".join(figure(s) for s in picked)}</div>'
            f"<table><tr><th>state</th><th>frame</th><th>options shown</th><th>valid moves</th>"
            f"<th>answer accepted</th></tr>{rows}</table></details></section>")
    return card, len(made)
