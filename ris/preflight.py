"""Fail fast: before any model or data is built, every path and name a command needs is checked, all at once.

:func:`preflight` walks the parsed config of a command (``ris fit/validate/test/predict/generate``) and reports
every problem in one :class:`PreflightError`, each line naming the config key
(``model.masks.init_args.inner.init_args.checkpoint``), the value and what is wrong. Which keys are paths is
declared, never special-cased per class:

- :data:`PATH_PARAMETERS`: parameter names the project uses for inputs (``data_root``, ``init_from``, ``checkpoint``,
  ``guide_dir``, ...), with the stages that read them (``init_from`` only matters to ``fit``, ``test_sets`` only
  to ``test``);
- any ``__init__`` parameter annotated with :class:`pathlib.Path` is an input path too;
- :data:`MODEL_PARAMETERS`: model names (``backbone``, ``clip_model``, ``captioner`` ...), resolved by
  :func:`ris.model_names.resolve_model_name` (OpenAI spellings such as ``ViT-B/16`` are rewritten to open_clip's, a
  typo gets "did you mean"); ``local-dir:PATH`` folders must exist;
- :data:`WEIGHT_PARAMETERS`: ``pretrained``-style values, a weights file or a pretrained tag of the paired model;
  a tag must be known for that model and, when it is not in the local download cache, the hub must be reachable.

Values marked ``# FILL-IN`` or ``# PLACEHOLDER`` in the config files are reported as placeholders to fill in.
Remote URLs (``s3://...``) are not checked. The input size is set once, on the model: a datamodule
``input_size`` that disagrees is reported here too.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import socket
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from ris.errors import RISError, UnknownNameError
from ris.model_names import resolve_model_name

PathKind = Literal["dir", "file", "weights"]


@dataclass(frozen=True)
class PathRule:
    """What a path parameter must be.

    Attributes:
        kind: ``dir``, ``file`` or ``weights`` (a non-empty file that looks like PyTorch/safetensors weights).
        stages: the commands that read it (``None``: every command).
        unless: a sibling parameter whose non-null value makes the path optional (it will be created).
        keywords: values that name a built-in instead of a path.
    """

    kind: PathKind
    stages: frozenset[str] | None = None
    unless: str | None = None
    keywords: frozenset[str] = frozenset()


FIT = frozenset({"fit"})
PATH_PARAMETERS: dict[str, PathRule] = {
    "data_root": PathRule("dir"),
    "image_dir": PathRule("dir"),
    "image_root": PathRule("dir"),
    "annotations": PathRule("file"),
    "guide_dir": PathRule("dir"),
    "checkpoint": PathRule("weights"),
    "init_from": PathRule("weights", FIT),
    "shards": PathRule("dir", FIT, unless="generate_config"),
    "generate_config": PathRule("file", FIT),
    "captioner_tokenizer": PathRule("file"),
    "scorer_tokenizer": PathRule("file"),
    "clip_tokenizer": PathRule("file"),
    "vocabulary": PathRule("file", keywords=frozenset({"synthetic-world"})),  # the world's word tokenizer
}
"""Input-path parameters by name (plus every parameter annotated with ``Path``)."""
STAGE_CONTAINERS: dict[str, frozenset[str]] = {
    "val_sets": frozenset({"fit", "validate"}),
    "test_sets": frozenset({"test"}),
}
"""Parameters holding evaluation sets, read only by these commands."""
SKIPPED_GROUPS = ("trainer", "output", "optimizer", "lr_scheduler", "config", "seed_everything", "ckpt_path")
"""Top-level groups without inputs to check here (``ckpt_path`` is checked by the checkpoint check)."""
MODEL_PARAMETERS: dict[str, tuple[str, ...]] = {
    "backbone": ("open_clip", "timm"),
    "text_backbone": ("open_clip",),
    "clip_model": ("open_clip",),
    "captioner": ("open_clip",),
    "scorer": ("open_clip",),
    "model_name": ("open_clip",),
}
"""Model-name parameters and the families they accept (:mod:`ris.model_names`)."""
WEIGHT_PARAMETERS: dict[str, str] = {
    "pretrained": "backbone",
    "text_pretrained": "text_backbone",
    "clip_pretrained": "clip_model",
    "captioner_pretrained": "captioner",
    "scorer_pretrained": "scorer",
}
"""``pretrained``-style parameters (a weights file or a tag) and the model-name parameter they belong to."""
USED_ONLY_WITH: dict[str, tuple[str, str]] = {
    "text_backbone": ("backbone", "timm:"),
    "text_pretrained": ("backbone", "timm:"),
}
"""Parameters read only when a sibling starts with a prefix (the text tower paired with a ``timm:`` backbone)."""
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
PLACEHOLDER_LINE = re.compile(r"^\s*(?:-\s*)?[\w.+-]+:\s*(?P<value>[^#\s][^#]*?)\s*#.*\b(?:FILL-IN|PLACEHOLDER)\b")
HUB_PROBE_SECONDS = 3.0
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


class PreflightError(RISError, ValueError):
    """Every problem :func:`preflight` found, one line each: config key, value, what is wrong.

    Attributes:
        problems: ``(key, value, what is wrong)`` per problem.
    """

    def __init__(self, problems: Sequence[tuple[str, str, str]], hint: str = "") -> None:
        self.problems = list(problems)
        width = max(len(key) for key, _, _ in self.problems)
        lines = [f"  {key.ljust(width)}  {value}: {what}" for key, value, what in self.problems]
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count > 1 else ''} found before anything was built:\n" + "\n".join(lines), hint
        )


@dataclass
class Entry:
    """One parameter of the config: its dotted ``key``, ``name``, ``value``, its siblings and its class."""

    key: str
    name: str
    value: Any
    siblings: Mapping[str, Any]
    cls: type | None


def _import(class_path: str) -> type | None:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def entries(node: Any, key: str, cls: type | None, stage: str) -> Iterator[Entry]:
    """Every parameter below ``node`` whose stage needs it (subclass specs ``class_path``/``init_args`` resolved)."""
    if isinstance(node, Mapping):
        if "class_path" in node and isinstance(node.get("class_path"), str):
            yield from entries(node.get("init_args") or {}, f"{key}.init_args", _import(node["class_path"]), stage)
            return
        for name, value in node.items():
            if name.startswith("__"):
                continue
            child = f"{key}.{name}" if key else name
            if name in STAGE_CONTAINERS and stage not in STAGE_CONTAINERS[name]:
                continue
            yield Entry(child, name, value, node, cls)
            if isinstance(value, (Mapping, list)):
                yield from entries(value, child, None, stage)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from entries(value, f"{key}[{index}]", cls, stage)


def _used(entry: Entry) -> bool:
    """Whether the parameter is read, given its siblings (:data:`USED_ONLY_WITH`)."""
    if entry.name not in USED_ONLY_WITH:
        return True
    sibling, prefix = USED_ONLY_WITH[entry.name]
    return str(entry.siblings.get(sibling) or "").startswith(prefix)


def _annotated_path(cls: type | None, name: str) -> bool:
    """Whether some ``__init__`` in ``cls``'s MRO annotates parameter ``name`` with :class:`pathlib.Path`."""
    for klass in getattr(cls, "__mro__", ()):
        init = klass.__dict__.get("__init__")
        if init is None or name not in inspect.signature(init).parameters:
            continue
        try:
            hint = typing.get_type_hints(init).get(name)
        except (NameError, TypeError):
            return False
        return hint is Path or Path in typing.get_args(hint)
    return False


