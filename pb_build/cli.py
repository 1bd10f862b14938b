"""The pb-build command line: a thin click layer that parses, calls and reports."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from pb_build import __version__
from pb_build.builders import REGISTRY
from pb_build.builders.base import Source
from pb_build.errors import PbBuildError, Terminated
from pb_build.eval.cli import attach as attach_eval
from pb_build.names import set_follow_symlinks


def _fail(err: BaseException, code: int = 1) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(code)


def exit_code(err: PbBuildError) -> int:
    """2 for a bad command-line value, 1 for any other failure (0 is success), like click's usage errors.

    A message about an option's value starts with the option (``--per-class must be at least 1``); messages about
    files or data start with the path, so a value error in a recipe or manifest is a failure (1), not usage.
    """
    return 2 if str(err).startswith("--") else 1


class _Group(click.Group):
    """Turns expected failures into one line on stderr and a non-zero exit (tracebacks only with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return super().invoke(ctx)
        except PbBuildError as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            _fail(err, exit_code(err))
        except OSError as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            _fail(f"{err.filename or ''}: {err.strerror or err}".lstrip(": "))
        except KeyboardInterrupt as stop:
            what = "terminated" if isinstance(stop, Terminated) else "interrupted"
            click.echo(f"{what}; nothing was written at the target", err=True)
            sys.exit(143 if isinstance(stop, Terminated) else 130)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pb-build")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Build, version and check ProactiveBench releases from raw datasets."""
    ctx.obj = {"debug": debug}


_json = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text.")


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _sources_json() -> list[dict[str, str]]:
    return [{"name": name, "official_name": s.info.official_name, "alias": s.official.alias, "version": s.VERSION,
             "origin": s.origin, "licence": s.info.licence} for name, s in sorted(REGISTRY.items())]


@main.command("list")
@_json
def list_sources(as_json: bool) -> None:
    """List the registered sources, where each comes from, and sources that failed to register."""
    if as_json:
        _echo_json(_sources_json())
    else:
        for name, source in sorted(REGISTRY.items()):
            click.echo(f"{name:12s} {source.info.official_name:28s} {source.official.alias:6s} "
                       f"v{source.VERSION:8s} {source.origin:16s} {source.info.licence}")
    for message in REGISTRY.errors.values():
        click.echo(f"error: {message}", err=True)
    if REGISTRY.errors:
        sys.exit(1)


SCALE_OPTIONS = ("num_shards", "shard_index", "distributor", "shard_size", "resume")


def _scale_options() -> list[click.Option]:
    """Options for building on many cores or machines (source commands and ``build``)."""
    from pb_build.distributors import DISTRIBUTORS

    return [
        click.Option(["--num-shards"], type=click.IntRange(min=1),
                     help="Build only one of this many parts (e.g. one per machine) into --out; combine the parts "
                          "with merge."),
        click.Option(["--shard-index"], type=click.IntRange(min=0), default=0, show_default=True,
                     help="Which part to build, 0..num-shards-1 (e.g. $SLURM_ARRAY_TASK_ID)."),
        click.Option(["--distributor"], type=click.Choice(DISTRIBUTORS), default="local", show_default=True,
                     help="Run shards in local processes, or on a Ray cluster (RAY_ADDRESS; pip install "
                          "'pb-build[ray]')."),
        click.Option(["--shard-size"], type=click.IntRange(min=1),
                     help="Samples per shard [default: from the plan: about 16 shards, at most 256 samples each]; "
                          "recorded in the manifest; one native parquet file per shard."),
        click.Option(["--resume/--no-resume"], default=True, show_default=True,
                     help="Reuse the shards an interrupted build finished (checked by digest and inputs)."),
    ]


def _scale(num_shards: int | None, shard_index: int, distributor: str, shard_size: int | None,
           resume: bool) -> dict[str, Any]:
    from pb_build.build import Sharding

    if num_shards is None and shard_index:
        raise PbBuildError("--shard-index needs --num-shards")
    return {"sharding": None if num_shards is None else Sharding(num_shards, shard_index),
            "distributor": distributor, "shard_size": shard_size,
            "resume": resume}


def _report(reports: list, out: Path, elapsed: float, part: bool = False) -> None:
    """The end-of-build summary: per source its samples, frames and exclusions by reason; then the total, the
    time, where the release is and how to load it."""
    for r in reports:
        click.echo(f"built {r.source} ({r.official_name}): {r.samples} samples, {r.frames} frames, "
                   f"{r.files} official files in {r.seconds:.1f}s")
        if r.skipped:
            reasons = "; ".join(f"{n} x {cause}" for cause, n in r.excluded_by_reason().items())
            click.echo(f"skipped {len(r.skipped)} bad record(s); by reason: {reasons}")
            for s in r.skipped[:20]:
                loc = f"{s['path']}:{s['line']}" if s["line"] is not None else s["path"]
                click.echo(f"    {loc}: {s['cause']}")
        if r.ineligible:
            reasons = "; ".join(f"{n} x {reason}" for reason, n in r.ineligible_by_reason().items())
            click.echo(f"excluded {len(r.ineligible)} ineligible item(s) by the source's rules; by reason: {reasons}")
    samples, frames = sum(r.samples for r in reports), sum(r.frames for r in reports)
    excluded = sum(len(r.skipped) + len(r.ineligible) for r in reports)
    out = out.resolve()
    if part:
        click.echo(f"part written to {out}: {samples} samples, {frames} frames, {excluded} excluded; combine the "
                   f"parts with: pb-build merge PART... --out DIR")
        return
    click.echo(f"release written to {out}: {samples} samples, {frames} frames, {excluded} excluded, from "
               f"{len(reports)} source(s) in {elapsed:.1f}s")
    click.echo(f"check it with: pb-build verify {out}")
    for r in reports:
        click.echo(f'load it with: load_dataset("{out}", "{r.source}", split="test")')


# --follow-symlinks, shared by every command that reads raw files.
_FOLLOW: dict[str, Any] = {"is_flag": True, "expose_value": False, "callback": set_follow_symlinks,
                           "help": "Read symlinks that lead outside --raw (refused by default)."}
_min_samples = click.option("--min-samples", type=click.IntRange(min=0), default=1, show_default=True,
                            help="Fail (leaving --out untouched) when a source yields fewer samples.")
_strict = click.option("--strict", is_flag=True, help="Treat items the source's eligibility rules exclude as errors.")


def _source_command(builder: Source) -> click.Command:
    fields = [f for f in dataclasses.fields(builder.Config) if f.name != "seed"]

    def run(raw: Path | None, sample: bool, out: Path, seed: int, workers: int | None, skip_bad: bool,
            overwrite: bool, quiet: bool, cache_dir: Path | None, min_samples: int, strict: bool,
            **params: Any) -> None:
        scale = {name: params.pop(name) for name in SCALE_OPTIONS}
        from pb_build.build import build_release
        from pb_build.manifests.recipe import RecipeSource, source_jobs
        from pb_build.pipeline import default_workers

        if sample and raw is not None:
            raise PbBuildError("--sample and --raw are exclusive")
        kind = "sample" if sample else "fetch" if raw is None else str(raw)
        started = time.perf_counter()
        src = RecipeSource(builder.name, kind, seed, {f.name: params[f.name] for f in fields})
        jobs = source_jobs((src,), {}, cache_dir, not quiet, out=out, overwrite=overwrite)
        reports = build_release(out, jobs, workers=workers or default_workers(), skip_bad=skip_bad,
                                overwrite=overwrite, progress=not quiet, min_samples=min_samples, strict=strict,
                                **_scale(**scale))
        _report(reports, out, time.perf_counter() - started, scale["num_shards"] is not None)

    params: list[click.Parameter] = [
        click.Option(["--raw"], type=click.Path(path_type=Path), help="Local folder of raw files."),
        click.Option(["--sample"], is_flag=True, help="Use the bundled synthetic demo sample."),
        click.Option(["--out"], type=click.Path(path_type=Path), required=True, help="Release folder to write."),
        click.Option(["--seed"], type=int, default=0, show_default=True, help="Release seed."),
        click.Option(["--workers"], type=click.IntRange(min=1), help="Worker processes [default: CPUs]."),
        click.Option(["--skip-bad"], is_flag=True, help="Count and skip bad raw records instead of stopping."),
        click.Option(["--overwrite"], is_flag=True, help="Replace an existing release at --out."),
        click.Option(["--quiet"], is_flag=True, help="No progress bars."),
        click.Option(["--cache-dir"], type=click.Path(path_type=Path), envvar="PB_BUILD_CACHE",
                     help="Download cache [default: ~/.cache/pb-build]."),
        click.Option(["--follow-symlinks"], **_FOLLOW),
        *_scale_options(),
    ]
    for f in fields:
        default = f.default
        params.append(click.Option([f"--{f.name.replace('_', '-')}"], type=type(default), default=default,
                                   show_default=True, help=f.metadata.get("help", "")))
    doc = f"Build the {builder.info.official_name} source into a release folder."
    return _strict(_min_samples(click.Command(builder.name, callback=run, params=params, help=doc, short_help=doc)))


for _builder in REGISTRY.values():
    main.add_command(_source_command(_builder))

# The evaluator's commands (eval, judge, filter, train-split); torch/transformers load only when a model is used.
attach_eval(main)


@main.command()
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_json
def verify(release: Path, quiet: bool, as_json: bool) -> None:
    """Check a whole release: every file against SHA256SUMS, records, rows and exported frames tied together,
    the manifest and card against the content, and an oracle replay of every episode."""
    from pb_build.verify import VerifyResult, verify_release

    try:
        result = verify_release(release, progress=not (quiet or as_json))
    except PbBuildError as err:
        if not as_json:
            raise
        result = VerifyResult(problems=[str(err)])
    if as_json:
        _echo_json(result.to_json(release))
        sys.exit(0 if result.ok else 1)
    click.echo(result.table())
    if result.problems:
        click.echo(f"{len(result.problems)} problem(s):", err=True)
        for p in result.problems[:50]:
            click.echo(f"  {p}", err=True)
        sys.exit(1)
    click.echo(f"OK: {release} verified")


_raw_pairs = click.option("--raw", "raw_pairs", multiple=True, metavar="SOURCE=DIR",
                          help="Raw folder for a source (overrides the recipe or manifest); repeatable.")
_out = click.option("--out", type=click.Path(path_type=Path), required=True, help="Release folder to write.")
_workers = click.option("--workers", type=click.IntRange(min=1), help="Worker processes [default: CPUs].")
_overwrite = click.option("--overwrite", is_flag=True, help="Replace an existing release at --out.")
_follow = click.option("--follow-symlinks", **_FOLLOW)
_quiet = click.option("--quiet", is_flag=True, help="No progress bars.")
_version = click.option("--version", required=True, metavar="X.Y.Z",
                        help="Release version (vX.Y.Z accepted); the tag is vX.Y.Z.")
_cache = click.option("--cache-dir", type=click.Path(path_type=Path), envvar="PB_BUILD_CACHE",
                      help="Download cache [default: ~/.cache/pb-build].")


@main.command()
@click.argument("recipe")
@_out
@_raw_pairs
@_workers
@click.option("--skip-bad", is_flag=True, help="Count and skip bad raw records instead of stopping.")
@_overwrite
@_quiet
@_cache
@_follow
@_min_samples
@_strict
def build(recipe: str, out: Path, raw_pairs: tuple[str, ...], workers: int | None, skip_bad: bool,
          overwrite: bool, quiet: bool, cache_dir: Path | None, min_samples: int, strict: bool,
          **scale: Any) -> None:
    """Build every source of RECIPE (a YAML file, or a bundled name: sample, paper) into one release."""
    from pb_build.build import build_release
    from pb_build.manifests.recipe import load_recipe, parse_raw_overrides, source_jobs
    from pb_build.pipeline import default_workers

    parsed = load_recipe(recipe)
    started = time.perf_counter()
    jobs = source_jobs(parsed.sources, parse_raw_overrides(raw_pairs), cache_dir, not quiet, out=out,
                       overwrite=overwrite)
    reports = build_release(out, jobs, workers=workers or default_workers(), skip_bad=skip_bad,
                            overwrite=overwrite, progress=not quiet,
                            release={"name": parsed.release, "version": parsed.version, "recipe": parsed.as_dict()},
                            min_samples=min_samples, strict=strict, **_scale(**scale))
    _report(reports, out, time.perf_counter() - started, scale["num_shards"] is not None)


build.params.extend(_scale_options())


@main.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(path_type=Path))
@_out
@_overwrite
@_min_samples
def merge(parts: tuple[Path, ...], out: Path, overwrite: bool, min_samples: int) -> None:
    """Combine the PARTS of a build spread over machines (--num-shards/--shard-index) into one release."""
    from pb_build.parts import merge as run_merge

    manifest = run_merge(list(parts), out, overwrite, min_samples)
    samples = sum(e.counts.samples for e in manifest.sources)
    click.echo(f"merged {len(parts)} part(s) into {out.resolve()}: {samples} samples; "
               f"check it with: pb-build verify {out.resolve()}")


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@_out
@_raw_pairs
@click.option("--table", "table_pairs", multiple=True, metavar="NAME=PATH",
              help="New location of a user table the manifest records (e.g. labels=~/vsod/labels.csv); its "
                   "sha256 must match; repeatable.")
