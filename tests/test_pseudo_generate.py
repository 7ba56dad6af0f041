"""``ris generate`` end to end on tiny real-class models: records, provenance, summary, report, bad input, resume."""

import hashlib
import importlib.util
import io
import json
import pickle
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from PIL import Image
from rich.console import Console

from ris.cli import main as ris_main
from ris.formats.images import decode_rgb
from ris.noun_phrases import SpacyNounPhrases
from ris.open_clip_models import create_open_clip
from ris.pseudo.generate_command import CONFIG_FILE, run
from ris.pseudo.generate_command import build_cli as build_generate_cli
from ris.pseudo.generator import image_seed
from ris.pseudo.images import GenerationImages, ImageEntry, ImageFolder, ImageListFile, ReferImages
from ris.pseudo.masks import CutLERGuidedSource, SAMMaskSource, build_tiny_sam
from ris.pseudo.provenance import checkpoint_id
from ris.pseudo.records import PseudoRecord, rle_to_mask
from ris.pseudo.shards import ShardSet
from tests.fake_spacy import save_test_pipeline
from tests.image_files import png_bomb_header, save_16bit_png, save_exif_rotated_jpeg
from tests.openai_archive import save_openai_archive
from tests.pseudo_generate_world import (
    FAST,
    ImageSpec,
    box_mask,
    gt_args,
    make_zoo,
    model_args,
    shard_lines,
    three_boxes,
    write_images,
)

SAMPLERS = ["beam", "top_k=5", "top_p=0.5"]
ROOT = Path(__file__).resolve().parents[1]


class FailAfter(Callback):
    """Simulates a killed run: raises after ``batches`` predict batches."""

    def __init__(self, batches: int = 1) -> None:
        self.batches = batches

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx + 1 >= self.batches:
            raise RuntimeError("simulated kill")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def five_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("five")
    specs = [ImageSpec(f"img{i}", three_boxes()[: 1 + i % 3]) for i in range(5)]
    return root / "images", write_images(root / "images", specs)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_end_to_end_tiny_sam_coca_clip(zoo, tmp_path):
    images = tmp_path / "images"
    write_images(images, [ImageSpec("p0", []), ImageSpec("p1", [], size=(48, 40))])
    sam = {
        "class_path": "ris.pseudo.masks.SAMMaskSource",
        "init_args": {"checkpoint": str(zoo.sam), "model_type": "tiny", "points_per_side": 2,
                      "pred_iou_thresh": -100.0, "stability_score_thresh": -100.0, "stability_score_offset": 0.0,
                      "box_nms_thresh": 1.0},
    }
    out = tmp_path / "out"
    buffer = io.StringIO()
    manifest = run([
        "--model.masks", json.dumps(sam), *model_args(zoo), "--model.mask_policy.max_masks", "3",
        "--data.source", json.dumps({"class_path": "ImageFolder", "init_args": {"root": str(images)}}),
        "--data.embed_images", "true",
        "--output.dir", str(out), "--output.report_images", "2", "--trainer.accelerator", "cpu",
        "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
    ], console=Console(file=buffer, width=200))

    records = [PseudoRecord(**r) for r in shard_lines(out)]
    assert manifest["totals"]["images"] == 2 and manifest["totals"]["masks"] == len(records) == 6
    assert manifest["totals"]["masks_dropped"]["over_limit"] > 0
    assert manifest["totals"]["candidates"] == 6 * 12
    assert {r.sample_id for r in records} == {f"p{i}:{k}" for i in range(2) for k in range(3)}
    for record in records:
        mask = rle_to_mask(record.mask)
        assert mask.shape == (record.height, record.width) and mask.sum() == record.area
        ys, xs = np.nonzero(mask)
        assert record.box == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert record.sampler == SAMPLERS * 4 and record.crop == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert len(record.captions) == len(record.dos) == len(record.uos) == len(record.cos) == 12
        assert record.num_masks == 3 and record.contrast and not record.one_mask
        assert all(isinstance(d, float) for d in record.dos)
        assert record.generator == manifest["provenance_id"]
    assert (records[0].height, records[0].width) == (40, 56) and (records[3].height, records[3].width) == (48, 40)
    assert records[3].decode_image_bytes() == (images / "p1.png").read_bytes()

    provenance = manifest["provenance"]
    assert provenance["masks"]["checkpoint_sha256"] == _sha256(zoo.sam)
    assert provenance["captioner"]["pretrained"]["sha256"] == _sha256(zoo.coca)
    assert provenance["scorer"]["pretrained"]["sha256"] == _sha256(zoo.clip)
    assert provenance["captioner"]["tokenizer"]["sha256"] == _sha256(zoo.vocab)
    assert provenance["seed"] == 0 and provenance["samplers"] == SAMPLERS
    assert provenance["versions"]["torch"] == torch.__version__.split("+")[0]

    summary = buffer.getvalue()
    assert "images with records" in summary and "candidate captions" in summary and "72" in summary
    assert (out / "report" / "report.png").stat().st_size > 0
    gallery = (out / "report" / "report.html").read_text()  # the generation's summary heads the gallery
    assert f"generator provenance id</th><td>{manifest['provenance_id']}</td>" in gallery
    assert "candidate captions</th><td>72</td>" in gallery and gallery.count("<article class='card'") == 2
    assert gallery.count("<tr class='cap ") == 72  # report_images 2: every caption of both images
    saved = yaml.safe_load((out / CONFIG_FILE).read_text())
    assert saved["output"]["dir"] == str(out) and saved["model"]["captioner_pretrained"] == str(zoo.coca)
    ShardSet(out).verify()
    assert ShardSet(out).num_records == 6