def _is_remote(value: str) -> bool:
    return "://" in value


def looks_like_weights_file(value: str) -> bool:
    """Whether a ``pretrained`` value names a file rather than a tag (it exists, or it looks like a path)."""
    return os.path.isfile(value) or "/" in value or os.sep in value or value.endswith(WEIGHT_SUFFIXES)


def weights_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a weights file (empty, an HTML page, not PyTorch/safetensors bytes), else ``None``."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (an interrupted download or save?)"
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.lstrip()[:1] == b"<":
        return "an HTML/XML page, not weights (a failed or redirected download?)"
    zip_or_pickle = head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"
    safetensors = len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size
    if not (zip_or_pickle or safetensors):
        return "not a PyTorch (zip/pickle) or safetensors weights file"
    return None


def path_problem(value: str, kind: PathKind) -> str | None:
    """What is wrong with the input path ``value`` of ``kind``, or ``None``."""
    path = Path(value).expanduser()
    if not path.exists():
        return "no such " + ("folder" if kind == "dir" else "file")
    if kind == "dir":
        if not path.is_dir():
            return "not a folder"
        return None if os.access(path, os.R_OK | os.X_OK) else "folder not readable"
    if not path.is_file():
        return "not a file"
    if not os.access(path, os.R_OK):
        return "file not readable"
    return weights_problem(path) if kind == "weights" else None


