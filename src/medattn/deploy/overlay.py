"""The attention overlay the service returns: a map as a heat map over the image the model saw, as PNG."""
from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from PIL import Image


def scale_unit(m: np.ndarray) -> np.ndarray:
    """Min-max scale a map to [0, 1] (a constant map becomes zeros), float32."""
    m = np.asarray(m, np.float32)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def overlay_rgb(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, size: int | None = None,
                cmap: str = "jet") -> np.ndarray:
    """H x W x 3 uint8 image and an h x w map -> ``size`` x ``size`` x 3 uint8 blend (default the image's
    size): the image and the min-max scaled map are resized bilinearly, the map coloured with ``cmap``."""
    size = size or image.shape[0]
    base = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR), np.float32)
    m = Image.fromarray(scale_unit(heat)).resize((size, size), Image.Resampling.BILINEAR)
    colour = colormaps[cmap](np.clip(np.asarray(m), 0.0, 1.0))[..., :3] * 255.0
    return np.clip((1.0 - alpha) * base + alpha * colour, 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An H x W x 3 uint8 array as PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()
