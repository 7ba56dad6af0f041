"""Reading the files the formats are made of: JSON annotation files and image files.

Errors name the file: a missing file raises ``FileNotFoundError``, an undecodable one ``ValueError``; a sample's
missing image is a :class:`~ris.formats.errors.BadSampleError` (:func:`require_image_file`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ris.formats.errors import BadSampleError


def read_json(path: Path, what: str) -> Any:
    """The parsed content of the JSON file ``path`` (``what`` names it in the missing-file error)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def require_image_file(path: Path, sample: str, image_id: int, exists: dict[Path, bool]) -> None:
    """Raise :class:`BadSampleError` for ``sample`` when the image file ``path`` is missing; ``exists`` caches the
    answers (many samples share an image)."""
    if path not in exists:
        exists[path] = path.is_file()
    if not exists[path]:
        raise BadSampleError(str(path), sample, f"image file of image {image_id} not found")


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (grayscale, palette and RGBA images are converted; alpha is
    dropped). Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it cannot be
    decoded (not an image, truncated); the decoder's own error is the ``ValueError``'s ``__cause__``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return np.array(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot decode the image ({err})") from err
