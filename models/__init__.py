"""RIS models as LightningModules (CRIS, ETRIS) on swappable vision-language backbones."""

from .base import RISModel
from .coca_trainer import CoCaTrainer
from .cris import CRIS
from .etris import ETRIS
from .global_local_clip import GlobalLocalCLIP

__all__ = ["CRIS", "CoCaTrainer", "ETRIS", "GlobalLocalCLIP", "RISModel"]
