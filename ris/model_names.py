"""Model names as users write them: every accepted form, OpenAI's spellings, and "did you mean" for typos.

A backbone, CLIP or CoCa name is one of (docs/models.md §1.7):

- an open_clip architecture (``RN50``, ``ViT-B-16``, ``coca_ViT-L-14``, the framework's ``tiny-RN`` ...), also
  written ``open_clip:NAME``; OpenAI's spellings map to open_clip's (``ViT-B/16`` → ``ViT-B-16``,
  ``ViT-L/14@336px`` → ``ViT-L-14-336``);
- ``timm:NAME`` (a timm CNN as the visual side of a RIS backbone; only where ``timm`` is an accepted family);
- ``local-dir:PATH`` (a folder written by :func:`ris.open_clip_models.save_local_dir`; checked as a path by
  :mod:`ris.preflight`);
- ``hf-hub:ORG/REPO`` (an open_clip model on the Hugging Face hub, passed through).

:func:`resolve_model_name` returns the canonical spelling or raises :class:`ris.errors.UnknownNameError` with the
closest names of every accepted form.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from ris.errors import UnknownNameError

OPENAI_NAME = re.compile(r"^(?P<arch>(ViT|RN)[\w.-]*?)/(?P<patch>\d+)(@(?P<res>\d+)px)?$")
"""OpenAI's CLIP names: ``ViT-B/32``, ``ViT-B/16``, ``ViT-L/14``, ``ViT-L/14@336px``."""
PASS_THROUGH = ("local-dir:", "hf-hub:")
SUGGESTIONS = 5


def openai_to_open_clip(name: str) -> str:
    """``ViT-B/16`` → ``ViT-B-16``, ``ViT-L/14@336px`` → ``ViT-L-14-336``; other names unchanged."""
    match = OPENAI_NAME.match(name)
    if match is None:
        return name
    resolution = f"-{match['res']}" if match["res"] else ""
    return f"{match['arch']}-{match['patch']}{resolution}"


def open_clip_names() -> list[str]:
    """The open_clip architectures, the framework's tiny ones included."""
    import open_clip

    import ris.open_clip_models  # noqa: F401  (registers ris/model_configs)

    return list(open_clip.list_models())


def timm_names() -> list[str]:
    import timm

    return list(timm.list_models())


def _is_timm_model(name: str) -> bool:
    import timm

    return bool(timm.is_model(name))


def suggestions(name: str, families: Sequence[str]) -> list[str]:
    """The closest accepted names to ``name`` over every form of ``families`` (case-insensitive)."""
    bare = name.split(":", 1)[1] if ":" in name else name
    candidates = {n: n for n in open_clip_names()} if "open_clip" in families else {}
    if "timm" in families:
        candidates.update({f"timm:{n}": f"timm:{n}" for n in timm_names()})
    lowered = {c.lower(): c for c in candidates}
    found: list[str] = []
    for probe in dict.fromkeys([name.lower(), openai_to_open_clip(bare).lower(), f"timm:{bare}".lower()]):
        for match in difflib.get_close_matches(probe, list(lowered), n=SUGGESTIONS, cutoff=0.6):
            if lowered[match] not in found:
                found.append(lowered[match])
    return found[:SUGGESTIONS]


def resolve_model_name(name: str, families: Sequence[str] = ("open_clip", "timm")) -> str:
    """The canonical spelling of the model ``name`` (see the module docstring).

    Args:
        name: as written by the user.
        families: the accepted families besides ``local-dir:`` / ``hf-hub:`` (``open_clip``, ``timm``).

    Raises:
        UnknownNameError: the name is of no accepted form; the message lists the closest names.
    """
    if name.startswith(PASS_THROUGH):
        return name
    if name.startswith("timm:") and "timm" in families:
        if _is_timm_model(name[len("timm:"):]):
            return name
    else:
        bare = name[len("open_clip:"):] if name.startswith("open_clip:") else name
        canonical = openai_to_open_clip(bare)
        if "open_clip" in families and canonical in open_clip_names():
            return canonical
    close = suggestions(name, families)
    forms = ["an open_clip name (RN50, ViT-B-16)"] + (["timm:NAME"] if "timm" in families else []) + [
        "local-dir:PATH"
    ]
    did_you_mean = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownNameError(
        f"unknown model name {name!r}; {did_you_mean}accepted forms: {', '.join(forms)}",
        hint="python -c \"import open_clip; print(open_clip.list_models())\" lists the open_clip names",
    )
