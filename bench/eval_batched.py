"""Benchmark: the evaluator's batched step loop against a one-episode-at-a-time loop, same model and episodes.

CPU mode (default): a tiny random vision-language model (``pb_build.eval.tiny``, Qwen2.5-VL architecture) on
synthetic QuickDraw-like episodes (stroke drawings revealed frame by frame, PNG frames, the QuickDraw chain of
states), or on a real release with ``--release DIR --source NAME``. Two loops answer the same episodes:

1. **sequential**: the official example's way (``proactivebench/tests/mcqa.py``): one episode at a time, one
   ``generate`` call of batch 1 per turn, until the episode ends;
2. **batched**: ``pb_build.eval.runner.run_mcqa`` with ``--batch-size`` episodes in flight; at every step all
   their current states go to the model in one left-padded call.

Reported: episodes per second of each and the ratio batched / sequential, and whether both gave the same
trajectories. A random model never emits EOS (every call generates ``--max-new-tokens`` tokens) and its answers
never match an option, so every episode would end after one turn. With ``--advance oracle`` (default) the model
still answers every state (full cost) but episodes advance with the oracle's answer, so they visit every state
as a proactive model would; ``--advance model`` uses the model's answers.

GPU mode (``--gpu``): a Qwen2.5-VL-3B-sized model with random weights (3.75B parameters, bf16, built on the GPU
from the published config) at batch sizes 1, 8, 32 and 64 over the same episodes, reporting turns/s,
episodes/s and peak GPU memory. ``--gpu --tiny-config --device cpu`` dry-runs that path on the CPU.

Runs on a bare GPU machine: it imports only torch, transformers, numpy, pillow, tqdm and pb-build's evaluation
core (no datasets, click or opencv; ``datasets`` only with ``--release``). See bench/README.md for the
wheel list and the prepared command.

    .venv/bin/python bench/eval_batched.py
    .venv/bin/python bench/eval_batched.py --episodes 40 --batch-size 16 --json /tmp/eval.json
    .venv/bin/python bench/eval_batched.py --gpu --episodes 128 --json gpu.json          # on an H200
    .venv/bin/python bench/eval_batched.py --gpu --tiny-config --device cpu --episodes 8 --batch-sizes 1,4
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from PIL import Image, ImageDraw

from pb_build.episode import Episode, linear_states
from pb_build.eval import tiny
from pb_build.eval.backends import TransformersBackend
from pb_build.eval.data import Item
from pb_build.eval.prompts import mcqa_prompt
from pb_build.eval.runner import Query, run_mcqa
from pb_build.replay import Replay, oracle

CATEGORIES = ("cat", "house", "tree", "bicycle", "banana", "clock", "fish", "star")


def synthetic_episode(n: int, seed: int) -> Episode:
    """A QuickDraw-like episode: a random stroke drawing revealed over 4-8 PNG frames, the QuickDraw chain."""
    rng = np.random.default_rng(seed)
    frames_n = int(rng.integers(4, 9))
    strokes = rng.integers(8, 248, size=(frames_n * 3, 2, 2))
    frames = []
    img = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(img)
    for k in range(frames_n):
        for (x0, y0), (x1, y1) in strokes[3 * k: 3 * k + 3].tolist():
            draw.line((x0, y0, x1, y1), fill="black", width=3)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        frames.append(buf.getvalue())
    picked = rng.choice(len(CATEGORIES), size=4, replace=False)
    categories = tuple(f"{CATEGORIES[i].capitalize()}." for i in picked)
    options = ("Make this drawing more complete.", "I cannot tell.")
    return Episode(source="quickdraw", key=f"synthetic/{n}", prompt="What is this drawing?", options=options,
                   categories=categories, answer=categories[0], frames=tuple(frames),
                   states=linear_states(frames_n, len(options), (0,)), reference_frame=frames_n - 1,
                   max_steps=frames_n, hint="Hint: Adding more details to the quickdraw could help with "
                   "classification.", abstain=(1,))


def sample_items(n: int, release: Path | None = None, source: str = "quickdraw") -> list[Item]:
    """``n`` episodes: synthetic ones, or a release's (cycled, with distinct ids, when ``n`` exceeds it)."""
    if release is None:
        return [Item(i, synthetic_episode(i, i)) for i in range(n)]
    from pb_build.eval import data  # reading a parquet release needs datasets

    base = data.load(release, source).items
    return [Item(i, base[i % len(base)].episode) for i in range(n)]


def advancing(backend: TransformersBackend, advance: str):
    """A decider that always runs the model; with ``oracle`` the episode moves on with the oracle's answer."""

    def decide(queries: list[Query]):
        answers = backend(queries)
        if advance == "model":
            return answers
        return [a if isinstance(a, BaseException) else oracle(q.replay) for q, a in zip(queries, answers, strict=True)]

    return decide


def sequential(items: list[Item], backend: TransformersBackend, advance: str) -> list[dict[str, Any]]:
    """The official example's loop: one episode at a time, one generate call per turn."""
    decide = advancing(backend, advance)
    out = []
    for item in items:
        rep = Replay(item.episode)
        while not rep.done:
            q = Query(item.sample_id, item.episode, rep.frame, mcqa_prompt(rep), rep)
            answer = decide([q])[0]
            if isinstance(answer, BaseException):
                break
            rep.answer(answer)
        out.append({"id": item.sample_id, "correct": rep.correct, "num_turns": rep.num_turns})
    return out


