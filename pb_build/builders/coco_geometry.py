"""COCO crop geometry and the official crop semantics: views, steps, limits and the state machine of
``COCO2014Environment`` (the official proactivebench package's ``environment`` module). The construction rules
are documented in :mod:`pb_build.builders.coco`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pb_build.episode import State
from pb_build.errors import PbBuildError

LEFT, RIGHT, UP, DOWN = ("Move the camera to the left.", "Move the camera to the right.", "Move the camera up.",
                         "Move the camera down.")
ZOOM = "Move farther from the object."
OPTION_OF = {"left": LEFT, "right": RIGHT, "up": UP, "down": DOWN}

DIRECTIONS = ("left", "right", "up", "down", "up_left", "up_right", "down_left", "down_right", "zoom")
GRANULARITIES = (3, 4, 5)

MIN_SIDE = 32
MIN_BOX_SIDE = 16
MIN_BOX_AREA = 32 * 32
CUT_CARDINAL = (3, 10)
CUT_TWO_AXES = (1, 2)
NEAR = (1, 2)
MAX_IOU = 0.3


@dataclass(frozen=True)
class ObjectBox:
    """The object box rounded outwards to whole pixels and clipped to the image (half-open)."""

    x1: int
    y1: int
    x2: int
    y2: int

    @classmethod
    def from_bbox(cls, bbox: tuple[float, float, float, float], width: int, height: int) -> ObjectBox:
        x, y, w, h = bbox
        return cls(max(0, math.floor(x)), max(0, math.floor(y)), min(width, math.ceil(x + w)),
                   min(height, math.ceil(y + h)))

    @property
    def w(self) -> int:
        return self.x2 - self.x1

    @property
    def h(self) -> int:
        return self.y2 - self.y1

    def usable(self) -> bool:
        """False for tiny (or empty) boxes, which are excluded."""
        return self.w >= MIN_BOX_SIDE and self.h >= MIN_BOX_SIDE and self.w * self.h >= MIN_BOX_AREA


def _moving_candidates(length: int, b1: int, b2: int, m: int, cut: tuple[int, int],
                       first_only: bool = False) -> list[tuple[int, int]]:
    """Feasible (q0, qF*) for an axis whose high edge moves up by m steps: first edge q0, smallest final edge.

    Constraints: q0 in [b1 - e/2, b1 + e*cut]; q0 >= MIN_SIDE (first view side with the low edge at 0); final
    edge qF >= b2, qF <= length, qF = q0 + m*s with s >= 1; zero-step box positive (s < q0 with low edge 0).
    """
    e = b2 - b1
    lo = max(b1 - e * NEAR[0] // NEAR[1], MIN_SIDE)
    hi = b1 + e * cut[0] // cut[1]
    out = []
    for q0 in range(lo, hi + 1):
        need = max(b2, q0 + m)
        q_final = q0 + m * -(-(need - q0) // m)
        if q_final <= length and (q_final - q0) // m < q0:
            out.append((q0, q_final))
            if first_only:
                break
    return out


def _sample_moving(rng: np.random.Generator, length: int, b1: int, b2: int, m: int,
                   cut: tuple[int, int]) -> tuple[int, int, int]:
    """(fixed low edge p1, first moving edge q0, step s) for an axis moving towards larger coordinates."""
    cands = _moving_candidates(length, b1, b2, m, cut)
    q0, q_min = cands[int(rng.integers(len(cands)))]
    s_min = (q_min - q0) // m
    p1 = int(rng.integers(0, min(b1, q0 - MIN_SIDE, q0 - s_min - 1) + 1))
    s_max = min((length - q0) // m, q0 - p1 - 1)
    return p1, q0, int(rng.integers(s_min, s_max + 1))


def _sample_fixed(rng: np.random.Generator, length: int, b1: int, b2: int) -> tuple[int, int]:
    p1 = int(rng.integers(0, min(b1, length - MIN_SIDE) + 1))
    p2 = int(rng.integers(max(b2, p1 + MIN_SIDE), length + 1))
    return p1, p2


def _zoom_grid(length: int, b1: int, b2: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Feasible first views (w0, z1) inside the box with their step range [s_lo, s_hi] for g zoom-outs."""
    e = b2 - b1
    w_max = e * CUT_TWO_AXES[0] // CUT_TWO_AXES[1]
    if w_max < MIN_SIDE:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty
    w0, u = np.meshgrid(np.arange(MIN_SIDE, w_max + 1), np.arange(0, e - MIN_SIDE + 1), indexing="ij")
    w0, u = w0.ravel(), u.ravel()
    keep = u <= e - w0
    w0, u = w0[keep], u[keep]
    z1 = b1 + u
    z2 = z1 + w0
    s_lo = np.maximum(1, -(-np.maximum(u, e - w0 - u) // g))
    s_hi = np.minimum(np.minimum(z1 // g, (length - z2) // g), (w0 - 1) // 2)
    ok = s_lo <= s_hi
    return w0[ok], z1[ok], s_lo[ok], s_hi[ok]


def _sample_zoom(rng: np.random.Generator, length: int, b1: int, b2: int, g: int) -> tuple[int, int, int]:
    """(first low edge z1, first high edge z2, step s) of a zoom axis."""
    w0, z1, s_lo, s_hi = _zoom_grid(length, b1, b2, g)
    i = int(rng.integers(len(w0)))
    return int(z1[i]), int(z1[i] + w0[i]), int(rng.integers(s_lo[i], s_hi[i] + 1))


def _mirror(length: int, b1: int, b2: int) -> tuple[int, int]:
    return length - b2, length - b1


def _axes(direction: str) -> tuple[str, str]:
    """The role of the horizontal and the vertical axis: '+', '-' (moving), 'fixed', 'none' or 'zoom'."""
    if direction == "zoom":
        return "zoom", "zoom"
    horizontal = "-" if "left" in direction else "+" if "right" in direction else "fixed"
    vertical = "-" if "up" in direction else "+" if "down" in direction else "fixed"
    return horizontal, vertical


def _cut(direction: str) -> tuple[int, int]:
    return CUT_TWO_AXES if "_" in direction else CUT_CARDINAL


def _axis_feasible(role: str, length: int, b1: int, b2: int, g: int, cut: tuple[int, int]) -> bool:
    if role == "fixed":
        return length >= MIN_SIDE
    if role == "zoom":
        return len(_zoom_grid(length, b1, b2, g)[0]) > 0
    if role == "-":
        b1, b2 = _mirror(length, b1, b2)
    return bool(_moving_candidates(length, b1, b2, g - 1, cut, first_only=True))


def feasible(direction: str, g: int, width: int, height: int, box: ObjectBox) -> bool:
    """Whether a crop sequence with ``direction`` and granularity ``g`` exists for this image and box."""
    h_role, v_role = _axes(direction)
    cut = _cut(direction)
    return (_axis_feasible(h_role, width, box.x1, box.x2, g, cut)
            and _axis_feasible(v_role, height, box.y1, box.y2, g, cut))


def any_feasible(width: int, height: int, box: ObjectBox) -> bool:
    """Whether some (direction, granularity) pair is feasible (cheap pairs first)."""
    return any(feasible(d, g, width, height, box) for d in DIRECTIONS for g in GRANULARITIES)


@dataclass(frozen=True)
class Geometry:
    """The official crop parameters of one sample."""

    direction: str
    granularity: int
    horizontal_step: int
    vertical_step: int
    crop: dict[str, int]  # top, left, height, width with the official conventions


def _axis_record(role: str, rng: np.random.Generator, length: int, b1: int, b2: int, g: int,
                 cut: tuple[int, int]) -> tuple[int, int, int]:
    """(crop low value, crop high value, step) of one axis in the official conventions."""
    if role == "fixed":
        p1, p2 = _sample_fixed(rng, length, b1, b2)
        return p1, p2, 0
    if role == "zoom":
        z1, z2, s = _sample_zoom(rng, length, b1, b2, g)
        return z1 + s, (z2 - s) - (z1 + s), s  # zoom: position and *size* of the zero-step box
    if role == "+":
        p1, q0, s = _sample_moving(rng, length, b1, b2, g - 1, cut)
        return p1, q0 - s, s  # the zero-step high edge (a coordinate)
    mb1, mb2 = _mirror(length, b1, b2)
    p1, q0, s = _sample_moving(rng, length, mb1, mb2, g - 1, cut)
    return (length - q0) + s, length - p1, s  # the zero-step low edge, the fixed high edge


def sample_geometry(rng: np.random.Generator, width: int, height: int, box: ObjectBox) -> Geometry:
    """Draw the (direction, granularity) pair among the feasible ones, then the crop geometry."""
    pairs = [(d, g) for d in DIRECTIONS for g in GRANULARITIES]
    for i in rng.permutation(len(pairs)):
        direction, g = pairs[int(i)]
        if feasible(direction, g, width, height, box):
            break
    else:
        raise PbBuildError(f"no feasible crop for a {width}x{height} image with object box {box}")
    h_role, v_role = _axes(direction)
    cut = _cut(direction)
    left, right, h_step = _axis_record(h_role, rng, width, box.x1, box.x2, g, cut)
    top, bottom, v_step = _axis_record(v_role, rng, height, box.y1, box.y2, g, cut)
    return Geometry(direction, g, h_step, v_step, {"top": top, "left": left, "height": bottom, "width": right})


def official_box(direction: str, crop: dict[str, float], horizontal_step: float,
                 vertical_step: float) -> tuple[float, float, float, float]:
    """The PIL crop box of ``COCO2014Environment._get_transform`` for the given running steps (a copy of it)."""
    top = crop["top"] - vertical_step if "up" in direction or "zoom" in direction else crop["top"]
    left = crop["left"] - horizontal_step if "left" in direction or "zoom" in direction else crop["left"]
    height = crop["height"] + vertical_step if "down" in direction or "zoom" in direction else crop["height"]
    width = crop["width"] + horizontal_step if "right" in direction or "zoom" in direction else crop["width"]
    if direction == "zoom":
        height += crop["top"]
        width += crop["left"]
    return left, top, width, height


def official_limits(direction: str, g: int, h0: int, v0: int) -> tuple[int, int, int]:
    """(max_steps, max horizontal step, max vertical step) exactly as ``COCO2014Environment.__init__``."""
    if "zoom" in direction:
        return g + 1, h0 * (g + 1), v0 * (g + 1)
    max_h = h0 * g if "left" in direction or "right" in direction else 0
    max_v = v0 * g if "up" in direction or "down" in direction else 0
    return (g if "_" not in direction else 2 * g), max_h, max_v


def official_shown(direction: str, options: Sequence[str], h: int, v: int, max_h: int, max_v: int) -> list[str]:
    """The options ``COCO2014Environment._get_valid_options`` shows at running steps (h, v) (a copy of it)."""
    shown = list(options)
    if direction == "zoom":
        if h == max_h:
            shown.remove(ZOOM)
        return shown
    if h >= max_h:
        shown = [o for o in shown if o not in (LEFT, RIGHT)]
    if v >= max_v:
        shown = [o for o in shown if o not in (UP, DOWN)]
    return shown


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


@dataclass(frozen=True)
class Machine:
    """The state machine of one sample: states (a, b) in sorted order, their views, shown options and moves."""

    moves: list[tuple[int, int]]
    boxes: list[tuple[int, int, int, int]]
    shown: list[list[str]]
    targets: list[dict[str, int]]  # option text -> target state
    max_steps: int


def running_step(step: float, moves: int) -> float:
    """The running step of an axis after ``moves`` moves on it, computed as ``COCO2014Environment`` does
    (``step <- step / n * (n + 1)`` for n = 1 .. moves): exactly ``step * (moves + 1)`` for whole-pixel steps."""
    for n in range(1, moves + 1):
        step = step / n * (n + 1)
    return step


def pil_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """The integer box ``PIL.Image.crop`` uses for ``box`` (it rounds every coordinate)."""
    x1, y1, x2, y2 = (int(round(c)) for c in box)
    return x1, y1, x2, y2


def state_machine(geo: Geometry, options: Sequence[str]) -> Machine:
    """Explore every reachable state from (0, 0) with the official rules.

    A move is only explored from a state before the turn limit; a move still shown at the last turn (only possible
    in records whose steps never exhaust an axis in time) targets its own state, as the episode ends there anyway.
    """
    d, g, h0, v0 = geo.direction, geo.granularity, geo.horizontal_step, geo.vertical_step
    max_steps, max_h, max_v = official_limits(d, g, h0, v0)
    effect = {LEFT: (1, 0), RIGHT: (1, 0), UP: (0, 1), DOWN: (0, 1), ZOOM: (1, 1)}
    turn = {(0, 0): 1}  # the turn at which a state is shown (every path to it has the same length)
    frontier = [(0, 0)]
    while frontier:
        a, b = frontier.pop()
        if turn[(a, b)] >= max_steps:
            continue
        for opt in official_shown(d, options, running_step(h0, a), running_step(v0, b), max_h, max_v):
            if opt in effect:
                nxt = (a + effect[opt][0], b + effect[opt][1])
                if nxt not in turn:
                    turn[nxt] = turn[(a, b)] + 1
                    frontier.append(nxt)
    moves = sorted(turn)
    index = {ab: i for i, ab in enumerate(moves)}
    boxes, shown, targets = [], [], []
    for i, (a, b) in enumerate(moves):
        h, v = running_step(h0, a), running_step(v0, b)
        boxes.append(pil_box(official_box(d, geo.crop, h, v)))
        here = official_shown(d, options, h, v, max_h, max_v)
        shown.append(here)
        targets.append({o: index.get((a + effect[o][0], b + effect[o][1]), i) for o in here if o in effect})
    return Machine(moves, boxes, shown, targets, max_steps)


def machine_states(machine: Machine, options: Sequence[str]) -> tuple[State, ...]:
    """The episode states of a machine: state k shows frame k (the view of ``machine.boxes[k]``)."""
    return tuple(
        State(
            frame=k,
            shown=tuple(i for i, o in enumerate(options) if o in machine.shown[k]),
            valid=tuple(i for i, o in enumerate(options) if o in machine.targets[k]),
            targets=tuple(machine.targets[k][o] for o in options if o in machine.targets[k]),
        )
        for k in range(len(machine.moves))
    )
