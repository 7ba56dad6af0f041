"""Full-size architectures with random weights (no download): parameter counts against the spec (docs/models.md)."""

import pytest
import torch

from ris.models import CRIS, ETRIS
from ris.models.base import count_parameters
from ris.tokenizer import tokenize

SPEC = [
    # (class, backbone, spec count, what is counted)
    (CRIS, "RN50", 146_849_122, "total"),
    (ETRIS, "RN50", 28_819_009, "trainable"),
    (ETRIS, "ViT-B-16", 23_829_313, "trainable"),
]


@pytest.mark.slow
@pytest.mark.parametrize("cls, backbone, expected, counted", SPEC)
def test_full_size_parameter_counts_match_spec(cls, backbone, expected, counted):
    model = cls(backbone=backbone, pretrained=None)
    count = count_parameters(model) if counted == "total" else count_parameters(model, trainable=True)
    assert abs(count - expected) / expected < 0.02
    # Differences: CRIS keeps CLIP's unused logit_scale (1 parameter); it is not built here.
    assert count == expected - (1 if cls is CRIS else 0)
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 416, 416), tokenize(model.tokenizer, ["the man on the left"], 17))
    assert tuple(logits.shape) == (1, 1, 104, 104)
