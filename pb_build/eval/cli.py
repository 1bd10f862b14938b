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
@click.option("--source", "source_names", multiple=True, required=True,
              help="Source: builder name, official name or alias (quickdraw, QD); repeatable; 'all' for every one.")
@click.option("--model", "models", multiple=True,
              help="Model folder or Hub id (AutoModelForImageTextToText), or with --api-base the served model's "
                   "name; repeatable.")
@click.option("--policy", type=click.Choice(policies.NAMES), help="A scripted policy instead of a model.")
@click.option("--api-base", help="An OpenAI-compatible server (OpenAI, vLLM, SGLang), e.g. http://host:8000/v1.")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="Environment variable holding the API key (the key itself is never logged or written).")
@click.option("--api-concurrency", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--api-retries", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--api-timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True, help="Seconds.")
@click.option("--price-input", type=float, help="API cost per million prompt tokens (recorded in the run).")
@click.option("--price-output", type=float, help="API cost per million completion tokens.")
@click.option("--mode", type=click.Choice(["mcqa", "oeg"]), default="mcqa", show_default=True)
@click.option("--hint", is_flag=True, help="MCQA: add the source's hint; OEG: add the generic hint.")
@click.option("--reference", is_flag=True, help="MCQA on the reference frame with the categories only.")
@click.option("--history", is_flag=True, help="MCQA: keep the episode's earlier turns in the conversation.")
@click.option("--icl-examples", type=click.IntRange(min=0), default=0, show_default=True,
              help="MCQA: play the first N episodes as in-context examples before every conversation.")
@click.option("--cot", is_flag=True, help="With --icl-examples: chain-of-thought example answers (ROD, MVP-N).")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N samples (dev runs).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Episodes in flight; all their current states go to the model together.")
@click.option("--keep-ids", type=_dir, help="Kept-id list: JSON list, JSON {name: ids}, or a .py with FILTER.")
@click.option("--filtered", is_flag=True, help="Require the kept ids recorded by `pb-build filter`.")
@click.option("--all-samples", is_flag=True,
              help="Every sample, even where the release carries the paper's filtered set (the default set).")
@click.option("--oeg-samples", type=int, default=100, show_default=True,
              help="OEG: shuffle with seed 0 and keep N samples, as officially (0 = all).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), help="[default: 50 for MCQA, 1024 for OEG]")
@click.option("--generation", type=click.Choice(["official", "greedy"]), default="official", show_default=True,
              help="official: the checkpoint's generation config, as the official scripts; greedy: plain greedy.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--device-map", help="'auto' to split a model larger than one GPU (needs accelerate).")
@click.option("--dtype", default="auto", show_default=True, help="auto (bf16 on GPU, fp32 on CPU), bfloat16, ...")
@click.option("--data-parallel", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes, one per GPU (cuda:0..N-1; with --device cpu, N CPU processes); results "
                   "are merged into one run.")
@click.option("--judge", "judge_model", help="OEG: judge right after generating (e.g. Qwen/Qwen3-8B).")
@click.option("--judge-max-new-tokens", type=click.IntRange(min=1), help="[default: 4096]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random policy.")
@click.option("--out", type=_dir, required=True,
              help="Run folder; with several sources or models, one sub-folder <model>/<source> per run.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue a run folder holding the same run (finished episodes are never recomputed).")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing run folder.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_command(folder: Path, source_names: tuple[str, ...], models: tuple[str, ...], policy: str | None,
                 api_base: str | None, api_key_env: str, api_concurrency: int, api_retries: int,
                 api_timeout: float, price_input: float | None, price_output: float | None, mode: str, hint: bool,
                 reference: bool, history: bool, icl_examples: int, cot: bool, limit: int | None,
                 batch_size: int, keep_ids: Path | None, filtered: bool,
                 all_samples: bool, oeg_samples: int, max_new_tokens: int | None, generation: str, device: str,
                 device_map: str | None, dtype: str, data_parallel: int, judge_model: str | None,
                 judge_max_new_tokens: int | None, seed: int, out: Path, resume: bool, overwrite: bool,
                 quiet: bool) -> None:
    """Evaluate models (or a scripted policy) on sources of a release or an official-layout folder."""
    from pb_build.eval import data, deciders, parallel
    from pb_build.eval.deciders import DeciderSpec

    if bool(models) == (policy is not None):
        raise PbBuildError("pass exactly one of --model (repeatable) and --policy")
    if mode == "oeg" and policy is not None:
        raise PbBuildError("OEG needs a model (--model); scripted policies answer MCQA only")
    if sum([keep_ids is not None, filtered, all_samples]) > 1:
        raise PbBuildError("--keep-ids, --filtered and --all-samples are exclusive")
    names = _sources(folder, source_names)
    subset: bool | None = True if filtered else (False if all_samples or keep_ids is not None else None)
    runners = list(models) if models else [f"policy-{policy}"]
    several = len(runners) * len(names) > 1
    tokens = max_new_tokens or (50 if mode == "mcqa" else 1024)
    variants = {"history": history, "icl_examples": icl_examples, "cot": cot} if history or icl_examples or cot else {}
    index = []
    for runner in runners:
        decide, settings = None, {}
        for name in names:
            dataset = data.load(folder, name, keep_ids=keep_ids, filtered=subset, limit=limit)
            if not dataset.items and not dataset.failures:
                raise PbBuildError(f"{folder}: no {dataset.official_name} samples left to evaluate")
            click.echo(f"{dataset.official_name}: evaluation set {_set_name(dataset)}", err=True)
            run_out = out / _slug(runner) / dataset.source if several else out
            with _run_folder(run_out, overwrite, resume):
                spec = DeciderSpec(runner, policy, seed, api_base, api_key_env, api_concurrency, api_retries,
                                   api_timeout, price_input, price_output, tokens, generation, device, device_map,
                                   dtype)
                if data_parallel > 1:
                    summary = _report(dataset, run_out, mode, parallel.evaluate_parallel(
                        spec, data_parallel, folder, dataset.source, run_out, dict(
                            keep_ids=keep_ids, filtered=subset, limit=limit), dict(
                            mode=mode, batch_size=batch_size, hint=hint, reference=reference,
                            oeg_samples=oeg_samples, **variants)))
                else:
                    if decide is None:
                        decide, settings = deciders.build(spec)
                    summary = _evaluate(dataset, decide, run_out, mode, batch_size, hint, reference, oeg_samples,
                                        settings, quiet, variants)
            index.append({"model": runner, "source": dataset.source, "run": str(run_out)})
            if mode == "oeg" and judge_model:
                _judge(run_out, judge_model, device, dtype, judge_max_new_tokens, False, batch_size)
            elif mode == "oeg":
                click.echo(f"{summary['generations']} generations written to {run_out}; judge them with "
                           f"`pb-build judge {run_out}`")
    if several:
        from pb_build.eval.run import write_json

        write_json(out / "index.json", index)
    click.echo(f"run written to {out}")


def _sources(folder: Path, source_names: tuple[str, ...]) -> list[str]:
    from pb_build.eval import data

    if any(n.lower() == "all" for n in source_names):
        names = data.available_sources(folder)
        if not names:
            raise PbBuildError(f"{folder}: holds no sources")
        return names
    return list(dict.fromkeys(source_names))


def _set_name(dataset) -> str:
    if dataset.kept_ids == "all":
        return "all samples (no filtered set in this folder, or --all-samples)"
    return f"filtered, kept ids from {dataset.kept_ids}"


def _slug(name: str) -> str:
    """A folder name for a model name or path."""
    text = name.rstrip("/\\").replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".", "..")]
    slug = "__".join(parts[-2:]) if parts else "model"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in slug)


