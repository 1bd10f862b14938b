"""Hugging Face transformers backend: ``AutoModelForImageTextToText`` with its processor and chat template.

One call answers a batch of (image, prompt) states: a single user turn holding the image then the text, left
padding, 50 new tokens, bf16 on a GPU. ``generation="official"`` (the default) keeps the checkpoint's generation
config as the official scripts do; ``"greedy"`` forces plain greedy decoding (``repetition_penalty=1.0``: a
checkpoint's penalty would otherwise still apply under greedy decoding). Images are prepared per family as the
official scripts do (``images``). ``device_map="auto"`` splits a model larger than one GPU (needs accelerate).

Batch composition: in fp32 batched answers equal batch-1 answers token for token; in bf16 left padding changes
the rounding of padded rows, so a small share of answers can differ with the batch (measured by the tests on the
tiny models and reported in the run's settings as ``dtype``).

Without torchvision the stock Qwen2.5-VL, LLaVA-OneVision and InternVL processors cannot be built (their video
processors need it), so those fall back to image-only subclasses. Per-state failures (an image that does not
decode, a processor that rejects a tiny crop) come back as exceptions in place of answers; the rest of the batch is
still answered.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from pb_build.errors import PbBuildError
from pb_build.eval.runner import Answer, Query

MAX_NEW_TOKENS = 50
GENERATIONS = ("official", "greedy")


def require_eval_extra() -> None:
    """Fail with the install line when torch or transformers is missing."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise PbBuildError(f"model evaluation needs the eval extra: pip install -e '.[eval]' ({exc})") from None


