"""RIS models as LightningModules (CRIS, ETRIS, ...)."""
