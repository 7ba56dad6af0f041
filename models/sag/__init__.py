"""SaG (Shatter and Gather, ICCV 2023): referring segmentation learned from image–text pairs alone
(docs/baselines.md §1). :class:`SaG` is the LightningModule; :class:`SaGNet` the plain torch network."""

from .module import SaG
from .network import SaGNet, SaGOutput

__all__ = ["SaG", "SaGNet", "SaGOutput"]
