"""Pseudo-supervision generator: mask proposals, crops, captions, distinctiveness filtering and records."""
