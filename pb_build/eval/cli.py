"""Click commands ``eval``, ``filter`` and ``train-split``, attached to the main ``pb-build`` group.

Thin layer: parse, call ``pb_build.eval`` and report. torch/transformers are imported only when a model or a
judge is used.
"""

from __future__ import annotations

from pathlib import Path

import click

from pb_build.errors import PbBuildError
from pb_build.eval import policies

_dir = click.Path(path_type=Path)


@click.command("eval")
@click.argument("folder", type=_dir)
@click.option("--source", required=True, help="Source: builder name, official name or alias (quickdraw, QD).")
@click.option("--model", help="Model folder or Hub id (AutoModelForImageTextToText).")
@click.option("--policy", type=click.Choice(policies.NAMES), help="A scripted policy instead of a model.")
@click.option("--mode", type=click.Choice(["mcqa", "oeg"]), default="mcqa", show_default=True)
@click.option("--hint", is_flag=True, help="MCQA: add the source's hint; OEG: add the generic hint.")
@click.option("--reference", is_flag=True, help="MCQA on the reference frame with the categories only.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N samples (dev runs).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Episodes in flight; all their current states go to the model together.")
@click.option("--keep-ids", type=_dir, help="Kept-id list: JSON list, JSON {name: ids}, or a .py with FILTER.")
@click.option("--filtered", is_flag=True, help="Use the kept ids recorded by `pb-build filter`.")
@click.option("--oeg-samples", type=int, default=100, show_default=True,
              help="OEG: shuffle with seed 0 and keep N samples, as officially (0 = all).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), help="[default: 50 for MCQA, 1024 for OEG]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--dtype", default="auto", show_default=True, help="auto (bf16 on GPU, fp32 on CPU), bfloat16, ...")
@click.option("--judge", "judge_model", help="OEG: judge right after generating (e.g. Qwen/Qwen3-8B).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random policy.")
@click.option("--out", type=_dir, required=True, help="Run folder to write.")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing run folder.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_command(folder: Path, source: str, model: str | None, policy: str | None, mode: str, hint: bool,
                 reference: bool, limit: int | None, batch_size: int, keep_ids: Path | None, filtered: bool,
                 oeg_samples: int, max_new_tokens: int | None, device: str, dtype: str, judge_model: str | None,
                 seed: int, out: Path, overwrite: bool, quiet: bool) -> None:
    """Evaluate a model (or a scripted policy) on one source of a release or an official-layout folder."""
    from pb_build.eval import data
    from pb_build.eval.run import evaluate, prepare_out
    from pb_build.eval.runner import policy_decider

    if (model is None) == (policy is None):
        raise PbBuildError("pass exactly one of --model and --policy")
    if mode == "oeg" and policy is not None:
        raise PbBuildError("OEG needs a model (--model); scripted policies answer MCQA only")
    if keep_ids is not None and filtered:
        raise PbBuildError("--keep-ids and --filtered are exclusive")
    dataset = data.load(folder, source, keep_ids=keep_ids, filtered=filtered, limit=limit)
    if not dataset.items and not dataset.failures:
        raise PbBuildError(f"{folder}: no {dataset.official_name} samples left to evaluate")
    prepare_out(out, overwrite)
    if policy is not None:
        decide, settings = policy_decider(policies.get_policy(policy, seed)), {"policy": policy, "seed": seed}
    else:
        from pb_build.eval.backends import TransformersBackend

        tokens = max_new_tokens or (50 if mode == "mcqa" else 1024)
        backend = TransformersBackend.from_pretrained(model, device=device, dtype=dtype, max_new_tokens=tokens)
        decide, settings = backend, backend.settings()
    summary = evaluate(dataset, decide, out, mode=mode, batch_size=batch_size, hint=hint, reference=reference,
                       oeg_samples=oeg_samples, settings=settings, progress=not quiet)
    if dataset.failures:
        click.echo(f"{len(dataset.failures)} sample(s) could not be loaded; recorded as failed in {out}", err=True)
    if mode == "mcqa":
        click.echo(summary["text"])
    elif judge_model:
        _judge(out, judge_model, device, dtype, None, False, batch_size)
    else:
        click.echo(f"{summary['generations']} generations written to {out}; judge them with "
                   f"`pb-build judge {out}`")
    click.echo(f"run written to {out}")


def _judge(run: Path, judge_model: str, device: str, dtype: str, max_new_tokens: int | None, sample: bool,
           batch_size: int) -> None:
    from pb_build.eval.judge import JUDGE_MAX_NEW_TOKENS, CausalJudge
    from pb_build.eval.run import judge_run

    judge = CausalJudge.from_pretrained(judge_model, device=device, dtype=dtype,
                                        max_new_tokens=max_new_tokens or JUDGE_MAX_NEW_TOKENS, sample=sample)
    summary = judge_run(run, judge, batch_size, judge.settings())
    click.echo(summary["text"])


@click.command("judge")
@click.argument("run", type=_dir)
@click.option("--judge", "judge_model", default="Qwen/Qwen3-8B", show_default=True, help="Any causal LM.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), help="[default: 4096]")
@click.option("--sample", is_flag=True, help="Sample like the official script (default: greedy, reproducible).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--dtype", default="auto", show_default=True)
def judge_command(run: Path, judge_model: str, max_new_tokens: int | None, sample: bool, batch_size: int,
                  device: str, dtype: str) -> None:
    """Judge the saved generations of an OEG run (cc, ps and agg with the per-source thresholds)."""
    _judge(run, judge_model, device, dtype, max_new_tokens, sample, batch_size)


@click.command("filter")
@click.argument("release", type=_dir)
@click.option("--source", required=True, help="Source to filter.")
@click.option("--run", "runs", type=_dir, multiple=True, required=True,
              help="An MCQA run folder of one probe model on this release (repeat per model).")
@click.option("--threshold", type=float, default=0.25, show_default=True,
              help="Drop a sample when at least this share of the models is correct at the first turn.")
@click.option("--overwrite", is_flag=True, help="Replace a previous filter of this source.")
def filter_command(release: Path, source: str, runs: tuple[Path, ...], threshold: float, overwrite: bool) -> None:
    """Drop samples that too many probe models solve at the first turn; record the kept ids in the release."""
    from pb_build.eval import filter as filtering

    result = filtering.compute(release, source, list(runs), threshold)
    entry = filtering.write(release, result, overwrite)
    click.echo(f"{result.source}: kept {len(result.kept_ids)} of {len(result.correct_counts)} samples "
               f"({len(result.runs)} model(s), threshold {threshold:g}); ids in {entry['files']['official']}, "
               f"native config {result.source}_filtered")


@click.command("train-split")
@click.argument("releases", type=_dir, nargs=-1, required=True)
@click.option("--source", "source_names", multiple=True, required=True, help="Source to export (repeatable).")
@click.option("--out", type=_dir, required=True, help="Folder of the training dataset.")
@click.option("--per-episode", type=click.IntRange(min=0), default=0, show_default=True,
              help="States per episode (0 = every reachable state).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the per-episode state choice.")
@click.option("--exclude", type=_dir, multiple=True, help="A test release whose episodes must not be used.")
@click.option("--overwrite", is_flag=True, help="Replace a previous train split at --out.")
def train_split_command(releases: tuple[Path, ...], source_names: tuple[str, ...], out: Path, per_episode: int,
                        seed: int, exclude: tuple[Path, ...], overwrite: bool) -> None:
    """Export single-turn MCQA rows (prompt, ground truth, valid proactive actions, options, image)."""
    from pb_build.eval import train_split

    rows, report = train_split.collect(list(releases), list(source_names), per_episode=per_episode, seed=seed,
                                       exclude=list(exclude))
    params = {"releases": [str(p) for p in releases], "sources": list(source_names), "per_episode": per_episode,
              "seed": seed, "exclude": [str(p) for p in exclude]}
    train_split.write(out, rows, report, params, overwrite)
    amb = sum(bool(r.row["proactive_actions"]) for r in rows)
    click.echo(f"wrote {len(rows)} rows ({amb} ambiguous, {len(rows) - amb} informative) to {out}")
    if report["excluded_overlap"]:
        click.echo(f"excluded {report['excluded_overlap']} episode(s) present in the test release(s)", err=True)


COMMANDS = (eval_command, judge_command, filter_command, train_split_command)


def attach(group: click.Group) -> click.Group:
    """Add the evaluator's commands to ``group`` (the main ``pb-build`` group)."""
    for command in COMMANDS:
        if command.name not in group.commands:
            group.add_command(command)
    return group
