"""pseudo-ris core: CLI, batch contract, metrics, tokenizers, letterbox and the pseudo-supervision generator."""

__version__ = "0.1.0"
