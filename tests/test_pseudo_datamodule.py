"""PseudoRISDataModule: training samples from shards, caption draws, streaming, and `ris fit` from raw images."""

import base64
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ris.batch import RISBatch, RISSample
from ris.cli import main as ris_main
from ris.datamodules import PseudoRISDataModule
from ris.formats.errors import BadSampleError
from ris.letterbox import letterbox_mask, letterbox_matrix
from ris.pseudo.records import PseudoRecord, mask_box, mask_to_rle
from ris.pseudo.shards import ImageResult, ShardWriter, merge_manifests
from ris.synthetic.world import write_world
from ris.tokenizer import WordTokenizer, tokenize
from tests.pseudo_generate_world import make_zoo

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = WordTokenizer(["a", "the", "red", "blue", "big", "circle", "square", "star", "shape"])
SIZE = 32


def _record(image_id: str, k: int, mask: np.ndarray, captions: list[str], dos: list, image_bytes=None) -> PseudoRecord:
    n = len(captions)
    return PseudoRecord(
        sample_id=f"{image_id}:{k}", image_id=image_id, image=f"{image_id}.png", height=mask.shape[0],
        width=mask.shape[1], mask_index=k, mask=mask_to_rle(mask), box=mask_box(mask), area=int(mask.sum()),
        num_masks=2, one_mask=False, contrast=True, captions=captions, sampler=["top_k=5"] * n, crop=[0] * n,
        dos=dos, uos=[1.0] * n, cos=[20.0] * n, generator="", image_bytes=image_bytes,
    )


