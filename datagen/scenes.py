"""Procedural scenes: named textured objects over a textured background, with exact masks, boxes and depth order.

A scene is a small spec drawn from a seed; rendering is a pure function of the spec, so re-rendering it without an
object gives the exact ground truth of that object's removal. A scene has any width and height (its bucket); a square
one of side s is the same scene as it always was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 210),
    "yellow": (235, 205, 40),
    "orange": (240, 130, 30),
    "purple": (130, 50, 170),
    "pink": (240, 120, 170),
    "white": (245, 245, 240),
    "black": (30, 30, 35),
    "brown": (120, 75, 40),
    "cyan": (40, 200, 210),
    "grey": (128, 128, 128),
}
PATTERNS = ("plain", "striped", "dotted", "checkered", "wooden", "marbled")
SHAPES = ("ball", "box", "pyramid", "star", "ring", "diamond")
BACKGROUNDS: dict[str, tuple[str, tuple[int, int, int]]] = {
    # name -> (texture, base colour)
    "tiled floor": ("tiles", (180, 175, 165)),
    "striped wall": ("stripes", (200, 190, 160)),
    "wooden table": ("grain", (160, 115, 70)),
    "grass field": ("noise", (90, 150, 70)),
    "sandy beach": ("noise", (220, 200, 150)),
    "blue carpet": ("noise", (70, 90, 150)),
    "checkered floor": ("checks", (170, 170, 170)),
    "concrete wall": ("noise", (150, 150, 145)),
}
BACKGROUND_PREPOSITION = {"wall": "against", "table": "on", "floor": "on", "field": "on", "beach": "on"}


@dataclass
class SceneObject:
    name: str
    """Unique phrase naming the object, e.g. 'red striped ball'."""
    shape: str
    color: str
    pattern: str
    center: tuple[float, float]
    radius: float
    angle: float
    depth: float
    """0 = farthest, 1 = nearest; objects are painted in increasing depth."""
    texture_seed: int


@dataclass
class Scene:
    width: int
    height: int
    background: str
    background_seed: int
    objects: list[SceneObject]
    seed: int
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """Visible (instance) mask of each object, bool HxW, filled by render()."""

    @property
    def setting(self) -> str:
        preposition = BACKGROUND_PREPOSITION.get(self.background.split()[-1], "on")
        return f"{preposition} {article(self.background)} {self.background}"

    def caption(self, exclude: tuple[str, ...] = ()) -> str:
        return compose_caption([o.name for o in self.objects if o.name not in exclude], self.setting)

    def render(self, exclude: tuple[str, ...] = ()) -> np.ndarray:
        """RGB uint8 image; fills `masks` with each drawn object's visible pixels."""
        image = background_texture(self.background, self.width, self.height, self.background_seed)
        owner = np.full((self.height, self.width), -1, np.int16)
        drawn = [o for o in sorted(self.objects, key=lambda o: o.depth) if o.name not in exclude]
        for index, obj in enumerate(drawn):
            shape = shape_mask(obj, self.width, self.height)
            texture = object_texture(obj, self.width, self.height)
            image[shape] = texture[shape]
            owner[shape] = index
        self.masks = {obj.name: owner == index for index, obj in enumerate(drawn)}
        return image

    def depth(self) -> np.ndarray:
        """float32 HxW in [0, 1], 1 nearest: the floor recedes towards the top, each object a dome at its depth
        rank. Call after render() (uses the visible masks)."""
        ramp = np.linspace(0.0, 0.25, self.height, dtype=np.float32)[:, None].repeat(self.width, 1)
        depth = ramp.copy()
        for obj in self.objects:
            mask = self.masks.get(obj.name)
            if mask is None or not mask.any():
                continue
            inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
            dome = np.sqrt(np.clip(inside / max(float(inside.max()), 1.0), 0, 1))
            depth[mask] = 0.35 + 0.5 * obj.depth + 0.15 * dome[mask]
        return depth

    def classes(self) -> np.ndarray:
        """uint8 HxW class map: 0 background, 1 + the index of the object's shape in SHAPES. After render()."""
        out = np.zeros((self.height, self.width), np.uint8)
        for obj in self.objects:
            mask = self.masks.get(obj.name)
            if mask is not None:
                out[mask] = 1 + SHAPES.index(obj.shape)
        return out

    def box(self, name: str) -> list[float]:
        ys, xs = np.nonzero(self.masks[name])
        return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def compose_caption(names: list[str], setting: str) -> str:
    phrases = [f"{article(n)} {n}" for n in names]
    if not phrases:
        return f"an empty scene {setting}"
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{listed} {setting}"


