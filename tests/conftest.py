"""Shared test fixtures: one thread for tiny models, and the tiny synthetic world built once per session."""

import pytest
import torch

from ris.synthetic.world import WorldPaths
from tests.workflow_world import make_world


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (tiny models on a shared 2-core machine run far faster single-threaded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> WorldPaths:
    """The tiny synthetic world of :mod:`tests.workflow_world` (64 px; both domains), written once per session.
    Read-only: a test that changes files works on a copy."""
    return make_world(tmp_path_factory.mktemp("tiny_world") / "world")
