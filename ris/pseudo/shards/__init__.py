"""Pseudo-label shards: JSON Lines files written per process, manifests, and readers.

- :mod:`~ris.pseudo.shards.manifest`: the folder layout (``shard-r{rank}-{seq}.jsonl``, ``manifest-r{rank}.json``,
  ``manifest.json``), the format constants, the per-process manifests and what "done" means for resume;
- :mod:`~ris.pseudo.shards.stats`: :class:`ImageResult` (the generator's output for one image) and
  :class:`GenerationStats` (the counts in the manifests);
- :mod:`~ris.pseudo.shards.writer`: :class:`ShardWriter` (atomic shards and manifests per process, orphans removed
  on restart) and :func:`merge_manifests`; provenance checks come from :mod:`ris.pseudo.provenance`;
- :mod:`~ris.pseudo.shards.prediction_writer`: the Lightning callback of ``ris generate`` around the writer (import
  it from its module: it needs the generator);
- reading: :class:`ShardSet` opens a finished folder (a local path or any fsspec URL) through ``manifest.json``
  (:mod:`~ris.pseudo.shards.shard_set`); :class:`ShardRecords` is a map-style dataset over an index of line
  offsets, for local or shared disks and a ``DistributedSampler`` (:mod:`~ris.pseudo.shards.map_style`);
  :class:`StreamingShardRecords` streams the shards of this (rank, worker), for object storage
  (:mod:`~ris.pseudo.shards.streaming`).
"""

from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, done_image_ids, rank_manifests, read_manifest
from .map_style import ShardRecords
from .shard_set import ShardSet
from .stats import GenerationStats, ImageResult
from .streaming import StreamingShardRecords
from .writer import ShardWriter, merge_manifests

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "GenerationStats",
    "ImageResult",
    "ShardRecords",
    "ShardSet",
    "ShardWriter",
    "StreamingShardRecords",
    "done_image_ids",
    "merge_manifests",
    "rank_manifests",
    "read_manifest",
]