def object_name(color: str, pattern: str, shape: str) -> str:
    """'red striped ball'; a plain object is just 'red ball'."""
    return f"{color} {shape}" if pattern == "plain" else f"{color} {pattern} {shape}"


def parse_name(name: str) -> tuple[str, str, str] | None:
    """(colour, pattern, shape) of an object name a scene can render, else None."""
    words = name.strip().lower().split()
    if len(words) == 2:
        words = [words[0], "plain", words[1]]
    if len(words) == 3 and words[0] in COLORS and words[1] in PATTERNS and words[2] in SHAPES:
        return words[0], words[1], words[2]
    return None


def make_scene(seed: int, width: int, height: int | None = None, min_objects: int = 2, max_objects: int = 4) -> Scene:
    """Draw a scene of width x height (a square without `height`): distinct shapes (so every name is unambiguous),
    limited overlap, each object mostly visible. Object sizes follow the short side."""
    height = width if height is None else height
    short = min(width, height)
    rng = np.random.default_rng(seed)
    count = int(rng.integers(min_objects, max_objects + 1))
    background = str(rng.choice(list(BACKGROUNDS)))
    shapes = rng.permutation(SHAPES)[:count]
    colors = list(COLORS)
    objects: list[SceneObject] = []
    occupied = np.zeros((height, width), bool)
    for depth_rank, shape in enumerate(shapes):
        for _ in range(50):
            radius = float(rng.uniform(0.09, 0.2) * short)
            margin = radius + 2
            center = (float(rng.uniform(margin, width - margin)), float(rng.uniform(margin, height - margin)))
            candidate = SceneObject(
                name="",
                shape=str(shape),
                color=str(rng.choice(colors)),
                pattern=str(rng.choice(PATTERNS)),
                center=center,
                radius=radius,
                angle=float(rng.uniform(0, 360)),
                depth=(depth_rank + 1) / (count + 1),
                texture_seed=int(rng.integers(2**31)),
            )
            mask = shape_mask(candidate, width, height)
            if mask.sum() and (mask & occupied).sum() <= 0.15 * mask.sum():
                break
        else:
            continue
        candidate.name = object_name(candidate.color, candidate.pattern, candidate.shape)
        occupied |= mask
        objects.append(candidate)
    return Scene(
        width=width,
        height=height,
        background=background,
        background_seed=int(rng.integers(2**31)),
        objects=objects,
        seed=seed,
    )


# ------------------------------------------------------------------------------------------ geometry


def shape_mask(obj: SceneObject, width: int, height: int) -> np.ndarray:
    """Full (unoccluded) silhouette of an object on a width x height canvas; no anti-aliasing, so masks are exact."""
    canvas = np.zeros((height, width), np.uint8)
    cx, cy = obj.center
    r = obj.radius
    theta = np.deg2rad(obj.angle)

    def polygon(radii: list[float], count: int, offset: float = 0.0) -> np.ndarray:
        angles = theta + offset + np.arange(count) * 2 * np.pi / count
        rs = np.resize(np.asarray(radii), count)
        return np.stack([cx + rs * np.cos(angles), cy + rs * np.sin(angles)], 1).round().astype(np.int32)

    if obj.shape == "ball":
        cv2.circle(canvas, (round(cx), round(cy)), round(r), 1, -1, lineType=cv2.LINE_8)
    elif obj.shape == "ring":
        cv2.circle(canvas, (round(cx), round(cy)), round(r), 1, -1, lineType=cv2.LINE_8)
        cv2.circle(canvas, (round(cx), round(cy)), round(r * 0.5), 0, -1, lineType=cv2.LINE_8)
    elif obj.shape == "box":
        cv2.fillPoly(canvas, [polygon([r * 0.95], 4, np.pi / 4)], 1, lineType=cv2.LINE_8)
    elif obj.shape == "pyramid":
        cv2.fillPoly(canvas, [polygon([r], 3, -np.pi / 2 - theta)], 1, lineType=cv2.LINE_8)
    elif obj.shape == "star":
        cv2.fillPoly(canvas, [polygon([r, r * 0.45], 10)], 1, lineType=cv2.LINE_8)
    elif obj.shape == "diamond":
        cv2.fillPoly(canvas, [polygon([r, r * 0.6], 4)], 1, lineType=cv2.LINE_8)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")
    return canvas.astype(bool)


