import pytest
import torch

from ris.open_clip_models import create_open_clip, save_local_dir
from ris.tokenizer import OpenCLIPTokenizer, WordTokenizer


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("name", ["tiny-RN", "tiny-ViT", "tiny-coca"])
def test_local_checkpoint_file_loads_bit_exactly(tmp_path, name):
    built = create_open_clip(name)
    assert isinstance(built.tokenizer, OpenCLIPTokenizer) and built.image_size == 64
    path = tmp_path / "weights.pt"
    torch.save(built.model.state_dict(), path)
    loaded = create_open_clip(name, pretrained=str(path))
    assert _same(built.model, loaded.model)


def test_word_vocabulary_resizes_text_tower_and_local_dir_round_trips(tmp_path):
    tok = WordTokenizer(["a", "red", "blue", "circle"])
    built = create_open_clip("tiny-coca", tokenizer=tok)
    assert built.model.text.token_embedding.num_embeddings == tok.vocab_size == 8
    assert built.model.text_decoder.text_projection.shape[-1] == 8
    folder = save_local_dir(tmp_path / "coca", "tiny-coca", built.model, tok)
    loaded = create_open_clip(f"local-dir:{folder}")
    assert loaded.tokenizer == tok and _same(built.model, loaded.model)
    save_local_dir(tmp_path / "coca", "tiny-coca", built.model, tok)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coca"]


def test_bad_inputs_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown open_clip model 'nope'"):
        create_open_clip("nope")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        create_open_clip("tiny-RN", pretrained=str(tmp_path / "missing.pt"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "open_clip_config.json").write_text("{}")
    with pytest.raises(ValueError, match="model_cfg"):
        create_open_clip(f"local-dir:{tmp_path / 'bad'}")


def test_random_init_coca_decoder_projection_is_initialised():
    for _ in range(3):
        model = create_open_clip("tiny-coca").model
        proj = model.text_decoder.text_projection
        assert torch.isfinite(proj).all() and proj.abs().max() < 2.0  # N(0, width^-0.5), not torch.empty garbage
