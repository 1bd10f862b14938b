"""Click commands ``preview``, ``gallery`` and ``report``, registered on the main ``pb-build`` group."""

from __future__ import annotations

from pathlib import Path

import click

from pb_build.errors import PbBuildError

_dir = click.Path(path_type=Path, exists=True, file_okay=False)
_quiet = click.option("--quiet", is_flag=True, help="No progress bars.")
_overwrite = click.option("--overwrite", is_flag=True, help="Replace an existing output.")


def _ids(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.replace(",", " ").split()]
    except ValueError as exc:
        raise PbBuildError(f"--ids: expected sample ids like 0,3,7, got {text!r}") from exc


@click.command("preview")
@click.argument("release", type=_dir)
@click.option("--source", required=True, help="Source: builder name, official name or alias.")
@click.option("--ids", help="Sample ids to show, e.g. 0,3,7 [default: the first -n].")
@click.option("-n", "count", type=click.IntRange(min=1), default=6, show_default=True, help="Episodes to show.")
@click.option("--max-states", type=click.IntRange(min=2), default=16, show_default=True,
              help="Frames per row; longer sequences are summarised by evenly spaced states.")
@click.option("--tile", type=click.IntRange(min=32), default=120, show_default=True, help="Frame tile size (px).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="PNG to write.")
@_overwrite
@_quiet
def preview_command(release: Path, source: str, ids: str | None, count: int, max_states: int, tile: int, out: Path,
                    overwrite: bool, quiet: bool) -> None:
    """A contact sheet of episodes: frames in state order, question, options, answer and reference."""
    from pb_build.visual.sheet import Layout, write_preview

    if out.exists() and not overwrite:
        raise PbBuildError(f"{out}: exists; pass --overwrite or choose another --out")
    path, shown = write_preview(release, source, out, ids=_ids(ids), n=count,
                                layout=Layout(tile=tile, max_states=max_states), progress=not quiet)
    click.echo(f"wrote {path}: {len(shown)} episode(s), ids {', '.join(map(str, shown))}")


@click.command("gallery")
@click.argument("release", type=_dir)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Site folder.")
@click.option("--source", "sources", multiple=True, help="Only these sources (repeatable) [default: all].")
@click.option("--max-episodes", type=click.IntRange(min=0), default=200, show_default=True,
              help="Episodes shown per source, sampled evenly (0 = all); statistics always cover all.")
@click.option("--per-page", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--thumb", type=click.IntRange(min=32, max=512), default=96, show_default=True,
              help="Thumbnail side (px).")
@click.option("--max-states", type=click.IntRange(min=2), default=16, show_default=True,
              help="State thumbnails per episode besides the path.")
@_overwrite
@_quiet
def gallery_command(release: Path, out: Path, sources: tuple[str, ...], max_episodes: int, per_page: int,
                    thumb: int, max_states: int, overwrite: bool, quiet: bool) -> None:
    """A static HTML gallery of a release (opens from the file system): statistics, plots and episodes."""
    from pb_build.visual.gallery import GalleryOptions, write_gallery

    options = GalleryOptions(per_page=per_page, max_episodes=max_episodes, thumb=thumb, max_states=max_states,
                             sources=sources)
    counts = write_gallery(release, out, options, overwrite=overwrite, progress=not quiet)
    click.echo(f"wrote {out}/index.html: {counts['sources']} source(s), {counts['episodes']} episode(s), "
               f"{counts['thumbnails']} thumbnails, {counts['bytes'] / 1e6:.1f} MB")


@click.command("report")
@click.argument("runs", type=_dir, nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Report folder.")
@_overwrite
@_quiet
def report_command(runs: tuple[Path, ...], out: Path, overwrite: bool, quiet: bool) -> None:
    """Tables (Markdown, CSV) and plots of MCQA evaluation runs over sources and models."""
    from pb_build.visual.report import write_report

    counts = write_report(list(runs), out, overwrite=overwrite, progress=not quiet)
    click.echo(f"wrote {out}/report.md: {counts['runs']} run(s), {counts['settings']} setting(s), "
               f"{counts['rows']} CSV row(s)")


COMMANDS = (preview_command, gallery_command, report_command)


def attach(group: click.Group) -> click.Group:
    """Add the commands to ``group`` (the main ``pb-build`` group)."""
    for command in COMMANDS:
        if command.name not in group.commands:
            group.add_command(command)
    return group
