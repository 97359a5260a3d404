"""Procedural stand-ins for the ground-truth datasets: no downloads, exactly the real
factor names and sizes, every factor visible at 64x64.

Images are rendered from the factor classes on demand, deterministically (same classes,
same bytes, in any process). What depends on few factors is precomputed once per process
on first use (sprite masks per shape, scale and rotation; scene key maps per orientation,
shape and scale); a batch is then a few gathers over (n, 64, 64) arrays, so rendering
runs at tens of thousands of images per second on one core. Objects are cheap to build
and to pickle: the tables live in module-level caches, not in the objects.

A rendered image is a map of small integer keys (floor, wall, object shade, ...) that
``_paint`` turns into colours through a per-image palette (floor hue, object colour, ...).
Use these through ``datasets.load_dataset(name, "standin")``.
"""
from __future__ import annotations

import functools

import numpy as np

from lbvae.data.ground_truth import FACTORS, IMAGE_SIZE, GroundTruthDataset


class _FactorStandin(GroundTruthDataset):
    source, location = "standin", "procedural"
    render = None   # a function of factor classes (n, K) -> uint8 images (n, C, 64, 64)

    def _images(self, indices):
        return self.render(self.index_to_factors(indices))


# --- shared drawing helpers --------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _pixel_grid() -> tuple[np.ndarray, np.ndarray]:
    """(y, x) pixel-centre coordinates, (64, 64) float32 each."""
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + np.float32(0.5)
    return y, x


def _paint(keys: np.ndarray, palettes: np.ndarray) -> np.ndarray:
    """Colour images (n, 3, 64, 64) from key maps (n, 64, 64) into palettes (n, K, 3)."""
    n, k = palettes.shape[:2]
    flat = keys.reshape(n, -1).astype(np.intp) + (np.arange(n) * k)[:, None]
    out = np.empty((n, 3, IMAGE_SIZE * IMAGE_SIZE), np.uint8)
    for c in range(3):
        np.take(np.ascontiguousarray(palettes[:, :, c]).reshape(-1), flat, out=out[:, c])
    return out.reshape(n, 3, IMAGE_SIZE, IMAGE_SIZE)


def _paste(canvas: np.ndarray, patches: np.ndarray, top: np.ndarray, left: np.ndarray) -> None:
    """Paste patches (n, p, p) into canvas (n, H, W) at (top, left); key 0 is transparent."""
    p = patches.shape[1]
    rows = top[:, None, None] + np.arange(p)[None, :, None]
    cols = left[:, None, None] + np.arange(p)[None, None, :]
    n = np.arange(len(canvas))[:, None, None]
    canvas[n, rows, cols] = np.where(patches > 0, patches, canvas[n, rows, cols])


def _lambert(nx, ny, nz) -> np.ndarray:
    """Diffuse shade in [0.25, 1] of a unit normal (image axes: y down) lit from the upper left."""
    light = np.array([-0.45, -0.55, 0.70]) / np.linalg.norm([-0.45, -0.55, 0.70])
    return 0.25 + 0.75 * np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, 1)


def _rounded(x, y, cx, top, bottom, r):
    """Inside and shade of a capsule: points within r of the vertical axis (cx, top..bottom)
    (a sphere when top == bottom), shaded as a 3-D surface."""
    dx, dy = x - cx, y - np.clip(y, top, bottom)
    d2 = (dx * dx + dy * dy) / (r * r)
    return d2 <= 1, _lambert(dx / r, dy / r, np.sqrt(np.clip(1 - d2, 0, 1)))


def _hsv_to_rgb(h, s, v) -> np.ndarray:
    i = np.floor(h * 6)
    f, i = h * 6 - i, i.astype(int) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.stack([np.choose(i, [v, q, p, p, t, v]), np.choose(i, [t, v, v, q, p, p]),
                     np.choose(i, [p, p, t, v, v, q])], axis=-1)


# --- dSprites: binary square / ellipse / heart ------------------------------------------
SPRITE_PATCH = 40       # fits the largest sprite at any rotation
SPRITE_RADIUS = 14.0    # pixels from the centre to the side of a scale-1 sprite's frame
# posX / posY classes -> pixel centre; adjacent classes differ by 1-2 pixels.
_SPRITE_CENTRES = np.rint(np.linspace(10, 54, 32)).astype(np.intp)