class _run_folder:
    """Prepare a run folder; remove the folders it created again when the run fails before writing anything."""

    def __init__(self, out: Path, overwrite: bool, resume: bool) -> None:
        self.out, self.overwrite, self.resume = out, overwrite, resume
        self.created: list[Path] = []

    def __enter__(self) -> Path:
        from pb_build.eval.run import prepare_out

        for folder in (self.out, *self.out.parents):
            if folder.exists():
                break
            self.created.append(folder)
        prepare_out(self.out, self.overwrite, self.resume)
        return self.out

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            return
        for folder in self.created:  # deepest first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _evaluate(dataset, decide, out: Path, mode: str, batch_size: int, hint: bool, reference: bool,
              oeg_samples: int, settings: dict, quiet: bool, variants: dict) -> dict:
    from pb_build.eval.run import evaluate

    summary = evaluate(dataset, decide, out, mode=mode, batch_size=batch_size, hint=hint, reference=reference,
                       oeg_samples=oeg_samples, settings=settings, progress=not quiet, **variants)
    return _report(dataset, out, mode, summary)


def _report(dataset, out: Path, mode: str, summary: dict) -> dict:
    if dataset.failures:
        click.echo(f"{len(dataset.failures)} sample(s) could not be loaded; recorded as failed in {out}", err=True)
    failed = summary.get("failed") if mode == "oeg" else sum(v.get("failed", 0) for v in
                                                               summary.get("sources", {}).values())
    if failed:
        click.echo(f"{failed} episode(s) failed; their reasons are in {out}", err=True)
    if mode == "mcqa":
        click.echo(summary["text"])
    return summary


def _judge(run: Path, judge_model: str, device: str, dtype: str, max_new_tokens: int | None, sample: bool,
           batch_size: int) -> None:
    from pb_build.eval.judge import JUDGE_MAX_NEW_TOKENS, CausalJudge
    from pb_build.eval.run import check_judgeable, judge_run

    check_judgeable(run)
    judge = CausalJudge.from_pretrained(judge_model, device=device, dtype=dtype,
                                        max_new_tokens=max_new_tokens or JUDGE_MAX_NEW_TOKENS, sample=sample)
    summary = judge_run(run, judge, batch_size, judge.settings())
    click.echo(summary["text"])


@click.command("judge")
@click.argument("run", type=_dir)
@click.option("--judge", "judge_model", default="Qwen/Qwen3-8B", show_default=True, help="Any causal LM.")
@click.option("--judge-max-new-tokens", "--max-new-tokens", "max_new_tokens", type=click.IntRange(min=1),
              help="[default: 4096]; an answer still inside its thinking at the limit counts as unparsed.")
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
