"""RIS models as LightningModules (CRIS, ETRIS) on swappable vision-language backbones."""

from models.base import RISModel
from models.coca_trainer import CoCaTrainer
from models.cris import CRIS
from models.etris import ETRIS
from models.global_local_clip import GlobalLocalCLIP

__all__ = ["CRIS", "CoCaTrainer", "ETRIS", "GlobalLocalCLIP", "RISModel"]