def placeholder_values(config_files: Sequence[str | Path]) -> set[str]:
    """The values on lines marked ``# FILL-IN`` / ``# PLACEHOLDER`` in ``config_files``."""
    values: set[str] = set()
    for file in config_files:
        try:
            text = Path(file).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            match = PLACEHOLDER_LINE.match(line)
            if match:
                values.add(match["value"].strip().strip("'\""))
    return values


def _hub_unreachable(host: str, probes: dict[str, str | None]) -> str | None:
    if host not in probes:
        try:
            socket.create_connection((host, 443), timeout=HUB_PROBE_SECONDS).close()
            probes[host] = None
        except OSError as err:
            probes[host] = f"{host} unreachable: {err}"
    return probes[host]


def _cached(tag_cfg: Mapping[str, Any]) -> bool:
    """Whether open_clip would find the tag's weights without the network (hub cache or its URL cache)."""
    hub = str(tag_cfg.get("hf_hub", ""))
    if hub:
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        for name in [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str) and os.path.isfile(found):
                return True
    url = str(tag_cfg.get("url", ""))
    return bool(url) and (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file()


def tag_problem(model: str, tag: str, probes: dict[str, str | None]) -> str | None:
    """What is wrong with the pretrained ``tag`` of the open_clip ``model`` here (unknown; not cached and no hub)."""
    import difflib

    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model)
    if tag not in tags:
        close = difflib.get_close_matches(tag, tags, n=3)
        known = f"known tags: {', '.join(tags)}" if tags else "it has no pretrained tags (use null or a weights file)"
        return f"unknown pretrained tag for {model}; " + (f"did you mean {', '.join(close)}? " if close else "") + known
    tag_cfg = open_clip.get_pretrained_cfg(model, tag)
    if _cached(tag_cfg):
        return None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        reason = "HF_HUB_OFFLINE is set"
    else:
        endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_HF_ENDPOINT) if tag_cfg.get("hf_hub") else tag_cfg.get("url")
        reason = _hub_unreachable(urlparse(str(endpoint)).hostname or "", probes)
    if reason is None:
        return None
    return f"{model} weights {tag!r} are not in the local cache and cannot be downloaded ({reason}); pass a local " \
           f"weights file (e.g. OpenAI's {model}.pt) instead"


@dataclass
class Findings:
    """What :func:`preflight` found: problems, and OpenAI-style names rewritten to open_clip's."""

    problems: list[tuple[str, str, str]]
    renamed: dict[str, tuple[str, str]]


