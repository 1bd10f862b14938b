"""ImageNet-C raw data: the published corruption tree, clean ImageNet-val-style folders, and regeneration.

Two raw layouts are read:

* ``imagenet-c``: the published tree ``<root>/<corruption>/<severity 1-5>/<wnid>/<file>.JPEG`` (Zenodo record
  2235448: noise.tar, blur.tar, weather.tar, digital.tar, extra.tar, extracted into one folder). Its files are
  the frames, copied byte for byte.
* ``clean``: clean images ``<root>/<wnid>/<file>`` (ImageNet val sorted into class folders). pb-build corrupts
  them itself with the ``imagecorruptions`` package (bethgelab, Apache-2.0), see :func:`corrupt`.

The listings are sorted and validated as they are read: every folder name must be what the layout expects (a
known corruption, a severity 1-5, one of the 1000 ImageNet-1k WordNet ids), every file an image; a bad entry
raises :class:`BadRecord` naming it, or goes to ``on_bad`` (``--skip-bad``) and is left out. Entries whose name
starts with ``.`` are ignored. Nothing here is random: selection belongs to the builder.

Regeneration (the ``clean`` layout) follows the ImageNet-C recipe: Resize(256) + CenterCrop(224) (scaled with
``size``), the corruption at one severity, JPEG quality 85 with ``optimize``. ``imagecorruptions`` 1.1.2 (the
last release) fails on NumPy 2 / scikit-image >= 0.19 for fog (``np.float_``), glass_blur and gaussian_blur
(``gaussian(multichannel=True)``) and imports the deprecated ``pkg_resources`` and
``scipy.ndimage.interpolation``. :func:`corruption_functions` therefore executes the package's own
``corruptions.py`` in a private namespace whose imports resolve to small adapters, without importing the
package's ``__init__`` and without patching numpy, scikit-image or ``sys.modules``:

* ``np`` is a view of numpy that adds ``float_ = float64`` and whose ``random`` is a per-call
  ``numpy.random.RandomState`` seeded by the caller, so every random draw of a corruption is reproducible;
* ``skimage.filters.gaussian`` turns ``multichannel=True`` into ``channel_axis=-1``;
* ``skimage.util.random_noise`` (impulse_noise) gets an ``rng`` drawn from that RandomState (it would otherwise
  use fresh OS entropy);
* ``pkg_resources.resource_filename`` resolves the frost pictures in the package folder; ``map_coordinates`` comes
  from ``scipy.ndimage``.

Bytes are identical for a given seed on one machine and library set (NumPy, SciPy, scikit-image, OpenCV,
Pillow); the manifest records their versions. Regenerated frames are not byte-identical to the Zenodo files.
"""

from __future__ import annotations

import builtins
import functools
import importlib.util
import inspect
import io
import os
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pb_build import imageio
from pb_build.errors import BadRecord, PbBuildError
from pb_build.names import check_component
from pb_build.raw.imagenet_classes import SYNSETS

OnBad = Callable[[BadRecord], None] | None

# The 19 corruptions in imagecorruptions' order: 15 "common" ones, then the 4 "validation" ones (extra.tar).
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
LAYOUTS: tuple[str, ...] = ("imagenet-c", "clean")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpeg", ".jpg", ".png")
WNIDS: tuple[str, ...] = tuple(w for w, _ in SYNSETS)
_KNOWN_WNIDS = frozenset(WNIDS)
_WNID = re.compile(r"n\d{8}")
ZENODO = "https://zenodo.org/record/2235448"


@dataclass(frozen=True)
class TreeImage:
    """One image of the published tree under one corruption: its file at severities 1..5 (``paths[s - 1]``)."""

    corruption: str
    wnid: str
    file: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class CleanImage:
    """One clean image ``<root>/<wnid>/<file>``."""

    wnid: str
    file: str
    path: str


def _bad(bad: BadRecord, on_bad: OnBad) -> None:
    if on_bad is None:
        raise bad
    on_bad(bad)