def test_cutler_guided_tiny_sam_from_a_config_file(zoo, tmp_path):
    images = tmp_path / "images"
    write_images(images, [ImageSpec("q0", [])])
    guides = tmp_path / "cutler" / "q0"
    guides.mkdir(parents=True)
    for j, box in enumerate(three_boxes()):
        Image.fromarray(box.astype(np.uint8) * 255).save(guides / f"{j}.png")
    sam = {"checkpoint": str(zoo.sam), "model_type": "tiny", "points_per_side": 2, "pred_iou_thresh": -100.0,
           "stability_score_thresh": -100.0, "stability_score_offset": 0.0, "box_nms_thresh": 1.0}
    config = {
        "model": {"masks": {"class_path": "ris.pseudo.masks.CutLERGuidedSource", "init_args": {
            "guide_dir": str(tmp_path / "cutler"), "inner": {"class_path": "ris.pseudo.masks.SAMMaskSource",
                                                             "init_args": sam}}}},
        "data": {"source": {"class_path": "ris.pseudo.images.ImageFolder", "init_args": {"root": str(images)}}},
        "output": {"dir": str(tmp_path / "out"), "report_images": 0},
    }
    (tmp_path / "generate.yaml").write_text(yaml.safe_dump(config))
    manifest = run(["--config", str(tmp_path / "generate.yaml"), *model_args(zoo), "--trainer.accelerator", "cpu",
                    "--trainer.enable_progress_bar", "false"])
    source = CutLERGuidedSource(SAMMaskSource(**sam), tmp_path / "cutler")
    expected = source(decode_rgb(images / "q0.png"), "q0")
    records = [PseudoRecord(**r) for r in shard_lines(tmp_path / "out")]
    assert len(records) == len(expected) >= 1
    assert all(np.array_equal(r.decode_mask(), m) for r, m in zip(records, expected))
    masks = manifest["provenance"]["masks"]
    assert masks["name"] == "cutler+sam" and masks["inner"]["checkpoint_sha256"] == _sha256(zoo.sam)