def _sprite_shapes(x, y):
    """Square, ellipse, heart (dSprites' order) in the sprite's own frame (y down)."""
    hx, hy = 1.05 * x, 0.15 - 1.05 * y   # the heart curve has y up
    return (np.maximum(np.abs(x), np.abs(y)) <= 0.8,
            (x / 1.15) ** 2 + (y / 0.55) ** 2 <= 1,
            (hx * hx + hy * hy - 1) ** 3 - hx * hx * hy ** 3 <= 0)


@functools.lru_cache(maxsize=1)
def _sprite_patches() -> np.ndarray:
    """(shape 3, scale 6, orientation 40, P, P) uint8 masks 0/255, 4x4 supersampled so
    that small rotations move the edges smoothly."""
    ss, p = 4, SPRITE_PATCH
    sub = (np.arange(p * ss) + 0.5) / ss - p / 2
    u, v = np.meshgrid(sub, sub)
    angle = (2 * np.pi * np.arange(40) / 40).reshape(-1, 1, 1)
    cos, sin = np.cos(angle), np.sin(angle)
    out = np.empty((3, 6, 40, p, p), np.uint8)
    for k, scale in enumerate(np.linspace(0.5, 1.0, 6)):
        x = ((cos * u + sin * v) / (SPRITE_RADIUS * scale)).astype(np.float32)   # rotate the samples,
        y = ((-sin * u + cos * v) / (SPRITE_RADIUS * scale)).astype(np.float32)  # not the shape
        for s, inside in enumerate(_sprite_shapes(x, y)):
            coverage = inside.reshape(40, p, ss, p, ss).mean(axis=(2, 4))
            out[s, k] = np.where(coverage >= 0.5, 255, 0)
    return out


def render_sprites(classes: np.ndarray) -> np.ndarray:
    """dSprites-like binary images (n, 1, 64, 64) of classes (shape, scale, orientation, posX, posY).
    As in dSprites, a square repeats every 90 degrees and an ellipse every 180."""
    pad = SPRITE_PATCH // 2     # a margin for sprites that stick out at the edges
    canvas = np.zeros((len(classes), IMAGE_SIZE + 2 * pad, IMAGE_SIZE + 2 * pad), np.uint8)
    patches = _sprite_patches()[classes[:, 0], classes[:, 1], classes[:, 2]]
    # Canvas coordinates are image coordinates + pad, so a patch centred at c starts at c.
    _paste(canvas, patches, _SPRITE_CENTRES[classes[:, 4]], _SPRITE_CENTRES[classes[:, 3]])
    return canvas[:, None, pad:-pad, pad:-pad]


class SpritesStandin(_FactorStandin):
    """Stand-in for dSprites (Matthey et al. 2017)."""
    name, channels = "dsprites", 1
    factor_names, factor_sizes = FACTORS["dsprites"]
    render = staticmethod(render_sprites)


# --- Shapes3D: floor, walls and an object, each with its own hue -------------------------
SCENE_SHADES = 32       # brightness levels per hue; key = surface * SCENE_SHADES + level


@functools.lru_cache(maxsize=1)
def _scene_palette() -> np.ndarray:
    """(10 hues, SCENE_SHADES, 3) uint8; hues 0.0..0.9 as in Shapes3D."""
    h = np.broadcast_to(np.arange(10)[:, None] / 10, (10, SCENE_SHADES))
    v = np.broadcast_to(0.2 + 0.8 * np.arange(SCENE_SHADES) / (SCENE_SHADES - 1), (10, SCENE_SHADES))
    return np.rint(255 * _hsv_to_rgb(h, 0.85, v)).astype(np.uint8)


def _room(x, y, angle):
    """Surface (0 floor, 1 wall) and shade of an empty room corner seen at ``angle``."""
    corner = 32 - 40 * np.sin(angle)                 # turning the camera moves the back corner
    boundary = 28 + 0.3 * np.abs(x - corner)        # the floor-wall line rises towards the corner
    floor = y >= boundary
    wall_shade = np.where(x < corner, 0.55, 0.8) + 0.15 * y / IMAGE_SIZE
    floor_shade = 0.45 + 0.5 * np.clip((y - boundary) / (IMAGE_SIZE - boundary), 0, 1)
    return np.where(floor, 0, 1), np.where(floor, floor_shade, wall_shade)