def _entries(folder: Path | str) -> list[os.DirEntry]:
    """The visible entries of a folder, sorted by name."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise BadRecord(folder, f"cannot list the folder: {exc.strerror or exc}") from None


def _wnid_problem(name: str) -> str | None:
    if not _WNID.fullmatch(name):
        return f"{name!r} is not a WordNet id folder (expected n followed by 8 digits)"
    if name not in _KNOWN_WNIDS:
        return f"unknown wnid {name}: not one of the 1000 ImageNet-1k classes"
    return None


def detect_layout(root: Path) -> str:
    """``imagenet-c`` when the top folders are corruption names, ``clean`` when they are wnids."""
    if not root.is_dir():
        raise PbBuildError(f"{root}: raw folder does not exist or is not a folder")
    names = {e.name for e in _entries(root) if e.is_dir()}
    if names & set(CORRUPTIONS):
        return "imagenet-c"
    if any(_WNID.fullmatch(n) for n in names):
        return "clean"
    raise PbBuildError(f"{root}: neither an ImageNet-C tree (<corruption>/<severity 1-5>/<wnid>/<file>.JPEG) nor "
                       f"a folder of clean images (<wnid>/<file>); pass the folder that holds them")


def list_images(folder: Path | str, on_bad: OnBad) -> list[str]:
    """The image file names of a class folder, sorted; other entries are bad records."""
    out: list[str] = []
    for e in _entries(folder):
        path = e.path  # a str: pathlib per file cost a fifth of planning 5,000 images
        if not e.is_file():
            _bad(BadRecord(path, "unexpected folder inside a class folder (expected image files)"), on_bad)
        elif os.path.splitext(e.name)[1].lower() not in IMAGE_SUFFIXES:
            _bad(BadRecord(path, f"not an image file (expected {', '.join(IMAGE_SUFFIXES)})"), on_bad)
        elif "{" in e.name or "}" in e.name:
            _bad(BadRecord(path, "file name contains '{' or '}', which the official image template cannot hold"),
                 on_bad)
        else:
            try:
                out.append(check_component(e.name, path, "file name"))
            except BadRecord as bad:
                _bad(bad, on_bad)
    return out


# ------------------------------------------------------------------------------------------- the published tree


def scan_tree(root: Path, corruptions: tuple[str, ...], on_bad: OnBad) -> dict[str, list[str]]:
    """Validate the tree's folders for ``corruptions``; return wnid -> corruptions whose severity-5 folder has it.

    Folders of other known corruptions are left alone; an unknown top folder, an entry of a corruption folder
    that is not a severity folder 1-5, a missing severity folder, and a non-wnid or unknown-wnid folder at any
    severity are bad records. A corruption missing a severity folder is dropped.
    """
    for e in _entries(root):
        if e.name not in CORRUPTIONS:
            _bad(BadRecord(root / e.name, f"unknown corruption folder {e.name!r}: an ImageNet-C tree holds only "
                           "the 19 corruption folders (e.g. gaussian_noise); extract every archive into one "
                           "folder"), on_bad)
    by_wnid: dict[str, list[str]] = {}
    for corruption in corruptions:
        c_dir = root / corruption
        if not c_dir.is_dir():
            continue
        if not _check_severities(c_dir, on_bad):
            continue
        for severity in SEVERITIES:
            s_dir = c_dir / str(severity)
            for e in _entries(s_dir):
                problem = _wnid_problem(e.name) or (None if e.is_dir() else "not a class folder")
                if problem:
                    _bad(BadRecord(s_dir / e.name, problem), on_bad)
                elif severity == SEVERITIES[-1]:
                    by_wnid.setdefault(e.name, []).append(corruption)
    return dict(sorted(by_wnid.items()))


def _check_severities(c_dir: Path, on_bad: OnBad) -> bool:
    present = set()
    for e in _entries(c_dir):
        if e.name in {str(s) for s in SEVERITIES} and e.is_dir():
            present.add(int(e.name))
        else:
            _bad(BadRecord(c_dir / e.name, f"unexpected entry {e.name!r} in a corruption folder (expected only "
                           "the severity folders 1, 2, 3, 4, 5)"), on_bad)
    missing = [str(s) for s in SEVERITIES if s not in present]
    if missing:
        _bad(BadRecord(c_dir, f"missing severity folder(s) {', '.join(missing)} (expected 1-5)"), on_bad)
        return False
    return True


def tree_image(root: Path, corruption: str, wnid: str, file: str) -> TreeImage:
    """The image ``file`` of ``wnid`` under ``corruption`` at every severity; a missing severity is a BadRecord."""
    paths = tuple(os.path.join(root, corruption, str(s), wnid, file) for s in SEVERITIES)
    for severity, path in zip(SEVERITIES, paths, strict=True):
        if not os.path.isfile(path):
            raise BadRecord(path, f"missing: the image exists at severity 5 but not at severity {severity}")
    return TreeImage(corruption, wnid, file, paths)


# ------------------------------------------------------------------------------------------------ clean images


def scan_clean(root: Path, on_bad: OnBad) -> list[str]:
    """The sorted wnid folders of a clean-image folder; anything else at the top is a bad record."""
    wnids: list[str] = []
    for e in _entries(root):
        problem = _wnid_problem(e.name) or (None if e.is_dir() else "not a class folder")
        if problem:
            _bad(BadRecord(root / e.name, problem), on_bad)
        else:
            wnids.append(e.name)
    return wnids


def clean_images(root: Path, wnid: str, on_bad: OnBad) -> list[CleanImage]:
    """The clean images of one class; two files with the same stem (one output name) are a bad record."""
    folder = root / wnid
    seen: dict[str, str] = {}
    out: list[CleanImage] = []
    for file in list_images(folder, on_bad):
        stem = Path(file).stem
        if stem in seen:
            _bad(BadRecord(folder / file, f"same name as {seen[stem]!r}; both would be written as {stem}.JPEG"),
                 on_bad)
            continue
        seen[stem] = file
        out.append(CleanImage(wnid, file, str(folder / file)))
    return out


# ------------------------------------------------------------------------------------------------ image bytes


def read_image(path: str | Path) -> bytes:
    """A raw image file's bytes, checked to decode completely (Pillow, as the official environment opens it).

    Stored as ``.JPEG``: a file that is not a JPEG in an 8-bit mode is re-encoded (Pillow, quality 95)."""
    data = imageio.read_bytes(path)
    _, _, fmt, mode = imageio.check_decodes(data, path)
    if fmt == "JPEG" and mode in imageio.STORED_MODES:
        return data
    return encode_jpeg(np.asarray(decode_rgb(data, path)), 95)


def decode_rgb(data: bytes, path: str | Path) -> Any:
    """Decode image bytes fully into an RGB Pillow image; a truncated or unreadable file is a BadRecord."""
    return imageio.decode_pil(data, path, "RGB")


def resize_center_crop(img: Any, size: int) -> np.ndarray:
    """torchvision Resize(round(size * 256 / 224)) + CenterCrop(size) on a Pillow image, as uint8 HxWx3."""
    from PIL import Image

    short = round(size * 256 / 224)
    w, h = img.size
    if w <= h:
        new = (short, int(short * h / w))
    else:
        new = (int(short * w / h), short)
    img = img.resize(new, Image.BILINEAR)
    left = int(round((new[0] - size) / 2.0))
    top = int(round((new[1] - size) / 2.0))
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """Encode an RGB uint8 image as ImageNet-C did: Pillow JPEG, ``quality``, ``optimize=True``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------- regenerating corruptions

