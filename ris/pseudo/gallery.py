"""Picture report of pseudo-labels: masks overlaid on their images with the kept captions and their DoS.

:func:`write_report` takes pseudo-label records (:class:`ris.pseudo.records.PseudoRecord`, one per mask), picks a
sample of images and writes

- ``report.png``: one row per image; left, the image with every mask filled in a distinct colour, outlined and
  numbered; right, per mask (same colour) the kept captions with their DoS, best first (when no caption passes
  the filter, the best one is shown greyed out);
- ``report.html``: a static page with the same overlays and a table of **all** captions of every mask (crop
  type, sampler, DoS, UoS, CoS, kept), kept ones highlighted.

"Kept" is :func:`ris.pseudo.caption_choice.kept_flags` at the given τ (DoS > τ; the top half for single-mask
images). ``ris pseudo-report SHARD_DIR --out DIR [--tau T]`` renders it again from finished shards, e.g. at another
τ, reading the shards once. Both files are written atomically (temporary file + rename). Matplotlib is used through
its Agg canvas (no pyplot, no global backend change).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import logging
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from skimage.segmentation import find_boundaries

from ris.atomic import atomic_write
from ris.formats.files import load_rgb
from ris.pseudo.caption_choice import kept_flags
from ris.pseudo.distinctiveness import DEFAULT_TAU
from ris.pseudo.records import PseudoRecord

log = logging.getLogger(__name__)

FILL_ALPHA = 0.45
MIN_LINES = 10


@dataclass
class ReportImage:
    """One image of the report: its pixels and its records in mask order."""

    image_id: str
    pixels: np.ndarray
    records: list[PseudoRecord]


def mask_colors(count: int) -> np.ndarray:
    """``(count, 3)`` distinct RGB colours in [0, 1] (tab10, then tab20, cycling)."""
    palette = [*colormaps["tab10"].colors, *colormaps["tab20"].colors[1::2]]
    return np.array([palette[i % len(palette)] for i in range(count)], dtype=float)


def overlay_masks(pixels: np.ndarray, masks: Sequence[np.ndarray], colors: np.ndarray) -> np.ndarray:
    """``pixels`` ``(H, W, 3)`` uint8 with each mask blended in its colour and outlined; ``(H, W, 3)`` float."""
    out = pixels.astype(float) / 255.0
    for mask, color in zip(masks, colors):
        out[mask] = (1 - FILL_ALPHA) * out[mask] + FILL_ALPHA * color
    for mask, color in zip(masks, colors):
        out[find_boundaries(mask, mode="inner")] = color
    return out


def record_pixels(record: PseudoRecord, image_root: str | Path) -> np.ndarray:
    """The record's image ``(H, W, 3)`` uint8: embedded bytes if present, else ``image_root / record.image``."""
    data = record.decode_image_bytes()
    if data is None:
        pixels = load_rgb(Path(image_root) / record.image)
    else:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
    if pixels.shape[:2] != (record.height, record.width):
        raise ValueError(
            f"record {record.sample_id}: image {record.image} is {pixels.shape[0]}x{pixels.shape[1]} (HxW), the "
            f"record says {record.height}x{record.width}"
        )
    return pixels


def _image_groups(records: Iterable[PseudoRecord]) -> Iterator[list[PseudoRecord]]:
    """Consecutive records of the same image, as shards store them; an image id that comes back is an error."""
    group: list[PseudoRecord] = []
    finished: set[str] = set()
    for record in records:
        if group and record.image_id != group[0].image_id:
            finished.add(group[0].image_id)
            yield group
            group = []
        if record.image_id in finished:
            raise ValueError(f"the records of image {record.image_id} are not consecutive (record {record.sample_id})")
        group.append(record)
    if group:
        yield group