def decode_image(data: bytes):
    """Frame bytes -> an RGB PIL image (as the official ``load_image`` does), or raise ValueError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"frame does not decode as an image ({exc})") from exc


def _image_only_classes() -> dict[str, type]:
    from transformers import InternVLProcessor, LlavaOnevisionProcessor, Qwen2_5_VLProcessor, Qwen2VLProcessor

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kw):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kw)

    class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kw):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kw)

    class ImageOnlyLlavaOnevisionProcessor(LlavaOnevisionProcessor):
        def __init__(self, image_processor=None, tokenizer=None, num_image_tokens=None,
                     vision_feature_select_strategy=None, chat_template=None, image_token="<image>",
                     video_token="<video>", vision_aspect_ratio="anyres_max_9", **kw):
            super().__init__(image_processor, tokenizer, None, num_image_tokens, vision_feature_select_strategy,
                             chat_template, image_token, video_token, vision_aspect_ratio, **kw)

    class ImageOnlyInternVLProcessor(InternVLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, image_seq_length=256, chat_template=None, **kw):
            super().__init__(image_processor, tokenizer, None, image_seq_length, chat_template, **kw)

    return {"qwen2_vl": ImageOnlyQwen2VLProcessor, "qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor,
            "llava_onevision": ImageOnlyLlavaOnevisionProcessor, "internvl": ImageOnlyInternVLProcessor}


def load_processor(path: str):
    """The model's processor; the image-only subclass when the stock class cannot be loaded without torchvision.

    ``AutoProcessor`` silently returns the bare tokenizer for an unknown ``processor_class``; that is treated as
    a failure too.
    """
    from transformers import AutoConfig, AutoProcessor

    try:
        proc = AutoProcessor.from_pretrained(path)
    except (OSError, ImportError, ValueError, AttributeError):
        proc = None
    if proc is not None and hasattr(proc, "image_processor"):
        return proc
    model_type = AutoConfig.from_pretrained(path).model_type
    fallback = _image_only_classes().get(model_type)
    if fallback is None:
        raise PbBuildError(f"{path}: no image processor could be loaded for model type {model_type!r} "
                           "(install torchvision, or use a model whose processor loads without it)")
    return fallback.from_pretrained(path)


def _resolve(device: str, dtype: str):
    import torch

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if dtype == "auto":
        dt = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    else:
        try:
            dt = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
        except KeyError:
            raise PbBuildError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32") from None
    return dev, dt


def check_model_path(path: str) -> None:
    """A local-looking model path that does not exist gets one line (not the Hub's repo-id complaint)."""
    from pathlib import Path

    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1 or "\\" in path
    if looks_local and not Path(path).expanduser().exists():
        raise PbBuildError(f"{path}: model folder does not exist")


def check_device(device: str) -> None:
    """A CUDA device asked of a CPU-only torch gets one line."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PbBuildError(f"--device {device}: this torch has no CUDA device (torch {torch.__version__}); "
                           "use --device cpu")


def load_vlm(path: str, device: str = "auto", dtype: str = "auto", device_map: str | None = None):
    """``AutoModelForImageTextToText.from_pretrained`` on ``device`` (or split by ``device_map``); a clear error
    for a text-only model."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    check_model_path(path)
    check_device(device)
    dev, dt = _resolve(device, dtype)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise PbBuildError(f"{path}: cannot load a model config ({exc})") from exc
    kwargs: dict[str, Any] = {"dtype": dt}
    if device_map:
        try:
            import accelerate  # noqa: F401
        except ImportError:
            raise PbBuildError("--device-map needs accelerate: pip install accelerate") from None
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise PbBuildError(f"{path}: not a vision-language model (model type {config.model_type!r} has no "
                               "AutoModelForImageTextToText class)") from None
        raise PbBuildError(f"{path}: cannot load the model ({exc})") from exc
    except (OSError, RuntimeError) as exc:
        raise PbBuildError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from exc
    return (model if device_map else model.to(dev)).eval()


@dataclass
class TransformersBackend:
    """A loaded model + processor that answers batches of queries."""

    model: Any
    processor: Any
    max_new_tokens: int = MAX_NEW_TOKENS
    name: str = ""
    generation: str = "official"
    calls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.generation not in GENERATIONS:
            raise PbBuildError(f"unknown generation {self.generation!r}; use {' or '.join(GENERATIONS)}")

    @classmethod
    def from_pretrained(cls, path: str, *, device: str = "auto", dtype: str = "auto",
                        max_new_tokens: int = MAX_NEW_TOKENS, generation: str = "official",
                        device_map: str | None = None) -> TransformersBackend:
        require_eval_extra()
        model = load_vlm(path, device, dtype, device_map)
        return cls(model, load_processor(path), max_new_tokens, name=str(path), generation=generation)

    @property
    def model_type(self) -> str:
        return str(getattr(self.model.config, "model_type", ""))

    def settings(self) -> dict[str, Any]:
        """What the run records about generation."""
        from pb_build.eval.images import preparation

        gen = self._generation_config()
        return {"model": self.name, "model_class": type(self.model).__name__,
                "processor_class": type(self.processor).__name__, "dtype": str(self.model.dtype),
                "device": str(self.model.device), "max_new_tokens": self.max_new_tokens,
                "generation": self.generation, "do_sample": bool(gen.do_sample),
                "repetition_penalty": gen.repetition_penalty, "padding_side": "left",
                "image_preparation": preparation(self.model_type)}

    def _generation_config(self):
        import copy

        gen = copy.deepcopy(self.model.generation_config)
        gen.update(max_new_tokens=self.max_new_tokens)
        if self.generation == "greedy":
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None, repetition_penalty=1.0)
        tok = self.processor.tokenizer
        if gen.pad_token_id is None:
            gen.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return gen

    def generate(self, images: list, prompts: list[str], contexts: list | None = None) -> list[str]:
        """Answers for (image, prompt) pairs in one padded batch; raises when the batch cannot be processed.

        ``contexts`` (one list per pair of earlier (image, prompt, answer) turns) puts those turns before it."""
        import torch

        from pb_build.eval.prompts import history_conversation

        contexts = contexts or [[] for _ in prompts]
        convs = [history_conversation(ctx, im, p) for im, p, ctx in zip(images, prompts, contexts, strict=True)]
        # processor_kwargs is a new dict each call: apply_chat_template adds return_tensors to the dict it gets.
        inputs = self.processor.apply_chat_template(
            convs, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "left"})
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=self._generation_config())
        self.calls += 1
        new = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True)

    def __call__(self, queries: list[Query]) -> list[Answer]:
        """Decide: decode the frames, answer in one batch, isolate the states that fail."""
        from pb_build.eval.images import prepare

        answers: list[Answer | None] = [None] * len(queries)
        images, contexts, ok = [], [], []
        for i, q in enumerate(queries):
            try:
                images.append(prepare(decode_image(q.episode.frames[q.frame]), self.model_type))
                contexts.append([(prepare(decode_image(f), self.model_type), p, a) for f, p, a in q.context])
                ok.append(i)
            except ValueError as exc:
                answers[i] = exc
        if ok:
            try:
                texts: list[Answer] = list(self.generate(images, [queries[i].prompt for i in ok], contexts))
            except (ValueError, TypeError, RuntimeError, IndexError) as batch_error:
                texts = [self._one(im, queries[i].prompt, ctx, batch_error)
                         for im, ctx, i in zip(images, contexts, ok, strict=True)]
            for i, text in zip(ok, texts, strict=True):
                answers[i] = text
        return [a if a is not None else RuntimeError("no answer") for a in answers]

    def _one(self, image, prompt: str, context: list, batch_error: BaseException) -> Answer:
        try:
            return self.generate([image], [prompt], [context])[0]
        except (ValueError, TypeError, RuntimeError, IndexError) as exc:
            return exc if len(str(exc)) else batch_error
