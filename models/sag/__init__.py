"""SaG (Shatter and Gather, ICCV 2023): referring segmentation learned from image–text pairs alone
(docs/baselines.md §1)."""

from .network import SaGNet, SaGOutput

__all__ = ["SaGNet", "SaGOutput"]
