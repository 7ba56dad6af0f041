"""LightningDataModules: RefCOCO/+/g, PhraseCut, pseudo-label shards."""

from datamodules.base import RISDataModule
from datamodules.caption_crops import SyntheticCaptionsDataModule
from datamodules.joint import JointDataModule
from datamodules.phrasecut import PhraseCutDataModule
from datamodules.pseudo import PseudoRISDataModule
from datamodules.refcoco import RefCOCODataModule
from datamodules.sets import PhraseCutSet, RefCOCOSet

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
