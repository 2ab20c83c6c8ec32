"""Image augmentation in numpy/Pillow with Keras ImageDataGenerator semantics.

One random affine transform per view, built like Keras' `apply_affine_transform`:
rotation (degrees), shift (fraction of height/width), shear (degrees), zoom (an independent
scale per axis drawn from [1-zoom, 1+zoom]; >1 shows more of the scene), composed around the
image centre and applied once with `PIL.Image.transform(AFFINE, BILINEAR)` (Keras' default
interpolation order is 1), then optional flips with probability 0.5 each.

Pixels moved in from outside the image are filled like Keras: 'nearest' repeats the edge
pixel (ImageDataGenerator's default), 'reflect' mirrors the image (the RandomRotation layer's
default). PIL can only fill a constant, so the image is first padded with numpy (`edge` or
`symmetric`) by exactly as much as the transform reaches outside it.

Randomness comes from a generator seeded per (run seed, image, view): a view is the same
image every time, which is what lets `edgetl.train.extract` cache it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

PAD_MODES = {"nearest": "edge", "reflect": "symmetric"}


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random transform (the augmentation fields of TrainConfig)."""

    rotation: float = 0.0
    width_shift: float = 0.0
    height_shift: float = 0.0
    shear: float = 0.0
    zoom: float = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    fill_mode: str = "nearest"

    @classmethod
    def from_config(cls, config) -> AugmentParams:
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})

    @property
    def active(self) -> bool:
        return any(
            (
                self.rotation,
                self.width_shift,
                self.height_shift,
                self.shear,
                self.zoom,
                self.horizontal_flip,
                self.vertical_flip,
            )
        )

    def digest(self, seed: int) -> str:
        """Identity of the views these settings produce with this seed (a feature-cache key part)."""
        text = json.dumps({**asdict(self), "seed": seed, "algo": 1}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def view_rng(seed: int, image_key: str, view: int) -> np.random.Generator:
    """A generator that depends only on (seed, image identity, view index)."""
    return np.random.default_rng([seed, view, int(image_key[:15], 16) if _is_hex(image_key) else _hash(image_key)])


def _is_hex(text: str) -> bool:
    return len(text) >= 15 and all(c in "0123456789abcdef" for c in text[:15])


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


def random_matrix(params: AugmentParams, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """3x3 matrix mapping output (row, col) to input (row, col), as Keras' random_transform draws it."""
    theta = np.deg2rad(rng.uniform(-params.rotation, params.rotation)) if params.rotation else 0.0
    tx = rng.uniform(-params.height_shift, params.height_shift) * height if params.height_shift else 0.0
    ty = rng.uniform(-params.width_shift, params.width_shift) * width if params.width_shift else 0.0
    shear = np.deg2rad(rng.uniform(-params.shear, params.shear)) if params.shear else 0.0
    zx, zy = rng.uniform(1 - params.zoom, 1 + params.zoom, 2) if params.zoom else (1.0, 1.0)
    rotation = np.array([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    shear_m = np.array([[1, -math.sin(shear), 0], [0, math.cos(shear), 0], [0, 0, 1]])
    zoom_m = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    matrix = rotation @ shift @ shear_m @ zoom_m
    # around the centre (Keras transform_matrix_offset_center)
    o_r, o_c = height / 2 - 0.5, width / 2 - 0.5
    to_centre = np.array([[1, 0, o_r], [0, 1, o_c], [0, 0, 1]])
    back = np.array([[1, 0, -o_r], [0, 1, -o_c], [0, 0, 1]])
    return to_centre @ matrix @ back


def apply_matrix(pixels: np.ndarray, matrix: np.ndarray, fill_mode: str = "nearest") -> np.ndarray:
    """Warp a uint8 HxWx3 image with an output->input (row, col) matrix, filling per fill_mode."""
    height, width = pixels.shape[:2]
    # PIL's AFFINE data maps output (x=col, y=row) -> input (x, y): swap rows/cols of the matrix.
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    m = swap @ matrix @ swap
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float).T
    reach = m @ corners
    pad_x = int(math.ceil(max(0.0, -reach[0].min(), reach[0].max() - (width - 1)))) + 2
    pad_y = int(math.ceil(max(0.0, -reach[1].min(), reach[1].max() - (height - 1)))) + 2
    padded = np.pad(pixels, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode=PAD_MODES[fill_mode])
    # PIL samples pixel centres at +0.5; shift into the padded frame.
    a, b, c = m[0]
    d, e, f = m[1]
    data = (a, b, c + pad_x + 0.5 * (1 - a - b), d, e, f + pad_y + 0.5 * (1 - d - e))
    out = Image.fromarray(padded).transform((width, height), Image.AFFINE, data, resample=Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def augment(pixels: np.ndarray, params: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    """One random view of a uint8 HxWx3 image (returns a new array)."""
    height, width = pixels.shape[:2]
    matrix = random_matrix(params, height, width, rng)
    out = pixels if np.allclose(matrix, np.eye(3)) else apply_matrix(pixels, matrix, params.fill_mode)
    if params.horizontal_flip and rng.random() < 0.5:
        out = out[:, ::-1]
    if params.vertical_flip and rng.random() < 0.5:
        out = out[::-1]
    return np.ascontiguousarray(out)