ENGINE_HINT = ("pip install imagecorruptions==1.1.2 scikit-image scipy (add --no-deps to the first to avoid "
               "opencv-python next to opencv-python-headless)")


class _NumpyView(types.ModuleType):
    """numpy as ``corruptions.py`` sees it: ``float_`` restored and a caller-seeded ``random``."""

    def __init__(self) -> None:
        super().__init__("numpy")
        self.float_ = np.float64
        self.random = np.random.RandomState(0)

    def __getattr__(self, attr: str) -> Any:
        return getattr(np, attr)


@dataclass(frozen=True)
class _Engine:
    functions: dict[str, Callable[..., Any]]
    numpy: _NumpyView
    versions: dict[str, str]


@functools.cache
def _engine() -> _Engine:
    try:
        spec = importlib.util.find_spec("imagecorruptions")
        import scipy.ndimage
        import skimage.color
        import skimage.filters
        import skimage.util
    except ImportError as exc:
        raise PbBuildError(f"regenerating ImageNet-C needs the imagecorruptions package and its dependencies "
                           f"({exc}); {ENGINE_HINT}") from None
    if spec is None or not spec.submodule_search_locations:
        raise PbBuildError(f"regenerating ImageNet-C needs the imagecorruptions package; {ENGINE_HINT}")
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    source = pkg_dir / "corruptions.py"
    view = _NumpyView()
    noise_arg = "rng" if "rng" in inspect.signature(skimage.util.random_noise).parameters else "seed"

    def gaussian(image: Any, sigma: Any = 1.0, *args: Any, multichannel: bool | None = None, **kw: Any) -> Any:
        if multichannel:
            kw.setdefault("channel_axis", -1)
        return skimage.filters.gaussian(image, sigma, *args, **kw)

    def random_noise(image: Any, mode: str = "gaussian", **kw: Any) -> Any:
        kw.setdefault(noise_arg, int(view.random.randint(0, 2**31 - 1)))
        return skimage.util.random_noise(image, mode=mode, **kw)

    def resource_filename(_package: str, relative: str) -> str:
        return str(pkg_dir / relative)

    adapters: dict[str, Any] = {
        "numpy": view,
        "skimage": types.SimpleNamespace(util=types.SimpleNamespace(random_noise=random_noise), color=skimage.color),
        "skimage.filters": types.SimpleNamespace(gaussian=gaussian),
        "scipy.ndimage": scipy.ndimage,
        "scipy.ndimage.interpolation": scipy.ndimage,
        "pkg_resources": types.SimpleNamespace(resource_filename=resource_filename),
    }
    real_import = builtins.__import__

    def private_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level == 0 and name in adapters:
            return adapters[name]
        return real_import(name, globals, locals, fromlist, level)

    namespace: dict[str, Any] = {
        "__name__": "imagecorruptions.corruptions", "__file__": str(source),
        "__builtins__": {**builtins.__dict__, "__import__": private_import},
    }
    try:
        exec(compile(source.read_bytes(), str(source), "exec"), namespace)  # noqa: S102 - the package's own code
    except Exception as exc:
        raise PbBuildError(f"{source}: cannot load the imagecorruptions corruptions: {type(exc).__name__}: {exc}") \
            from None
    missing = [c for c in CORRUPTIONS if not callable(namespace.get(c))]
    if missing:
        raise PbBuildError(f"{source}: imagecorruptions lacks the corruption(s) {', '.join(missing)}")
    return _Engine({c: namespace[c] for c in CORRUPTIONS}, view, _versions())


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("imagecorruptions", "numpy", "scipy", "scikit-image", "opencv-python-headless", "opencv-python",
                 "pillow"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def corruption_engine_versions() -> dict[str, str]:
    """Load the corruption engine (raising :class:`PbBuildError` when it cannot be) and return library versions."""
    return dict(_engine().versions)


def corrupt(image: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """``imagecorruptions.corrupt`` with every random draw from ``RandomState(seed)``; uint8 HxWx3 in and out."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1-5, got {severity}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 32:
        raise ValueError("expected a uint8 HxWx3 image of at least 32x32 pixels")
    from PIL import Image

    engine = _engine()
    engine.numpy.random = np.random.RandomState(seed)
    try:
        out = engine.functions[corruption](Image.fromarray(image), severity)
    finally:
        engine.numpy.random = np.random.RandomState(0)
    return np.uint8(out)

