"""Suite-wide fixtures."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def torch_threads_restored() -> Iterator[None]:
    """An entry point run in-process with ``train.threads`` sets the process's torch threads;
    later tests run with the threads they would have alone."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