def sample_images(
    records: Iterable[PseudoRecord], image_root: str | Path, max_images: int = 6, seed: int | None = 0
) -> list[ReportImage]:
    """Pick ``max_images`` images from ``records`` (the records of an image consecutive, as in shards), in input
    order, with their masks in ``mask_index`` order: a seeded uniform sample (reservoir sampling, one pass, memory
    for ``max_images`` images only), or the first images when ``seed`` is ``None``."""
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    rng = random.Random(seed)
    chosen: list[tuple[int, list[PseudoRecord]]] = []
    for position, group in enumerate(_image_groups(records)):
        if len(chosen) < max_images:
            chosen.append((position, group))
        elif seed is None:
            break
        else:
            slot = rng.randint(0, position)
            if slot < max_images:
                chosen[slot] = (position, group)
    return [
        ReportImage(group[0].image_id, record_pixels(group[0], image_root), sorted(group, key=lambda r: r.mask_index))
        for _, group in sorted(chosen, key=lambda item: item[0])
    ]


def _dos_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _caption_lines(record: PseudoRecord, tau: float, max_captions: int) -> list[tuple[str, bool]]:
    """Lines ``(text, kept)`` for one mask: its kept captions best first, or the best caption greyed out."""
    kept = kept_flags(record, tau)
    order = sorted(range(len(record.captions)), key=lambda i: -(record.dos[i] if record.dos[i] is not None else -1e9))
    chosen = [i for i in order if kept[i]][:max_captions] or order[:1]
    return [(f"{_dos_text(record.dos[i])}  {record.captions[i].strip()}", kept[i]) for i in chosen]


def render_png(
    images: Sequence[ReportImage], path: str | Path, tau: float = DEFAULT_TAU, max_captions: int = 4
) -> Path:
    """Write the picture grid (one row per image) to ``path``."""
    if not images:
        raise ValueError("no images to report")
    blocks = []
    for item in images:
        lines: list[tuple[str, tuple[float, ...] | str, bool]] = []
        colors = mask_colors(len(item.records))
        for record, color in zip(item.records, colors):
            rule = "single mask: top half by raw CLIP score" if record.one_mask else f"DoS > {tau:g}"
            kept_count = sum(kept_flags(record, tau))
            header = f"mask {record.mask_index}: {kept_count}/{len(record.captions)} captions kept ({rule})"
            lines.append((header, tuple(color), True))
            for text, kept in _caption_lines(record, tau, max_captions):
                lines.append(("    " + text, "black" if kept else "0.55", False))
        blocks.append(lines)
    heights = [max(MIN_LINES, len(lines)) for lines in blocks]
    fig = Figure(figsize=(11, 0.24 * sum(heights) + 0.4 * len(images)))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(images), 2, width_ratios=[1, 2.6], height_ratios=heights, hspace=0.25, wspace=0.02)
    for row, (item, lines) in enumerate(zip(images, blocks)):
        masks = [r.decode_mask() for r in item.records]
        colors = mask_colors(len(masks))
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(overlay_masks(item.pixels, masks, colors), interpolation="nearest")
        for mask, color, record in zip(masks, colors, item.records):
            ys, xs = np.nonzero(mask)
            ax.text(
                xs.mean(), ys.mean(), str(record.mask_index), color="white", fontsize=9, ha="center", va="center",
                fontweight="bold", path_effects=[patheffects.withStroke(linewidth=2, foreground=tuple(color))],
            )
        ax.set_title(f"image {item.image_id}", fontsize=9, loc="left")
        ax.axis("off")
        text_ax = fig.add_subplot(grid[row, 1])
        text_ax.axis("off")
        step = 1.0 / max(MIN_LINES, len(lines))
        for i, (text, color, bold) in enumerate(lines):
            text_ax.text(
                0.0, 1.0 - (i + 0.5) * step, text, color=color, fontsize=8.5, va="center", family="monospace",
                fontweight="bold" if bold else "normal", transform=text_ax.transAxes, clip_on=True,
            )
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    tmp.replace(path)
    return path