def _scene_object(x, y, shape: int, height: float):
    """Inside and shade of cube, cylinder, sphere or capsule (Shapes3D's order), standing
    on the floor at the image centre."""
    cx, base = 32.0, 56.0
    dx, top = x - cx, base - height
    if shape == 0:      # cube in oblique view: front face, top face, right side face
        w, depth = 0.8 * height, 0.15 * height
        front = (np.abs(dx) <= w / 2) & (y >= base - w) & (y <= base)
        t = base - w - y                             # height above the front face's top edge
        top_face = (t >= 0) & (t <= depth) & (dx - t >= -w / 2) & (dx - t <= w / 2)
        s = dx - w / 2                               # distance right of the front face
        side = (s >= 0) & (s <= depth) & (y >= base - w - s) & (y <= base - s)
        return front | top_face | side, np.select([top_face, side], [1.0, 0.45], 0.7)
    if shape == 1:      # cylinder: shaded body and a bright elliptic top
        r = 0.375 * height
        cap_c, cap_r = top + 0.25 * r, 0.25 * r
        cap = (dx / r) ** 2 + ((y - cap_c) / cap_r) ** 2 <= 1
        body = (np.abs(dx) <= r) & (y >= cap_c) & (y <= base)
        nx = np.clip(dx / r, -1, 1)
        return cap | body, np.where(cap, 0.95, _lambert(nx, 0, np.sqrt(1 - nx * nx)))
    if shape == 2:      # sphere
        r = height / 2
        return _rounded(x, y, cx, base - r, base - r, r)
    r = 0.3 * height    # capsule
    return _rounded(x, y, cx, top + r, base - r, r)


@functools.lru_cache(maxsize=1)
def _scene_keys() -> np.ndarray:
    """(orientation 15, shape 4, scale 8, 64*64) uint8 key maps: surface (0 floor, 1 wall,
    2 object) * SCENE_SHADES + shade level."""
    y, x = (a.astype(np.float64) for a in _pixel_grid())
    out = np.empty((15, 4, 8, IMAGE_SIZE * IMAGE_SIZE), np.uint8)
    for o, angle in enumerate(np.radians(np.linspace(-30, 30, 15))):
        surface, shade = _room(x, y, angle)
        for s in range(4):
            for k, scale in enumerate(np.linspace(0.75, 1.25, 8)):
                inside, object_shade = _scene_object(x, y, s, 24 * scale)
                level = np.rint(np.clip(np.where(inside, object_shade, shade), 0, 1) * (SCENE_SHADES - 1))
                out[o, s, k] = (np.where(inside, 2, surface) * SCENE_SHADES + level).reshape(-1)
    return out


def render_scenes(classes: np.ndarray) -> np.ndarray:
    """Shapes3D-like images (n, 3, 64, 64) of classes (floor_hue, wall_hue, object_hue,
    scale, shape, orientation)."""
    keys = _scene_keys()[classes[:, 5], classes[:, 4], classes[:, 3]]
    palettes = _scene_palette()[classes[:, :3]]     # hues of floor, wall, object: key order
    return _paint(keys, palettes.reshape(len(classes), 3 * SCENE_SHADES, 3))


class Shapes3DStandin(_FactorStandin):
    """Stand-in for Shapes3D (Burgess & Kim 2018)."""
    name, channels = "shapes3d", 3
    factor_names, factor_sizes = FACTORS["shapes3d"]
    render = staticmethod(render_scenes)


# --- MPI3D: an object on a robot arm in front of a coloured background ------------------
# Colours named by MPI3D: objects white, green, red, blue, brown, olive; backgrounds
# purple, sea green, salmon.
_OBJECT_RGB = np.array([(235, 235, 235), (40, 160, 60), (200, 40, 40), (40, 70, 200), (120, 72, 32),
                        (128, 128, 0)], np.float64)
_BACKGROUND_RGB = np.array([(110, 70, 150), (46, 139, 87), (250, 128, 114)], np.float64)
_ARM_RGB = (70, 70, 75)
_ARM_X = 8 + np.rint(np.arange(40) * 48 / 39).astype(np.intp)   # horizontal axis -> tip x, 1-2 px steps
_ARM_Y = 8 + np.arange(40)                                      # vertical axis -> tip y, 1 px steps
_CAMERA_DY = np.array([0, 4, 8])     # a higher camera sees the scene lower in the image
_ARM_BASE = (32.0, 76.0)
_OBJECT_PATCH = 16