# ------------------------------------------------------------------------------------------- texture


def smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1], height x width: a small random grid upsampled bicubically."""
    grid = rng.random((cells, cells), dtype=np.float32)
    return np.clip(cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)


def _tone(base: tuple[int, int, int], amount: np.ndarray) -> np.ndarray:
    """base colour scaled per pixel by `amount` (1 = unchanged), as uint8 HxWx3."""
    return np.clip(np.asarray(base, np.float32)[None, None, :] * amount[:, :, None], 0, 255).astype(np.uint8)


def object_texture(obj: SceneObject, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(obj.texture_seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = np.deg2rad(obj.angle)
    u = (xs - obj.center[0]) * np.cos(theta) + (ys - obj.center[1]) * np.sin(theta)
    v = -(xs - obj.center[0]) * np.sin(theta) + (ys - obj.center[1]) * np.cos(theta)
    period = max(4.0, obj.radius / 3)
    if obj.pattern == "striped":
        amount = np.where(np.sin(u * np.pi / period * 2) > 0, 1.0, 0.55)
    elif obj.pattern == "dotted":
        du, dv = (u % period) - period / 2, (v % period) - period / 2
        amount = np.where(du**2 + dv**2 < (period * 0.3) ** 2, 0.45, 1.0)
    elif obj.pattern == "checkered":
        amount = np.where((np.floor(u / period) + np.floor(v / period)) % 2 == 0, 1.0, 0.5)
    elif obj.pattern == "wooden":
        rings = np.sin(np.hypot(u, v * 0.3) / period * 4 + smooth_noise(rng, width, height, 6) * 6)
        amount = 0.75 + 0.25 * rings
    elif obj.pattern == "marbled":
        veins = np.abs(np.sin(u / period + smooth_noise(rng, width, height, 8) * 8))
        amount = 0.6 + 0.4 * veins
    else:
        amount = np.ones((height, width), np.float32)
    if obj.shape == "ball":  # a little shading so it reads as a sphere
        dist = np.hypot(xs - obj.center[0] + obj.radius * 0.3, ys - obj.center[1] + obj.radius * 0.3)
        amount = amount * np.clip(1.15 - 0.45 * dist / (obj.radius * 1.3), 0.5, 1.15)
    return _tone(COLORS[obj.color], amount.astype(np.float32))


def background_texture(name: str, width: int, height: int, seed: int) -> np.ndarray:
    """The background of a width x height scene; tiles and checks follow the short side."""
    kind, base = BACKGROUNDS[name]
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cell = min(width, height) / float(rng.integers(4, 9))
    if kind == "tiles":
        grout = ((xs % cell) < 2) | ((ys % cell) < 2)
        amount = np.where(grout, 0.6, 0.95 + 0.1 * smooth_noise(rng, width, height, 16))
    elif kind == "stripes":
        amount = np.where((xs // (cell / 2)) % 2 == 0, 1.0, 0.85)
    elif kind == "grain":
        amount = 0.8 + 0.2 * np.sin(ys / 3 + smooth_noise(rng, width, height, 5) * 10)
    elif kind == "checks":
        amount = np.where(((xs // cell) + (ys // cell)) % 2 == 0, 1.05, 0.8)
    else:
        amount = 0.8 + 0.2 * smooth_noise(rng, width, height, 32) + 0.1 * smooth_noise(rng, width, height, 8)
    shade = 1.05 - 0.15 * ys / height  # light from above
    return _tone(base, (amount * shade).astype(np.float32))