@_workers
@_overwrite
@_quiet
@_cache
@_follow
def rebuild(manifest: Path, out: Path, raw_pairs: tuple[str, ...], table_pairs: tuple[str, ...],
            workers: int | None, overwrite: bool, quiet: bool, cache_dir: Path | None) -> None:
    """Rebuild a release from its MANIFEST and check that SHA256SUMS comes out identical."""
    from pb_build.manifests.rebuild import rebuild as run_rebuild
    from pb_build.manifests.recipe import parse_raw_overrides, parse_table_overrides
    from pb_build.pipeline import default_workers

    result = run_rebuild(manifest, out, parse_raw_overrides(raw_pairs), tables=parse_table_overrides(table_pairs),
                         cache_dir=cache_dir, workers=workers or default_workers(), overwrite=overwrite,
                         progress=not quiet)
    for note in result.notes:
        click.echo(f"note: {note}")
    if not result.compared:
        click.echo(f"rebuilt {out}; no SHA256SUMS beside the manifest to compare with")
    elif result.differing:
        click.echo(f"rebuilt {out}, but {len(result.differing)} file(s) differ from the original:", err=True)
        for rel in result.differing[:20]:
            click.echo(f"  {rel}", err=True)
        sys.exit(1)
    else:
        click.echo(f"rebuilt {out}: SHA256SUMS identical to the original")


