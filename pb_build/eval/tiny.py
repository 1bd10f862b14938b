"""Tiny randomly initialised models of real architectures, built from configs (no downloads).

Used by the tests, the benchmark and dry runs: a byte-level tokenizer with ChatML templates, a tiny Qwen2.5-VL,
LLaVA-OneVision or InternVL3 (HF-native ``InternVL``) vision-language model with its (image-only) processor, a tiny
Qwen3 judge, and a Qwen2.5-VL-3B-sized configuration for GPU throughput measurements.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
QWEN_IMAGE_TAG = "<|vision_start|><|image_pad|><|vision_end|>"
LLAVA_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
LLAVA_PINS = [[28, 28], [28, 56], [56, 28], [56, 56]]
INTERNVL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
INTERNVL_NAMED = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                  "video_token": "<video>"}
JUDGE_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
JUDGE_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                  "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is "
                  "defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")
ARCHITECTURES = ("qwen2_5_vl", "llava_onevision", "internvl")


def tiny_tokenizer(specials: list[str], eos: str, pad: str, named: dict[str, str] | None = None):
    """A byte-level BPE tokenizer without merges (one token per byte) plus special tokens (``named``: the
    processor's named special tokens, e.g. InternVL's ``context_image_token``)."""
    from tokenizers import AddedToken
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    for t in specials:
        vocab.setdefault(t, len(vocab))
    kw = {"extra_special_tokens": named} if named else {}
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], eos_token=eos, pad_token=pad, unk_token=pad, **kw)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def chatml(image_tag: str) -> str:
    """A ChatML template whose image items render as ``image_tag``."""
    return ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}"
            "{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
            + image_tag + "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
            "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _text(tok, hidden: int = 64, layers: int = 2) -> dict[str, Any]:
    return dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, bos_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def tiny_vlm(architecture: str = "qwen2_5_vl", seed: int = 0):
    """(model, processor) of a tiny random VLM; the processor is the image-only class without torchvision."""
    import torch
    from transformers import AutoModelForImageTextToText

    from pb_build.eval.backends import _image_only_classes

    procs = _image_only_classes()
    if architecture == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        tok = tiny_tokenizer(QWEN_SPECIALS, "<|im_end|>", "<|endoftext|>")
        tok.chat_template = chatml(QWEN_IMAGE_TAG)
        cid = tok.convert_tokens_to_ids
        config = Qwen2_5_VLConfig(
            text_config=dict(_text(tok), rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                          "mrope_section": [2, 3, 3]}),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                               fullatt_block_indexes=[1]),
            image_token_id=cid("<|image_pad|>"), video_token_id=cid("<|video_pad|>"),
            vision_start_token_id=cid("<|vision_start|>"), vision_end_token_id=cid("<|vision_end|>"))
        proc = procs["qwen2_5_vl"](Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=50176), tok,
                                   chat_template=tok.chat_template)
    elif architecture == "llava_onevision":
        from transformers import LlavaOnevisionConfig
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil,
        )

        tok = tiny_tokenizer(LLAVA_SPECIALS, "<|im_end|>", "<|endoftext|>")
        tok.chat_template = chatml("<image>\n")
        cid = tok.convert_tokens_to_ids
        config = LlavaOnevisionConfig(
            text_config=dict(_text(tok), model_type="qwen2"),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=1, num_attention_heads=2, patch_size=14, image_size=28,
                               vision_use_head=False),
            image_token_index=cid("<image>"), video_token_index=cid("<video>"),
            vision_feature_select_strategy="full", image_grid_pinpoints=LLAVA_PINS)
        image_proc = LlavaOnevisionImageProcessorPil(size={"height": 28, "width": 28}, image_grid_pinpoints=LLAVA_PINS)
        proc = procs["llava_onevision"](image_proc, tok, num_image_tokens=4, vision_feature_select_strategy="full",
                                        chat_template=tok.chat_template)
    elif architecture == "internvl":
        from transformers import InternVLConfig
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

        tok = tiny_tokenizer(INTERNVL_SPECIALS, "<|im_end|>", "<|endoftext|>", INTERNVL_NAMED)
        tok.chat_template = chatml("<IMG_CONTEXT>\n")
        config = InternVLConfig(
            text_config=dict(_text(tok), model_type="qwen2"),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                               image_size=[56, 56], patch_size=[14, 14]),
            image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=4, downsample_ratio=0.5)
        image_proc = GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, crop_to_patches=True, max_patches=4)
        proc = procs["internvl"](image_proc, tok, image_seq_length=4, chat_template=tok.chat_template)
    else:
        raise ValueError(f"unknown tiny architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config).eval()
    return model, proc


def stock_processor_class(model) -> str:
    """The stock processor class name of a tiny model (what a Hub checkpoint's processor_config names)."""
    return {"qwen2_5_vl": "Qwen2_5_VLProcessor", "llava_onevision": "LlavaOnevisionProcessor",
            "internvl": "InternVLProcessor"}[
        model.config.model_type]


def save_tiny_vlm(folder: Path, architecture: str = "qwen2_5_vl", seed: int = 0) -> Path:
    """Save a tiny VLM like a Hub checkpoint (the stock ``processor_class``), for ``from_pretrained(folder)``."""
    model, proc = tiny_vlm(architecture, seed)
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            body = json.loads(path.read_text(encoding="utf-8"))
            if "processor_class" in body:
                body["processor_class"] = stock_processor_class(model)
                path.write_text(json.dumps(body, indent=2), encoding="utf-8")
    return folder


def tiny_judge(seed: int = 0):
    """(model, tokenizer) of a tiny random Qwen3 causal LM with a thinking chat template."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    tok = tiny_tokenizer(JUDGE_SPECIALS, "<|im_end|>", "<|endoftext|>")
    tok.chat_template = JUDGE_TEMPLATE
    config = Qwen3Config(**_text(tok), head_dim=16, tie_word_embeddings=True)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval(), tok


def save_tiny_judge(folder: Path, seed: int = 0) -> Path:
    model, tok = tiny_judge(seed)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def qwen2_5_vl_3b_config(tok=None):
    """Qwen2.5-VL-3B-Instruct's published configuration (3.75B parameters); with ``tok``, its special ids."""
    from transformers import Qwen2_5_VLConfig

    cfg: dict[str, Any] = dict(
        model_type="qwen2_5_vl", hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
        num_attention_heads=16, num_key_value_heads=2, vocab_size=151936, max_position_embeddings=128000,
        rms_norm_eps=1e-6, rope_theta=1e6, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
        tie_word_embeddings=True, use_sliding_window=False, sliding_window=32768, max_window_layers=70,
        bos_token_id=151643, eos_token_id=151645, vision_start_token_id=151652, vision_end_token_id=151653,
        image_token_id=151655, video_token_id=151656,
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2))
    if tok is not None:
        cid = tok.convert_tokens_to_ids
        cfg.update(bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                   vision_start_token_id=cid("<|vision_start|>"), vision_end_token_id=cid("<|vision_end|>"),
                   image_token_id=cid("<|image_pad|>"), video_token_id=cid("<|video_pad|>"))
    return Qwen2_5_VLConfig(**cfg)


def qwen_processor(tok, min_pixels: int = 3136, max_pixels: int = 50176):
    """The image-only Qwen2.5-VL processor around ``tok`` with the given pixel bounds."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from pb_build.eval.backends import _image_only_classes

    return _image_only_classes()["qwen2_5_vl"](Qwen2VLImageProcessorPil(min_pixels=min_pixels,
                                                                         max_pixels=max_pixels),
                                               tok, chat_template=tok.chat_template)