def check(config: Mapping[str, Any], stage: str, roots: Mapping[str, type] | None = None,
          config_files: Sequence[str | Path] = ()) -> Findings:
    """Check every input path and model name of a parsed ``config`` (a plain dict) for the command ``stage``.

    Args:
        config: the parsed config of one command (``model``, ``data``, ...).
        stage: ``fit``, ``validate``, ``test`` or ``predict`` (``ris generate``).
        roots: classes of top-level groups that are not subclass specs (``ris generate``'s fixed model and data).
        config_files: the config files, for placeholder marks.
    """
    roots = dict(roots or {})
    placeholders = placeholder_values(config_files)
    problems: list[tuple[str, str, str]] = []
    renamed: dict[str, tuple[str, str]] = {}
    resolved: dict[int, dict[str, str]] = {}
    probes: dict[str, str | None] = {}

    def report(entry: Entry, value: str, what: str) -> None:
        if value in placeholders or str(entry.value) in placeholders:
            what = f"placeholder, fill it in ({what})"
        problems.append((entry.key, value, what))

    found = [e for name, node in config.items() if name not in SKIPPED_GROUPS
             for e in entries(node, name, roots.get(name), stage) if _used(e)]
    for entry in found:
        if entry.name not in MODEL_PARAMETERS or not isinstance(entry.value, str):
            continue
        if entry.value.startswith("local-dir:"):
            folder = entry.value.split(":", 1)[1]
            what = path_problem(folder, "dir")
            if what is None and not (Path(folder) / "open_clip_config.json").is_file():
                what = "no open_clip_config.json in this folder (written by ris.open_clip_models.save_local_dir)"
            if what is not None:
                report(entry, folder, what)
            continue
        try:
            canonical = resolve_model_name(entry.value, MODEL_PARAMETERS[entry.name])
        except UnknownNameError as err:
            report(entry, entry.value, str(err).split("; ", 1)[1])
            continue
        resolved.setdefault(id(entry.siblings), {})[entry.name] = canonical
        if canonical != entry.value:
            renamed[entry.key] = (entry.value, canonical)
    for entry in found:
        if not isinstance(entry.value, str) or not entry.value or _is_remote(entry.value):
            continue
        if entry.name in WEIGHT_PARAMETERS:
            if looks_like_weights_file(entry.value):
                what = path_problem(entry.value, "weights")
                if what is not None:
                    report(entry, entry.value, what)
                continue
            model = resolved.get(id(entry.siblings), {}).get(WEIGHT_PARAMETERS[entry.name])
            if model is not None and not model.startswith(("timm:", "hf-hub:")):
                what = tag_problem(model, entry.value, probes)
                if what is not None:
                    report(entry, entry.value, what)
            continue
        rule = PATH_PARAMETERS.get(entry.name)
        if rule is None and _annotated_path(entry.cls, entry.name):
            rule = PathRule("file" if Path(entry.value).suffix else "dir")
        if rule is None or (rule.stages is not None and stage not in rule.stages):
            continue
        if (rule.unless is not None and entry.siblings.get(rule.unless)) or entry.value in rule.keywords:
            continue
        what = path_problem(entry.value, rule.kind)
        if what is None and entry.name == "data_root" and {"dataset", "split_by"} <= set(entry.siblings):
            what = _refer_problem(entry.value, str(entry.siblings["dataset"]), str(entry.siblings["split_by"]))
        if what is not None:
            report(entry, entry.value, what)
    problems += _input_size_problems(config)
    return Findings(_unique(problems), renamed)


def _refer_problem(data_root: str, dataset: str, split_by: str) -> str | None:
    """The missing files of a ``refer``-format dataset below an existing ``data_root`` (docs/data.md §1.1)."""
    from ris.formats.refer import refer_files

    missing = [str(p) for p in refer_files(data_root, dataset, split_by) if not p.is_file()]
    return f"{dataset} ({split_by}) files missing: {', '.join(missing)}" if missing else None


def _input_size_problems(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``data.init_args.input_size`` that disagrees with ``model.init_args.input_size`` (docs/models.md §1.7)."""
    def args(group: str) -> Mapping[str, Any]:
        node = config.get(group) or {}
        return (node.get("init_args") or {}) if "class_path" in node else node

    prefix = {g: f"{g}.init_args" if "class_path" in (config.get(g) or {}) else g for g in ("model", "data")}
    model_size, data_size = args("model").get("input_size"), args("data").get("input_size")
    if model_size is None or data_size is None or model_size == data_size:
        return []
    return [(f"{prefix['data']}.input_size", str(data_size),
             f"disagrees with {prefix['model']}.input_size = {model_size}; set the input size once, on the model")]


def _unique(problems: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return list(dict.fromkeys(problems))


def preflight(config: Mapping[str, Any], stage: str, roots: Mapping[str, type] | None = None,
              config_files: Sequence[str | Path] = (), extra: Sequence[tuple[str, str, str]] = ()) -> Findings:
    """:func:`check` and raise :class:`PreflightError` listing every problem (plus ``extra`` ones) at once."""
    findings = check(config, stage, roots, config_files)
    problems = [*extra, *findings.problems]
    if problems:
        key = next((k for k, _, _ in problems if "[" not in k), problems[0][0])
        hint = f"fix the config or override a key on the command line, e.g. --{key} VALUE"
        if any(what.endswith("no such file") or what.endswith("no such folder") or "(no such" in what
               for _, _, what in problems):
            hint += f"; relative paths are relative to the current folder {Path.cwd()}"
        raise PreflightError(problems, hint=hint)
    return findings
