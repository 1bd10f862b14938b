"""The explicit registry of source builders: adding a source is one module plus one line here."""

from __future__ import annotations

from types import ModuleType

from pb_build.builders import changeit, coco, imagenet_c, mvp_n, quickdraw, rod, vsod
from pb_build.errors import PbBuildError

REGISTRY: dict[str, ModuleType] = {
    quickdraw.name: quickdraw,
    changeit.name: changeit,
    coco.name: coco,
    imagenet_c.name: imagenet_c,
    mvp_n.name: mvp_n,
    rod.name: rod,
    vsod.name: vsod,
}


def get_builder(source: str) -> ModuleType:
    """The builder module registered as ``source``."""
    try:
        return REGISTRY[source]
    except KeyError:
        raise PbBuildError(f"unknown source {source!r}; known sources: {', '.join(sorted(REGISTRY))}") from None
