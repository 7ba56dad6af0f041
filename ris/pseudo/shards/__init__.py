"""Pseudo-label shards: JSON Lines files written per process, manifests, and readers.

- :mod:`~ris.pseudo.shards.manifest`: the folder layout (``shard-r{rank}-{seq}.jsonl``, ``manifest-r{rank}.json``,
  ``manifest.json``), the format constants and the per-process manifests;
- :mod:`~ris.pseudo.shards.verification`: shard files checked against their manifest entries (missing, damaged,
  miscounted), what "done" means for resume (intact shards only) and the repair of the per-process manifests;
- :mod:`~ris.pseudo.shards.index`: the cached record index (``index.npz``: line offsets, usable flags), so readers
  neither parse every record at start-up nor trust manifest counts;
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

from .index import INDEX, ShardIndex
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, rank_manifests, read_manifest
from .map_style import ShardRecords
from .shard_set import ShardSet
from .stats import GenerationStats, ImageResult
from .streaming import StreamingShardRecords
from .verification import ShardProblem, done_image_ids, repair_rank_manifests
from .writer import ShardWriter, merge_manifests

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX",
    "MANIFEST",
    "GenerationStats",
    "ImageResult",
    "ShardIndex",
    "ShardProblem",
    "ShardRecords",
    "ShardSet",
    "ShardWriter",
    "StreamingShardRecords",
    "done_image_ids",
    "merge_manifests",
    "rank_manifests",
    "read_manifest",
    "repair_rank_manifests",
]
