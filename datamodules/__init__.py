"""LightningDataModules: RefCOCO/+/g, PhraseCut, pseudo-label shards."""
