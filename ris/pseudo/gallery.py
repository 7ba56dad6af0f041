"""The pseudo-label gallery and picture report: masks overlaid on their images with their captions and scores.

:func:`write_report` takes pseudo-label records (:class:`ris.pseudo.records.PseudoRecord`, one per mask), picks a
sample of images and writes (docs/pseudo_labels.md, "Gallery")

- ``report.html``: the gallery, one self-contained file (images inlined as ``data:`` PNGs, inline CSS and script,
  nothing fetched). At the top the generation's summary (:class:`GalleryContext`: the manifest's totals, τ,
  provenance id); per image the overlay, each mask numbered by a label at its pole of inaccessibility
  (:func:`label_anchors`), labels pushed apart where they would overlap (:func:`spread_labels`), and a table of
  **all** captions of every mask (crop type, sampler, DoS, UoS, CoS, kept); client-side filters (kept only,
  sampler, crop type, DoS range) and sorting (by best DoS, kept captions, id); at the bottom the skipped images
  with their reasons;
- ``report.png``: the grid for papers, one row per image; left, the overlay with the same labels; right, per mask
  (same colour) the kept captions with their DoS, best first (when no caption passes the filter, the best one is
  shown greyed out).

"Kept" is :func:`ris.pseudo.caption_choice.kept_flags` at the given τ (DoS > τ; the top half for single-mask
images, whose ``dos`` holds the raw CLIP score, docs/method.md §6.3).
``ris pseudo-report SHARD_DIR --out DIR [--tau T]`` renders both again from finished shards, e.g. at another τ,
reading the shards once. Both files are written atomically (temporary file + rename). Matplotlib is used through
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from scipy.ndimage import distance_transform_edt
from skimage.segmentation import find_boundaries

from ris.atomic import atomic_write
from ris.pseudo.caption_choice import kept_flags
from ris.pseudo.distinctiveness import DEFAULT_TAU
from ris.pseudo.records import PseudoRecord
from ris.pseudo.shards.manifest import SkippedImage, skipped_images
from ris.pseudo.shards.stats import GenerationStats

log = logging.getLogger(__name__)

FILL_ALPHA = 0.45
LABEL_POINTS = 9
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


def label_anchors(masks: Sequence[np.ndarray]) -> np.ndarray:
    """``(K, 2)`` label points ``(x, y)`` in image pixels (pixel centres): each mask's pole of inaccessibility, the
    pixel farthest from the mask's border (the maximum of its distance transform, the image edge counting as
    border), which lies inside the mask even for rings and crescents, unlike the centroid."""
    points = np.zeros((len(masks), 2))
    for k, mask in enumerate(masks):
        if not mask.any():
            continue
        distance = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(distance)), mask.shape)
        points[k] = (x + 0.5, y + 0.5)
    return points


def label_width(text: str) -> float:
    """Width in gallery pixels of a mask label showing ``text`` (bold 12 px digits on a rounded badge)."""
    return 10.0 + 7.5 * len(text)


def _overlaps(centres: np.ndarray, sizes: np.ndarray, gap: float) -> list[tuple[int, int, np.ndarray]]:
    """Pairs ``(i, j, overlap)``, ``i < j``, of boxes (centres ``(K, 2)``, sizes ``(K, 2)``) closer than ``gap``;
    ``overlap`` is the ``(2,)`` depth along x and y. All pairs at once: ``(K, K, 2)`` depths."""
    depth = (sizes[:, None] + sizes[None]) / 2 + gap - np.abs(centres[:, None] - centres[None])
    rows, cols = np.nonzero(np.triu((depth > 0).all(axis=2), k=1))
    return [(int(i), int(j), depth[i, j]) for i, j in zip(rows, cols)]


def spread_labels(
    anchors: np.ndarray, sizes: np.ndarray, bounds: tuple[float, float], gap: float = 1.0, rounds: int = 500
) -> np.ndarray:
    """Label centres ``(K, 2)`` near ``anchors`` ``(K, 2)`` whose boxes (``sizes`` ``(K, 2)``, width and height)
    do not overlap and stay inside ``bounds`` ``(width, height)``.

    Each round pushes every overlapping pair apart, half each, along the axis of the shallower overlap (the other
    axis when the boundary blocks that one; labels on the same point separate vertically, the later one down).
    Stops when nothing overlaps or after ``rounds`` rounds (only when the labels cannot all fit)."""
    centres = anchors.astype(float).copy()
    low, high = sizes / 2, np.asarray(bounds, dtype=float) - sizes / 2
    high = np.maximum(high, low)
    centres = np.clip(centres, low, high)
    for _ in range(rounds):
        pairs = _overlaps(centres, sizes, gap)
        if not pairs:
            break
        for i, j, depth in pairs:
            delta = centres[j] - centres[i]
            for axis in np.argsort(depth) if delta.any() else (1, 0):
                sign = np.sign(delta[axis]) or 1.0
                step = np.zeros(2)
                step[axis] = sign * (depth[axis] / 2 + 0.01)
                new_i = np.clip(centres[i] - step, low[i], high[i])
                new_j = np.clip(centres[j] + step, low[j], high[j])
                if np.abs(new_j - new_i)[axis] > np.abs(delta[axis]):
                    centres[i], centres[j] = new_i, new_j
                    break
    return centres


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
        ReportImage(group[0].image_id, group[0].load_image(image_root), sorted(group, key=lambda r: r.mask_index))
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


def _png_label_centres(
    ax: Axes, shape: tuple[int, int], masks: Sequence[np.ndarray], texts: Sequence[str]
) -> np.ndarray:
    """Label centres ``(K, 2)`` in image pixels for the PNG: the masks' poles spread apart at the axes' scale."""
    ax.apply_aspect()
    box = ax.get_window_extent()
    per_pixel = min(box.width / shape[1], box.height / shape[0])  # figure pixels per image pixel
    glyph = LABEL_POINTS * ax.figure.dpi / 72
    sizes = np.array([[(0.7 * len(t) + 0.5) * glyph, 1.3 * glyph] for t in texts]) / per_pixel
    return spread_labels(label_anchors(masks), sizes, (shape[1], shape[0]))


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
        texts = [str(r.mask_index) for r in item.records]
        for text, centre, color in zip(texts, _png_label_centres(ax, item.pixels.shape[:2], masks, texts), colors):
            ax.text(
                centre[0], centre[1], text, color="white", fontsize=LABEL_POINTS, ha="center", va="center",
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


DISPLAY_MIN_SIDE = 256
DISPLAY_MAX_SIDE = 560
LABEL_HEIGHT = 18.0
SKIPPED_SHOWN = 1000
"""Skipped images listed in the gallery; the rest are counted (all are in the per-process manifests)."""


def display_scale(height: int, width: int) -> float:
    """Factor from image pixels to gallery pixels: small images are enlarged by an integer factor (nearest
    neighbour, pixels stay sharp) to a longer side of at least ``DISPLAY_MIN_SIDE``, large ones reduced to
    ``DISPLAY_MAX_SIDE``."""
    longest = max(height, width)
    if longest < DISPLAY_MIN_SIDE:
        return float(int(np.ceil(DISPLAY_MIN_SIDE / longest)))
    return min(1.0, DISPLAY_MAX_SIDE / longest)


def _png_data_uri(overlay: np.ndarray, scale: float) -> str:
    """``overlay`` ``(H, W, 3)`` float in [0, 1] resized by ``scale``, as a PNG ``data:`` URI."""
    image = Image.fromarray((overlay * 255).round().astype(np.uint8))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.NEAREST if scale >= 1 else Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _hex(color: np.ndarray) -> str:
    return "#" + "".join(f"{round(float(c) * 255):02x}" for c in color)


def _text_color(color: np.ndarray) -> str:
    """Black or white, whichever reads better on ``color`` (relative luminance, sRGB weights)."""
    return "#000" if float(np.dot(color, [0.2126, 0.7152, 0.0722])) > 0.5 else "#fff"


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _crop_name(crop: int, margins: Sequence[float] | None) -> str:
    """``crop 0 (masked ×1.0)`` / ``crop 2 (context ×1.1)`` from the provenance's margins (docs/method.md §3)."""
    kind = "masked" if crop == 0 else "context"
    factor = f" ×{margins[crop]:g}" if margins is not None and 0 <= crop < len(margins) else ""
    return f"crop {crop} ({kind}{factor})"