@functools.lru_cache(maxsize=1)
def _mpi3d_palettes() -> tuple[np.ndarray, np.ndarray]:
    """Room colours (3 backgrounds, 2, 3): wall, darker table; object shades (6, 3, 3)."""
    room = np.stack([_BACKGROUND_RGB, 0.7 * _BACKGROUND_RGB], axis=1)
    shades = _OBJECT_RGB[:, None, :] * np.array([0.5, 0.78, 1.0])[None, :, None]
    return np.rint(room).astype(np.uint8), np.rint(shades).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _mpi3d_rooms() -> np.ndarray:
    """(camera height 3, 64, 64) uint8 keys: 0 background, 1 table."""
    y, _ = _pixel_grid()
    return np.stack([(y >= 50 + dy).astype(np.uint8) for dy in _CAMERA_DY])


@functools.lru_cache(maxsize=1)
def _mpi3d_objects() -> np.ndarray:
    """(shape 6, size 2, 16, 16) uint8 patches: 0 transparent, 3..5 object shade levels.
    Shapes in MPI3D's order: cone, cube, cylinder, hexagonal prism, pyramid, sphere."""
    c = np.arange(_OBJECT_PATCH) + 0.5 - _OBJECT_PATCH / 2
    v, u = np.meshgrid(c, c, indexing="ij")
    out = np.zeros((6, 2, _OBJECT_PATCH, _OBJECT_PATCH), np.uint8)
    for size, r in enumerate((5.0, 7.5)):
        x, y = u / r, v / r
        side = np.sqrt(np.clip(1 - x * x, 0, 1))
        cylinder_cap = x * x + ((y + 0.7) / 0.2) ** 2 <= 0.5
        drawn = [
            ((y >= -1) & (y <= 0.8) & (np.abs(x) <= 0.8 * (y + 1) / 1.8),
             _lambert(x, 0, side)),                                                    # cone
            (np.maximum(np.abs(x), np.abs(y)) <= 0.8, np.where(y < -0.45, 1.0, 0.6)),  # cube
            ((np.abs(x) <= 0.7) & (np.abs(y) <= 0.9) | cylinder_cap,
             np.where(cylinder_cap, 1.0, _lambert(x / 0.7, 0, side))),               # cylinder
            ((np.abs(y) <= 0.866) & (0.866 * np.abs(x) + 0.5 * np.abs(y) <= 0.866),
             np.select([x < -0.33, x > 0.33], [0.3, 1.0], 0.65)),                     # hexagonal prism
            ((y >= -1) & (y <= 0.9) & (np.abs(x) <= (y + 1) / 1.9), np.where(x < 0, 0.3, 1.0)),  # pyramid
            _rounded(x, y, 0.0, 0.0, 0.0, 0.9),                                        # sphere
        ]
        for shape, (inside, shade) in enumerate(drawn):
            level = 3 + np.minimum((np.asarray(shade) * 3).astype(int), 2)
            out[shape, size] = np.where(inside, level, 0)
    return out


def _segment_mask(x0, y0, x1, y1, radius: float) -> np.ndarray:
    """(n, 64, 64) pixels within ``radius`` of the segments (x0, y0)-(x1, y1)."""
    y, x = _pixel_grid()
    x0, y0, x1, y1 = (np.asarray(a, np.float32).reshape(-1, 1, 1) for a in (x0, y0, x1, y1))
    dx, dy = x1 - x0, y1 - y0
    rx, ry = x - x0, y - y0
    t = np.clip((rx * dx + ry * dy) / (dx * dx + dy * dy), 0, 1)
    ex, ey = rx - t * dx, ry - t * dy
    return ex * ex + ey * ey <= np.float32(radius * radius)


def render_robot(classes: np.ndarray) -> np.ndarray:
    """MPI3D-like images (n, 3, 64, 64) of classes (object_color, object_shape, object_size,
    camera_height, background_color, horizontal_axis, vertical_axis)."""
    colour, shape, size, camera, background, horizontal, vertical = classes.T
    dy = _CAMERA_DY[camera]
    tip_x, tip_y = _ARM_X[horizontal], _ARM_Y[vertical] + dy
    keys = _mpi3d_rooms()[camera]
    keys[_segment_mask(_ARM_BASE[0], _ARM_BASE[1] + dy, tip_x, tip_y, 2.5)] = 2
    half = _OBJECT_PATCH // 2     # tips stay >= 8 px inside the image, so patches fit
    _paste(keys, _mpi3d_objects()[shape, size], tip_y - half, tip_x - half)
    room, shades = _mpi3d_palettes()
    arm = np.broadcast_to(np.array(_ARM_RGB, np.uint8), (len(classes), 1, 3))
    return _paint(keys, np.concatenate([room[background], arm, shades[colour]], axis=1))