def _png_data_uri(pixels: np.ndarray, min_side: int = 256) -> str:
    factor = max(1, int(np.ceil(min_side / max(pixels.shape[:2]))))
    image = Image.fromarray((pixels * 255).round().astype(np.uint8))
    image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(images: Sequence[ReportImage], path: str | Path, tau: float = DEFAULT_TAU) -> Path:
    """Write a static HTML page with every image's overlay and a table of all its captions to ``path``."""
    style = (
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}tr.kept{background:#e6f7e6}tr.dropped{color:#888}"
        ".sw{display:inline-block;width:12px;height:12px;margin-right:4px}section{margin-bottom:2em}"
        "img{image-rendering:pixelated;vertical-align:top;margin-right:1em}"
    )
    head = f"<!doctype html><html><head><meta charset='utf-8'><title>Pseudo-label report</title><style>{style}"
    intro = f"{len(images)} images; kept = DoS &gt; {tau:g} (top half of the raw scores for single-mask images)."
    parts = [f"{head}</style></head><body>", f"<h1>Pseudo-label report</h1><p>{intro}</p>"]
    for item in images:
        masks = [r.decode_mask() for r in item.records]
        colors = mask_colors(len(masks))
        parts.append(f"<section><h2>image {html.escape(item.image_id)}</h2>")
        parts.append(f"<img alt='overlay' src='{_png_data_uri(overlay_masks(item.pixels, masks, colors))}'>")
        parts.append(
            "<table><tr><th>mask</th><th>crop</th><th>sampler</th><th>caption</th><th>DoS</th><th>UoS</th>"
            "<th>CoS</th><th>kept</th></tr>"
        )
        for record, color in zip(item.records, colors):
            swatch = "#" + "".join(f"{round(c * 255):02x}" for c in color)
            for i, (caption, kept) in enumerate(zip(record.captions, kept_flags(record, tau))):
                parts.append(
                    f"<tr class='{'kept' if kept else 'dropped'}'><td><span class='sw' style='background:{swatch}'>"
                    f"</span>{record.mask_index}</td><td>{record.crop[i]}</td><td>{html.escape(record.sampler[i])}"
                    f"</td><td>{html.escape(caption.strip())}</td><td>{_dos_text(record.dos[i])}</td>"
                    f"<td>{_dos_text(record.uos[i])}</td><td>{_dos_text(record.cos[i])}</td>"
                    f"<td>{'yes' if kept else ''}</td></tr>"
                )
        parts.append("</table></section>")
    parts.append("</body></html>")
    path = Path(path)
    atomic_write(path, "\n".join(parts).encode("utf-8"))
    return path


def write_report(
    records: Iterable[PseudoRecord],
    out_dir: str | Path,
    image_root: str | Path,
    tau: float = DEFAULT_TAU,
    max_images: int = 6,
    max_captions: int = 4,
    seed: int | None = 0,
) -> tuple[Path, Path]:
    """Write ``report.png`` and ``report.html`` for a sample of the records' images into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = sample_images(records, image_root, max_images, seed)
    return (
        render_png(images, out_dir / "report.png", tau, max_captions),
        render_html(images, out_dir / "report.html", tau),
    )


def main(argv: Sequence[str]) -> int:
    """Entry point of ``ris pseudo-report``: the picture report of a finished shard folder."""
    from ris.pseudo.shards import ShardSet

    parser = argparse.ArgumentParser(prog="ris pseudo-report", description="Picture report of pseudo-label shards.")
    parser.add_argument("shards", help="shard folder written by `ris generate` (local path or fsspec URL)")
    parser.add_argument("--out", required=True, help="folder for report.png and report.html")
    parser.add_argument("--image-root", default=None, help="root of the images (default: the manifest's)")
    parser.add_argument("--tau", type=float, default=DEFAULT_TAU, help="DoS threshold (strict >)")
    parser.add_argument("--max-images", type=int, default=6)
    parser.add_argument("--max-captions", type=int, default=4, help="kept captions shown per mask in the PNG")
    parser.add_argument("--seed", type=int, default=0, help="image sample seed; -1 = the first images")
    args = parser.parse_args(list(argv))
    shards = ShardSet(args.shards, args.image_root)
    png, page = write_report(
        shards, args.out, shards.image_root, args.tau, args.max_images, args.max_captions,
        None if args.seed < 0 else args.seed,
    )
    log.info("report written: %s, %s", png, page)
    return 0
