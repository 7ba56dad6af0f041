"""The one image decoder of the project: image files as users have them become ``(H, W, 3)`` uint8 RGB.

Every reader of pixels (the RIS datamodules, the pseudo-label datamodule, ``ris generate``'s image list, the
report) decodes through :func:`decode_rgb` (a path or a file's bytes), docs/data.md §1.5:

- **orientation**: the EXIF orientation tag is applied (``ImageOps.exif_transpose``), so a phone photo stored
  sideways is decoded upright — as OpenCV's ``imread`` (the official CRIS / Pseudo-RIS loader) does;
- **high bit depth**: 16-bit (``I;16*``) and 32-bit integer (``I``) images are scaled from the 16-bit range to
  8 bits (``v · 255 / 65535``, rounded; 32-bit values are clipped to 0…65535 first, as PNG stores at most 16 bits),
  and float images (``F``) from 0…1 when their values lie in it (else clipped to 0…255), instead of PIL's clipping
  ``convert("RGB")`` that turns a 16-bit photo flat white;
- **colour**: grayscale, palette (with or without transparency), CMYK, YCbCr, LA and RGBA images become RGB; alpha
  is dropped;
- **pixel budget**: an image whose header declares more than ``max_pixels`` pixels (default
  :data:`DEFAULT_MAX_PIXELS`, PIL's own limit of about 89.5 million, e.g. 9459 × 9459) is refused *before* it is
  decoded, with an :class:`ImageTooLargeError`; so is anything PIL refuses as a decompression bomb. A 74-byte PNG
  header claiming 20000 × 20000 pixels therefore costs one error, not 1.2 GB;
- a file that is missing raises ``FileNotFoundError`` (a broken symbolic link says so), one that cannot be decoded
  (not an image, truncated) a :class:`ImageDecodeError` naming the file; the decoder's own error is its cause.

Callers turn these errors into a counted skip with the reason (``ris generate``) or a bad sample under
``on_bad_sample`` (the datamodules).
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 89_478_485
"""The default decoded-size budget in pixels (PIL's ``MAX_IMAGE_PIXELS`` default)."""


class ImageDecodeError(ValueError):
    """An image file that cannot be decoded; the message names the file and the reason."""


class ImageTooLargeError(ImageDecodeError):
    """An image above the pixel budget (refused before decoding)."""


def _to_rgb(image: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 of a loaded PIL image of any mode (module docstring)."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.float64)
        gray = np.round(np.clip(values, 0, 65535) * (255 / 65535)).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scaled = values * 255 if values.size and values.min() >= 0 and values.max() <= 1 else values
        gray = np.round(np.clip(scaled, 0, 255)).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"))


def decode_rgb(source: str | Path | bytes, name: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS
               ) -> np.ndarray:
    """Decode an image file (a path, or the file's bytes) as ``(H, W, 3)`` uint8 RGB, upright (module docstring).

    Args:
        source: the file, or its bytes (e.g. an image embedded in a pseudo-label record).
        name: how errors name the image (default: the path, or ``<bytes>``).
        max_pixels: the pixel budget (``None`` = no budget besides PIL's decompression-bomb check).

    Raises:
        FileNotFoundError: the file (or a symbolic link's target) does not exist.
        ImageTooLargeError: the declared size is above ``max_pixels`` or PIL refuses it as a decompression bomb.
        ImageDecodeError: anything else that stops decoding (not an image, truncated, corrupt).
    """
    if isinstance(source, bytes):
        name = name or "<bytes>"
        handle: str | Path | io.BytesIO = io.BytesIO(source)
    else:
        path = Path(source)
        name = name or str(path)
        if path.is_symlink() and not path.exists():
            raise FileNotFoundError(f"{name}: broken symbolic link (to {path.readlink()})")
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {name}")
        handle = path
    try:
        with warnings.catch_warnings():
            # the budget below replaces PIL's warning; its hard error is caught as too large
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageTooLargeError(
                        f"{name}: {width}x{height} (WxH) = {width * height / 1e6:.1f} MP is above the pixel budget of "
                        f"{max_pixels / 1e6:.1f} MP (max_pixels); downscale the file or raise the budget"
                    )
                image.load()
                return np.array(_to_rgb(ImageOps.exif_transpose(image)))  # writable, contiguous
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(found.group(1)) / 1e6:.1f} MP" if found else "the declared size"
        raise ImageTooLargeError(
            f"{name}: {size} is above PIL's decompression-bomb limit and any pixel budget (max_pixels); downscale the "
            "file"
        ) from err
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, KeyError, IndexError) as err:
        raise ImageDecodeError(f"{name}: cannot decode the image ({type(err).__name__}: {err})") from err
