"""RIS models as LightningModules: CRIS and ETRIS on swappable vision-language backbones, SaG (text-supervised) and
the zero-shot Global-Local CLIP."""

from .base import RISModel
from .coca_trainer import CoCaTrainer
from .cris import CRIS
from .etris import ETRIS
from .global_local_clip import GlobalLocalCLIP
from .sag import SaG

__all__ = ["CRIS", "CoCaTrainer", "ETRIS", "GlobalLocalCLIP", "RISModel", "SaG"]
