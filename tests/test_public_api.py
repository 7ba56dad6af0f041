"""Import paths that configs, checkpoints and users name keep resolving after the modules moved."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLASS_PATH = re.compile(r"class_path:\s*([\w.]+)")
DOTTED = re.compile(r"\bris\.[\w.]+\.[A-Z]\w+")


def _resolve(path: str) -> object:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _named_in(folder: str, pattern: re.Pattern[str]) -> set[str]:
    return {m for p in (ROOT / folder).rglob("*") if p.suffix in (".yaml", ".py", ".md") for m in
            pattern.findall(p.read_text())}


def test_every_ris_class_path_of_the_configs_resolves():
    paths = {p for p in _named_in("configs", CLASS_PATH) if p.startswith("ris.")}
    assert {"ris.pseudo.masks.SegmenterMaskSource", "ris.pseudo.masks.SAMMaskSource",
            "ris.pseudo.masks.CutLERGuidedSource", "ris.pseudo.images.ReferImages"} <= paths
    for path in sorted(paths):
        obj = _resolve(path)  # a class, or a module-level CONSTANT such as DEFAULT_TAU
        assert inspect.isclass(obj) or path.rsplit(".", 1)[1].isupper(), path


def test_every_dotted_ris_class_named_in_docs_tests_and_bench_resolves():
    paths = _named_in("docs", DOTTED) | _named_in("tests", DOTTED) | _named_in("bench", DOTTED)
    assert "ris.pseudo.masks.GroundTruthMaskSource" in paths
    for path in sorted(paths):
        obj = _resolve(path)  # a class, or a module-level CONSTANT such as DEFAULT_TAU
        assert inspect.isclass(obj) or path.rsplit(".", 1)[1].isupper(), path


def test_mask_sources_resolve_from_the_package_path():
    masks = importlib.import_module("ris.pseudo.masks")
    for name in ("SAMMaskSource", "CutLERGuidedSource", "GroundTruthMaskSource", "SegmenterMaskSource",
                 "MaskPolicy", "MaskProposals", "MaskSource"):
        cls = getattr(masks, name)
        assert cls.__module__.startswith("ris.pseudo.masks."), name


def test_filtering_is_the_former_name_of_distinctiveness():
    former = importlib.import_module("ris.pseudo.filtering")
    current = importlib.import_module("ris.pseudo.distinctiveness")
    names = ("distinctiveness", "uniqueness", "correctness", "above_threshold", "DEFAULT_TAU", "CLIPScorer",
             "MaskScores")
    for name in names:
        assert getattr(former, name) is getattr(current, name), name
    assert former.DEFAULT_TAU == 1.3


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("top_k_mask", ["logits", "k"]),
        ("top_p_mask", ["logits", "p"]),
        ("distinctive_probs", ["target_logits", "other_logits", "similarity", "remove", "eos_id", "temperature",
                               "mode", "weighted_lambda"]),
    ],
)
def test_public_sampling_functions_keep_their_signatures(name, parameters):
    function = getattr(importlib.import_module("ris.pseudo.sampling"), name)
    assert list(inspect.signature(function).parameters) == parameters


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("distinctiveness", ["noun_scores", "sentence_scores", "target", "min_score"]),
        ("uniqueness", ["noun_scores", "sentence_scores", "target", "min_score"]),
        ("correctness", ["noun_scores", "sentence_scores", "target", "min_score"]),
    ],
)
def test_public_score_functions_keep_their_signatures(name, parameters):
    function = getattr(importlib.import_module("ris.pseudo.distinctiveness"), name)
    assert list(inspect.signature(function).parameters) == parameters


def test_one_tau_default_everywhere():
    from ris.datamodules import PseudoRISDataModule
    from ris.demo import DemoSettings
    from ris.pseudo.distinctiveness import DEFAULT_TAU
    from ris.pseudo.generator import PseudoRISGenerator
    from ris.pseudo.shards import ShardWriter

    for owner in (PseudoRISDataModule, PseudoRISGenerator, ShardWriter):
        assert inspect.signature(owner).parameters["tau"].default == DEFAULT_TAU, owner.__name__
    assert DemoSettings().tau == DEFAULT_TAU


ROLE = re.compile(r":(?:mod|class|func|meth|attr|data):`~?(ris\.[\w.]+)`")


def _resolve_dotted(path: str) -> object:
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(path)


def test_every_cross_reference_in_the_code_resolves():
    folders = ("ris", "models", "datamodules", "bench")
    references = {m for folder in folders for p in (ROOT / folder).rglob("*.py") for m in ROLE.findall(p.read_text())}
    assert "ris.pseudo.shards.StreamingShardRecords" in references
    unresolved = []
    for reference in sorted(references):
        try:
            _resolve_dotted(reference)
        except (ImportError, AttributeError):
            unresolved.append(reference)
    assert unresolved == []


def test_code_cites_docs_pages_by_their_path_in_the_repository():
    """``docs/method.md §4.4``, not a bare page name (tests/test_docs.py checks the pages exist)."""
    import re

    pages = [p.stem for p in (ROOT / "docs").glob("*.md")] + ["architecture"]
    bare = re.compile(r"(?<![/\w\"])(?:" + "|".join(pages) + r")\.md\b")  # a "name.md" string is a file name
    loose = []
    for folder in ("ris", "models", "datamodules", "bench", "configs", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".yaml", ".sh") and path.is_file():
                loose += [f"{path.relative_to(ROOT)}: {m}" for m in bare.findall(path.read_text())]
    assert loose == []
