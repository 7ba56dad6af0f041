import pytest
import torch

import ris.cli
from ris.open_clip_models import create_open_clip
from ris.synthetic.vocabulary import world_tokenizer
from ris.synthetic.world import WorldSettings
from ris.synthetic.zoo import CoCaRecipe, cache_key, synthetic_coca

WORLD = WorldSettings(seed=3, image_size=64, n_train=3)
RECIPE = CoCaRecipe(model_name="tiny-coca", max_steps=2, batch_size=8)


def test_synthetic_coca_is_trained_by_ris_fit_cached_and_reused(tmp_path, monkeypatch):
    name = synthetic_coca(WORLD, RECIPE, cache_dir=tmp_path)
    folder = tmp_path / f"synthetic-coca-{cache_key(WORLD, RECIPE)}"
    assert name == f"local-dir:{folder}"
    built = create_open_clip(name)
    assert built.tokenizer == world_tokenizer()
    assert built.model.text.token_embedding.num_embeddings == world_tokenizer().vocab_size
    latent, tokens = built.model._encode_image(torch.zeros(1, 3, 64, 64))
    assert latent.shape == (1, 32) and torch.isfinite(latent).all()

    def no_training(args):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(ris.cli, "build_cli", no_training)
    assert synthetic_coca(WORLD, RECIPE, cache_dir=tmp_path) == name


def test_cache_key_changes_with_every_setting():
    base = cache_key(WORLD, RECIPE)
    assert cache_key(WorldSettings(seed=4, image_size=64, n_train=3), RECIPE) != base
    assert cache_key(WORLD, CoCaRecipe(model_name="tiny-coca", max_steps=3, batch_size=8)) != base
    assert cache_key(WORLD, CoCaRecipe(model_name="synthetic-coca", max_steps=2, batch_size=8)) != base
    # n_val / n_test do not change the train scenes, so they do not change the model
    assert cache_key(WorldSettings(seed=3, image_size=64, n_train=3, n_val=7), RECIPE) == base


def test_caption_dataset_uses_web_captions_of_train_objects_only():
    from ris.datamodules.caption_crops import CaptionCropDataset
    from ris.synthetic.expressions import referring_expressions  # noqa: F401  (GT expressions are never used)
    from ris.synthetic.world import iter_scenes

    data = CaptionCropDataset(WORLD, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), captions_per_crop=2)
    n_objects = sum(len(scene.objects) for _, scene, _ in iter_scenes(WORLD, "A", "train"))
    assert len(data.crops) == 4 * n_objects and len(data) == 8 * n_objects
    item = data[0]
    assert item["image"].shape == (3, 32, 32) and isinstance(item["text"], str) and item["text"]
    vocab = set(world_tokenizer().words)
    assert all(set(pair.text.split()) <= vocab for pair in data.pairs)
    with pytest.raises(ValueError, match="no objects"):
        CaptionCropDataset(WorldSettings(n_train=0), 32, (0.5,) * 3, (0.25,) * 3)