def timed(fn, *args, **kwargs) -> tuple[float, Any]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def cpu_bench(args: argparse.Namespace, items: list[Item]) -> dict[str, Any]:
    model, proc = tiny.tiny_vlm(args.arch)
    backend = TransformersBackend(model, proc, max_new_tokens=args.max_new_tokens)
    run_mcqa(items[:2], advancing(backend, args.advance), batch_size=2)  # warm-up
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        t_seq, seq = timed(sequential, items, backend, args.advance)
        t_bat, bat = timed(run_mcqa, items, advancing(backend, args.advance), batch_size=args.batch_size)
        best["sequential"] = min(best.get("sequential", t_seq), t_seq)
        best["batched"] = min(best.get("batched", t_bat), t_bat)
    same = {r["id"]: (r["correct"], r["num_turns"]) for r in seq} == {
        r["id"]: (r["correct"], r["num_turns"]) for r in bat}
    turns = sum(r["num_turns"] for r in bat)
    n = len(items)
    return {"mode": "cpu", "architecture": args.arch, "parameters": sum(p.numel() for p in model.parameters()),
            "episodes": n, "turns": turns, "batch_size": args.batch_size, "advance": args.advance,
            "max_new_tokens": args.max_new_tokens, "sequential_s": round(best["sequential"], 3),
            "batched_s": round(best["batched"], 3), "sequential_eps": round(n / best["sequential"], 3),
            "batched_eps": round(n / best["batched"], 3),
            "ratio": round(best["sequential"] / best["batched"], 2), "same_outcomes": same}


def gpu_model(args: argparse.Namespace):
    tok = tiny.tiny_tokenizer(tiny.QWEN_SPECIALS, "<|im_end|>", "<|endoftext|>")
    tok.chat_template = tiny.chatml(tiny.QWEN_IMAGE_TAG)
    if args.tiny_config:
        model, proc = tiny.tiny_vlm("qwen2_5_vl")
        return model.to(args.device), proc
    config = tiny.qwen2_5_vl_3b_config(tok)
    torch.manual_seed(0)
    with torch.device(args.device):
        model = transformers.AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    # Qwen2.5-VL checkpoints' processor bounds: min 3136, max 12,845,056 pixels.
    return model.eval(), tiny.qwen_processor(tok, 3136, 12845056)


def gpu_bench(args: argparse.Namespace, items: list[Item]) -> dict[str, Any]:
    started = time.perf_counter()
    model, proc = gpu_model(args)
    build_s = time.perf_counter() - started
    backend = TransformersBackend(model, proc, max_new_tokens=args.max_new_tokens)
    cuda = str(model.device).startswith("cuda")
    rows = []
    run_mcqa(items[:1], advancing(backend, args.advance), batch_size=1)  # warm-up
    for b in args.batch_sizes:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        subset = items  # the same episodes at every batch size
        seconds, recs = timed(run_mcqa, subset, advancing(backend, args.advance), batch_size=b)
        failed = sum(r["status"] != "ok" for r in recs)
        turns = sum(r["num_turns"] for r in recs)
        row = {"batch_size": b, "episodes": len(subset), "turns": turns, "failed": failed,
               "seconds": round(seconds, 3), "turns_per_s": round(turns / seconds, 3),
               "episodes_per_s": round(len(subset) / seconds, 3)}
        if cuda:
            row["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"mode": "gpu", "model": "tiny qwen2_5_vl" if args.tiny_config else "Qwen2.5-VL-3B config, random weights",
            "parameters": sum(p.numel() for p in model.parameters()), "dtype": str(model.dtype),
            "device": str(model.device), "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "build_s": round(build_s, 1), "advance": args.advance, "max_new_tokens": args.max_new_tokens,
            "results": rows}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=40, help="episodes (synthetic, or cycled from --release)")
    p.add_argument("--release", type=Path, help="read episodes from this release instead (needs datasets)")
    p.add_argument("--source", default="quickdraw", help="with --release: the source to read")
    p.add_argument("--batch-size", type=int, default=16, help="CPU mode: episodes in flight")
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--advance", choices=["oracle", "model"], default="oracle")
    p.add_argument("--arch", choices=tiny.ARCHITECTURES, default="qwen2_5_vl", help="CPU mode: tiny architecture")
    p.add_argument("--repeat", type=int, default=1, help="CPU mode: best of N")
    p.add_argument("--gpu", action="store_true", help="Qwen2.5-VL-3B-sized random model at several batch sizes")
    p.add_argument("--tiny-config", action="store_true", help="GPU mode with the tiny model (dry run)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-sizes", default="1,8,32,64", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--json", type=Path, help="also write the result here")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    items = sample_items(args.episodes, args.release, args.source)
    result = gpu_bench(args, items) if args.gpu else cpu_bench(args, items)
    result["environment"] = {"python": platform.python_version(), "torch": torch.__version__,
                             "transformers": transformers.__version__, "threads": torch.get_num_threads(),
                             "machine": platform.machine(),
                             "imported": sorted(m for m in ("datasets", "click", "cv2", "pyarrow")
                                                if sys.modules.get(m) is not None)}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if not args.gpu:
        print(f"batched {result['batched_eps']} episodes/s vs sequential {result['sequential_eps']} episodes/s: "
              f"x{result['ratio']} ({'ahead' if result['ratio'] > 1 else 'NOT ahead'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
