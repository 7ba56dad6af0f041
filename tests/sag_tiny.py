"""Tiny SaG parts in the real file formats, for the SaG tests: a timm ViT state-dict file and a BERT
``save_pretrained`` folder with a word-piece vocabulary written here (random weights, nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch

VIT_NAME = "vit_small_patch16_384"
TINY_VIT = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
WORDS = "the a red blue green big small left right circle square".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def write_tiny_vit(path: Path, img_size: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny ``vit_small_patch16_384`` (timm's class, 1000-class head as timm's files have) at ``img_size``, saved
    as a timm state-dict file; returns the saved state dict."""
    torch.manual_seed(seed)
    net = timm.create_model(VIT_NAME, pretrained=False, img_size=img_size, **TINY_VIT)
    state = net.state_dict()
    torch.save(state, path)
    return state


def write_tiny_bert(folder: Path, seed: int = 0):
    """A tiny BERT with its tokenizer written by ``save_pretrained`` into ``folder``; returns the model."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    bert = BertModel(config)
    bert.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return bert