@dataclass
class GalleryContext:
    """What the gallery shows besides the sampled images: the summary rows (``(quantity, value)``), the
    provenance id, the crop margins (for crop names) and the skipped images."""

    summary: list[tuple[str, str]]
    provenance_id: str | None = None
    margins: list[float] | None = None
    skipped: list[SkippedImage] = field(default_factory=list)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], skipped: Sequence[SkippedImage] = ()) -> GalleryContext:
        """The context of a merged ``manifest.json`` (totals, τ, provenance) and the folder's skipped images."""
        totals = GenerationStats.from_dict(manifest["totals"])
        rows = [*totals.summary_rows(manifest["tau"], len(manifest["shards"])),
                ("complete", "yes" if manifest.get("complete", True) else "no (rerun the generation to finish)")]
        margins = manifest.get("provenance", {}).get("margins")
        return cls(rows, manifest.get("provenance_id"), margins, list(skipped))


def _summary_html(images: Sequence[ReportImage], tau: float, context: GalleryContext) -> str:
    """The header: the generation's counts, τ, provenance and what this gallery shows."""
    captions = sum(len(r.captions) for item in images for r in item.records)
    kept = sum(sum(kept_flags(r, tau)) for item in images for r in item.records)
    shown = (f"{len(images)} images, {sum(len(i.records) for i in images)} masks, {captions} captions "
             f"({kept} kept at τ = {tau:g}: DoS &gt; τ; the top half of the raw CLIP scores for single-mask images)")
    rows = [("τ of this gallery", f"{tau:g}"), *context.summary]
    if context.provenance_id:
        rows.append(("generator provenance id", context.provenance_id))
    cells = "".join(f"<tr><th>{html.escape(k.strip())}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table id='summary'>{cells}</table><p>In this gallery: {shown}.</p>"


def _card_html(item: ReportImage, order: int, tau: float, margins: Sequence[float] | None) -> str:
    """One image card: the overlay with its mask labels and the table of every caption of every mask."""
    masks = [r.decode_mask() for r in item.records]
    colors = mask_colors(len(masks))
    scale = display_scale(*item.pixels.shape[:2])
    width, height = round(item.pixels.shape[1] * scale), round(item.pixels.shape[0] * scale)
    texts = [str(r.mask_index) for r in item.records]
    anchors = label_anchors(masks) * scale
    sizes = np.array([[label_width(t), LABEL_HEIGHT] for t in texts])
    centres = spread_labels(anchors, sizes, (width, height))
    lines, labels = [], []
    for text, anchor, centre, size, color in zip(texts, anchors, centres, sizes, colors):
        if np.hypot(*(centre - anchor)) > 3:
            lines.append(f"<line x1='{anchor[0]:.1f}' y1='{anchor[1]:.1f}' x2='{centre[0]:.1f}' y2='{centre[1]:.1f}' "
                         f"stroke='{_hex(color)}'/><circle cx='{anchor[0]:.1f}' cy='{anchor[1]:.1f}' r='2.5' "
                         f"fill='{_hex(color)}'/>")
        left, top = centre - size / 2
        labels.append(f"<span class='label' data-mask='{text}' style='left:{left:.1f}px;top:{top:.1f}px;"
                      f"width:{size[0]:.0f}px;background:{_hex(color)};color:{_text_color(color)}'>{text}</span>")
    rows = []
    for record, color in zip(item.records, colors):
        kept = kept_flags(record, tau)
        by_score = sorted(range(len(record.captions)), key=lambda i: -(record.dos[i] if record.dos[i] is not None
                                                                         else -1e9))
        for i in by_score:
            dos = None if record.one_mask else record.dos[i]
            score = (f"<span title='single-mask image: the raw CLIP score, not a DoS'>{_dos_text(record.dos[i])}*"
                     f"</span>" if record.one_mask else _dos_text(record.dos[i]))
            rows.append(
                f"<tr class='cap {'kept' if kept[i] else 'dropped'}' data-order='{len(rows)}' "
                f"data-mask='{record.mask_index}' data-kept='{int(kept[i])}' "
                f"data-sampler='{html.escape(record.sampler[i])}' data-crop='{record.crop[i]}' "
                f"data-dos='{_score(dos)}'><td><span class='sw' style='background:{_hex(color)}'></span>"
                f"{record.mask_index}</td><td>{html.escape(_crop_name(record.crop[i], margins))}</td>"
                f"<td>{html.escape(record.sampler[i])}</td><td>{html.escape(record.captions[i].strip())}</td>"
                f"<td>{score}</td><td>{_dos_text(record.uos[i])}</td><td>{_dos_text(record.cos[i])}</td>"
                f"<td>{'yes' if kept[i] else ''}</td></tr>"
            )
    captions = sum(len(r.captions) for r in item.records)
    kept_count = sum(sum(kept_flags(r, tau)) for r in item.records)
    return (
        f"<article class='card' data-order='{order}' data-image-id='{html.escape(item.image_id)}'>"
        f"<h2>image {html.escape(item.image_id)} <small>{len(item.records)} masks · {kept_count}/{captions} "
        f"captions kept</small></h2><div class='pair'>"
        f"<div class='figure' style='width:{width}px;height:{height}px'>"
        f"<img alt='masks of image {html.escape(item.image_id)}' width='{width}' height='{height}' "
        f"src='{_png_data_uri(overlay_masks(item.pixels, masks, colors), scale)}'>"
        f"<svg width='{width}' height='{height}'>{''.join(lines)}</svg>{''.join(labels)}</div>"
        f"<table class='captions'><thead><tr><th>mask</th><th>crop</th><th>sampler</th><th>caption</th><th>DoS</th>"
        f"<th>UoS</th><th>CoS</th><th>kept</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div></article>"
    )


def _skipped_html(skipped: Sequence[SkippedImage]) -> str:
    """The skipped images with their reasons (the first ``SKIPPED_SHOWN``, then how many more)."""
    if not skipped:
        return "<section id='skipped'><h2>Skipped images (0)</h2></section>"
    rows = "".join(
        f"<tr class='skip'><td>{html.escape(s.image_id)}</td><td>{html.escape(s.path)}</td>"
        f"<td>{html.escape(s.reason)}</td><td>{html.escape(' '.join(s.message.split()))}</td></tr>"
        for s in skipped[:SKIPPED_SHOWN]
    )
    more = (f"<p>… and {len(skipped) - SKIPPED_SHOWN} more (all are listed in the folder's manifest-r*.json).</p>"
            if len(skipped) > SKIPPED_SHOWN else "")
    return (f"<section id='skipped'><h2>Skipped images ({len(skipped)})</h2><table><thead><tr><th>image</th>"
            f"<th>file</th><th>reason</th><th>message</th></tr></thead><tbody>{rows}</tbody></table>{more}</section>")


def _options(values: Iterable[tuple[str, str]]) -> str:
    return "<option value=''>all</option>" + "".join(
        f"<option value='{html.escape(v)}'>{html.escape(label)}</option>" for v, label in values
    )


def _controls_html(images: Sequence[ReportImage], margins: Sequence[float] | None) -> str:
    """The filter and sort controls (read by the page's script)."""
    samplers = sorted({s for item in images for r in item.records for s in r.sampler})
    crops = sorted({c for item in images for r in item.records for c in r.crop})
    return (
        "<form id='controls' onsubmit='return false'>"
        "<label><input type='checkbox' id='f-kept'> kept only</label>"
        f"<label>sampler <select id='f-sampler'>{_options((s, s) for s in samplers)}</select></label>"
        f"<label>crop type <select id='f-crop'>{_options((str(c), _crop_name(c, margins)) for c in crops)}"
        "</select></label>"
        "<label title='multi-mask captions only: single-mask images have a raw CLIP score (marked *), no DoS'>"
        "DoS from <input type='number' step='0.01' id='f-dos-min'> to <input type='number' step='0.01' "
        "id='f-dos-max'></label>"
        "<label>images <select id='f-sort'><option value='order'>in sample order</option>"
        "<option value='dos-desc'>best shown DoS, high to low</option>"
        "<option value='dos-asc'>best shown DoS, low to high</option>"
        "<option value='kept-desc'>most kept captions shown</option>"
        "<option value='id'>by image id</option></select></label>"
        "<label>captions <select id='f-rows'><option value='mask'>by mask, best DoS first</option>"
        "<option value='dos-desc'>by DoS, high to low</option></select></label>"
        "<button type='button' id='f-reset'>reset</button></form><p id='status'></p>"
    )


GALLERY_STYLE = """
body{font-family:system-ui,sans-serif;margin:1em;color:#222}h1{margin:0 0 .3em}h2{font-size:1.05em;margin:.2em 0}
h2 small{font-weight:normal;color:#666}[hidden]{display:none!important}
#summary{border-collapse:collapse;font-size:13px;margin-bottom:.5em}#summary th{text-align:left;font-weight:normal;
color:#555;padding:1px 12px 1px 0}#summary td{font-variant-numeric:tabular-nums}
#controls{position:sticky;top:0;background:#f4f4f4;border:1px solid #ddd;padding:6px 8px;display:flex;flex-wrap:wrap;
gap:6px 16px;font-size:13px;z-index:5}#controls input[type=number]{width:5em}#status{font-size:13px;color:#444}
.card{border-top:1px solid #ccc;padding:.6em 0}.pair{display:flex;gap:1em;align-items:flex-start;flex-wrap:wrap}
.figure{position:relative;flex:none}.figure img{display:block;image-rendering:pixelated}
.figure svg{position:absolute;left:0;top:0;pointer-events:none}.figure line{stroke-width:1.5}
.label{position:absolute;height:18px;line-height:18px;text-align:center;font:bold 12px system-ui,sans-serif;
border-radius:9px;border:1px solid rgba(0,0,0,.6);box-sizing:border-box}.label.faded{opacity:.25}
table.captions,#skipped table{border-collapse:collapse;font-size:12.5px}
.captions td,.captions th,#skipped td,#skipped th{border:1px solid #ddd;padding:1px 6px;text-align:left}
.captions td:nth-child(n+5){font-variant-numeric:tabular-nums;text-align:right}
tr.kept{background:#e7f6e7}tr.dropped{color:#888}.sw{display:inline-block;width:11px;height:11px;margin-right:4px;
vertical-align:-1px;border:1px solid rgba(0,0,0,.4)}
"""

GALLERY_SCRIPT = """
(function () {
  const $ = (id) => document.getElementById(id);
  const main = $('cards');
  const cards = Array.from(main.querySelectorAll('article.card'));
  const total = main.querySelectorAll('tr.cap').length;
  const value = (input) => (input.value === '' ? null : Number(input.value));
  const dosOf = (row) => (row.dataset.dos === '' ? null : Number(row.dataset.dos));
  function apply() {
    const keptOnly = $('f-kept').checked, sampler = $('f-sampler').value, crop = $('f-crop').value;
    const lo = value($('f-dos-min')), hi = value($('f-dos-max'));
    let shownCards = 0, shownRows = 0;
    for (const card of cards) {
      let shown = 0, best = null, kept = 0;
      const masks = new Set();
      const rows = Array.from(card.querySelectorAll('tr.cap'));
      for (const row of rows) {
        const dos = dosOf(row);
        const inRange = (lo === null && hi === null)
          || (dos !== null && (lo === null || dos >= lo) && (hi === null || dos <= hi));
        const ok = (!keptOnly || row.dataset.kept === '1') && (sampler === '' || row.dataset.sampler === sampler)
          && (crop === '' || row.dataset.crop === crop) && inRange;
        row.hidden = !ok;
        if (ok) {
          shown += 1; kept += row.dataset.kept === '1' ? 1 : 0; masks.add(row.dataset.mask);
          if (dos !== null && (best === null || dos > best)) best = dos;
        }
      }
      const key = $('f-rows').value === 'dos-desc'
        ? (row) => [-(dosOf(row) ?? -Infinity), Number(row.dataset.order)]
        : (row) => [Number(row.dataset.order), 0];
      rows.sort((a, b) => { const x = key(a), y = key(b); return x[0] - y[0] || x[1] - y[1]; });
      const body = card.querySelector('tbody');
      rows.forEach((row) => body.appendChild(row));
      for (const label of card.querySelectorAll('.label')) {
        label.classList.toggle('faded', !masks.has(label.dataset.mask));
      }
      card.hidden = shown === 0;
      card.dataset.best = best === null ? '' : String(best);
      card.dataset.kept = String(kept);
      shownCards += shown > 0 ? 1 : 0; shownRows += shown;
    }
    const sort = $('f-sort').value;
    const best = (card) => (card.dataset.best === '' ? null : Number(card.dataset.best));
    const order = (card) => Number(card.dataset.order);
    const compare = {
      'order': (a, b) => order(a) - order(b),
      'dos-desc': (a, b) => (best(b) ?? -Infinity) - (best(a) ?? -Infinity) || order(a) - order(b),
      'dos-asc': (a, b) => (best(a) ?? Infinity) - (best(b) ?? Infinity) || order(a) - order(b),
      'kept-desc': (a, b) => Number(b.dataset.kept) - Number(a.dataset.kept) || order(a) - order(b),
      'id': (a, b) => a.dataset.imageId.localeCompare(b.dataset.imageId, undefined, {numeric: true}),
    }[sort];
    cards.slice().sort(compare).forEach((card) => main.appendChild(card));
    $('status').textContent = 'showing ' + shownCards + ' of ' + cards.length + ' images, ' + shownRows + ' of '
      + total + ' captions';
  }
  for (const id of ['f-kept', 'f-sampler', 'f-crop', 'f-dos-min', 'f-dos-max', 'f-sort', 'f-rows']) {
    $(id).addEventListener('input', apply);
    $(id).addEventListener('change', apply);
  }
  $('f-reset').addEventListener('click', () => { $('controls').reset(); apply(); });
  apply();
})();
"""


def render_html(
    images: Sequence[ReportImage], path: str | Path, tau: float = DEFAULT_TAU, context: GalleryContext | None = None
) -> Path:
    """Write the self-contained gallery page (images inlined as ``data:`` URIs, inline CSS and script, nothing
    fetched) to ``path``: the summary, the filter/sort controls, one card per image and the skipped images."""
    context = context or GalleryContext([])
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Pseudo-label gallery</title>",
        f"<style>{GALLERY_STYLE}</style></head><body><h1>Pseudo-label gallery</h1>",
        _summary_html(images, tau, context),
        _controls_html(images, context.margins),
        "<main id='cards'>",
        *(_card_html(item, order, tau, context.margins) for order, item in enumerate(images)),
        "</main>",
        _skipped_html(context.skipped),
        f"<script>{GALLERY_SCRIPT}</script></body></html>",
    ]
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
    context: GalleryContext | None = None,
) -> tuple[Path, Path]:
    """Write ``report.png`` and the gallery ``report.html`` for a sample of the records' images into ``out_dir``;
    ``context`` (:meth:`GalleryContext.from_manifest`) adds the generation's summary and skipped images."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = sample_images(records, image_root, max_images, seed)
    return (
        render_png(images, out_dir / "report.png", tau, max_captions),
        render_html(images, out_dir / "report.html", tau, context),
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
    context = GalleryContext.from_manifest(shards.manifest, skipped_images(args.shards))
    png, page = write_report(
        shards, args.out, shards.image_root, args.tau, args.max_images, args.max_captions,
        None if args.seed < 0 else args.seed, context,
    )
    log.info("report written: %s, %s", png, page)
    return 0
