"""Benchmark: generating the default synthetic world, and reading it back through the RefCOCO datamodule.

Measures (1) the wall time of ``write_world`` with the default settings into a fresh temporary folder and (2) the
throughput of one pass over the domain-A training loader (``train_unit="ref"``, one process, no workers) at a few
input sizes, i.e. the data side of a synthetic training epoch.

Run: ``.venv/bin/python bench/synthetic_world.py [--input-sizes 64 96] [--threads 2]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence

import torch

from ris.datamodules import RefCOCODataModule
from ris.synthetic import world_tokenizer, write_world


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        paths = write_world(tmp)
        generation = time.perf_counter() - start
        rows = [f"| write_world (defaults) | {generation:.1f} s |"]
        for size in args.input_sizes:
            dm = RefCOCODataModule(data_root=str(paths.refer_root), tokenizer=world_tokenizer(), input_size=size,
                                   batch_size=32)
            dm.setup("fit")
            start = time.perf_counter()
            samples = sum(len(batch) for batch in dm.train_dataloader())
            elapsed = time.perf_counter() - start
            rate = samples / elapsed
            rows.append(f"| train epoch, input {size} ({samples} refs) | {elapsed:.1f} s ({rate:.0f} samples/s) |")
    print("| measurement | result |\n|---|---|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