_token = click.option("--token", envvar="HF_TOKEN", show_envvar=False,
                      help="Hugging Face token [default: HF_TOKEN or the stored login]; never printed.")


@main.command()
@click.argument("release", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--repo", "repo_id", required=True, metavar="NAMESPACE/NAME", help="Dataset repo on the Hub.")
@_version
@click.option("--private", is_flag=True, help="Create the repo private (only when it does not exist yet).")
@click.option("--dry-run", is_flag=True, help="Print what would be uploaded and deleted, per folder; write nothing.")
@click.option("--verbose", is_flag=True, help="With --dry-run: list every path.")
@_quiet
@_json
@_token
def push(release: Path, repo_id: str, version: str, private: bool, dry_run: bool, verbose: bool, quiet: bool,
         as_json: bool, token: str | None) -> None:
    """Publish RELEASE to the Hub as one commit, then tag it vX.Y.Z (never moved) and verify the remote files."""
    from pb_build.hub.publish import push as run_push

    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    plan = run_push(release, repo_id, version, private=private, dry_run=dry_run, token=token, echo=echo,
                    progress=not quiet, verbose=verbose)
    if as_json:
        _echo_json(plan.summary(repo_id, dry_run))


@main.command()
@click.option("--repo", "repo_id", required=True, metavar="NAMESPACE/NAME", help="Dataset repo on the Hub.")
@_version
@_out
@_overwrite
@_quiet
@_token
def pull(repo_id: str, version: str, out: Path, overwrite: bool, quiet: bool, token: str | None) -> None:
    """Download a pinned release into a folder that works offline (and in the official package)."""
    from pb_build.hub.pull import pull as run_pull

    folder = run_pull(repo_id, version, out, token=token, overwrite=overwrite, progress=not quiet)
    click.echo(f"pulled {repo_id} v{version.removeprefix('v')} to {folder}; verified against SHA256SUMS")


from pb_build.visual.cli import attach as attach_visual  # noqa: E402  (kept at the end: one hunk in a shared file)

attach_visual(main)
