"""CoS / UoS / DoS by hand, the τ rule, and the CLIP scorer on a tiny random-weight CLIP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ris.noun_phrases import RuleNounPhrases, noun_prompt
from ris.open_clip_models import OpenCLIPModel, create_open_clip
from ris.pseudo.crops import make_crops
from ris.pseudo.distinctiveness import (
    CLIPScorer,
    above_threshold,
    correctness,
    distinctiveness,
    uniqueness,
)
from ris.tokenizer import tokenize


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_two_masks_by_hand() -> None:
    a, b = t([[2, 1], [1, 4]]), t([[3, 2], [1, 1]])
    # products A*B = [[6, 2], [1, 4]]
    assert distinctiveness(a, b, 0).tolist() == [6.0, 0.5]
    assert distinctiveness(a, b, 1).tolist() == pytest.approx([1 / 6, 2.0])
    assert uniqueness(a, b, 0).tolist() == [3.0, 2.0]
    assert correctness(a, b, 1).tolist() == [1.0, 4.0]


def test_three_masks_take_the_best_other_mask() -> None:
    a, b = t([[1, 2], [2, 1], [3, 1]]), t([[2, 2], [1, 3], [1, 1]])
    # products [[2, 4], [2, 3], [3, 1]]
    assert distinctiveness(a, b, 0).tolist() == pytest.approx([2 / 3, 4 / 3])
    assert distinctiveness(a, b, 2).tolist() == pytest.approx([1.5, 0.25])
    assert uniqueness(a, b, 0).tolist() == pytest.approx([2.0, 2 / 3])
    assert correctness(a, b, 2).tolist() == [3.0, 1.0]


def test_single_mask_uses_the_raw_noun_score() -> None:
    a, b = t([[5, -1]]), t([[2, 3]])
    assert distinctiveness(a, b, 0).tolist() == [5.0, -1.0]
    assert correctness(a, b, 0).tolist() == [5.0, -1.0]
    assert all(math.isnan(v) for v in uniqueness(a, b, 0).tolist())


def test_negative_scores_are_raw_by_default_and_clampable() -> None:
    a, b = t([[-2, 2], [-1, 1]]), t([[1, 1], [1, 1]])
    # raw: -2 / -1 = 2 looks distinctive although both noun scores are negative
    assert distinctiveness(a, b, 0).tolist() == [2.0, 2.0]
    assert distinctiveness(a, b, 0, min_score=1e-6).tolist() == pytest.approx([1.0, 2.0])
    assert uniqueness(t([[-1.0]] * 2), t([[-3.0], [-1.0]]), 0).tolist() == [3.0]


def test_shape_errors_and_threshold() -> None:
    with pytest.raises(ValueError, match=r"must both be \(K, C\), got \(2, 2\) and \(2, 3\)"):
        distinctiveness(torch.ones(2, 2), torch.ones(2, 3), 0)
    with pytest.raises(ValueError, match="target mask 2 out of range for K = 2"):
        uniqueness(torch.ones(2, 2), torch.ones(2, 2), 2)
    assert above_threshold(torch.tensor([1.3, 1.31, 0.5])).tolist() == [False, True, False]
    assert above_threshold(np.array([1.0, 1.01]), tau=1.0).tolist() == [False, True]


class CountingModel(torch.nn.Module):
    """Wraps an open_clip model and records the rows of every encoder call."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.image_calls: list[int] = []
        self.text_calls: list[list[tuple[int, ...]]] = []
        self.logit_scale = inner.logit_scale
        self.context_length = inner.context_length

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        self.image_calls.append(len(images))
        return self.inner.encode_image(images, normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        self.text_calls.append([tuple(row.tolist()) for row in tokens])
        return self.inner.encode_text(tokens, normalize=normalize)


@pytest.fixture(scope="module")
def tiny_clip() -> OpenCLIPModel:
    torch.manual_seed(0)
    return create_open_clip("tiny-RN")


def scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    masks = np.zeros((3, 32, 40), dtype=bool)
    masks[0, 2:12, 3:15] = True
    masks[1, 15:30, 20:38] = True
    masks[2, 5:20, 25:33] = True
    return image, masks


CAPTIONS = [["a red circle", "a blue box"], ["a red circle"], ["the man on a horse", "a dog", "a dog"]]


def naive_scores(clip: OpenCLIPModel, image: np.ndarray, masks: np.ndarray, captions: list[list[str]]) -> list:
    """DoS/UoS/CoS from single-item encoder calls (each crop and text alone) and Python loops over pairs."""
    crops = make_crops(image, masks, clip.image_size, clip.mean, clip.std, margins=(1.0, 1.2))
    model, scale = clip.model, clip.model.logit_scale.exp().item()
    nouns = RuleNounPhrases()
    with torch.no_grad():
        image_features = {(c, i): model.encode_image(crops[c, i][None], normalize=True)[0] for c in (0, 1)
                          for i in range(len(masks))}
        text_features: dict[str, torch.Tensor] = {}
        for text in [c for per_mask in captions for c in per_mask] + [
            noun_prompt(nouns.head_noun(c)) for per_mask in captions for c in per_mask
        ]:
            if text not in text_features:
                text_features[text] = model.encode_text(tokenize(clip.tokenizer, [text], 77), normalize=True)[0]

    def score(crop_type: int, mask: int, text: str) -> float:
        return scale * float(image_features[crop_type, mask] @ text_features[text])

    out = []
    for target, per_mask in enumerate(captions):
        dos, uos, cos, negatives = [], [], [], 0
        for caption in per_mask:
            prompt = noun_prompt(nouns.head_noun(caption))
            a = [score(0, i, prompt) for i in range(len(masks))]
            b = [score(1, i, caption) for i in range(len(masks))]
            others = [i for i in range(len(masks)) if i != target]
            dos.append(a[target] * b[target] / max(a[i] * b[i] for i in others))
            uos.append(b[target] / max(b[i] for i in others))
            cos.append(a[target])
            negatives += sum(v < 0 for v in a + b)
        out.append((dos, uos, cos, negatives))
    return out


def test_clip_scorer_matches_naive_pairwise_computation(tiny_clip: OpenCLIPModel) -> None:
    image, masks = scene()
    scorer = CLIPScorer(tiny_clip)
    results = scorer.score_image(image, masks, CAPTIONS)
    assert [r.dos.shape for r in results] == [(2,), (1,), (3,)]
    assert all(r.dos.dtype == np.float32 and not r.one_mask for r in results)
    assert results[2].nouns == ["man", "dog", "dog"]
    for result, (dos, uos, cos, negatives) in zip(results, naive_scores(tiny_clip, image, masks, CAPTIONS)):
        np.testing.assert_allclose(result.dos, dos, rtol=1e-4)
        np.testing.assert_allclose(result.uos, uos, rtol=1e-4)
        np.testing.assert_allclose(result.cos, cos, rtol=1e-4)
        assert result.kept(1.3).tolist() == [d > 1.3 for d in dos]
        assert result.negatives == negatives


def test_clip_scorer_encodes_each_crop_and_text_once(tiny_clip: OpenCLIPModel) -> None:
    image, masks = scene()
    counting = CountingModel(tiny_clip.model)
    clip = OpenCLIPModel(counting, tiny_clip.tokenizer, "tiny-RN", 64, tiny_clip.mean, tiny_clip.std)
    CLIPScorer(clip).score_image(image, masks, CAPTIONS)
    assert counting.image_calls == [6]  # K masked + K context crops, one batch
    assert len(counting.text_calls) == 1
    texts = counting.text_calls[0]
    assert len(texts) == len(set(texts)) == 8  # 4 distinct captions + 4 distinct noun prompts
    small_batches = CountingModel(tiny_clip.model)
    clip = OpenCLIPModel(small_batches, tiny_clip.tokenizer, "tiny-RN", 64, tiny_clip.mean, tiny_clip.std)
    CLIPScorer(clip, batch_size=4).score_image(image, masks, CAPTIONS)
    assert small_batches.image_calls == [4, 2] and [len(c) for c in small_batches.text_calls] == [4, 4]


def test_clip_scorer_single_mask_and_errors(tiny_clip: OpenCLIPModel) -> None:
    image, masks = scene()
    scorer = CLIPScorer(tiny_clip)
    (single,) = scorer.score_image(image, masks[:1], [["a red circle", "a blue box"]])
    assert single.one_mask
    np.testing.assert_array_equal(single.dos, single.cos)
    assert np.isnan(single.uos).all()
    assert scorer.score_image(image, masks[:0], []) == []
    with pytest.raises(ValueError, match="got 3 masked crops, 3 context crops and 2 caption lists"):
        scorer.score_image(image, masks, CAPTIONS[:2])


def test_clip_scorer_over_coca_towers() -> None:
    torch.manual_seed(0)
    image, masks = scene()
    scorer = CLIPScorer("tiny-coca", pretrained=None)
    assert scorer.context_length == 32 and scorer.image_size == 64
    results = scorer.score_image(image, masks[:2], CAPTIONS[:2])
    assert [r.dos.shape for r in results] == [(2,), (1,)]
    assert all(np.isfinite(r.dos).all() for r in results)
