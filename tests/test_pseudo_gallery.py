"""The pseudo-label gallery (report.html): label placement, summary, skipped images, self-containment, and the
page's filters and sorting in a real headless browser (tests/browser.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ris.pseudo.caption_choice import kept_flags
from ris.pseudo.gallery import GalleryContext, label_anchors, label_width, spread_labels, write_report
from ris.pseudo.records import PseudoRecord, mask_box, mask_to_rle
from ris.pseudo.shards.manifest import SkippedImage
from tests.browser import chromium, missing_browser

SAMPLERS = ["beam", "top_k=5", "top_p=0.5"]
TAU = 1.3


def gallery_record(image_id: str, index: int, mask: np.ndarray, dos: list[float], num_masks: int) -> PseudoRecord:
    """A record with 2 crop types × 3 samplers (crop-type major, as the generator writes them)."""
    count = len(dos)
    h, w = mask.shape
    return PseudoRecord(
        sample_id=f"{image_id}:{index}", image_id=image_id, image=f"{image_id}.png", height=h, width=w,
        mask_index=index, mask=mask_to_rle(mask), box=mask_box(mask), area=int(mask.sum()), num_masks=num_masks,
        one_mask=num_masks == 1, contrast=num_masks > 1,
        captions=[f"{image_id} mask {index} caption {i} <i>" for i in range(count)],
        sampler=[SAMPLERS[i % 3] for i in range(count)], crop=[i // 3 for i in range(count)], dos=dos,
        uos=[None if num_masks == 1 else 0.5] * count, cos=[20.0 + i for i in range(count)], generator="g",
    )


def gallery_world(root: Path) -> list[PseudoRecord]:
    """Four images: three with overlapping masks of various DoS (two with coinciding label points: identical
    masks), one single-mask image (raw CLIP scores, no DoS)."""
    rng = np.random.default_rng(1)
    records = []
    dos_sets = {
        "a": [[1.9, 1.2, 0.4, 1.5, 1.31, 1.0], [0.2, 0.3, 1.1, 0.9, 1.25, 0.1]],
        "b": [[2.6, 2.2, 1.4, 1.0, 0.5, 0.6], [1.35, 0.2, 0.1, 0.0, -0.2, 0.3], [1.0, 1.1, 1.2, 0.7, 0.8, 0.9]],
        "c": [[0.5, 0.6, 0.7, 0.8, 0.9, 1.0], [1.44, 1.0, 1.0, 1.0, 1.0, 1.0]],
    }
    for name, sets in dos_sets.items():
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / f"{name}.png")
        for index, dos in enumerate(sets):
            mask = np.zeros((30, 40), dtype=bool)
            mask[4:26, 6:34] = True  # identical masks: one label point for all, the labels must be spread
            if name == "a":
                mask[:] = False
                mask[2 + 10 * index: 14 + 10 * index, 3 + 15 * index: 25 + 15 * index] = True
            records.append(gallery_record(name, index, mask, dos, len(sets)))
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(root / "d.png")
    solo = np.zeros((30, 40), dtype=bool)
    solo[10:20, 10:30] = True
    records.append(gallery_record("d", 0, solo, [25.0, 26.0, 24.0, 23.0, 27.0, 22.0], 1))
    return records


SKIPPED = [
    SkippedImage("x1", "photos/x1.jpg", "unreadable", "cannot identify image file\n'photos/x1.jpg'"),
    SkippedImage("x2", "", "no_masks", ""),
]


def write_gallery(tmp_path: Path) -> tuple[list[PseudoRecord], Path]:
    records = gallery_world(tmp_path)
    manifest = {
        "provenance_id": "prov-1234", "provenance": {"margins": [1.0, 1.2]}, "tau": TAU, "complete": True,
        "shards": [{}, {}],
        "totals": {"images": 4, "skipped": {"no_masks": 1, "unreadable": 1}, "masks": 8, "masks_dropped": {},
                   "candidates": 48, "kept": 13, "empty_captions": 0, "dos_sum": 30.0, "dos_count": 42,
                   "negative_scores": 1, "one_mask": 1, "no_contrast": 0},
    }
    _, page = write_report(records, tmp_path / "out", tmp_path, tau=TAU, max_images=10, seed=None,
                           context=GalleryContext.from_manifest(manifest, SKIPPED))
    return records, page


def test_label_points_lie_inside_rings_and_crescents() -> None:
    yy, xx = np.mgrid[:41, :41]
    radius = np.hypot(yy - 20, xx - 20)
    ring = (radius >= 12) & (radius <= 18)  # its centroid (20, 20) is outside the mask
    crescent = (radius <= 15) & (np.hypot(yy - 20, xx - 28) > 12)
    (ring_x, ring_y), (cres_x, cres_y) = label_anchors([ring, crescent])
    assert ring[int(ring_y), int(ring_x)] and crescent[int(cres_y), int(cres_x)]
    assert not ring[20, 20]  # where a centroid label would go
    edge = np.zeros((10, 10), dtype=bool)
    edge[:, :5] = True  # touching the image border: the border counts as outside (else x = 0.5)
    ((x, _),) = label_anchors([edge])
    assert x == pytest.approx(2.5)


def test_spread_labels_separates_coinciding_labels_inside_the_image() -> None:
    anchors = np.array([[3.0, 3.0]] * 5 + [[60.0, 60.0]])
    sizes = np.array([[label_width("7"), 18.0]] * 6)
    centres = spread_labels(anchors, sizes, (80, 70))
    for i in range(6):
        for j in range(i + 1, 6):
            apart = np.abs(centres[i] - centres[j]) >= (sizes[i] + sizes[j]) / 2
            assert apart.any(), (i, j, centres)
    assert (centres - sizes / 2 >= 0).all() and (centres + sizes / 2 <= [80, 70]).all()
    assert np.allclose(centres[5], [60.0, 60.0])  # a label that overlaps nothing stays on its point
    alone = spread_labels(np.array([[10.0, 10.0], [40.0, 10.0]]), sizes[:2], (80, 70))
    assert np.allclose(alone, [[10.0, 10.0], [40.0, 10.0]])


def test_gallery_page_is_self_contained_with_summary_and_skipped_images(tmp_path: Path) -> None:
    records, page = write_gallery(tmp_path)
    text = page.read_text()
    assert not re.search(r"(?:src|href)\s*=\s*['\"](?!data:)", text)  # every image inlined, nothing linked
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert text.count("src='data:image/png;base64,") == 4
    assert "generator provenance id</th><td>prov-1234" in text
    assert "kept after τ = 1.3</th><td>13 (27.1%)" in text and "images skipped</th><td>2" in text
    assert "crop 1 (context ×1.2)" in text and "crop 0 (masked ×1)" in text
    assert "Skipped images (2)" in text and text.count("<tr class='skip'>") == 2
    assert "cannot identify image file &#x27;photos/x1.jpg&#x27;" in text  # one line, escaped
    assert text.count("<tr class='cap ") == sum(len(r.captions) for r in records) == 48
    assert "caption 0 &lt;i&gt;" in text and "<i>" not in text
    assert text.count("data-dos=''") == 6  # single-mask captions have no DoS (raw CLIP score shown with *)


@pytest.fixture
def browser():
    problem = missing_browser()
    if problem:
        pytest.fail(problem)
    with chromium() as driver:
        yield driver


def visible(driver, selector: str) -> list:
    return [e for e in driver.find_elements("css selector", selector) if e.is_displayed()]


def test_gallery_filters_and_sorts_in_a_real_browser(tmp_path: Path, browser) -> None:
    from selenium.webdriver.support.ui import Select

    records, page = write_gallery(tmp_path)
    browser.get(page.as_uri())
    assert browser.find_element("id", "status").text == "showing 4 of 4 images, 48 of 48 captions"
    assert len(visible(browser, "#skipped tr.skip")) == 2
    assert all(browser.execute_script("return arguments[0].naturalWidth", img) > 0
               for img in browser.find_elements("css selector", ".figure img"))
    for card in browser.find_elements("css selector", "article.card"):  # labels drawn apart, inside the image
        figure = card.find_element("css selector", ".figure").rect
        boxes = [label.rect for label in card.find_elements("css selector", ".label")]
        for k, box in enumerate(boxes):
            assert figure["x"] <= box["x"] and box["x"] + box["width"] <= figure["x"] + figure["width"] + 0.5
            assert figure["y"] <= box["y"] and box["y"] + box["height"] <= figure["y"] + figure["height"] + 0.5
            for other in boxes[k + 1:]:
                assert (box["x"] + box["width"] <= other["x"] or other["x"] + other["width"] <= box["x"]
                        or box["y"] + box["height"] <= other["y"] or other["y"] + other["height"] <= box["y"])

    kept = {r.image_id: 0 for r in records}
    for r in records:
        kept[r.image_id] += sum(kept_flags(r, TAU))
    browser.find_element("id", "f-kept").click()
    rows = visible(browser, "tr.cap")
    assert len(rows) == sum(kept.values()) and all(row.get_attribute("data-kept") == "1" for row in rows)
    assert len(visible(browser, "article.card")) == sum(n > 0 for n in kept.values())

    browser.find_element("id", "f-kept").click()
    Select(browser.find_element("id", "f-sampler")).select_by_value("top_k=5")
    Select(browser.find_element("id", "f-crop")).select_by_value("1")
    expected = [(r.image_id, i) for r in records for i in range(6) if r.sampler[i] == "top_k=5" and r.crop[i] == 1]
    assert len(visible(browser, "tr.cap")) == len(expected) == 8  # one per mask
    browser.find_element("id", "f-reset").click()

    browser.find_element("id", "f-dos-min").send_keys("1.05")
    browser.find_element("id", "f-dos-max").send_keys("1.45")
    in_range = [(r.image_id, d) for r in records if not r.one_mask for d in r.dos if 1.05 <= d <= 1.45]
    shown = visible(browser, "tr.cap")
    assert len(shown) == len(in_range) == 9
    assert sorted(float(row.get_attribute("data-dos")) for row in shown) == sorted(d for _, d in in_range)
    cards = [card.get_attribute("data-image-id") for card in visible(browser, "article.card")]
    assert cards == ["a", "b", "c"]  # the single-mask image has no DoS: hidden by a DoS range
    assert browser.find_element("id", "status").text == "showing 3 of 4 images, 9 of 48 captions"

    Select(browser.find_element("id", "f-sort")).select_by_value("dos-desc")
    best = {card: max(d for image, d in in_range if image == card) for card in cards}
    order = [card.get_attribute("data-image-id") for card in visible(browser, "article.card")]
    assert order == sorted(cards, key=lambda c: -best[c]) == ["c", "b", "a"]
    Select(browser.find_element("id", "f-rows")).select_by_value("dos-desc")
    first = visible(browser, "article.card")[0]
    values = [float(row.get_attribute("data-dos")) for row in first.find_elements("css selector", "tr.cap")
              if row.is_displayed()]
    assert values == sorted(values, reverse=True) == [1.44]
    browser.find_element("id", "f-reset").click()
    assert browser.find_element("id", "status").text == "showing 4 of 4 images, 48 of 48 captions"
    ids = [card.get_attribute("data-image-id") for card in visible(browser, "article.card")]
    assert ids == ["a", "b", "c", "d"]
