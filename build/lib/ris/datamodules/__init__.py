"""LightningDataModules: RefCOCO/+/g, PhraseCut, pseudo-label shards."""

from .base import RISDataModule
from .caption_crops import SyntheticCaptionsDataModule
from .joint import JointDataModule
from .phrasecut import PhraseCutDataModule
from .pseudo import PseudoRISDataModule
from .refcoco import RefCOCODataModule
from .sets import PhraseCutSet, RefCOCOSet

__all__ = [
    "JointDataModule",
    "PhraseCutDataModule",
    "PhraseCutSet",
    "PseudoRISDataModule",
    "RISDataModule",
    "RefCOCODataModule",
    "RefCOCOSet",
    "SyntheticCaptionsDataModule",
]
