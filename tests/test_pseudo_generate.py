"""``ris generate`` end to end on tiny real-class models: records, provenance, summary, report, bad input, resume."""

import hashlib
import io
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from PIL import Image
from rich.console import Console

from ris.cli import main as ris_main
from ris.formats.files import load_rgb
from ris.pseudo.generate_command import CONFIG_FILE, run
from ris.pseudo.generator import image_seed
from ris.pseudo.images import GenerationImages, ImageEntry, ImageFolder, ImageListFile, ReferImages
from ris.pseudo.masks import CutLERGuidedSource, SAMMaskSource
from ris.pseudo.provenance import checkpoint_id
from ris.pseudo.records import PseudoRecord, rle_to_mask
from ris.pseudo.shards import ShardSet
from tests.pseudo_generate_world import (
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
    assert (out / "report" / "report.png").stat().st_size > 0 and (out / "report" / "report.html").is_file()
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
    expected = source(load_rgb(images / "q0.png"), "q0")
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
    manifest = run(gt_args(zoo, tmp_path / "images", annotations, out, "--model.decoding.contrast_max_masks", "29",
                           "--output.images_per_shard", "3", "--output.report_images", "0"))

    totals = manifest["totals"]
    assert totals["skipped"] == {"mask_source_error": 1, "no_masks": 1, "unreadable": 1}
    assert totals["images"] == 6
    assert totals["masks_dropped"] == {"duplicate": 1, "full_image": 1, "over_limit": 3}
    records = {r["sample_id"]: r for r in shard_lines(out)}
    per_image = {}
    for record in records.values():
        per_image.setdefault(record["image_id"], []).append(record)
    assert {k: len(v) for k, v in per_image.items()} == {
        "a_normal": 3, "b_gray": 2, "c_rgba": 2, "f_onemask": 1, "g_many": 30, "h_edge_cases": 2}
    one = records["f_onemask:0"]
    assert one["one_mask"] and not one["contrast"] and one["uos"] == [None] * 4 and None not in one["dos"]
    assert all(not r["contrast"] for r in per_image["g_many"]) and totals["no_contrast"] == 30
    assert all(r["contrast"] for r in per_image["a_normal"])
    edge = sorted(per_image["h_edge_cases"], key=lambda r: r["mask_index"])
    assert edge[0]["box"] == [0, 0, 5, h - 1] and edge[1]["area"] == 1 and edge[1]["box"] == [30, 20, 30, 20]
    skipped = {i: reason for m in json.loads((out / "manifest-r000.json").read_text())["shards"]
               for i, reason in m["skipped"].items()}
    assert skipped == {"d_unreadable": "unreadable", "e_nomask": "no_masks", "i_unknown": "mask_source_error"}


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
    with pytest.raises(ValueError, match=r"image id 'b' names two files \(b.jpg, b.png\)"):
        ImageFolder(tmp_path).entries()
    listing = tmp_path / "list.txt"
    listing.write_text("# images\nx/one.png\n42  photos/two.jpg\n\n")
    assert ImageListFile(listing).entries() == [ImageEntry("x/one", "x/one.png"), ImageEntry("42", "photos/two.jpg")]
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
