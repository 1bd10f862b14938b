"""What answers the states of a run: a scripted policy, an OpenAI-compatible server or a transformers model.

One description (:class:`DeciderSpec`, plain data so a worker process can rebuild it) and one function that
builds the decide callable and the settings the run records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pb_build.eval import policies
from pb_build.eval.runner import Decide, policy_decider


@dataclass(frozen=True)
class DeciderSpec:
    """How to answer: ``name`` is the model (path, Hub id or served name) or ``policy-<name>``."""

    name: str
    policy: str | None = None
    seed: int = 0
    api_base: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api_concurrency: int = 8
    api_retries: int = 5
    api_timeout: float = 60.0
    price_input: float | None = None
    price_output: float | None = None
    max_new_tokens: int = 50
    generation: str = "official"
    device: str = "auto"
    device_map: str | None = None
    dtype: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build(spec: DeciderSpec) -> tuple[Decide, dict[str, Any]]:
    """The decide function and its recorded settings."""
    if spec.policy is not None:
        return policy_decider(policies.get_policy(spec.policy, spec.seed)), {"policy": spec.policy,
                                                                             "seed": spec.seed}
    if spec.api_base:
        from pb_build.eval.api import OpenAIBackend

        api = OpenAIBackend(spec.api_base, spec.name, spec.api_key_env, spec.max_new_tokens,
                            0.0 if spec.generation == "greedy" else None, spec.api_concurrency, spec.api_retries,
                            timeout=spec.api_timeout, price_input=spec.price_input, price_output=spec.price_output)
        return api, api.settings()
    from pb_build.eval.backends import TransformersBackend

    backend = TransformersBackend.from_pretrained(spec.name, device=spec.device, dtype=spec.dtype,
                                                  max_new_tokens=spec.max_new_tokens, generation=spec.generation,
                                                  device_map=spec.device_map)
    return backend, backend.settings()