@pytest.fixture
def shards(tmp_path):
    """Two images (20x30 RGB, 16x16 grayscale embedded in the records); 5 masks, one with only empty captions."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(images / "a.png")
    gray = tmp_path / "b.png"
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L").save(gray)
    embedded = base64.b64encode(gray.read_bytes()).decode("ascii")
    mask_a = np.zeros((20, 30), dtype=bool)
    mask_a[2:10, 5:25] = True
    mask_b = np.zeros((16, 16), dtype=bool)
    mask_b[4:12, 0:8] = True
    results = [
        ImageResult("a", [
            _record("a", 0, mask_a, ["a red circle", "the blue square", "a star"], [1.5, 1.4, 0.2]),
            _record("a", 1, ~mask_a, ["", " ", ""], [2.0, 2.0, 2.0]),
            _record("a", 2, mask_a, ["a big shape", "a shape"], [0.1, 0.9]),
        ]),
        ImageResult("b", [_record("b", k, mask_b, ["the red star", "a circle"], [1.6, 0.5], embedded)
                          for k in range(2)]),
    ]
    writer = ShardWriter(tmp_path / "shards", 0, {"test": True}, images_per_shard=1, image_root=str(images))
    for result in results:
        writer.add(result)
    merge_manifests(tmp_path / "shards")
    return tmp_path / "shards", mask_a


def _datamodule(path, **kwargs) -> PseudoRISDataModule:
    options = {"shards": str(path), "tokenizer": TOKENIZER, "input_size": SIZE, "word_length": 6, "batch_size": 2}
    return PseudoRISDataModule(**(options | kwargs))


def test_samples_follow_the_batch_contract_and_draw_above_tau(shards):
    path, mask_a = shards
    dm = _datamodule(path, fallback="best")
    dm.setup("fit")
    dataset = dm.train_dataset
    assert len(dataset) == 4 and dm.dropped_records == 1
    sample = dataset[0]
    assert isinstance(sample, RISSample) and sample.sample_id == "a:0" and sample.split == "train"
    assert sample.image.shape == (3, SIZE, SIZE) and sample.mask.shape == (1, SIZE, SIZE)
    assert sample.orig_size == (20, 30) and sample.gt_mask is None and sample.dataset == "pseudo"
    expected_mask = letterbox_mask(torch.from_numpy(mask_a), letterbox_matrix(20, 30, SIZE), SIZE)
    assert torch.allclose(sample.mask, expected_mask)
    assert torch.equal(sample.tokens, tokenize(TOKENIZER, [sample.text], 6)[0])
    draws = Counter(dataset[0].text for _ in range(200))
    assert set(draws) == {"a red circle", "the blue square"} and min(draws.values()) > 50
    assert {dataset[1].text for _ in range(20)} == {"a shape"}  # nothing above tau: the best DoS (fallback=best)
    gray = dataset[2]
    assert gray.orig_size == (16, 16) and gray.text == "the red star" and gray.sent_id == 0
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, RISBatch) and batch.image.shape == (2, 3, SIZE, SIZE) and batch.tokens.shape == (2, 6)


def test_fallback_any_and_tau_change_the_draws(shards):
    path, _ = shards
    dm = _datamodule(path, tau=1.45, fallback="any")
    dm.setup("fit")
    assert {dm.train_dataset[0].text for _ in range(100)} == {"a red circle"}
    assert {dm.train_dataset[1].text for _ in range(100)} == {"a big shape", "a shape"}


def test_image_size_mismatch_names_the_record(shards, tmp_path):
    path, _ = shards
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    dm = _datamodule(path)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"record a:0: image a.png is 5x5 \(HxW\), the record's mask is 20x30"):
        dm.train_dataset[0]


def test_streaming_mode_yields_equal_batches(shards):
    path, _ = shards
    dm = _datamodule(path, streaming=True, batch_size=1)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    # one reader, 5 records, 1 without a usable caption: the 4 others, each once
    assert len(batches) == len(dm.train_dataset) == 4
    assert sorted(b.sample_id[0] for b in batches) == ["a:0", "a:2", "b:0", "b:1"]
    assert "" not in [b.text[0] for b in batches]


def test_missing_shards_without_generation_fail_clearly(tmp_path):
    dm = PseudoRISDataModule(shards=str(tmp_path / "nothing"), tokenizer=TOKENIZER)
    with pytest.raises(FileNotFoundError, match="no finished pseudo-label shards.*ris generate"):
        dm.prepare_data()


def test_incomplete_generation_is_detected(shards):
    path, _ = shards
    manifest = json.loads((path / "manifest.json").read_text())
    assert not _datamodule(path).generation_needed()
    (path / "manifest.json").write_text(json.dumps(manifest | {"complete": False}))
    assert _datamodule(path).generation_needed()
    command = _datamodule(path, generate_config="gen.yaml", generate_args=["--data.limit", "3"]).generate_command()
    assert command[1:] == ["-m", "ris", "generate", "--config", "gen.yaml", "--output.dir", str(path),
                           "--data.limit", "3"]


def test_ris_fit_from_raw_images_in_one_command(tmp_path):
    world = write_world(tmp_path / "world", seed=0, image_size=64, n_train=3, n_val=2, n_test=0, n_b_train=0,
                        n_b_val=0, n_b_test=0)
    zoo = make_zoo(tmp_path / "zoo")
    shards = tmp_path / "shards"
    generate_args = [
        "--model.captioner", "tiny-coca", "--model.captioner_pretrained", str(zoo.coca),
        "--model.captioner_tokenizer", str(zoo.vocab), "--model.decoding.seq_len", "6",
        "--model.decoding.min_seq_len", "3", "--model.decoding.top_k", "[5]", "--model.decoding.top_p", "[0.5]",
        "--model.decoding.beam", "false", "--model.margins", "[1.0, 1.2]",
        "--data.source.init_args.data_root", str(world.refer_root), "--output.report_images", "0",
        "--trainer.enable_progress_bar", "false",
    ]
    val = [{"dataset": "refcoco", "data_root": str(world.refer_root), "split_by": "unc", "split": "val"}]
    ris_main([
        "fit", "--config", str(ROOT / "configs/cris_pseudo_synthetic.yaml"),
        "--model.backbone", "tiny-RN", "--model.input_size", "64", "--model.fpn_out", "[16, 32, 64]",
        "--model.nhead", "2", "--model.dim_ffn", "32", "--model.num_layers", "1",
        "--data.shards", str(shards), "--data.generate_config", str(ROOT / "configs/generate/synthetic.yaml"),
        "--data.generate_args", json.dumps(generate_args), "--data.input_size", "64", "--data.word_length", "8",
        "--data.batch_size", "2", "--data.val_sets", json.dumps(val), "--data.test_sets", "[]",
        "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
    ])
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["complete"] and manifest["totals"]["images"] + sum(manifest["totals"]["skipped"].values()) == 3
    assert manifest["totals"]["masks"] > 0
    assert manifest["provenance"]["masks"]["name"] == "segmenter"
    assert manifest["provenance"]["scorer"] == {"model": "the captioner's contrastive towers", "activation": "GELU"}


def test_a_null_caption_in_a_shard_is_a_bad_sample_naming_file_and_line(shards):
    path, _ = shards
    shard = sorted(path.glob("shard-*.jsonl"))[0]
    lines = shard.read_text().splitlines()
    record = json.loads(lines[0])
    record["captions"][1] = None
    lines[0] = json.dumps(record)
    shard.write_text("\n".join(lines) + "\n")
    data = shard.read_bytes()  # the manifests describe the file as written (a generator bug, not a damaged file)
    for manifest_path in path.glob("manifest*.json"):
        manifest = json.loads(manifest_path.read_text())
        for entry in manifest["shards"]:
            if entry["file"] == shard.name:
                entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BadSampleError, match=rf"{shard}:1: record 'a:0': caption 1 is None, not text"):
        _datamodule(path).setup("fit")
    dm = _datamodule(path, on_bad_sample="skip")
    dm.setup("fit")
    assert [(s.source, s.sample, s.reason) for s in dm.skipped] == [
        (f"{shard}:1", "record 'a:0'", "caption 1 is None, not text")]
    assert len(dm.train_dataset) == 3 and all(dm.train_dataset[i].sample_id != "a:0" for i in range(3))
    streaming = _datamodule(path, on_bad_sample="skip", streaming=True)
    streaming.setup("fit")
    assert {sample.sample_id for sample in streaming.train_dataset} <= {"a:2", "b:0", "b:1"}