class MPI3DStandin(_FactorStandin):
    """Stand-in for MPI3D (Gondal et al. 2019); one stand-in serves every variant."""
    name, channels = "mpi3d", 3
    factor_names, factor_sizes = FACTORS["mpi3d"]
    render = staticmethod(render_robot)


# --- CelebA: a few hundred face-like drawings, no factor grid ---------------------------
_HAIR_RGB = np.array([(30, 25, 20), (105, 65, 35), (225, 195, 115), (165, 165, 165)])  # black, brown, blond, gray
_SKIN_RGB = np.array([(250, 215, 185), (225, 180, 140), (175, 125, 90), (115, 80, 55)])


@functools.lru_cache(maxsize=4)
def _face_parameters(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20260209)
    return {"cx": rng.uniform(29, 35, n), "cy": rng.uniform(31, 37, n), "a": rng.uniform(12, 16, n),
            "b": rng.uniform(16, 20, n), "hair": rng.integers(0, 4, n), "skin": rng.integers(0, 4, n),
            "background": rng.integers(40, 230, (n, 3)), "glasses": rng.random(n) < 0.3,
            "smiling": rng.random(n) < 0.5}


class CelebAStandin(GroundTruthDataset):
    """A few hundred procedurally drawn faces with 4 true binary attributes, for tests and
    demos of CelebA code paths. No factor grid, like CelebA. (All faces are drawn on first
    use: 512 faces are 6 MB.)"""

    name, channels, has_factors = "celeba", 3, False
    source, location = "standin", "procedural"
    attribute_names = ("Black_Hair", "Blond_Hair", "Eyeglasses", "Smiling")   # CelebA's names

    def __init__(self, size: int = 512):
        self._size = size

    def __len__(self) -> int:
        return self._size

    def attributes(self, indices) -> np.ndarray:
        """(n, 4) uint8 0/1 attributes, true of the drawings."""
        p, i = _face_parameters(self._size), self._check_indices(indices)
        return np.stack([p["hair"][i] == 0, p["hair"][i] == 2, p["glasses"][i], p["smiling"][i]],
                        axis=1).astype(np.uint8)

    def _images(self, indices):
        return _faces(self._size)[indices]


@functools.lru_cache(maxsize=4)
def _faces(n: int) -> np.ndarray:
    """All n faces (n, 3, 64, 64), drawn once per process: a batch is then one gather."""
    p = _face_parameters(n)
    y, x = _pixel_grid()
    col = lambda v: v.reshape(-1, 1, 1)    # noqa: E731  per-image scalars against the grid
    a, b = col(p["a"]), col(p["b"])
    dx, dy = x - col(p["cx"]), y - col(p["cy"])
    face = (dx / a) ** 2 + (dy / b) ** 2 <= 1
    hair = (dx / (a + 3)) ** 2 + ((dy + 3) / (b + 3)) ** 2 <= 1
    eye_r = np.hypot(np.abs(dx) - 0.4 * a, dy + 0.12 * b)
    eyes = eye_r <= 2.0
    glasses = col(p["glasses"]) & ((np.abs(eye_r - 3.8) <= 0.7)
                                   | ((np.abs(dx) <= 0.4 * a - 3.8) & (np.abs(dy + 0.12 * b) <= 0.6)))
    smile = (np.abs(np.hypot(dx, dy - 0.1 * b) - 0.4 * b) <= 0.9) & (dy > 0.3 * b) & (np.abs(dx) <= 0.35 * a)
    flat = (np.abs(dy - 0.5 * b) <= 0.8) & (np.abs(dx) <= 0.3 * a)
    mouth = np.where(col(p["smiling"]), smile, flat)
    keys = np.select([eyes | glasses, mouth, face & (dy > -0.55 * b), hair], [3, 4, 2, 1], 0)
    palettes = np.stack([p["background"], _HAIR_RGB[p["hair"]], _SKIN_RGB[p["skin"]],
                         np.broadcast_to([25, 25, 30], (n, 3)), np.broadcast_to([150, 40, 50], (n, 3))], axis=1)
    return _paint(keys.astype(np.uint8), palettes.astype(np.uint8))


STANDINS = {"dsprites": SpritesStandin, "shapes3d": Shapes3DStandin, "mpi3d": MPI3DStandin,
            "celeba": CelebAStandin}
