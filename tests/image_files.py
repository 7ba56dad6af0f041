"""Image files as users have them, written for tests: EXIF-rotated JPEGs, 16-bit PNGs, decompression-bomb headers."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def quadrant_image(height: int, width: int) -> np.ndarray:
    """``(H, W, 3)`` uint8: red top-left, green top-right, blue bottom-left, white bottom-right quadrants."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    h, w = height // 2, width // 2
    pixels[:h, :w] = (255, 0, 0)
    pixels[:h, w:] = (0, 255, 0)
    pixels[h:, :w] = (0, 0, 255)
    pixels[h:, w:] = (255, 255, 255)
    return pixels


def save_exif_rotated_jpeg(path: Path, stored: np.ndarray, orientation: int = 6) -> Path:
    """Save ``stored`` pixels as a JPEG whose EXIF orientation tag says how to display them (6: rotate 90° clockwise,
    as a phone held upright stores a portrait photo)."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    return path


def save_16bit_png(path: Path, values: np.ndarray) -> Path:
    """Save ``(H, W)`` uint16 values as a 16-bit grayscale PNG."""
    Image.fromarray(values.astype(np.uint16)).save(path)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb_header(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny (74-byte) PNG whose header claims ``width`` × ``height`` RGB pixels and whose data is cut short."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    start = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    pixels = zlib.compress(b"\x00" * 4096)
    return start + _chunk(b"IDAT", pixels[: 74 - len(start) - 24]) + _chunk(b"IEND", b"")
