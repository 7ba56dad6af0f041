"""The picture report: overlays, image sampling, PNG grid and HTML page."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ris.pseudo.gallery import mask_colors, overlay_masks, sample_images, write_report
from ris.pseudo.records import PseudoRecord, mask_box, mask_to_rle


def make_record(image_id: str, index: int, mask: np.ndarray, captions: list[str], dos: list[float],
                num_masks: int, image_bytes: str | None = None) -> PseudoRecord:
    h, w = mask.shape
    return PseudoRecord(
        sample_id=f"{image_id}:{index}", image_id=image_id, image=f"{image_id}.png", height=h, width=w,
        mask_index=index, mask=mask_to_rle(mask), box=mask_box(mask), area=int(mask.sum()), num_masks=num_masks,
        one_mask=num_masks == 1, contrast=num_masks > 1, captions=captions, sampler=["beam"] * len(captions),
        crop=[0] * len(captions), dos=dos, uos=[None] * len(captions), cos=[20.0] * len(captions),
        generator="test", image_bytes=image_bytes,
    )


def world(root: Path, count: int = 3) -> list[PseudoRecord]:
    records = []
    rng = np.random.default_rng(0)
    for n in range(count):
        image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / f"img{n}.png")
        left, right = np.zeros((24, 32), dtype=bool), np.zeros((24, 32), dtype=bool)
        left[2:10, 2:12], right[12:22, 16:30] = True, True
        records.append(make_record(f"img{n}", 1, right, ["a <b>blue</b> box", "a box"], [0.9, 1.2], 2))
        records.append(make_record(f"img{n}", 0, left, ["a red circle", "the circle", "a shape"], [1.8, 1.31, 1.3], 2))
    return records


def test_overlay_blends_and_outlines() -> None:
    pixels = np.zeros((6, 6, 3), dtype=np.uint8)
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:5, 1:5] = True
    color = np.array([[1.0, 0.0, 0.0]])
    out = overlay_masks(pixels, [mask], color)
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[1, 1].tolist() == [1.0, 0.0, 0.0]  # outline pixel in the mask colour
    assert out[2, 2].tolist() == pytest.approx([0.45, 0.0, 0.0])  # interior blended
    colors = mask_colors(12)
    assert colors.shape == (12, 3) and len({tuple(c) for c in colors}) == 12


def test_sample_images_groups_orders_and_samples(tmp_path: Path) -> None:
    records = world(tmp_path)
    first = sample_images(records, tmp_path, max_images=2, seed=None)
    assert [i.image_id for i in first] == ["img0", "img1"]
    assert [r.mask_index for r in first[0].records] == [0, 1]
    assert first[0].pixels.shape == (24, 32, 3)
    seeded = [i.image_id for i in sample_images(records, tmp_path, max_images=2, seed=3)]
    assert seeded == [i.image_id for i in sample_images(records, tmp_path, max_images=2, seed=3)]
    assert len(seeded) == 2 and set(seeded) <= {"img0", "img1", "img2"}


def test_write_report_png_and_html(tmp_path: Path) -> None:
    records = world(tmp_path)
    png, html = write_report(records, tmp_path / "out", tmp_path, tau=1.3, max_images=3)
    assert png == tmp_path / "out" / "report.png" and html == tmp_path / "out" / "report.html"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 500 and image.height > 300
    page = html.read_text()
    assert page.count("<article class='card'") == 3
    assert page.count("<tr class='cap kept'") == 3 * 2  # 1.8 and 1.31 pass τ = 1.3; 1.3 does not (strict)
    assert page.count("<tr class='cap dropped'") == 3 * 3
    assert "a &lt;b&gt;blue&lt;/b&gt; box" in page and "<b>blue</b>" not in page
    assert "<td>1.80</td>" in page and "<td>n/a</td>" in page
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_report_uses_embedded_image_bytes_and_checks_sizes(tmp_path: Path) -> None:
    image = np.full((10, 12, 3), 90, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    mask = np.zeros((10, 12), dtype=bool)
    mask[3:6, 3:6] = True
    embedded = make_record("solo", 0, mask, ["a thing"], [25.0], 1, base64.b64encode(buffer.getvalue()).decode())
    (item,) = sample_images([embedded], tmp_path / "nowhere")
    assert np.array_equal(item.pixels, image)
    _, html = write_report([embedded], tmp_path / "out", tmp_path / "nowhere")
    assert "<tr class='cap kept'" in html.read_text()  # single mask: top half (at least one) kept
    wrong = make_record("solo", 0, np.zeros((9, 12), dtype=bool) | mask[:9], ["a thing"], [1.0], 1)
    wrong.image_bytes = embedded.image_bytes
    with pytest.raises(ValueError, match=r"record solo:0: image solo.png is 10x12 \(HxW\), the record's mask is 9x12"):
        sample_images([wrong], tmp_path)
    with pytest.raises(ValueError, match="no images to report"):
        write_report([], tmp_path / "out", tmp_path)


def test_pseudo_report_command_reads_shards(tmp_path: Path) -> None:
    from ris.commands import resolve
    from ris.pseudo.shards import ImageResult, ShardWriter, merge_manifests

    records = world(tmp_path)
    writer = ShardWriter(tmp_path / "shards", 0, {"test": 1}, images_per_shard=2, image_root=str(tmp_path))
    for image_id in ("img0", "img1", "img2"):
        writer.add(ImageResult(image_id, [r for r in records if r.image_id == image_id]))
    writer.add(ImageResult("broken", skip_reason="unreadable", message="cannot identify image file"))
    writer.flush()
    manifest = merge_manifests(tmp_path / "shards")
    main = resolve("pseudo-report")
    assert main([str(tmp_path / "shards"), "--out", str(tmp_path / "rep"), "--tau", "1.0", "--max-images", "2"]) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("<article class='card'") == 2
    assert page.count("<tr class='cap kept'") == 2 * 4  # at τ = 1.0: 1.8, 1.31, 1.3 and 1.2 pass
    assert "τ of this gallery</th><td>1</td>" in page and "images with records</th><td>3</td>" in page
    assert f"generator provenance id</th><td>{manifest['provenance_id']}</td>" in page
    assert "<tr class='skip'><td>broken</td><td></td><td>unreadable</td><td>cannot identify image file</td>" in page
    assert (tmp_path / "rep" / "report.png").stat().st_size > 0


def test_records_of_an_image_must_be_consecutive(tmp_path: Path) -> None:
    records = world(tmp_path, count=2)
    with pytest.raises(ValueError, match="the records of image img0 are not consecutive"):
        sample_images([records[0], records[2], records[1]], tmp_path, max_images=5)
    with pytest.raises(ValueError, match="max_images must be >= 1"):
        sample_images(records, tmp_path, max_images=0)