def test_bad_inputs_are_skipped_or_processed(zoo, tmp_path):
    h, w = 40, 56
    grid = [box_mask(48, 64, 6 * (k // 8), 8 * (k % 8), 6 * (k // 8) + 4, 8 * (k % 8) + 5) for k in range(33)]
    border = box_mask(h, w, 0, 0, h, 6)
    specs = [
        ImageSpec("a_normal", three_boxes()),
        ImageSpec("b_gray", three_boxes()[:2], mode="L"),
        ImageSpec("c_rgba", three_boxes()[:2], mode="RGBA"),
        ImageSpec("d_unreadable", three_boxes(), corrupt=True),
        ImageSpec("e_nomask", []),
        ImageSpec("f_onemask", three_boxes()[:1]),
        ImageSpec("g_many", grid, size=(48, 64)),
        ImageSpec("h_edge_cases", [border, box_mask(h, w, 20, 30, 21, 31), border.copy(), np.ones((h, w), bool)]),
    ]
    annotations = write_images(tmp_path / "images", specs)
    unknown = tmp_path / "images" / "i_unknown.png"
    unknown.write_bytes((tmp_path / "images" / "a_normal.png").read_bytes())
    out = tmp_path / "out"
    summary = io.StringIO()
    manifest = run(gt_args(zoo, tmp_path / "images", annotations, out, "--model.decoding.contrast_max_masks", "29",
                           "--output.images_per_shard", "3", "--output.report_images", "0"),
                   console=Console(file=summary, width=300))

    totals = manifest["totals"]
    assert totals["skipped"] == {"mask_source_error": 1, "no_masks": 1, "unreadable": 1}
    assert totals["images"] == 6
    assert totals["masks_dropped"] == {"duplicate": 1, "full_image": 1}  # no cap: every mask is kept
    records = {r["sample_id"]: r for r in shard_lines(out)}
    per_image = {}
    for record in records.values():
        per_image.setdefault(record["image_id"], []).append(record)
    assert {k: len(v) for k, v in per_image.items()} == {
        "a_normal": 3, "b_gray": 2, "c_rgba": 2, "f_onemask": 1, "g_many": 33, "h_edge_cases": 2}
    one = records["f_onemask:0"]
    assert one["one_mask"] and not one["contrast"] and one["uos"] == [None] * 4 and None not in one["dos"]
    # above the decoder's contrast bound the masks keep plain samples, as in the official code (docs/method.md §4.4)
    assert all(not r["contrast"] and r["num_masks"] == 33 for r in per_image["g_many"]) and totals["no_contrast"] == 33
    assert all(r["contrast"] for r in per_image["a_normal"])
    edge = sorted(per_image["h_edge_cases"], key=lambda r: r["mask_index"])
    assert edge[0]["box"] == [0, 0, 5, h - 1] and edge[1]["area"] == 1 and edge[1]["box"] == [30, 20, 30, 20]
    shards = json.loads((out / "manifest-r000.json").read_text())["shards"]
    skipped = {i: reason for m in shards for i, reason in m["skipped"].items()}
    assert skipped == {"d_unreadable": "unreadable", "e_nomask": "no_masks", "i_unknown": "mask_source_error"}
    messages = {i: message for m in shards for i, message in m["skip_messages"].items()}
    assert "d_unreadable.png: cannot decode the image" in messages["d_unreadable"]
    assert messages["i_unknown"].startswith("KeyError: \"image 'i_unknown' is not in")
    listed = summary.getvalue().split("skipped images (3):\n", 1)[1].splitlines()
    assert [line.split(":")[0] for line in listed] == [
        "  d_unreadable (d_unreadable.png)", "  e_nomask (e_nomask.png)", "  i_unknown (i_unknown.png)"]
    assert "unreadable — " in listed[0] and "mask_source_error — " in listed[2]


def test_generate_summary_names_the_first_skipped_images_and_counts_the_rest(tmp_path):
    from ris.pseudo.generate_command import skipped_images, skipped_lines
    from ris.pseudo.shards import ImageResult, ShardWriter

    writer = ShardWriter(tmp_path, 0, {"generator": "test"}, images_per_shard=2, image_root=str(tmp_path))
    for k in range(5):
        writer.add(ImageResult(f"img{k}", skip_reason="unreadable", message=f"cannot identify image file {k}"))
    writer.flush()
    skipped = skipped_images(tmp_path, {"img0": "photos/img0.jpg"})
    lines = skipped_lines(skipped, tmp_path, listed=2)
    assert lines == [
        "skipped images (5):",
        "  img0 (photos/img0.jpg): unreadable — cannot identify image file 0",
        "  img1: unreadable — cannot identify image file 1",
        f"  … and 3 more (all listed in {tmp_path / 'manifest-r*.json'})",
    ]


def _always_pad_coca(zoo, path: Path) -> Path:
    """A tiny CoCa whose decoder always prefers PAD: every caption decodes to the empty string."""
    state = torch.load(zoo.coca, weights_only=True)
    bias = torch.linspace(0.5, 1.5, state["text_decoder.ln_final.bias"].shape[0])
    state["text_decoder.ln_final.weight"] = torch.zeros_like(state["text_decoder.ln_final.weight"])
    state["text_decoder.ln_final.bias"] = bias
    projection = torch.zeros_like(state["text_decoder.text_projection"])
    projection[:, 0] = 10 * bias
    state["text_decoder.text_projection"] = projection
    torch.save(state, path)
    return path


def test_empty_captions_are_kept_and_counted(zoo, five_images, tmp_path):
    images, annotations = five_images
    coca = _always_pad_coca(zoo, tmp_path / "pad_coca.pt")
    out = tmp_path / "out"
    manifest = run(gt_args(zoo, images, annotations, out, "--model.captioner_pretrained", str(coca),
                           "--data.limit", "2", "--output.report_images", "1"))
    records = shard_lines(out)
    assert len(records) == 3 and all(c == "" for r in records for c in r["captions"])
    assert manifest["totals"]["empty_captions"] == manifest["totals"]["candidates"] == 3 * 4
    assert manifest["totals"]["kept"] == 0 and not manifest["complete"]


@pytest.fixture(scope="module")
def reference(zoo, five_images, tmp_path_factory):
    """An uninterrupted run over the five images."""
    out = tmp_path_factory.mktemp("reference") / "out"
    images, annotations = five_images
    return out, run(gt_args(zoo, images, annotations, out, "--output.report_images", "0"))


def test_resume_after_limit_equals_uninterrupted_run(zoo, five_images, reference, tmp_path):
    images, annotations = five_images
    part = tmp_path / "part"
    first = run(gt_args(zoo, images, annotations, part, "--data.limit", "2", "--output.images_per_shard", "1",
                        "--output.report_images", "0"))
    assert first["totals"]["images"] == 2 and not first["complete"]
    second = run(gt_args(zoo, images, annotations, part, "--output.images_per_shard", "1",
                         "--output.report_images", "0"))
    full = reference[1]["totals"]
    assert second["complete"] and len(second["shards"]) == 5
    assert second["totals"] == full | {"dos_sum": pytest.approx(full["dos_sum"])}
    assert shard_lines(part) == shard_lines(reference[0])


def test_resume_after_kill_equals_uninterrupted_run(zoo, five_images, reference, tmp_path):
    images, annotations = five_images
    out = tmp_path / "killed"
    killer = json.dumps({"class_path": "tests.test_pseudo_generate.FailAfter", "init_args": {"batches": 3}})
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(gt_args(zoo, images, annotations, out, "--output.images_per_shard", "2", "--trainer.callbacks+", killer))
    rank_manifest = json.loads((out / "manifest-r000.json").read_text())
    assert [s["images"] for s in rank_manifest["shards"]] == [["img0", "img1"]]
    assert not (out / "manifest.json").exists()
    orphan = out / "shard-r000-000001.jsonl"
    orphan.write_text('{"half-written": true}\n')
    resumed = run(gt_args(zoo, images, annotations, out, "--output.images_per_shard", "2",
                          "--output.report_images", "0"))
    assert resumed["totals"]["images"] == 5
    assert sorted(p.name for p in out.glob("shard-*")) == [s["file"] for s in resumed["shards"]]
    assert shard_lines(out) == shard_lines(reference[0])


def test_rerun_on_finished_folder_adds_nothing(zoo, five_images, reference, tmp_path):
    images, annotations = five_images
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    buffer = io.StringIO()
    again = run(gt_args(zoo, images, annotations, out, "--output.report_images", "0"), console=Console(file=buffer))
    assert again["shards"] == reference[1]["shards"] and shard_lines(out) == shard_lines(reference[0])
    assert re.search(r"images done before this run\W+5", buffer.getvalue())


def test_changed_settings_are_refused(zoo, five_images, reference, tmp_path):
    images, annotations = five_images
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    with pytest.raises(ValueError, match=r"manifest-r000.json was written by a generator with different settings "
                                         r"\(differing keys: seed\)"):
        run(gt_args(zoo, images, annotations, out, "--model.seed", "7"))


def test_images_decoded_together_equal_one_at_a_time(zoo, five_images, reference, tmp_path):
    images, annotations = five_images
    out = tmp_path / "together"
    manifest = run(gt_args(zoo, images, annotations, out, "--data.batch_size", "5", "--model.images_per_decode", "5",
                           "--output.report_images", "0"))
    assert manifest["totals"]["images"] == 5
    assert shard_lines(out) == shard_lines(reference[0])  # reference: one image per predict batch


def test_image_seed_depends_only_on_seed_and_image_id():
    assert image_seed(0, "img1") == image_seed(0, "img1") < 2**63
    assert len({image_seed(0, "img1"), image_seed(1, "img1"), image_seed(0, "img2")}) == 3


def test_checkpoint_ids_hash_files_and_folders(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    assert checkpoint_id(str(weights)) == {"path": str(weights), "sha256": hashlib.sha256(b"weights").hexdigest()}
    assert checkpoint_id("openai") == {"name": "openai"} and checkpoint_id(None) is None
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text("{}")
    first = checkpoint_id(f"local-dir:{folder}")
    (folder / "vocab.json").write_text("[]")
    assert checkpoint_id(f"local-dir:{folder}")["sha256"] != first["sha256"]


def test_image_sources_list_unique_ids(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert ImageFolder(tmp_path).entries() == [ImageEntry("b", "b.png"), ImageEntry("sub/a", "sub/a.jpg")]
    (tmp_path / "b.jpg").write_bytes(b"x")
    (tmp_path / "dead.jpg").symlink_to(tmp_path / "deleted.jpg")
    # files sharing a stem keep their extension in the id; a broken link is listed (it becomes a counted skip)
    assert ImageFolder(tmp_path).entries() == [
        ImageEntry("b.jpg", "b.jpg"), ImageEntry("b.png", "b.png"), ImageEntry("dead", "dead.jpg"),
        ImageEntry("sub/a", "sub/a.jpg")]
    (tmp_path / "my photo.png").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# images\nx/one.png\n42  photos/two.jpg\nmy photo.png\n7\tholiday pics/beach.jpg\n\n")
    assert ImageListFile(listing).entries() == [
        ImageEntry("x/one", "x/one.png"), ImageEntry("my photo", "my photo.png"), ImageEntry("42", "photos/two.jpg"),
        ImageEntry("7", "holiday pics/beach.jpg")]
    listing.write_text("1 a.png\n1 b.png\n")
    with pytest.raises(ValueError, match=r"image id '1' names two files \(a.png, b.png\)"):
        ImageListFile(listing).entries()
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolder(tmp_path / "missing")


def test_refer_images_are_the_unique_images_of_a_split(tmp_path):
    (tmp_path / "refcoco+").mkdir()
    refs = [{"image_id": 3, "split": "train"}, {"image_id": 1, "split": "train"}, {"image_id": 3, "split": "train"},
            {"image_id": 2, "split": "val"}]
    (tmp_path / "refcoco+" / "refs(unc).p").write_bytes(pickle.dumps(refs))
    images = [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg"} for i in (1, 2, 3)]
    (tmp_path / "refcoco+" / "instances.json").write_text(json.dumps({"images": images}))
    source = ReferImages(tmp_path)
    assert source.root == tmp_path / "images/mscoco/images/train2014"
    assert source.entries() == [ImageEntry("1", "COCO_train2014_000000000001.jpg"),
                                ImageEntry("3", "COCO_train2014_000000000003.jpg")]
    with pytest.raises(ValueError, match="no ref has split 'testA'"):
        ReferImages(tmp_path, split="testA").entries()
    with pytest.raises(ValueError, match=r"cannot read the refer dataset refcoco \(unc\)"):
        ReferImages(tmp_path, dataset="refcoco").entries()


def test_generation_images_skip_done_and_limit(five_images, reference):
    images, _ = five_images
    dm = GenerationImages(ImageFolder(images), skip_done=str(reference[0]))
    dm.setup("predict")
    assert dm.entries == [] and dm.already_done == 5 and dm.left_for_later == 0
    fresh = GenerationImages(ImageFolder(images), limit=2, batch_size=2)
    fresh.setup("predict")
    assert [e.image_id for e in fresh.entries] == ["img0", "img1"] and fresh.left_for_later == 3
    batch = next(iter(fresh.predict_dataloader()))
    assert [item.image_id for item in batch] == ["img0", "img1"] and batch[0].image.shape == (40, 56, 3)


def test_ris_generate_subcommand_help(capsys):
    with pytest.raises(SystemExit) as exc:
        ris_main(["generate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--model.masks", "--data.source", "--output.dir", "--output.images_per_shard", "--trainer.devices"):
        assert option in out


@pytest.mark.parametrize("config", sorted((ROOT / "configs" / "generate").glob("*.yaml")), ids=lambda p: p.name)
def test_generate_configs_parse(config, capsys):
    with pytest.raises(SystemExit) as exc:
        ris_main(["generate", "--config", str(config), "--print_config"])
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["output"]["dir"].startswith("pseudo_labels/") and printed["model"]["tau"] == 1.3


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*_pseudo_*.yaml")), ids=lambda p: p.name)
def test_pseudo_training_configs_parse(config, capsys):
    with pytest.raises(SystemExit) as exc:
        ris_main(["fit", "--config", str(config), "--print_config"])
    assert exc.value.code == 0
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert data["class_path"] == "ris.datamodules.PseudoRISDataModule"
    assert (ROOT / data["init_args"]["generate_config"]).is_file()


def _rectangles(height: int, width: int) -> np.ndarray:
    """A dark image with a bright red and a green rectangle (the segmenter finds both)."""
    pixels = np.full((height, width, 3), 20, dtype=np.uint8)
    pixels[height // 8 : height // 2, width // 8 : width // 2] = (230, 30, 30)
    pixels[height // 2 : 7 * height // 8, 5 * width // 8 : 7 * width // 8] = (40, 220, 60)
    return pixels


def test_images_as_users_have_them(zoo, tmp_path):
    """An EXIF-rotated JPEG, a 16-bit PNG, two files with one stem, a garbage file, a 74-byte PNG header claiming
    20000 x 20000 pixels and a broken link: records for every readable image, upright and in range; the rest are
    counted skips with their reasons, and a rerun neither dies nor redoes them."""
    images = tmp_path / "images"
    images.mkdir()
    save_exif_rotated_jpeg(images / "phone.jpg", _rectangles(40, 64))
    gray = _rectangles(40, 56)[..., 0].astype(np.uint16) * 257
    save_16bit_png(images / "scan.png", gray)
    Image.fromarray(_rectangles(40, 56)).save(images / "twin.png")
    Image.fromarray(_rectangles(48, 48)).save(images / "twin.jpg", quality=95)
    (images / "garbage.jpg").write_bytes(b"\x00\x01 definitely not an image" * 10)
    (images / "bomb.png").write_bytes(png_bomb_header(20000, 20000))
    (images / "gone.jpg").symlink_to(images / "deleted.jpg")
    out = tmp_path / "out"
    args = [
        "--model.masks", json.dumps({"class_path": "ris.pseudo.masks.SegmenterMaskSource"}), *model_args(zoo),
        "--data.source", json.dumps({"class_path": "ImageFolder", "init_args": {"root": str(images)}}),
        "--output.dir", str(out), "--output.report_images", "0", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", *FAST,
    ]
    manifest = run(args)
    records = [PseudoRecord(**r) for r in shard_lines(out)]
    by_image = {r.image_id: r for r in records}
    assert set(by_image) == {"phone", "scan", "twin.jpg", "twin.png"}
    assert manifest["totals"]["skipped"] == {"missing_file": 1, "too_large": 1, "unreadable": 1}
    assert (by_image["phone"].height, by_image["phone"].width) == (64, 40), "decoded upright (EXIF orientation 6)"
    assert (by_image["twin.jpg"].height, by_image["twin.png"].height) == (48, 40)
    scan = by_image["scan"].load_image(images)
    assert scan.max() == 230 and scan.min() == 20, "16-bit values scaled to 8 bits, not clipped to white"
    phone = by_image["phone"].load_image(images)
    # turned 90° clockwise: the stored top-left red rectangle is at the top right, the bottom-right green one at the
    # bottom left
    assert phone[10:30, 22:32].mean(axis=(0, 1)).argmax() == 0 and phone[42:54, 6:18].mean(axis=(0, 1)).argmax() == 1
    shards = json.loads((out / "manifest-r000.json").read_text())["shards"]
    skips = {i: reason for shard in shards for i, reason in shard["skipped"].items()}
    assert skips == {"bomb": "too_large", "garbage": "unreadable", "gone": "missing_file"}
    again = run(args)
    assert again["shards"] == manifest["shards"] and again["totals"] == manifest["totals"]


def test_paper_generate_config_loads_users_files_and_records_provenance(tmp_path, monkeypatch):
    """configs/generate/refcoco+_sam_cutler_coca.yaml with the files users have, at tiny size: a SAM checkpoint, an
    open_clip CoCa state dict, OpenAI's TorchScript CLIP archive (QuickGELU), a spaCy pipeline; the provenance names
    the noun extractor, the scorer's activation, the precision and the decoding settings."""
    spacy = pytest.importorskip("spacy")
    torch.manual_seed(0)
    sam = tmp_path / "sam_tiny.pth"
    torch.save(build_tiny_sam().state_dict(), sam)
    coca = tmp_path / "coca.bin"
    torch.save(create_open_clip("tiny-coca").model.state_dict(), coca)
    archive = save_openai_archive(create_open_clip("tiny-RN-quickgelu").model, tmp_path / "RN50.pt")
    guides = tmp_path / "cutler" / "1"
    guides.mkdir(parents=True)
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(guides / "0.png")
    pipeline = save_test_pipeline(tmp_path / "spacy_pipeline")
    config = ROOT / "configs" / "generate" / "refcoco+_sam_cutler_coca.yaml"
    overrides = [
        "--config", str(config),
        "--model.masks.init_args.guide_dir", str(tmp_path / "cutler"),
        "--model.masks.init_args.inner.init_args.checkpoint", str(sam),
        "--model.masks.init_args.inner.init_args.model_type", "tiny",
        "--model.captioner", "tiny-coca", "--model.captioner_pretrained", str(coca),
        "--model.scorer", "tiny-RN", "--model.scorer_pretrained", str(archive),
        "--output.dir", str(tmp_path / "out"), "--trainer.accelerator", "cpu",
        "--data.source.init_args.data_root", str(ROOT / "tests" / "data" / "refer"),  # checked, not read here
        "--data.source.init_args.dataset", "refcoco",
    ]
    monkeypatch.setattr("sys.argv", ["ris"])
    cli = build_generate_cli([*overrides, "--model.noun_extractor", f"spacy:{pipeline}"])
    generator = cli.model
    generator.build("cpu")
    _, scorer = generator.components()
    assert (scorer.clip.activation, scorer.clip.weights_format) == ("QuickGELU", "torchscript")
    assert isinstance(scorer.noun_extractor, SpacyNounPhrases)
    assert generator.captioner.image_size == 64 and generator.mask_policy.max_masks is None
    provenance = generator.provenance()
    assert provenance["scorer"]["activation"] == "QuickGELU"
    assert provenance["nouns"] == {"extractor": "spacy", "model": str(pipeline), "model_version": "0.0.0",
                                   "spacy_version": spacy.__version__}
    assert provenance["precision"] == "float32" and provenance["decoding"] == asdict(generator.decoding)
    assert provenance["masks"]["inner"]["checkpoint_sha256"] == _sha256(sam)
    # the paper config's default extractor is spaCy's en_core_web_lg: without it the run stops at once, saying how
    # to install it
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "spacy" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'pseudo-ris\[spacy\]' && python -m spacy download "
                       r"en_core_web_lg"):
        build_generate_cli(overrides)


def test_a_run_without_any_record_exits_non_zero(zoo, tmp_path, monkeypatch):
    """Every image skipped (here: all unreadable) is a failed run, not 0 records with exit code 0."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.jpg"):
        (images / name).write_bytes(b"garbage")
    monkeypatch.setattr("sys.argv", ["ris"])
    code = ris_main([
        "generate", "--model.masks", json.dumps({"class_path": "ris.pseudo.masks.SegmenterMaskSource"}),
        *model_args(zoo),
        "--data.source", json.dumps({"class_path": "ImageFolder", "init_args": {"root": str(images)}}),
        "--output.dir", str(tmp_path / "out"), "--output.report_images", "0", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", *FAST,
    ])
    assert code == 1
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["totals"]["skipped"] == {"unreadable": 2}
